"""Registries of convergence benchmarks and performance scripts (plain dicts, no global state).

A benchmark or performance module defines ``run(config: BenchConfig) -> pandas.DataFrame``
returning one row per (algorithm, problem[, setting]). ``fixpoint bench`` / ``fixpoint perf``
exit 1 when any ``holds`` is False (a missed perf goal counts like a violated bound).

Column vocabulary (shared by every family; the README repeats it). Required columns:

  ``algorithm``  the solver or variant, e.g. ``nash_md(theorem)``, ``DCFP``, ``c51``;
  ``problem``    the game / MDP / bandit / environment it ran on, e.g. ``dice``, ``chain``;
  ``claim``      short text of what the row checks (``KL_T ≤ 8/(τ²(T+1)) at every checkpoint``,
                 ``speedup_vs_numpy_x ≥ 10``), None on rows that make no claim;
  ``holds``      True / False when the row checks its ``claim``, None when it makes none (e.g. a
                 baseline that is *expected* not to converge is reported, not judged).

Metric and setting columns: reuse these names where the quantity is the same (units in the name).

  ``kl``              final KL to the target (KL(π*‖π_T) unless the claim says otherwise)
  ``exploitability``  final (regularised) exploitability
  ``error``           final distance to the reference answer (the claim or docstring names it)
  ``bound``           the bound or predicted value the claim compares with (same units as the
                      metric it bounds)
  ``slope``           least-squares log–log slope (of the claimed metric against T or N)
  ``rate``            empirical asymptotic contraction rate per iteration
  ``iterations``      iterations / steps / updates run
  ``wall_s``          wall-clock seconds of the timed part (compile time excluded)
  ``seed``            the seed of the row when rows differ by seed
  ``tau``, ``alpha``, ``beta``, ``lam``, ``gamma``, ``eps``   the papers' parameters (ASCII)
  ``K`` actions/responses, ``X`` contexts, ``H`` horizon, ``S`` states, ``m`` atoms, ``N``
  samples per state, ``k`` samples per prompt (pass@k), ``n`` samples per estimate
  ``metric``, ``value``  long format: ``value`` of the quantity named by ``metric`` (llm-bandits)

Ratios carry their direction in the name and end in ``_x``:

  ``speedup_vs_<baseline>_x``   baseline seconds / our seconds (> 1: we are faster); plain
                                ``speedup_x`` when the claim text names the baseline
  ``slowdown_vs_<floor>_x``     our seconds / floor seconds (≥ 1; closer to 1 is better);
                                ``x_floor`` likewise (< 1: faster than the floor)
  throughput columns end in ``_per_s``; memory columns in ``_mb``.

Other boolean columns (e.g. ``inside_region``, ``converged``) are descriptive, not verdicts:
only ``holds`` = False marks a failure. Modules may set ``DISPLAY_COLUMNS`` (the metric columns the
80-column terminal table shows first; ``--wide`` and the CSV/JSON outputs always have all).

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
    # packages of an optional extra the entry needs (e.g. torch for the deep families): when one
    # is missing, running every family says so and leaves this one out; naming it is an error
    requires: tuple[str, ...] = ()
    extra: str | None = None

    def missing(self) -> list[str]:
        """The required packages that are not installed."""
        import importlib.util

        return [package for package in self.requires if importlib.util.find_spec(package) is None]


BENCHMARKS: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        Entry("nlhf", ".nlhf", "NLHF: Nash-MD (Theorem 1) and baselines on preference games"),
        Entry("mtpo", ".mtpo", "MTPO / MTPO-τ on multi-turn dialogue games (Theorem 4.2)"),
        Entry("qlambda", ".qlambda", "Distributional Q(λ) vs Retrace: contraction moduli and bounds"),
        Entry("dcfp", ".dcfp", "DCFP vs CDP vs QDP: sup-W1 error against samples and atoms"),
        Entry("llm-bandits", ".llm_bandits", "GPO, online/offline, AGRO, pass@k, JEPO on bandits"),
        Entry("tdflow", ".tdflow", "TD-Flow: TD²-CFM / TD-CFM(C) / TD-CFM vs exact successor measures",
              requires=("torch",), extra="deep"),
    )
}

PERF: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        Entry("nlhf", ".perf_nlhf", "Nash-MD family iterations/s vs the dense P·π floor"),
        Entry("mtpo", ".perf_mtpo", "MTPO backward recursion vs numpy, 10^6 state-action pairs"),
        Entry("qlambda", ".perf_qlambda", "Expected distributional backup vs numpy and the matmul floor"),
        Entry("dcfp", ".perf_dcfp", "DCFP linear solve vs CDP to the same accuracy"),
        Entry("deep", ".perf_deep", "LM sampler tokens/s vs HF generate, train steps/s; MinAtar wrapper vs raw",
              requires=("torch", "transformers", "minatar"), extra="deep,atari"),
        Entry("c51", ".perf_c51", "C51 MinAtar loop vs a CleanRL-style loop; projection vs CleanRL/rlax",
              requires=("torch", "minatar"), extra="deep,atari"),
        Entry("llm", ".perf_llm", "One verifiable-reward RL step (sample+score+update) vs trl.GRPOTrainer",
              requires=("torch", "transformers", "trl"), extra="deep,dev"),
        Entry("gpo", ".perf_gpo", "GPO loss forward+backward on an LM batch vs trl.DPOTrainer's loss",
              requires=("torch", "transformers", "trl"), extra="deep,dev"),
    )
}


def load(entry: Entry) -> Callable:
    """Import the entry's module and return its ``run`` function."""
    module: ModuleType = importlib.import_module(entry.module, __package__)
    return module.run
