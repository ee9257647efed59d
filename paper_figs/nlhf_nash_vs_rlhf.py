"""NLHF §3.2: on the three-type cycle, RLHF with a Bradley–Terry reward jumps with the sign of ε
while the Nash equilibrium moves continuously.

π(y1) as ε sweeps [−0.3, 0.3] (μ uniform): the unregularised Nash equilibrium (τ → 0, by LP;
closed form 1/3 + ε/2), the regularised equilibrium π*_τ at τ = 0.05, and the RLHF-BT policy
π ∝ μ exp(r/τ) for τ → 0 (argmax of the fitted reward) and τ = 0.05.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = "No bands: deterministic (exact equilibria and exact Bradley–Terry fits; no seeds)."

TAU = 0.05


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """π(y1) of Nash / regularised Nash / RLHF-BT on the three-type cycle as ε sweeps [−0.3, 0.3]."""
    from fixpoint_rl.envs import three_type_cycle
    from fixpoint_rl.tabular import nash_equilibrium, regularized_nash_equilibrium, rlhf_bradley_terry

    del seed  # deterministic: no randomness in this figure
    grid = np.linspace(-0.3, 0.3, 25 if quick else 121)
    rows = []
    for eps in grid:
        game = three_type_cycle(float(eps))
        policies = {
            "Nash (τ → 0, LP)": nash_equilibrium(game),
            f"regularised Nash (τ = {TAU})": regularized_nash_equilibrium(game, TAU),
            "RLHF-BT (τ → 0)": rlhf_bradley_terry(game, 0.0).final,
            f"RLHF-BT (τ = {TAU})": rlhf_bradley_terry(game, TAU).final,
        }
        for name, pi in policies.items():
            rows.append({"eps": float(eps), "policy": name, "pi_y1": float(pi[0]), "pi_y2": float(pi[1]),
                         "pi_y3": float(pi[2])})
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for index, (name, line) in enumerate(data.groupby("policy", sort=False)):
        style = "-" if name.startswith(("Nash", "regularised")) else "--"
        ax.plot(line["eps"], line["pi_y1"], style, color=color(index), label=name, marker="." if "→" in name else None)
    ax.axvline(0.0, color="grey", lw=0.8, alpha=0.6)
    ax.set_xlabel("ε (share of type 1 = 1/3 − ε)")
    ax.set_ylabel("π(y1)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("Three-type cycle: RLHF-BT jumps at ε = 0, Nash moves continuously")
    ax.legend(frameon=False, loc="upper left")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
