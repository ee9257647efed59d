"""JEPO: chain of thought as a latent variable, trained with Jensen's evidence lower bound.

Tang, Wang, Madaan, Munos, "Learning to chain-of-thought with Jensen's evidence lower bound"
(arXiv 2503.19618). A completion is a chain of thought c ∼ π_θ(·|x) followed by an answer; the
ground-truth answer a* is scored by its likelihood π_θ(a*|x, c) (teacher-forced after the sampled
CoT), never by a verifier. With n CoTs per prompt and ℓ_i = log π_θ(a*|x, c_i):

  single-sample bound (eq. 3)  L⁽¹⁾ = E_c[log π(a*|x,c)] ≤ log π(a*|x); estimator (eq. 5)
      (1/n) Σ_i (ℓ_i − v_i) ∇log π(c_i|x) + (1/n) Σ_i ∇ℓ_i,   v_i = mean_{j≠i} ℓ_j
  multi-sample bound (eq. 6)   L⁽ⁿ⁾ = E[log (1/n) Σ_i π(a*|x,c_i)]; estimator (eq. 7)
      Σ_i (F − ṽ_i) ∇log π(c_i|x) + ∇F,   F = log (1/n) Σ_j e^{ℓ_j},  ṽ_i = log (1/(n−1)) Σ_{j≠i} e^{ℓ_j}

Both are unbiased (the leave-one-out baselines do not depend on c_i); with n = 1 no baseline is
used. Without a chain of thought the estimator is the SFT gradient ∇ log π(a*|x).

Named options of the paper's App. B:
  ``sup_coef`` β_sup          weight of the likelihood ("SFT") term ∇ℓ / ∇F (default 1: the bound)
  ``advantage_normalization`` "none" or "std_clip": Ã = clip(A/std(A), −``clip``, ``clip``), std
                               over the batch (Bessel), the paper's clip at 1
  ``length_normalization``    "none", "cot" (divide log π(c|x) by |c|) or "cot_and_answer"
                               (by |c| + |a*|); the paper reports no significant difference
  ``well_formatted`` + ``format_penalty`` p
                               reward −p for a completion lacking the answer format (LOO baseline,
                               added to the CoT advantage); the bound terms of mis-formatted
                               completions are masked out

Combined JEPO + RL (the paper's Numina experiments, §5): per prompt, the RL loss with the verifier
(RLOO on the whole completion) when some of its n samples scores positive, else the JEPO loss —
:func:`jepo_rl_loss`.

Shapes: G prompts × n CoTs; every input [G, n]. The tabular model these are tested against is
``fixpoint_rl.tabular.jepo``.
"""

from __future__ import annotations

import math

import torch

from .pg_losses import REDUCTIONS, _check_grouped, _reduce, policy_gradient_loss

__all__ = [
    "ADVANTAGE_NORMALIZATIONS",
    "BOUNDS",
    "JEPO_LENGTH_NORMALIZATIONS",
    "jepo_advantages",
    "jepo_bound_estimate",
    "jepo_loss",
    "jepo_rl_loss",
]

BOUNDS = ("single", "multi")
ADVANTAGE_NORMALIZATIONS = ("none", "std_clip")
JEPO_LENGTH_NORMALIZATIONS = ("none", "cot", "cot_and_answer")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_number(name, value, *, low=0.0, strict=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '≥'} {low}, got {value!r}")
    return float(value)


def jepo_advantages(answer_logprobs, bound: str = "single") -> torch.Tensor:
    """CoT advantages (detached), [G, n]: (1/n)(ℓ_i − v_i) ("single") or F − ṽ_i ("multi").

    With n = 1 the baseline is 0: ℓ_1 (single) or F = ℓ_1 (multi).
    """
    answer_logprobs = _check_grouped("answer_logprobs", answer_logprobs).detach()
    _check_choice("bound", bound, BOUNDS)
    n = answer_logprobs.shape[1]
    if bound == "single":
        if n == 1:
            return answer_logprobs.clone()
        baseline = (answer_logprobs.sum(dim=1, keepdim=True) - answer_logprobs) / (n - 1)
        return (answer_logprobs - baseline) / n
    full = torch.logsumexp(answer_logprobs, dim=1, keepdim=True) - math.log(n)
    if n == 1:
        return full.expand_as(answer_logprobs).clone()
    eye = torch.eye(n, dtype=torch.bool, device=answer_logprobs.device)
    others = answer_logprobs[:, None, :].masked_fill(eye, float("-inf"))  # [G, i, j], j ≠ i
    baseline = torch.logsumexp(others, dim=2) - math.log(n - 1)
    return full - baseline


def jepo_bound_estimate(answer_logprobs, bound: str = "single") -> torch.Tensor:
    """Per-prompt estimate of the bound, [G]: mean_i ℓ_i (L⁽¹⁾) or log mean_i e^{ℓ_i} (L⁽ⁿ⁾)."""
    answer_logprobs = _check_grouped("answer_logprobs", answer_logprobs)
    _check_choice("bound", bound, BOUNDS)
    if bound == "single":
        return answer_logprobs.mean(dim=1)
    return torch.logsumexp(answer_logprobs, dim=1) - math.log(answer_logprobs.shape[1])


