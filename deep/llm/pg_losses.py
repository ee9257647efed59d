"""Policy-gradient losses on sequence log-probabilities for verifiable-reward training.

A batch holds G prompts with n sampled completions each. Every loss here is a *surrogate*: a scalar
whose gradient is the estimator, built from

  logprobs   [G, n]  log π_θ(y_i | x) of each completion (summed token log-probs), with autograd
  advantages [G, n]  per-completion weights, no gradient (detached here)

  loss = −(1/G) Σ_g Σ_i A_gi · log π_θ(y_gi | x_g),  so  −∇loss = (1/G) Σ_g Σ_i A_gi ∇log π_θ(y_gi).

With the leave-one-out advantages of a k-sample objective (Tang, Zheng, Synnaeve, Munos, ICML 2025,
arXiv 2503.19595, Lemma 1) this is unbiased for ∇E[f(y_1..y_k)] (the sum over i, no 1/n: the
estimator of the paper). :func:`compute_advantages` maps an algorithm name to the batched closed
forms of ``fixpoint_rl.tabular.core.advantages`` (numpy and torch share them):

  ``rloo``           r_i − mean_{j≠i} r_j, divided by n so the loss is (1/n)Σ_i (RLOO, Ahmadian et al.
                     2024, arXiv 2402.14740; the tabular "mean" objective, f = mean reward)
  ``grpo``           (r − mean_group r)/(std + 1e-4), TRL 1.16's options ``scale_rewards``, divided by n
  ``pass_at_k``      LOO pass@k advantage when n = k; the unbiased k-subset estimator when n > k
  ``majority_vote``  LOO maj@k advantage (n = k), ties → mean reward of the tied answers
  ``centered``       subtract the group mean of the advantages (the paper's biased, denser variant)

KL regularisation toward a reference π_ref (option ``kl_coef`` β): the reward is replaced by
r − β·(log π_θ − log π_ref)(y) (detached), the sequence-level estimator of RLOO (Ahmadian et al.
2024, §3): on-policy its expected score-function update is ∇[E r − β KL(π_θ ‖ π_ref)].

Length normalisation (option ``length_normalization``): "none" (summed log-probs, the default and
what the estimators' unbiasedness needs) or "sequence" (each log π divided by its token count).
"""

from __future__ import annotations

import torch

from ...tabular.core.advantages import (
    GRPO_EPSILON,
    SCALE_REWARDS,
    group_normalized_advantages,
    leave_one_out_advantages,
    rloo_advantages,
    unbiased_pass_at_k_advantages,
)

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "LENGTH_NORMALIZATIONS",
    "compute_advantages",
    "kl_penalized_rewards",
    "policy_gradient_loss",
]

ADVANTAGE_ESTIMATORS = ("rloo", "grpo", "pass_at_k", "majority_vote", "mean")
LENGTH_NORMALIZATIONS = ("none", "sequence")
REDUCTIONS = ("mean", "none")


def _check_grouped(name: str, tensor, shape=None) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [G, n], got {type(tensor).__name__}")
    if tensor.ndim != 2:
        raise ValueError(f"{name} must have shape [G, n], got {tuple(tensor.shape)}")
    if shape is not None and tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return tensor


def compute_advantages(
    estimator: str,
    rewards: torch.Tensor,
    *,
    answers: torch.Tensor | None = None,
    k: int | None = None,
    centered: bool = False,
    scale_rewards: str = "group",
) -> torch.Tensor:
    """Advantages [G, n] for ``estimator`` in :data:`ADVANTAGE_ESTIMATORS` (module docstring).

    Args:
      estimator: "rloo", "grpo", "pass_at_k", "majority_vote" or "mean" (LOO of the mean, = rloo).
      rewards: [G, n] verifier rewards (float).
      answers: [G, n] integer answer labels (majority vote).
      k: the k of pass@k (default n; 1 ≤ k ≤ n; k < n uses the unbiased subset estimator).
      centered: subtract the group mean (pass_at_k / majority_vote only).
      scale_rewards: GRPO's "group", "batch" or "none".

    Returns:
      [G, n] advantages (detached), to be used with :func:`policy_gradient_loss`.
    """
    rewards = _check_grouped("rewards", rewards)
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"estimator must be one of {ADVANTAGE_ESTIMATORS}, got {estimator!r}")
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    rewards = rewards.detach()
    n = rewards.shape[1]
    if estimator in ("rloo", "mean"):
        advantages = rloo_advantages(rewards) / n
    elif estimator == "grpo":
        advantages = group_normalized_advantages(rewards, scale_rewards, GRPO_EPSILON) / n
    elif estimator == "pass_at_k":
        k_value = n if k is None else k
        if k_value == n:
            advantages = leave_one_out_advantages(rewards, "pass_at_k")
        else:
            advantages = unbiased_pass_at_k_advantages(rewards, k_value)
    else:
        if k is not None and k != n:
            raise ValueError(f"k must equal the group size n = {n} for majority_vote, got {k!r}")
        advantages = leave_one_out_advantages(rewards, "majority_vote", answers)
    if centered:
        advantages = advantages - advantages.mean(dim=1, keepdim=True)
    return advantages


def kl_penalized_rewards(rewards, logprobs, ref_logprobs, kl_coef: float) -> torch.Tensor:
    """r − β (log π_θ − log π_ref)(y), detached: the sequence-level KL penalty of RLOO. [G, n]."""
    rewards = _check_grouped("rewards", rewards)
    logprobs = _check_grouped("logprobs", logprobs, rewards.shape)
    ref_logprobs = _check_grouped("ref_logprobs", ref_logprobs, rewards.shape)
    if not isinstance(kl_coef, (int, float)) or isinstance(kl_coef, bool) or not kl_coef >= 0:
        raise ValueError(f"kl_coef must be a number ≥ 0, got {kl_coef!r}")
    return (rewards - kl_coef * (logprobs - ref_logprobs)).detach()


def policy_gradient_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    lengths: torch.Tensor | None = None,
    length_normalization: str = "none",
    reduction: str = "mean",
) -> torch.Tensor:
    """Surrogate −(1/G) Σ_g Σ_i A_gi log π_θ(y_gi) (advantages detached), a scalar.

    Args:
      logprobs: [G, n] sequence log-probabilities (with autograd).
      advantages: [G, n] (from :func:`compute_advantages` or the AGRO / JEPO modules).
      lengths: [G, n] completion token counts (needed for ``length_normalization="sequence"``).
      length_normalization: "none" (summed log-probs) or "sequence" (per-token mean).
      reduction: "mean" over the G prompts (a scalar) or "none" ([G] per-prompt surrogates, e.g. to
        weight enumerated groups by their probability).
    """
    logprobs = _check_grouped("logprobs", logprobs)
    advantages = _check_grouped("advantages", advantages, logprobs.shape)
    if length_normalization not in LENGTH_NORMALIZATIONS:
        raise ValueError(
            f"length_normalization must be one of {LENGTH_NORMALIZATIONS}, got {length_normalization!r}"
        )
    if length_normalization == "sequence":
        if lengths is None:
            raise ValueError("lengths must be given for length_normalization='sequence', got None")
        lengths = _check_grouped("lengths", lengths, logprobs.shape)
        if bool((lengths <= 0).any()):
            raise ValueError("lengths must be positive token counts")
        logprobs = logprobs / lengths.to(logprobs.dtype)
    return _reduce(-(advantages.detach().to(logprobs.dtype) * logprobs).sum(dim=1), reduction)


def _reduce(per_group: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return per_group.mean() if reduction == "mean" else per_group
