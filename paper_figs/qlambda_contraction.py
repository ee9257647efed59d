"""Contraction of distributional Q(λ) vs Retrace (Tang et al. 2024, arXiv 2402.05766).

(a) Measured modulus against λ at two behaviour mismatch levels ε = max_x ‖π − μ‖₁: the empirical
    sup-Cramér Lipschitz ratio and the asymptotic rate, Q(λ) vs Retrace; the region where the bound
    guarantees contraction (λε < (1 − √γ)/√γ) is shaded.
(b) (λ, ε) heat map of Q(λ)'s measured Lipschitz ratio, with the bound's boundary λε = (1−√γ)/√γ
    and the measured ratio-1 contour.
Random Garnet MDP, γ = 0.9, greedy π, μ = (1 − w)π + w·(random policy), per-step projection.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

from fixpoint_rl.envs.mdp import garnet, greedy_policy, random_policy
from fixpoint_rl.tabular import CategoricalSupport
from fixpoint_rl.tabular.qlambda import contraction_modulus

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = "No bands: one random Garnet MDP (drawn with --seed); moduli measured by power iteration from one probe."

GAMMA = 0.9
THRESHOLD = (1 - np.sqrt(GAMMA)) / np.sqrt(GAMMA)


def _setup(seed: int, S: int = 4, A: int = 3):
    mdp = garnet(S, A, 2, seed, gamma=GAMMA)
    rng = np.random.default_rng(seed)
    pi = greedy_policy(rng.random((S, A)))
    noise = random_policy(mdp, rng)
    return mdp, pi, noise


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Measured moduli over λ and ε for Q(λ) and Retrace (long format)."""
    mdp, pi, noise = _setup(seed)
    support = CategoricalSupport(0.0, 1.0 / (1.0 - GAMMA), 21)
    lams = np.linspace(0.0, 1.0, 5 if quick else 11)
    rows = []
    for panel_mix in (0.1, 0.6):
        mu = (1 - panel_mix) * pi + panel_mix * noise
        eps = float(np.max(np.abs(pi - mu).sum(1)))
        for lam in lams:
            for trace in ("q_lambda", "retrace"):
                for mode in ("lipschitz", "rate"):
                    value = contraction_modulus(
                        mdp, pi, mu, float(lam), support=support, trace=trace, mode=mode,
                        n_probes=1, iterations=6 if mode == "lipschitz" else 20, seed=seed,
                    )
                    rows.append(dict(panel="lambda", trace=trace, mode=mode, lam=lam, eps=eps, value=value))
    grid = np.linspace(0.0, 1.0, 4 if quick else 9)
    for mix in grid:
        mu = (1 - mix) * pi + mix * noise
        eps = float(np.max(np.abs(pi - mu).sum(1)))
        for lam in grid:
            value = contraction_modulus(
                mdp, pi, mu, float(lam), support=support, n_probes=1, iterations=5, seed=seed
            )
            rows.append(dict(panel="heatmap", trace="q_lambda", mode="lipschitz", lam=lam, eps=eps, value=value))
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    curves = data[data.panel == "lambda"]
    for ax, eps in zip(axes[:2], sorted(curves.eps.unique())):
        sub = curves[curves.eps == eps]
        lam_max = min(1.0, THRESHOLD / eps) if eps > 0 else 1.0
        ax.axvspan(0, lam_max, color="0.85", label="bound guarantees β₂ < 1")
        for i, trace in enumerate(("q_lambda", "retrace")):
            for mode, style in (("lipschitz", "--"), ("rate", "-")):
                s = sub[(sub.trace == trace) & (sub["mode"] == mode)]
                label = f"{'Q(λ)' if trace == 'q_lambda' else 'Retrace'} {'Lipschitz ratio' if mode == 'lipschitz' else 'asymptotic rate'}"
                ax.plot(s.lam, s.value, style, color=color(i), marker="o", ms=3, label=label)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xlabel("λ")
        ax.set_ylabel("measured modulus (sup-Cramér)")
        ax.set_title(f"ε = ‖π − μ‖₁ = {eps:.2f}")
    axes[0].legend(loc="lower left")
    heat = data[data.panel == "heatmap"]
    table = heat.pivot_table(index="eps", columns="lam", values="value")
    ax = axes[2]
    mesh = ax.pcolormesh(table.columns, table.index, table.values, shading="nearest", cmap="viridis", vmin=0.0, vmax=2.0)
    fig.colorbar(mesh, ax=ax, label="Q(λ) Lipschitz ratio (clipped at 2)")
    ax.contour(table.columns, table.index, table.values, levels=[1.0], colors="w", linewidths=1.2)
    lam_line = np.linspace(max(THRESHOLD / table.index.max(), 1e-3), 1.0, 50)
    ax.plot(lam_line, THRESHOLD / lam_line, "r--", label="bound: λε = (1−√γ)/√γ")
    ax.set_ylim(table.index.min(), table.index.max())
    ax.set_xlabel("λ")
    ax.set_ylabel("ε = max‖π − μ‖₁")
    ax.set_title("measured ratio (white: = 1)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
