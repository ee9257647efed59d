"""Losses between a categorical prediction (logits) and a (possibly signed) categorical target.

Shapes: logits [B, M], target [B, M] (mass; a stop-gradient tensor, Σ_i t_i = 1 per row, entries
may be negative for Q(λ) and sampled Retrace targets), returns the per-row loss [B].

Named options for signed targets (the Q(λ) target of Tang et al., AISTATS 2026, is an affine,
not convex, combination of projected distributions, so its expected value has negative bins
whenever λμ(a′) > π(a′)):

* ``"cross_entropy"`` — −Σ_i t_i log p_θ,i (Bellemare, Dabney, Munos 2017, arXiv:1707.06887,
  Alg. 1). For a signed target this is the *linear cross-entropy* of Reactor (Gruslys et al.
  2018, arXiv:1704.04651): the gradient is linear in t, so a sampled target gives an unbiased
  gradient of the expected loss. Failure mode: when the *expected* target has a negative bin the
  loss is unbounded below (driving p_θ,i → 0 on that bin sends −t_i log p_θ,i → −∞), so logits
  can drift without limit; it is only safe where the expected target is a probability vector.
* ``"cramer"`` — Δ Σ_{i<M−1} (F_t,i − F_θ,i)², the squared Cramér (ℓ2) distance between CDFs
  (Bellemare et al. 2017, arXiv:1705.10743; Rowland et al. 2018, arXiv:1802.08163, Prop. 1:
  Π_C is the ℓ2 projection). Well defined and bounded below by 0 for signed targets; its
  minimiser over the simplex is the ℓ2 projection of t onto the set of probability CDFs, and
  it is quadratic in t, so sampled targets give the expected gradient as well. Failure mode:
  small gradients on the tails (a bin's error is weighted by how many CDF terms it enters) —
  slower than cross-entropy on non-negative targets at equal step size.
* ``"clip_renormalise"`` — cross-entropy against max(t, 0)/Σ max(t, 0). Always a bounded
  cross-entropy, but *biased*: clipping is not linear, so the expected clipped target is not the
  clipped expected target and the fixed point moves (towards the greedy target's support).
  A row whose mass is entirely non-positive has no renormalisation; it falls back to the
  uniform distribution (documented, counted by :func:`clipped_fraction`).
"""

from __future__ import annotations

import torch

from fixpoint_rl.tabular.core.categorical import CategoricalSupport, cramer_distance

__all__ = ["LOSSES", "categorical_loss", "clipped_fraction", "cramer_loss", "cross_entropy",
           "clip_renormalise_cross_entropy"]

LOSSES = ("cross_entropy", "cramer", "clip_renormalise")


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−Σ_i t_i log softmax(logits)_i per row (the linear cross-entropy for signed t), [B]."""
    return -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1)


def cramer_loss(logits: torch.Tensor, target: torch.Tensor, support: CategoricalSupport) -> torch.Tensor:
    """Squared Cramér distance Δ Σ_{i<M−1} (F_t − F_θ)_i² per row, [B]."""
    return cramer_distance(target, torch.softmax(logits, dim=-1), support, squared=True)


def clip_renormalise_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against max(t, 0) renormalised (uniform where no mass is positive), [B]."""
    positive = target.clamp(min=0.0)
    total = positive.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(positive, 1.0 / positive.shape[-1])
    clipped = torch.where(total > 0, positive / total.clamp(min=torch.finfo(total.dtype).tiny), uniform)
    return cross_entropy(logits, clipped)


def clipped_fraction(target: torch.Tensor) -> torch.Tensor:
    """Mass removed by clipping, Σ_i max(−t_i, 0), averaged over rows (a scalar)."""
    return (-target).clamp(min=0.0).sum(dim=-1).mean()


def categorical_loss(name: str, logits: torch.Tensor, target: torch.Tensor,
                     support: CategoricalSupport) -> torch.Tensor:
    """The per-row loss named ``name`` (one of :data:`LOSSES`), [B]."""
    if name == "cross_entropy":
        return cross_entropy(logits, target)
    if name == "cramer":
        return cramer_loss(logits, target, support)
    if name == "clip_renormalise":
        return clip_renormalise_cross_entropy(logits, target)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
