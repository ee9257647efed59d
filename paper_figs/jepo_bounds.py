"""JEPO: multi-sample Jensen bounds and learning curves against RL and SFT (Tang et al. 2025, arXiv 2503.19618, eqs. 3–7).

Left: the bounds L⁽ⁿ⁾ = E log((1/n) Σ_i p(a*|c_i)) for n = 1..16 on a hand-made toy
(q = (.5, .3, .2), p(a*|c) = (.9, .2, .05)) rise towards the evidence log π(a*); the gap at n = 1 is
KL(q ‖ posterior). Right: −log π(a*) along training of a tabular CoT model (4 chains of thought,
5 answers; only CoT 0 tends to the right answer) for JEPO (L⁽¹⁾), multi-sample JEPO (L⁽⁴⁾), RL on
the exact-match reward and SFT on the answer. Solid: exact gradients; dashed: 4-sample estimators
with leave-one-out baselines, averaged over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from _common import color, figure_main

from fixpoint_rl.tabular import log_evidence, multi_sample_bound, train_cot

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = lambda quick: f"Left: exact. Right: solid exact gradients; dashed the mean over {2 if quick else 8} seeds of the sampled estimator, no bands."

METHODS = (("jepo", "JEPO L(1)"), ("jepo_multi", "JEPO L(4)"), ("rl", "RL (exact match)"), ("sft", "SFT on answer"))


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Bounds against n (panel "bounds") and −log π(a*) learning curves (panel "training")."""
    q = np.array([0.5, 0.3, 0.2])
    likelihood = np.array([0.9, 0.2, 0.05])
    evidence = log_evidence(q, likelihood)
    rows = [
        {"panel": "bounds", "series": "L(n)", "x": n, "value": multi_sample_bound(q, likelihood, n)}
        for n in range(1, (8 if quick else 16) + 1)
    ]
    rows += [{"panel": "bounds", "series": "log π(a*)", "x": n, "value": evidence} for n in (1, 8 if quick else 16)]
    frames = [pd.DataFrame(rows)]
    cot_logits = np.zeros(4)
    answer_logits = np.zeros((4, 5))
    answer_logits[0, 0] = 2.0
    answer_logits[1:, 0] = -2.0
    iterations = 100 if quick else 300
    seeds = range(seed, seed + (2 if quick else 8))
    for method, label in METHODS:
        exact = train_cot(cot_logits, answer_logits, 0, method, n=4, iterations=iterations, checkpoints=iterations)
        frames.append(pd.DataFrame({"panel": "training", "series": f"{label} (exact)", "x": exact.iterations,
                                    "value": -exact.metric("log_evidence")}))
        curves = [
            -train_cot(cot_logits, answer_logits, 0, method, n=4, iterations=iterations, learning_rate=0.5,
                       sampled=True, checkpoints=iterations, seed=s).metric("log_evidence")
            for s in seeds
        ]
        frames.append(pd.DataFrame({"panel": "training", "series": f"{label} (sampled, η=0.5)", "x": exact.iterations,
                                    "value": np.mean(curves, axis=0)}))
    return pd.concat(frames, ignore_index=True)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(8.5, 3.6))
    bounds = data[data.panel == "bounds"]
    part = bounds[bounds.series == "L(n)"]
    left.plot(part.x, part.value, "o-", color=color(0), label="L(n) (multi-sample bound)")
    top = bounds[bounds.series == "log π(a*)"]
    left.plot(top.x, top.value, "--", color="black", label="log π(a*)")
    left.set_xlabel("samples n")
    left.xaxis.get_major_locator().set_params(integer=True)
    left.set_ylabel("nats")
    left.set_title("Bounds tighten with n")
    left.legend(loc="lower right")
    training = data[data.panel == "training"]
    for index, (_, label) in enumerate(METHODS):
        for suffix, style in ((" (exact)", "-"), (" (sampled, η=0.5)", "--")):
            part = training[training.series == label + suffix]
            right.plot(part.x, part.value, style, color=color(index), label=label + suffix)
    right.set_yscale("log")
    right.set_xlabel("iteration")
    right.set_ylabel("−log π(a*)")
    right.set_title("JEPO vs RL vs SFT")
    right.legend(fontsize=6, loc="upper center", ncol=2, bbox_to_anchor=(0.5, -0.22))
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
