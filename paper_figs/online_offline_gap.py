"""The online–offline gap on a softmax bandit (Tang et al. 2024): KL–win-rate frontiers of online
IPO (on-policy pairs labelled by a Bradley–Terry proxy fitted to the offline data) and offline IPO
(the golden-labelled offline data), over a β sweep; right: the paper's ablations (offline IPO on
all online samples in their original order — an exact replay of online — or shuffled, and on data
sampled from the final online policy). Golden preference: Bradley–Terry plus a non-transitive part.
Black dashed: the optimal frontier, the Gibbs tilt π_ref·exp(2P(y ≻ π_ref)/β), which is the
population optimum of offline IPO with π_ref coverage; no tabular method can lie above it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from _common import color, figure_main
from fixpoint_rl.tabular.core.mirror import softmax
from fixpoint_rl.tabular.gpo import ipo_optimum, kl_to_reference, win_rate
from fixpoint_rl.tabular.online_offline import kl_win_rate_frontier, make_golden_preference

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = lambda quick: ("Points: one random problem (seed --seed); no bands." if quick else
                             "Points: mean over 4 random problems (seeds --seed … --seed + 3); no bands.")

METHODS = ("online", "offline", "offline_online_ordered", "offline_online_shuffled",
           "offline_final_policy")


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """KL–win-rate points per method and β, averaged over problem seeds."""
    frames = []
    seeds = range(seed, seed + (1 if quick else 4))
    for run_seed in seeds:
        rng = np.random.default_rng(run_seed)
        contexts, responses = (3, 6) if quick else (4, 8)
        golden = make_golden_preference(contexts, responses, non_transitivity=0.3, seed=run_seed)
        ref = softmax(1.5 * rng.normal(size=(contexts, responses)))
        betas = (0.05, 0.1, 0.3, 1.0) if quick else (0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
        frame = kl_win_rate_frontier(ref, golden, betas, num_samples=500 if quick else 1000,
                                     steps=150 if quick else 600, seed=run_seed)
        optimal = [{"method": "optimal", "beta": beta,
                    "kl_to_ref": kl_to_reference(ipo_optimum(ref, golden, ref, beta), ref),
                    "win_rate": win_rate(ipo_optimum(ref, golden, ref, beta), ref, golden)}
                   for beta in np.geomspace(0.005, 2.0, 30)]
        frame = pd.concat([frame, pd.DataFrame(optimal)], ignore_index=True)
        frame["problem_seed"] = run_seed
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    return data.groupby(["method", "beta"], as_index=False)[["kl_to_ref", "win_rate"]].mean()


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    best = data[data.method == "optimal"].sort_values("kl_to_ref")
    limit = data[data.method != "optimal"].kl_to_ref.max() * 1.05
    best = best[best.kl_to_ref <= limit]
    for axis in axes:
        axis.plot(best.kl_to_ref, best.win_rate, "k--", linewidth=1,
                  label="optimal (population offline IPO, μ = π_ref)")
    for index, method in enumerate(METHODS):
        group = data[data.method == method].sort_values("kl_to_ref")
        style = {"color": color(index), "marker": "o", "markersize": 3, "label": method}
        if method in ("online", "offline"):
            axes[0].plot(group.kl_to_ref, group.win_rate, **style)
        axes[1].plot(group.kl_to_ref, group.win_rate,
                     linestyle="--" if method == "offline_online_ordered" else "-", **style)
    axes[0].set(xlabel="KL(π‖π_ref)", ylabel="golden win rate vs π_ref",
                title="Online vs offline IPO (β sweep)")
    axes[1].set(xlabel="KL(π‖π_ref)", title="Ablations (ordered replay ≡ online)")
    for axis in axes:
        axis.legend(loc="lower right")
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