def jepo_loss(
    cot_logprobs,
    answer_logprobs,
    *,
    bound: str = "single",
    sup_coef: float = 1.0,
    advantage_normalization: str = "none",
    clip: float = 1.0,
    length_normalization: str = "none",
    cot_lengths=None,
    answer_lengths=None,
    well_formatted=None,
    format_penalty: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Surrogate whose −gradient is JEPO's estimate (eq. 5 / eq. 7 plus the App. B options).

    Args:
      cot_logprobs: [G, n] log π_θ(c_i | x) of the sampled CoTs (with autograd).
      answer_logprobs: [G, n] ℓ_i = log π_θ(a* | x, c_i), summed over the answer's tokens (not
        length-averaged inside log-mean-exp, App. B), with autograd.
      bound: "single" (L⁽¹⁾) or "multi" (L⁽ⁿ⁾, n = the group size).
      sup_coef: β_sup ≥ 0, the weight of the likelihood term.
      advantage_normalization: "none" or "std_clip" (clip at ``clip`` > 0).
      length_normalization: "none", "cot" or "cot_and_answer" (needs ``cot_lengths`` and, for the
        latter, ``answer_lengths``, [G, n] token counts).
      well_formatted: [G, n] bool (None: all well formatted); format_penalty: p ≥ 0.
      reduction: "mean" over prompts (scalar) or "none" ([G]).
    """
    cot_logprobs = _check_grouped("cot_logprobs", cot_logprobs)
    answer_logprobs = _check_grouped("answer_logprobs", answer_logprobs, cot_logprobs.shape)
    _check_choice("bound", bound, BOUNDS)
    _check_choice("advantage_normalization", advantage_normalization, ADVANTAGE_NORMALIZATIONS)
    _check_choice("length_normalization", length_normalization, JEPO_LENGTH_NORMALIZATIONS)
    _check_choice("reduction", reduction, REDUCTIONS)
    sup_coef = _check_number("sup_coef", sup_coef)
    clip = _check_number("clip", clip, strict=True)
    format_penalty = _check_number("format_penalty", format_penalty)
    n = cot_logprobs.shape[1]
    advantages = jepo_advantages(answer_logprobs, bound)
    if advantage_normalization == "std_clip":
        spread = advantages.std() if advantages.numel() > 1 else torch.zeros((), dtype=advantages.dtype)
        advantages = (advantages / (spread + 1e-8)).clamp(-clip, clip)
    if bound == "single":
        likelihood_weights = torch.full_like(answer_logprobs, 1.0 / n)  # ∇ (1/n) Σ_i ℓ_i
    else:
        likelihood_weights = torch.softmax(answer_logprobs.detach(), dim=1)  # ∇F = Σ_i w_i ∇ℓ_i
    mask = torch.ones_like(answer_logprobs)
    if well_formatted is not None:
        well_formatted = _check_grouped("well_formatted", well_formatted, cot_logprobs.shape)
        if well_formatted.dtype != torch.bool:
            raise ValueError(f"well_formatted must be a bool tensor, got dtype {well_formatted.dtype}")
        mask = well_formatted.to(answer_logprobs.dtype)
    advantages = advantages * mask
    if format_penalty > 0 and n > 1:
        penalty = -format_penalty * (1.0 - mask)
        advantages = advantages + (penalty - (penalty.sum(dim=1, keepdim=True) - penalty) / (n - 1)) / n
    scaled_cot = cot_logprobs
    if length_normalization != "none":
        if cot_lengths is None:
            raise ValueError(f"cot_lengths must be given for length_normalization={length_normalization!r}")
        lengths = _check_grouped("cot_lengths", cot_lengths, cot_logprobs.shape).to(cot_logprobs.dtype)
        if length_normalization == "cot_and_answer":
            if answer_lengths is None:
                raise ValueError("answer_lengths must be given for length_normalization='cot_and_answer'")
            lengths = lengths + _check_grouped("answer_lengths", answer_lengths, cot_logprobs.shape).to(
                cot_logprobs.dtype
            )
        if bool((lengths <= 0).any()):
            raise ValueError("cot_lengths must be positive token counts")
        scaled_cot = cot_logprobs / lengths
    reinforce = policy_gradient_loss(scaled_cot, advantages, reduction="none")
    likelihood = -(likelihood_weights * mask * answer_logprobs).sum(dim=1)
    return _reduce(reinforce + sup_coef * likelihood, reduction)


def jepo_rl_loss(
    cot_logprobs,
    answer_logprobs,
    completion_logprobs,
    rewards,
    *,
    bound: str = "multi",
    reduction: str = "mean",
    **jepo_options,
) -> torch.Tensor:
    """Combined JEPO + RL: per prompt, RLOO on the verifier reward when some sample scores > 0,
    else the JEPO surrogate (the paper's combined algorithm for semi-verifiable data).

    Args:
      cot_logprobs, answer_logprobs: as :func:`jepo_loss`.
      completion_logprobs: [G, n] log π_θ(c_i, a_i | x) of the sampled completions (with autograd).
      rewards: [G, n] verifier rewards (0 where unverifiable / wrong).
      bound, reduction, jepo_options: passed to :func:`jepo_loss`.
    """
    rewards = _check_grouped("rewards", rewards, cot_logprobs.shape if isinstance(cot_logprobs, torch.Tensor) else None)
    completion_logprobs = _check_grouped("completion_logprobs", completion_logprobs, rewards.shape)
    n = rewards.shape[1]
    if n < 2:
        raise ValueError(f"jepo_rl_loss needs n ≥ 2 samples per prompt for RLOO, got n = {n}")
    jepo = jepo_loss(cot_logprobs, answer_logprobs, bound=bound, reduction="none", **jepo_options)
    rewards = rewards.detach()
    rloo = (rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (n - 1)) / n
    rl = policy_gradient_loss(completion_logprobs, rloo, reduction="none")
    use_rl = (rewards > 0).any(dim=1)
    return _reduce(torch.where(use_rl, rl, jepo), reduction)
