"""Sampled distributional learning: Cramér error to η_C against samples (Tang et al. 2024, arXiv 2402.05766).

Tabular TD learning from one continuing ε-greedy behaviour trajectory (μ = ε-greedy(π), ε = 0.3),
greedy target π, n = 8-step windows, λ = 0.8, step size N(s, a)^(−0.6), per-step projection.
Targets: sampled signed Q(λ) (no behaviour probabilities), Retrace (c = λ·min(1, π/μ)) and the
uncorrected n-step target Π_C(G_{0:n−1} + γ^n z)_# η(x_n, π) (C51 n-step), whose fixed point is
not η_C (it mixes in μ's returns), so its error plateaus. Error:
mean over (s, a) of the Cramér distance ℓ2(η, η_C), η_C by power iteration to 1e-12; median and
inter-quartile band over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

from fixpoint_rl.envs.mdp import epsilon_greedy_policy, garnet, greedy_policy
from fixpoint_rl.tabular import CategoricalSupport
from fixpoint_rl.tabular.qlambda import categorical_evaluation_fixed_point, distributional_td_learning

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = lambda quick: f"Lines: median over {2 if quick else 5} seeds; band: inter-quartile range over the same seeds."

GAMMA = 0.9
TRACES = (("q_lambda", "Q(λ) (signed)"), ("retrace", "Retrace"), ("n_step", "uncorrected n-step"))


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Learning curves (long format: trace, seed, samples, error)."""
    S, A = 6, 3
    support = CategoricalSupport(0.0, 1.0 / (1.0 - GAMMA), 31)
    mdp = garnet(S, A, 3, seed, gamma=GAMMA)
    rng = np.random.default_rng(seed)
    pi = greedy_policy(rng.random((S, A)))
    mu = epsilon_greedy_policy(pi, 0.3)
    reference = categorical_evaluation_fixed_point(mdp, pi, support=support)
    n_updates = 20_000 if quick else 400_000
    n_seeds = 2 if quick else 5
    rows = []
    for trace, _ in TRACES:
        for k in range(n_seeds):
            result = distributional_td_learning(
                mdp, pi, mu, 0.8, support=support, trace=trace, n_steps=8, n_updates=n_updates,
                n_checkpoints=10 if quick else 30, spacing="log", reference=reference, seed=seed * 100 + k,
            )
            for samples, error in zip(result.iterations, result.metric("mean_cramer_error")):
                rows.append(dict(trace=trace, seed=k, samples=int(samples), error=float(error)))
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, (trace, label) in enumerate(TRACES):
        sub = data[data.trace == trace].groupby("samples").error
        med, lo, hi = sub.median(), sub.quantile(0.25), sub.quantile(0.75)
        ax.plot(med.index, med.values, color=color(i), label=label)
        ax.fill_between(med.index, lo.values, hi.values, color=color(i), alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("samples (TD updates)")
    ax.set_ylabel("mean Cramér distance to η_C")
    ax.set_title("λ = 0.8, n = 8, greedy π, 0.3-greedy μ, γ = 0.9")
    ax.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
