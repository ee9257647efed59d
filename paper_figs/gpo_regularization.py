"""GPO regularisation (Tang et al. 2024, §4): offline regulariser vs KL, and frontiers across f.

Left: along offline training (gradient descent from π_ref), the offline regulariser E_μ[ρ²] against
KL(π‖π_ref), with pairs covering every response (μ = π_ref) or missing the best one; the dashed line
is the second-order prediction E_μ[ρ²] = 4·KL under full π_ref coverage.
Middle: golden win rate against π_ref vs KL of the population optimum of each loss over a β sweep.
Right: the same win rates against the effective regularisation β·f″(0)/|f′(0)| (hinge omitted: its
f″(0) = 0), on which the curves line up, hence β_logistic ≈ 2·β_squared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from _common import color, figure_main
from fixpoint_rl.tabular.core.mirror import softmax
from fixpoint_rl.tabular.core.preference_losses import GPO_KINDS, regularization_ratio
from fixpoint_rl.tabular.gpo import preference_pair_weights, solve_gpo, train_gpo
from fixpoint_rl.tabular.online_offline import make_golden_preference

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = "No bands: exact population computations on one random problem (drawn with --seed)."


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Regulariser-vs-KL paths and KL–win-rate frontiers of the six GPO losses."""
    rng = np.random.default_rng(seed)
    contexts, responses = (2, 6) if quick else (4, 8)
    golden = make_golden_preference(contexts, responses, non_transitivity=0.2, seed=seed)
    ref = softmax(rng.normal(size=(contexts, responses)))
    records = []
    best = np.argmax(np.einsum("xij,xj->xi", golden, ref), axis=1)
    partial = ref.copy()
    partial[np.arange(contexts), best] = 0.0
    partial /= partial.sum(axis=1, keepdims=True)
    for coverage_name, coverage in (("full (μ = π_ref)", ref), ("best response uncovered", partial)):
        weights = preference_pair_weights(golden, coverage)
        for kind in ("squared", "logistic"):
            path = train_gpo(ref, weights, 0.5, kind, steps=300 if quick else 2000,
                             learning_rate=0.5, num_checkpoints=30 if quick else 60)
            for kl, reg in zip(path.metric("kl_to_ref"), path.metric("offline_regularizer")):
                records.append({"panel": "regularizer", "series": f"{kind}, {coverage_name}",
                                "kind": kind, "x": kl, "y": reg, "beta": 0.5})
    weights = preference_pair_weights(golden, ref)
    betas = np.geomspace(0.05, 5.0, 8 if quick else 16)
    for kind in GPO_KINDS:
        for beta in betas:
            result = solve_gpo(ref, weights, float(beta), kind, pref=golden,
                               max_iterations=60 if kind == "hinge" else 200)
            records.append({"panel": "frontier", "series": kind, "kind": kind,
                            "x": result.last("kl_to_ref"), "y": result.last("win_rate"),
                            "beta": float(beta)})
    return pd.DataFrame(records)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    paths = data[data.panel == "regularizer"]
    for index, (series, group) in enumerate(paths.groupby("series", sort=False)):
        axes[0].plot(group.x, group.y, color=color(index), label=series,
                     linestyle="-" if "full" in series else ":")
    kl = np.linspace(0, paths.x.max(), 50)
    axes[0].plot(kl, 4 * kl, "k--", linewidth=1, label="4·KL (2nd order, full coverage)")
    axes[0].set(xlabel="KL(π‖π_ref)", ylabel="offline regulariser E_μ[ρ²]",
                title="Offline regulariser vs KL (β = 0.5)")
    axes[0].legend()
    frontier = data[data.panel == "frontier"]
    for index, kind in enumerate(GPO_KINDS):
        group = frontier[frontier.kind == kind].sort_values("x")
        axes[1].plot(group.x, group.y, marker="o", markersize=3, color=color(index), label=kind)
        if regularization_ratio(kind) > 0:
            effective = group.beta * regularization_ratio(kind)
            axes[2].plot(effective, group.y, marker="o", markersize=3, color=color(index), label=kind)
    axes[1].set(xlabel="KL(π‖π_ref)", ylabel="golden win rate vs π_ref",
                title="KL–win-rate frontiers across f")
    axes[1].legend()
    axes[2].set(xscale="log", xlabel="β·f″(0)/|f′(0)|", ylabel="golden win rate vs π_ref",
                title="Win rate vs effective regularisation")
    axes[2].legend()
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
