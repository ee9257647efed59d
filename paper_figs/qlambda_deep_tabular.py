"""Deep (one-hot) Q(λ)-C51 and Retrace-C51 against the tabular fixed point (Tang et al., AISTATS 2026).

The deep learner of ``fixpoint_rl.deep.distributional`` (target network, batched sampled
targets, loss, Adam) with a one-hot network, in evaluation mode on a Garnet MDP (S = 5, A = 2,
branching 2, γ = 1/2), trained on the exact expectation over every n = 2 window (each window's
loss weighted by its probability; ``deep.distributional.evaluation``), target network copied
every 100 Adam steps. Left: sup-Cramér distance to η_C (``categorical_evaluation_fixed_point``)
against Adam updates, off-policy (μ = ½π + ½ another policy), Q(λ) for λ ∈ {0.5, 0.9} and Retrace
(λ = 1), per-step projection (fixed point η_C for every λ, μ), cross-entropy loss. Dotted: the
empirical contraction modulus per target update (``contraction_modulus``) from the first error.
Right: the signed-target loss ablation — greedy π against ε-greedy μ (ε = 0.5), λ = 1, where the
expected Q(λ) target has negative bins: linear cross-entropy, Cramér loss and
clip-and-renormalise (``deep.distributional.losses``); the error is to the same η_C.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

from fixpoint_rl.deep.distributional.evaluation import train_one_hot_evaluation
from fixpoint_rl.envs.mdp import epsilon_greedy_policy, garnet, greedy_policy, random_policy
from fixpoint_rl.tabular.core.categorical import CategoricalSupport
from fixpoint_rl.tabular.qlambda import categorical_evaluation_fixed_point, contraction_modulus

UNCERTAINTY = ("No bands: deterministic training on exact expectations (no sampling noise), one "
               "Garnet MDP and one network initialisation (drawn with --seed).")


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Cramér error of the deep one-hot learner against the tabular fixed point, per update."""
    import torch

    torch.set_num_threads(1)
    mdp = garnet(5, 2, 2, seed=seed + 3, gamma=0.5)
    support = CategoricalSupport(0.0, 2.0, 11)
    copies = 6 if quick else 20
    rows = []
    pi = random_policy(mdp, seed + 1)
    mu = 0.5 * pi + 0.5 * random_policy(mdp, seed + 2)
    reference = categorical_evaluation_fixed_point(mdp, pi, support=support)
    settings = [("Q(λ), λ=0.5", "q_lambda", 0.5), ("Q(λ), λ=0.9", "q_lambda", 0.9),
                ("Retrace, λ=1", "retrace", 1.0)]
    for label, trace, lam in settings:
        result = train_one_hot_evaluation(mdp, pi, mu, support=support, reference=reference,
                                          trace=trace, lam=lam, target_updates=copies, seed=seed)
        modulus = contraction_modulus(mdp, pi, mu, lam, support=support, trace=trace,
                                      projection="per_step", horizon=2)
        for k, (u, e) in enumerate(zip(result["updates"], result["sup_cramer"])):
            rows.append(dict(panel="off-policy evaluation", setting=label, updates=int(u),
                             sup_cramer=e, modulus=modulus,
                             modulus_curve=result["sup_cramer"][0] * modulus**k))
    # signed targets: greedy π vs ε-greedy μ, λ = 1
    pi_g = greedy_policy(np.random.default_rng(seed).random((5, 2)))
    mu_g = epsilon_greedy_policy(pi_g, 0.5)
    reference_g = categorical_evaluation_fixed_point(mdp, pi_g, support=support)
    for loss, label in (("cross_entropy", "linear cross-entropy"), ("cramer", "Cramér loss"),
                        ("clip_renormalise", "clip-and-renormalise")):
        result = train_one_hot_evaluation(mdp, pi_g, mu_g, support=support, reference=reference_g,
                                          trace="q_lambda", lam=1.0, loss=loss,
                                          target_updates=copies, seed=seed)
        negative = np.concatenate([result["negative_mass"], [np.nan]])
        for u, e, neg in zip(result["updates"], result["sup_cramer"], negative):
            rows.append(dict(panel="signed-target losses", setting=label, updates=int(u),
                             sup_cramer=e, negative_mass=neg))
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    left = data[data.panel == "off-policy evaluation"]
    for i, (label, sub) in enumerate(left.groupby("setting", sort=False)):
        axes[0].semilogy(sub.updates, sub.sup_cramer, color=color(i), label=label, marker="o", ms=3)
        axes[0].semilogy(sub.updates, sub.modulus_curve, color=color(i), ls=":",
                         label=f"{label}: modulus {sub.modulus.iloc[0]:.2f}")
    axes[0].set_title("deep one-hot learner → η_C (off-policy)")
    axes[0].set_xlabel("Adam updates (target copy every 100)")
    axes[0].set_ylabel("sup-Cramér distance to η_C")
    axes[0].legend()
    right = data[data.panel == "signed-target losses"]
    for i, (label, sub) in enumerate(right.groupby("setting", sort=False)):
        axes[1].semilogy(sub.updates, sub.sup_cramer, color=color(i + 3), label=label, marker="o", ms=3)
    axes[1].set_title("Q(λ), λ = 1, greedy π vs ε-greedy μ: loss ablation")
    axes[1].set_xlabel("Adam updates")
    axes[1].legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
