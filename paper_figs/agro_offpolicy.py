"""AGRO vs the naive KL-regularized policy gradient, on- and off-policy (AGRO paper, Figure 1).

KL(π ‖ π*) against iterations, π* ∝ π_ref exp(r/β), on a random K = 6 softmax bandit. Off-policy data
come from π_ref (and from a fixed skewed μ): AGRO's consistency update still reaches π* (to float
precision), the naive PG with a reward-only baseline stalls at a biased stationary point. Solid:
exact expected updates; dashed: sample estimates from 8 generations per step. On-policy the two
exact updates coincide (both are the KL-regularized policy gradient), but only AGRO's sample
estimate vanishes at π* (R̃ is constant there), so sampled naive PG keeps a noise floor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from _common import color, figure_main

from fixpoint_rl.tabular import train_agro

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = "Solid: exact expected updates (deterministic, no bands). Dashed: one sampled run per curve (8 generations per step, seed --seed), no bands."

FLOOR = 1e-17  # KL values below float resolution are drawn at this floor


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """KL(π‖π*) along training for AGRO and naive PG under on-policy, π_ref and skewed sampling."""
    rng = np.random.default_rng(seed)
    size, beta = 6, 0.5
    reward = rng.uniform(0.0, 1.0, size=size)
    ref = rng.dirichlet(np.full(size, 2.0))
    skewed = rng.dirichlet(np.full(size, 0.7)) * 0.9 + 0.1 / size
    iterations = 1500 if quick else 4000
    frames = []
    for estimator in ("agro", "naive"):
        for sampling in ("on_policy", "reference", "fixed"):
            for batch in (None, 8):
                result = train_agro(
                    reward, ref, beta, sampling=sampling, estimator=estimator,
                    sampling_distribution=skewed if sampling == "fixed" else None,
                    iterations=iterations, learning_rate=(1.0 if batch is None else 0.5) / beta,
                    batch_size=batch, checkpoints=200, seed=seed,
                )
                frame = result.to_frame()[["iteration", "kl"]]
                frame["estimator"] = estimator
                frame["sampling"] = {"on_policy": "on-policy", "reference": "π_ref", "fixed": "skewed μ"}[sampling]
                frame["mode"] = "exact" if batch is None else "sampled (n=8)"
                frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    samplings = list(dict.fromkeys(data["sampling"]))
    figure, axes = plt.subplots(1, len(samplings), figsize=(3.2 * len(samplings), 2.8), sharey=True)
    for axis, sampling in zip(axes, samplings):
        for index, estimator in enumerate(("agro", "naive")):
            for mode, style in (("exact", "-"), ("sampled (n=8)", "--")):
                part = data[(data.sampling == sampling) & (data.estimator == estimator) & (data["mode"] == mode)]
                axis.plot(
                    part.iteration, np.maximum(part.kl, FLOOR), style, color=color(index),
                    label=f"{'AGRO' if estimator == 'agro' else 'naive PG'} ({mode})",
                )
        axis.set_yscale("log")
        axis.set_title(f"data from {sampling}")
        axis.set_xlabel("iteration")
    axes[0].set_ylabel("KL(π ‖ π*)")
    axes[0].legend(loc="lower left")
    figure.suptitle("AGRO converges to π* from any data; the naive PG does not off-policy", fontsize=10)
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
