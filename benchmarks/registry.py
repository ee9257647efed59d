"""Registries of convergence benchmarks and performance scripts (plain dicts, no global state).

A benchmark module defines ``run(config: BenchConfig) -> pandas.DataFrame`` returning one row per
(algorithm, problem) with at least the columns

  ``algorithm``  the solver,
  ``problem``    the game / MDP / bandit it ran on,
  ``holds``      True / False when the row checks a claimed bound or limit, None when it makes no
                 claim (e.g. a baseline that is *expected* not to converge is reported, not judged),

plus whatever the family needs (KL, exploitability, fitted slope, bound, …). ``fixpoint bench``
exits non-zero when any ``holds`` is False. A performance module defines the same ``run`` and
reports throughput and ratios against a baseline measured in the same run.

To add a benchmark: write ``benchmarks/<name>.py`` with ``run`` and add one entry below.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from types import ModuleType

__all__ = ["BENCHMARKS", "PERF", "Entry", "load"]


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    module: str  # relative to fixpoint_rl.benchmarks
    description: str


BENCHMARKS: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        Entry("nlhf", ".nlhf", "NLHF: Nash-MD (Theorem 1) and baselines on preference games"),
        Entry("mtpo", ".mtpo", "MTPO / MTPO-τ on multi-turn dialogue games (Theorem 4.2)"),
        Entry("qlambda", ".qlambda", "Distributional Q(λ) vs Retrace: contraction moduli and bounds"),
        Entry("dcfp", ".dcfp", "DCFP vs CDP vs QDP: sup-W1 error against samples and atoms"),
        Entry("llm-bandits", ".llm_bandits", "GPO, online/offline, AGRO, pass@k, JEPO on bandits"),
    )
}

PERF: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        Entry("nlhf", ".perf_nlhf", "Nash-MD family iterations/s vs the dense P·π floor"),
        Entry("mtpo", ".perf_mtpo", "MTPO backward recursion vs numpy, 10^6 state-action pairs"),
        Entry("qlambda", ".perf_qlambda", "Expected distributional backup vs numpy and the matmul floor"),
        Entry("dcfp", ".perf_dcfp", "DCFP linear solve vs CDP to the same accuracy"),
    )
}


def load(entry: Entry) -> Callable:
    """Import the entry's module and return its ``run`` function."""
    module: ModuleType = importlib.import_module(entry.module, __package__)
    return module.run
