"""Expected Q(λ) target with negative bins beside Retrace's (Tang et al. 2024, arXiv 2402.05766; Munos et al. 2016, arXiv 1606.02647).

Greedy target policy π against ε-greedy behaviour μ (ε = 0.5), λ = 1, γ = 0.9, per-step
projection. The bootstrap η puts the greedy action's return distribution low and the non-greedy
actions' high (discretised Gaussians), so the correction term −λμ(a')η(x', a') of Q(λ), whose
weight π(a') − λμ(a') < 0 on non-greedy actions, leaves negative mass on the high atoms. Retrace
cuts the trace (c = λ·min(1, π/μ) = 0 there) and its expected target stays a probability vector.
Both targets have total mass 1 (printed in the panel titles).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

from fixpoint_rl.envs.mdp import epsilon_greedy_policy, garnet, greedy_policy
from fixpoint_rl.tabular import CategoricalSupport, distributional_operator

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = "No bands: exact expected targets on one random MDP (drawn with --seed)."

GAMMA = 0.9


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Expected one-application targets of Q(λ), Retrace and tree-backup at one (s, a)."""
    S, A = 5, 3
    support = CategoricalSupport(0.0, 1.0 / (1.0 - GAMMA), 31 if quick else 51)
    mdp = garnet(S, A, 3, seed, gamma=GAMMA)
    rng = np.random.default_rng(seed)
    pi = greedy_policy(rng.random((S, A)))
    mu = epsilon_greedy_policy(pi, 0.5)
    z = support.atoms
    eta = np.empty((S, A, support.m))
    for s in range(S):
        for a in range(A):
            centre = 3.0 if pi[s, a] > 0 else 7.0
            probs = np.exp(-0.5 * ((z - centre) / 0.8) ** 2)
            eta[s, a] = probs / probs.sum()
    rows = []
    for trace in ("q_lambda", "retrace", "tree_backup"):
        target = distributional_operator(mdp, eta, pi, mu, 1.0, support=support, trace=trace)
        for i, atom in enumerate(z):
            rows.append(dict(trace=trace, state=0, action=int(np.argmax(pi[0])), atom=atom, mass=target[0, np.argmax(pi[0]), i]))
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    traces = [("q_lambda", "distributional Q(λ)"), ("retrace", "distributional Retrace")]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, (trace, title) in zip(axes, traces):
        sub = data[data.trace == trace]
        width = float(np.diff(sub.atom.values[:2])[0]) * 0.9
        colours = [color(0) if m >= 0 else color(1) for m in sub.mass]
        ax.bar(sub.atom, sub.mass, width=width, color=colours)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_title(f"{title}: total mass {sub.mass.sum():.6f}, min bin {sub.mass.min():.3f}")
        ax.set_xlabel("return atom z")
    axes[0].set_ylabel("expected target mass (orange: < 0)")
    fig.suptitle("greedy π vs ε-greedy μ (ε = 0.5), λ = 1, γ = 0.9, one (s, a)", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
