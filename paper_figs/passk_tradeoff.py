"""The pass@1 / pass@k trade-off (Tang, Zheng, Synnaeve & Munos, ICML 2025, arXiv 2503.19595).

Twelve prompts of varied difficulty (one correct response among K = 6; initial solve rates from
≈ 0.5 % to ≈ 60 %), each a softmax policy trained by gradient ascent on a k-sample objective:
mean-PG (k = 1) and pass@k-PG for k ∈ {4, 16}. Solid: exact gradients (the expectation of the
leave-one-out estimator); dashed: the leave-one-out estimator from one group of k samples per prompt
and step. Mean-PG leads on pass@1; pass@16-PG leads on pass@16 and stalls on pass@1, because its
gradient k(1 − p)^{k−1}∇p vanishes once a prompt is solved at least once in k tries. On this
tabular problem pass@4-PG ends level with mean-PG on pass@1: on the hardest prompts the pass@4
gradient is ≈ 4× mean-PG's, which offsets its weaker push on solved prompts within this budget.

The comparison is at a fixed training budget (``ITERATIONS`` steps at learning rate 1; 60 in
``--quick``): with exact gradients run long enough every objective solves every prompt (all
pass@k → 1), so the trade-off is a statement about this budget, printed in the title.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from _common import color, figure_main

from fixpoint_rl.tabular import train_k_sample

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = lambda quick: f"Solid: exact gradients (deterministic). Dashed: mean over {3 if quick else 10} seeds of the sampled estimator, band ± one standard error."

METHODS = (("mean-PG", "mean", 1), ("pass@4-PG", "pass_at_k", 4), ("pass@16-PG", "pass_at_k", 16))
EVAL_KS = (1, 4, 16)
ITERATIONS = 200  # training budget (steps at learning rate 1.0); --quick: 60


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """pass@1, pass@4, pass@16 (exact, mean over prompts) along training for each objective."""
    rng = np.random.default_rng(seed)
    prompts, responses = 12, 6
    logits = rng.normal(size=(prompts, responses))
    logits[:, 0] += np.linspace(-4.0, 1.0, prompts)
    reward = np.zeros((prompts, responses))
    reward[:, 0] = 1.0
    iterations = 60 if quick else ITERATIONS
    n_seeds = 3 if quick else 10
    frames = []
    for name, objective, k in METHODS:
        # exact gradients: one deterministic run; sampled: one run per seed (bands over seeds)
        for sampled, run_seeds in ((False, [seed]), (True, range(seed, seed + n_seeds))):
            for run_seed in run_seeds:
                result = train_k_sample(
                    logits, reward, objective, k, iterations=iterations, learning_rate=1.0,
                    sampled=sampled, eval_ks=EVAL_KS, checkpoints=iterations // 2, seed=run_seed,
                )
                frame = result.to_frame()
                long = frame.melt(id_vars="iteration", value_vars=[f"pass_at_{m}" for m in EVAL_KS],
                                  var_name="metric", value_name="value")
                long["method"] = name
                long["estimator"] = "LOO samples" if sampled else "exact"
                long["seed"] = run_seed
                long["budget"] = iterations
                frames.append(long)
    return pd.concat(frames, ignore_index=True)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    metrics = [f"pass_at_{m}" for m in EVAL_KS]
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 2.8), sharey=True)
    for axis, metric in zip(axes, metrics):
        for index, (name, _, _) in enumerate(METHODS):
            for estimator, style in (("exact", "-"), ("LOO samples", "--")):
                part = data[(data.metric == metric) & (data.method == name) & (data.estimator == estimator)]
                stats = part.groupby("iteration").value.agg(["mean", "sem", "count"])
                axis.plot(stats.index, stats["mean"], style, color=color(index),
                          label=f"{name} ({estimator})", alpha=1.0 if estimator == "exact" else 0.8)
                if estimator != "exact" and stats["count"].max() > 1:
                    axis.fill_between(stats.index, stats["mean"] - stats["sem"],
                                      stats["mean"] + stats["sem"], color=color(index), alpha=0.15,
                                      lw=0)
        axis.set_title(metric.replace("pass_at_", "pass@"))
        axis.set_xlabel("iteration")
    axes[0].set_ylabel("mean over 12 prompts")
    handles, labels = axes[0].get_legend_handles_labels()
    budget = int(data.budget.max())
    figure.suptitle(f"After {budget} steps (learning rate 1): pass@16-PG trades pass@1 for pass@16, "
                    "mean-PG the reverse", fontsize=10)
    figure.tight_layout()
    figure.legend(handles, labels, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 0.02))
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
