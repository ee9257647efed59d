"""Win-rate matrix on Education Dialogue under the true preference (like Shani et al. 2024,
Table 1): μ ("SFT"), single-turn RLHF and single-turn Nash-MD with both turn-level signals
(immediate next states; Monte-Carlo continuation), multi-turn RLHF, MTPO and MTPO-τ. Preference
and reward models are learned from a finite number of μ-sampled comparisons; several seeds,
mean ± standard error. The last row/column, π*_α of the true preference, separates model error
from the method."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import figure_main

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = lambda quick: f"Cells: mean ± one standard error over {2 if quick else 6} seeds of the learned preference / reward models."

METHODS = ("SFT (μ)", "ST-RLHF imm.", "ST-RLHF cont.", "ST-Nash imm.", "ST-Nash cont.",
           "MT-RLHF", "MTPO", "MTPO-τ", "π*_α (true P)")


def _policies(game, alpha, n_pairs, n_rollouts, iterations, seed):
    from fixpoint_rl.tabular.multiturn import (
        learned_preference_game,
        mtpo,
        mtpo_tau,
        multiturn_regularized_nash,
        multiturn_rlhf,
        single_turn_nash_md,
        single_turn_rlhf,
    )

    learned = learned_preference_game(game, n_pairs=n_pairs, seed=seed)
    learned_star = multiturn_regularized_nash(learned, alpha)
    per_state = max(n_pairs // game.num_decision_states, 1)
    common = dict(n_pairs=per_state, n_rollouts=n_rollouts, seed=seed + 1)
    return {
        "SFT (μ)": np.array(game.reference),
        "ST-RLHF imm.": single_turn_rlhf(game, alpha, signal="immediate", **common).final,
        "ST-RLHF cont.": single_turn_rlhf(game, alpha, signal="continuation", **common).final,
        "ST-Nash imm.": single_turn_nash_md(game, alpha, signal="immediate", **common).final,
        "ST-Nash cont.": single_turn_nash_md(game, alpha, signal="continuation", **common).final,
        "MT-RLHF": multiturn_rlhf(game, alpha, n_pairs=n_pairs, seed=seed + 2).final,
        "MTPO": mtpo(learned, alpha, iterations, reference_solution=learned_star,
                     checkpoints=2).final,
        "MTPO-τ": mtpo_tau(learned, alpha, iterations, reference_solution=learned_star,
                           checkpoints=2).final,
        # the exact equilibrium of the true preference (what MTPO reaches without model error)
        "π*_α (true P)": multiturn_regularized_nash(game, alpha),
    }


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Win rates P(π_row ≻ π_col) under the true preference, per seed."""
    from fixpoint_rl.envs.dialogue import education_dialogue
    from fixpoint_rl.tabular.multiturn import multiturn_preference

    game = education_dialogue(horizon=2, num_topics=1 if quick else 2, seed=seed)
    alpha = 0.05
    seeds = range(2) if quick else range(6)
    n_pairs = 1000 if quick else 5000
    rows = []
    for s in seeds:
        pols = _policies(game, alpha, n_pairs, n_rollouts=8, iterations=50 if quick else 1000,
                         seed=seed * 100 + 10 * s)
        for a in METHODS:
            for b in METHODS:
                rows.append({"seed": s, "row": a, "column": b,
                             "win_rate": multiturn_preference(game, pols[a], pols[b], 0.0)})
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    grouped = data.groupby(["row", "column"])["win_rate"]
    mean = grouped.mean().unstack().loc[list(METHODS), list(METHODS)]
    sem = (grouped.std() / np.sqrt(grouped.count())).unstack().loc[list(METHODS), list(METHODS)]
    fig, ax = plt.subplots(figsize=(8.2, 6.6))
    image = ax.imshow(mean.to_numpy(), cmap="RdBu", vmin=0.3, vmax=0.7)
    for i in range(len(METHODS)):
        for j in range(len(METHODS)):
            ax.text(j, i, f"{mean.iloc[i, j]:.3f}\n±{sem.iloc[i, j]:.3f}", ha="center",
                    va="center", fontsize=6)
    ax.set_xticks(range(len(METHODS)))
    ax.set_xticklabels(METHODS, rotation=35, ha="right")
    ax.set_yticks(range(len(METHODS)))
    ax.set_yticklabels(METHODS)
    ax.grid(False)
    ax.set_title("Education Dialogue: P(row ≻ column), true preference (mean ± s.e.)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
