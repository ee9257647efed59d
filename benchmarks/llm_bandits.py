"""``fixpoint bench llm-bandits``: the language-model papers' claims on softmax bandits.

Rows come from two parts: offline preference optimisation (GPO losses, the online–offline gap) and
RL objectives (AGRO, pass@k / majority vote, JEPO). Each row reports the final distance to the
objective's optimum (or the objective value), the iterations used, and whether the claimed limit
is reached.
"""

from __future__ import annotations

import pandas as pd

from ._runner import BenchConfig


def run(config: BenchConfig) -> pd.DataFrame:
    from ._llm_bandits_offline import rows as offline_rows
    from ._llm_bandits_rl import rows as rl_rows

    return pd.concat([offline_rows(config), rl_rows(config)], ignore_index=True)
