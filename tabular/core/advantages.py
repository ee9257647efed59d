"""Batched group advantages for k-sample objectives, RLOO and GRPO (numpy and torch, array API).

Every function takes rewards of G groups of n samples each, shape [G, n] (leading batch dimensions
allowed: [..., n]), and returns advantages of the same shape. Written once against the array API
(``array_api_compat``), so the tabular bandits (numpy) and the language-model trainers (torch, any
device) share one formula; a parity test checks both backends in float64.

k-sample objectives (Tang, Zheng, Synnaeve, Munos, "Optimizing language models for inference-time
objectives using reinforcement learning", ICML 2025, arXiv 2503.19595, §3): a group of k samples is
scored by

  mean           f = (1/k) Σ_i r_i
  pass_at_k      f = max_i r_i
  majority_vote  f = R(maj(a_1..a_k)), a_i the answer of sample i, R(a) its reward; a tie in the
                 vote is broken uniformly at random among the tied answers and f is its expectation,
                 the mean reward of the tied answers (the paper leaves ties open). Because every
                 tied answer has the same count, that equals the mean reward over the tied SAMPLES.

and f of the empty group is 0. The leave-one-out (LOO) advantage A_i = f(y_{1:k}) − f(y_{−i})
(the paper's Lemma 1: f(y_{−i}) does not depend on y_i, so Σ_i A_i ∇log π(y_i) is unbiased for
∇E f). For "mean" this is RLOO/k, the tabular convention kept visible in the name
``leave_one_out_advantages(..., "mean")``; :func:`rloo_advantages` is RLOO itself. ``centered``
subtracts the group mean of A (biased, denser signal).

Unbiased pass@k for n > k samples (the k-subset U-statistic of the LOO estimator, as in Walder &
Karkhanis, "Pass@k policy optimization", 2025, arXiv 2505.15201): averaging Σ_{i∈S}(f(S) − f(S∖i))
∇log π(y_i) over all k-subsets S of the n samples gives per-sample advantages; for f = max, with
samples ranked ascending (ties by index) at positions j = 1..n,

  A_i = [ r_(j) C(j−1, k−1) − Σ_{m<j} r_(m) C(m−1, k−2) ] / C(n, k),

(the terms of higher-ranked samples cancel). n = k gives the LOO pass@k advantage.
:func:`pass_at_k_estimate` is the matching unbiased estimate of E max over k samples,
Σ_j r_(j) C(j−1, k−1)/C(n, k) (Chen et al. 2021, arXiv 2107.03374, for binary rewards).

GRPO (Shao et al. 2024, arXiv 2402.03300, §4.1; options as Hugging Face TRL 1.16's
``GRPOTrainer``): A = r − mean_group(r), divided by (std + ε) with ε = 1e-4 and the Bessel-corrected
std of the group (``scale_rewards="group"``) or of the whole batch (``"batch"``); ``"none"`` does
not divide (Dr. GRPO, Liu et al. 2025, arXiv 2503.20783).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

__all__ = [
    "GRPO_EPSILON",
    "GROUP_OBJECTIVES",
    "SCALE_REWARDS",
    "group_normalized_advantages",
    "leave_one_out_advantages",
    "majority_at_k_estimate",
    "pass_at_k_estimate",
    "rloo_advantages",
    "unbiased_pass_at_k_advantages",
]

GROUP_OBJECTIVES = ("mean", "pass_at_k", "majority_vote")
SCALE_REWARDS = ("group", "batch", "none")
GRPO_EPSILON = 1e-4  # TRL 1.16 GRPOTrainer: advantages / (std_rewards + 1e-4)
MAX_SUBSETS = 2_000_000


def _checked_rewards(rewards, *, min_samples: int = 1):
    xp = array_namespace(rewards)
    if rewards.ndim < 1:
        raise ValueError("rewards must have shape [..., n] with a group axis, got a scalar")
    if not xp.isdtype(rewards.dtype, "real floating"):
        raise ValueError(f"rewards must be a real floating array, got dtype {rewards.dtype}")
    if rewards.shape[-1] < min_samples:
        raise ValueError(
            f"rewards must hold n ≥ {min_samples} samples per group, got shape {tuple(rewards.shape)}"
        )
    if not bool(xp.all(xp.isfinite(rewards))):
        raise ValueError("rewards must be finite (no NaN or inf)")
    return xp


def _checked_answers(answers, rewards):
    if answers is None:
        raise ValueError("answers must be given for objective='majority_vote', got None")
    xp = array_namespace(answers, rewards)
    if tuple(answers.shape) != tuple(rewards.shape):
        raise ValueError(
            f"answers must have the shape of rewards {tuple(rewards.shape)}, got {tuple(answers.shape)}"
        )
    if not xp.isdtype(answers.dtype, "integral"):
        raise ValueError(f"answers must be integer answer labels, got dtype {answers.dtype}")
    same = answers[..., :, None] == answers[..., None, :]
    spread = _as_float(xp, same, rewards) * xp.abs(rewards[..., :, None] - rewards[..., None, :])
    if bool(xp.any(spread > 0)):
        raise ValueError("rewards must be equal for samples with the same answer (majority vote)")
    return same


def _zeros_like(xp, x):
    return xp.zeros(x.shape, dtype=x.dtype, device=array_device(x))


def _as_float(xp, x, like):
    return xp.astype(x, like.dtype)


def _majority(rewards, same, keep):
    """f = mean reward of the samples whose answer has the top count, among the kept samples.

    rewards [..., n]; same [..., n, n] answer equality; keep [..., n] bool. Empty → 0.
    """
    xp = array_namespace(rewards)
    keep_f = _as_float(xp, keep, rewards)
    counts = xp.sum(_as_float(xp, same, rewards) * keep_f[..., None, :], axis=-1) * keep_f
    top = xp.max(counts, axis=-1, keepdims=True)
    tied = _as_float(xp, (counts == top) & keep, rewards)
    number = xp.sum(tied, axis=-1)
    total = xp.sum(tied * rewards, axis=-1)
    return xp.where(number > 0, total / xp.where(number > 0, number, 1.0 + 0.0 * number), 0.0 * total)


def leave_one_out_advantages(rewards, objective: str = "pass_at_k", answers=None, *, centered=False):
    """LOO advantages A_i = f(y_{1:n}) − f(y_{−i}) of a k = n sample objective, batched.

    Args:
      rewards: [..., n] real floating rewards (n ≥ 1), numpy or torch.
      objective: "mean" (gives RLOO/n), "pass_at_k" (only a unique best sample gets r_(n) − r_(n−1);
        ties at the max give all zeros) or "majority_vote".
      answers: [..., n] integer answer labels (majority vote only; equal answers need equal
        rewards). Ties in the vote: mean reward of the tied answers.
      centered: subtract the group mean of A (the biased, denser variant).

    Returns:
      [..., n] advantages (n = 1: A = f(y_1), REINFORCE without a baseline).
    """
    xp = _checked_rewards(rewards)
    if objective not in GROUP_OBJECTIVES:
        raise ValueError(f"objective must be one of {GROUP_OBJECTIVES}, got {objective!r}")
    n = rewards.shape[-1]
    if objective == "mean":
        total = xp.sum(rewards, axis=-1, keepdims=True)
        others = (total - rewards) / (n - 1) if n > 1 else _zeros_like(xp, rewards)
        advantages = rewards / n if n == 1 else (total / n - others)
    elif objective == "pass_at_k":
        if n == 1:
            advantages = rewards
        else:
            ordered = xp.sort(rewards, axis=-1)
            first, second = ordered[..., -1:], ordered[..., -2:-1]
            # max(r_{−i}) = first unless i is the unique maximiser, then second.
            unique_best = (rewards == first) & (second < first)
            advantages = xp.where(unique_best, first - second, _zeros_like(xp, rewards))
    else:
        same = _checked_answers(answers, rewards)
        everyone = xp.ones(rewards.shape, dtype=xp.bool, device=array_device(rewards))
        full = _majority(rewards, same, everyone)
        eye = xp.eye(n, dtype=xp.bool, device=array_device(rewards))
        keep = ~eye  # row m keeps all but sample m: [n, n]
        left_out = _majority(rewards[..., None, :], same[..., None, :, :], keep)
        advantages = full[..., None] - left_out
    if centered:
        advantages = advantages - xp.mean(advantages, axis=-1, keepdims=True)
    return advantages


def _ranks(rewards):
    """Ascending rank (0-based) of each sample, ties broken by index: [..., n] integer-valued float."""
    xp = array_namespace(rewards)
    n = rewards.shape[-1]
    index = xp.arange(n, device=array_device(rewards))
    below = rewards[..., None, :] < rewards[..., :, None]
    tied_before = (rewards[..., None, :] == rewards[..., :, None]) & (index[None, :] < index[:, None])
    return xp.sum(_as_float(xp, below | tied_before, rewards), axis=-1)


def _rank_table(xp, values, rewards):
    """values[rank] for each sample: gather a length-n table by rank (one-hot matmul)."""
    n = rewards.shape[-1]
    table = xp.asarray(np.asarray(values, dtype=np.float64), dtype=rewards.dtype, device=array_device(rewards))
    positions = xp.asarray(np.arange(n, dtype=np.float64), dtype=rewards.dtype, device=array_device(rewards))
    onehot = _as_float(xp, _ranks(rewards)[..., None] == positions, rewards)
    return xp.sum(onehot * table, axis=-1), onehot


def _check_k(k, n):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= n:
        raise ValueError(f"k must be an integer in [1, n = {n}], got {k!r}")
    return int(k)


def unbiased_pass_at_k_advantages(rewards, k: int):
    """Per-sample advantages of the unbiased pass@k gradient estimator from n ≥ k samples.

    A_i = [r_(j) C(j−1, k−1) − Σ_{m<j} r_(m) C(m−1, k−2)] / C(n, k), j the ascending rank of
    sample i (module docstring); Σ_i A_i ∇log π(y_i) is unbiased for ∇E[max of k samples].

    Args:
      rewards: [..., n] real rewards; k: 1 ≤ k ≤ n.

    Returns:
      [..., n] advantages; n = k gives ``leave_one_out_advantages(rewards, "pass_at_k")``.
    """
    xp = _checked_rewards(rewards)
    n = rewards.shape[-1]
    k = _check_k(k, n)
    total = math.comb(n, k)
    own = [math.comb(j, k - 1) / total for j in range(n)]  # rank j (0-based) = position j + 1
    lower = [math.comb(j, k - 2) / total if k >= 2 else 0.0 for j in range(n)]
    own_weight, onehot = _rank_table(xp, own, rewards)
    lower_weight, _ = _rank_table(xp, lower, rewards)
    ranks = _ranks(rewards)
    below = _as_float(xp, ranks[..., None, :] < ranks[..., :, None], rewards)  # [.., i, m]
    return own_weight * rewards - xp.sum(below * (lower_weight * rewards)[..., None, :], axis=-1)


def pass_at_k_estimate(rewards, k: int):
    """Unbiased estimate of E[max of k samples] from n ≥ k samples: Σ_j r_(j) C(j−1,k−1)/C(n,k).

    For 0/1 rewards with c correct this is 1 − C(n−c, k)/C(n, k) (Chen et al. 2021).
    Args: rewards [..., n]; k in [1, n]. Returns [...].
    """
    xp = _checked_rewards(rewards)
    n = rewards.shape[-1]
    k = _check_k(k, n)
    total = math.comb(n, k)
    weight, _ = _rank_table(xp, [math.comb(j, k - 1) / total for j in range(n)], rewards)
    return xp.sum(weight * rewards, axis=-1)


def majority_at_k_estimate(rewards, answers, k: int):
    """Unbiased estimate of maj@k (E f_maj over k samples) from n ≥ k samples: mean of f_maj over
    all C(n, k) subsets (ties: mean reward of the tied answers).

    Args: rewards [..., n]; answers [..., n] integer labels; k in [1, n] with C(n, k) ≤ 2·10⁶.
    Returns [...].
    """
    xp = _checked_rewards(rewards)
    same = _checked_answers(answers, rewards)
    n = rewards.shape[-1]
    k = _check_k(k, n)
    number = math.comb(n, k)
    if number > MAX_SUBSETS:
        raise ValueError(f"k must keep C(n, k) ≤ {MAX_SUBSETS} subsets, got C({n}, {k}) = {number}")
    chosen = np.zeros((number, n), dtype=bool)
    for row, subset in enumerate(itertools.combinations(range(n), k)):
        chosen[row, list(subset)] = True
    keep = xp.asarray(chosen, device=array_device(rewards))
    values = _majority(rewards[..., None, :], same[..., None, :, :], keep)
    return xp.mean(values, axis=-1)


def rloo_advantages(rewards, *, normalize: bool = False):
    """RLOO advantages r_i − mean_{j≠i} r_j (Ahmadian et al. 2024, arXiv 2402.14740), [..., n], n ≥ 2.

    ``normalize=True`` applies TRL 1.16 ``RLOOTrainer``'s ``normalize_advantages``: (A − mean(A)) /
    (std(A) + 1e-4) over the whole batch, std Bessel-corrected.
    """
    xp = _checked_rewards(rewards, min_samples=2)
    n = rewards.shape[-1]
    advantages = rewards - (xp.sum(rewards, axis=-1, keepdims=True) - rewards) / (n - 1)
    if normalize:
        advantages = (advantages - xp.mean(advantages)) / (xp.std(advantages, correction=1) + GRPO_EPSILON)
    return advantages


def group_normalized_advantages(rewards, scale_rewards: str = "group", epsilon: float = GRPO_EPSILON):
    """GRPO advantages as TRL 1.16 ``GRPOTrainer``: (r − mean_group r) / (std + ε).

    Args:
      rewards: [..., n] rewards (groups of n generations on the last axis; n ≥ 1).
      scale_rewards: "group" (Bessel std within each group; 0 for n = 1), "batch" (Bessel std over
        all rewards) or "none" (no division).
      epsilon: ε added to the std (TRL: 1e-4).

    Returns:
      [..., n] advantages.
    """
    xp = _checked_rewards(rewards)
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number ≥ 0, got {epsilon!r}")
    n = rewards.shape[-1]
    advantages = rewards - xp.mean(rewards, axis=-1, keepdims=True)
    if scale_rewards == "none":
        return advantages
    if scale_rewards == "group":
        std = xp.std(rewards, axis=-1, keepdims=True, correction=1) if n > 1 else _zeros_like(xp, rewards)
    else:
        size = math.prod(rewards.shape)
        std = xp.std(rewards, correction=1) if size > 1 else xp.zeros((), dtype=rewards.dtype, device=array_device(rewards))
    return advantages / (std + epsilon)
