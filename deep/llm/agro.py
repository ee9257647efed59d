"""AGRO (Any-Generation Reward Optimization) on sequence log-probabilities.

Tang, Cohen, Zhang, Valko, Munos, "RL-finetuning LLMs from on- and off-policy data with a single
algorithm" (arXiv 2503.19612). The KL-regularised objective E_π r − β KL(π ‖ π_ref) has the optimum
π* ∝ π_ref exp(r/β), characterised (the paper's Theorem 1, "generation consistency") by the
regularised reward R̃_θ(y) = r(y) − β log(π_θ(y)/π_ref(y)) being constant in y. AGRO's estimator
from n generations y_1..y_n of ONE prompt drawn from ANY distribution μ (the current policy, the
reference, a replay buffer of past policies, mixtures), without importance weights:

  ĝ = (1/n) Σ_i (R̃(y_i) − mean_{j≠i} R̃(y_j)) ∇_θ log π_θ(y_i),

whose expectation is minus the gradient of the pairwise consistency loss
(1/(4β)) E_{y,y'∼μ}(R̃(y) − R̃(y'))², stationary exactly at π* when μ covers every response.
The naive off-policy baseline it fixes uses a reward-only LOO baseline and a separate −β log-ratio
term, (r(y_i) − mean_{j≠i} r(y_j) − β log(π/π_ref)(y_i)), whose stationary point is biased when μ ≠ π.

Shapes: G prompts × n generations; rewards, log-probabilities [G, n]. The tabular softmax version
(the exact expectations these estimators are tested against) is ``fixpoint_rl.tabular.agro``.
"""

from __future__ import annotations

import torch

from .pg_losses import _check_grouped, policy_gradient_loss

__all__ = ["AGRO_ESTIMATORS", "agro_advantages", "agro_loss", "naive_pg_advantages", "regularized_rewards"]

AGRO_ESTIMATORS = ("agro", "naive")


def _check_beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0 or beta == float("inf"):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    return float(beta)


def regularized_rewards(rewards, logprobs, ref_logprobs, beta) -> torch.Tensor:
    """R̃ = r − β (log π_θ − log π_ref), detached. All [G, n]."""
    rewards = _check_grouped("rewards", rewards)
    logprobs = _check_grouped("logprobs", logprobs, rewards.shape)
    ref_logprobs = _check_grouped("ref_logprobs", ref_logprobs, rewards.shape)
    beta = _check_beta(beta)
    return (rewards - beta * (logprobs - ref_logprobs)).detach()


def _leave_one_out_centred(values: torch.Tensor) -> torch.Tensor:
    n = values.shape[1]
    if n < 2:
        raise ValueError(f"AGRO needs n ≥ 2 generations per prompt, got n = {n}")
    return values - (values.sum(dim=1, keepdim=True) - values) / (n - 1)


def agro_advantages(rewards, logprobs, ref_logprobs, beta) -> torch.Tensor:
    """(1/n)(R̃_i − mean_{j≠i} R̃_j), [G, n] (detached; n ≥ 2)."""
    regularized = regularized_rewards(rewards, logprobs, ref_logprobs, beta)
    return _leave_one_out_centred(regularized) / regularized.shape[1]


def naive_pg_advantages(rewards, logprobs, ref_logprobs, beta) -> torch.Tensor:
    """(1/n)(r_i − mean_{j≠i} r_j − β log(π_θ/π_ref)(y_i)), [G, n]: unbiased only on-policy."""
    rewards = _check_grouped("rewards", rewards)
    logprobs = _check_grouped("logprobs", logprobs, rewards.shape)
    ref_logprobs = _check_grouped("ref_logprobs", ref_logprobs, rewards.shape)
    beta = _check_beta(beta)
    centred = _leave_one_out_centred(rewards.detach())
    return (centred - beta * (logprobs - ref_logprobs).detach()) / rewards.shape[1]


def agro_loss(
    logprobs, ref_logprobs, rewards, beta, *, estimator: str = "agro", reduction: str = "mean"
) -> torch.Tensor:
    """Surrogate whose −gradient is the AGRO (or naive) estimate, averaged over the G prompts.

    Args:
      logprobs: [G, n] log π_θ(y_i | x) with autograd (the generations may come from any μ).
      ref_logprobs: [G, n] log π_ref(y_i | x).
      rewards: [G, n] verifier rewards.
      beta: KL coefficient β > 0.
      estimator: "agro" or "naive".
      reduction: "mean" (scalar) or "none" ([G]).
    """
    if estimator not in AGRO_ESTIMATORS:
        raise ValueError(f"estimator must be one of {AGRO_ESTIMATORS}, got {estimator!r}")
    function = agro_advantages if estimator == "agro" else naive_pg_advantages
    return policy_gradient_loss(
        logprobs, function(rewards, logprobs, ref_logprobs, beta), reduction=reduction
    )
