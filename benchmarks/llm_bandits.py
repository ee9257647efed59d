"""``fixpoint bench llm-bandits``: the language-model papers' claims on softmax bandits.

Rows come from two parts: offline preference optimisation (GPO losses, the online–offline gap) and
RL objectives (AGRO, pass@k / majority vote, JEPO). Each row reports the final distance to the
objective's optimum (or the objective value), the iterations used, and whether the claimed limit
is reached.
"""

from __future__ import annotations

import pandas as pd

from ._runner import BenchConfig

DISPLAY_COLUMNS = ("value", "bound", "metric", "iterations", "wall_s")


def bandit_row(algorithm, problem, metric, value, claim=None, bound=None, holds=None,
               iterations=None, wall_s=None) -> dict:
    """One row of the llm-bandits table (shared by both parts, so their columns line up).

    ``claim`` may be relative to the metric (``"< bound"``): it is then prefixed with the metric's
    name (``"kl_to_optimum < bound"``), so that the claim reads on its own.
    """
    if claim is not None and not str(claim).startswith(str(metric)):
        claim = f"{metric} {claim}" if str(claim)[:1] in "<>=≤≥" else f"{metric}: {claim}"
    return {
        "algorithm": algorithm,
        "problem": problem,
        "claim": claim,
        "holds": None if holds is None else bool(holds),
        "metric": metric,
        "value": float(value),
        "bound": None if bound is None else float(bound),
        "iterations": iterations,
        "wall_s": wall_s,
    }


def run(config: BenchConfig) -> pd.DataFrame:
    from ._llm_bandits_offline import rows as offline_rows
    from ._llm_bandits_rl import rows as rl_rows

    return pd.concat([offline_rows(config), rl_rows(config)], ignore_index=True)
