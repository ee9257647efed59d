"""Closed-form policy math shared by numpy (tabular) and torch (deep) code.

Every function is written once against the array API (``array_api_compat``), so the same code runs
on numpy arrays and torch tensors, and gradients flow through it on the torch side. Numba kernels
that need these formulas inside their loops carry scalar-loop twins, tied to these by parity tests.

Notation (shapes: K responses/actions, leading batch dimensions allowed):
  log_pi, log_mu  [..., K]   log-probabilities of the policy π and the reference μ
  beta            scalar     geometric-mixture weight on μ (TRL's ``mixture_coef``; ητ in Nash-MD)
  delta           [..., K]   mirror-descent increment (η · payoff)
"""

from __future__ import annotations

from array_api_compat import array_namespace

__all__ = [
    "entropy",
    "geometric_mixture_log",
    "kl_divergence",
    "log_softmax",
    "mirror_step_log",
    "softmax",
    "softmax_policy_gradient",
]


def log_softmax(logits):
    """log softmax along the last axis: logits − logsumexp(logits). Shape [..., K] → [..., K]."""
    xp = array_namespace(logits)
    shift = xp.max(logits, axis=-1, keepdims=True)
    shifted = logits - shift
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax(logits):
    """softmax along the last axis. Shape [..., K] → [..., K]."""
    xp = array_namespace(logits)
    return xp.exp(log_softmax(logits))


def kl_divergence(p, q):
    """KL(p ‖ q) = Σ_k p_k (log p_k − log q_k) along the last axis, with 0·log 0 = 0.

    Args:
      p: [..., K] probabilities.
      q: [..., K] probabilities, positive wherever p is.

    Returns:
      [...] KL divergences (≥ 0).
    """
    xp = array_namespace(p, q)
    positive = p > 0
    safe_p = xp.where(positive, p, xp.ones_like(p))
    safe_q = xp.where(positive, q, xp.ones_like(q))
    terms = xp.where(positive, p * (xp.log(safe_p) - xp.log(safe_q)), xp.zeros_like(p))
    return xp.sum(terms, axis=-1)


def entropy(p):
    """Shannon entropy −Σ p log p along the last axis, with 0·log 0 = 0. [..., K] → [...]."""
    xp = array_namespace(p)
    positive = p > 0
    safe_p = xp.where(positive, p, xp.ones_like(p))
    return -xp.sum(xp.where(positive, p * xp.log(safe_p), xp.zeros_like(p)), axis=-1)


def geometric_mixture_log(log_pi, log_mu, beta):
    """Normalised geometric mixture π^μ ∝ π^(1−β) μ^β, in log space.

    log π^μ = (1 − β) log π + β log μ − log Z  (NLHF §4, the regularised opponent of Nash-MD with
    β = ητ; TRL ``GeometricMixtureWrapper`` with ``mixture_coef`` = β).

    Args:
      log_pi: [..., K]; log_mu: [..., K]; beta: scalar in [0, 1].

    Returns:
      [..., K] log-probabilities of the mixture. Zeros are allowed in π and μ (log = −inf), with
      the convention 0⁰ = 1: at β = 1 the mixture is μ even where π = 0 (and at β = 0 it is π),
      instead of the NaN that 0·(−inf) would give.
    """
    xp = array_namespace(log_pi, log_mu)
    # −inf → the most negative finite float / 4: a zero weight then gives 0 (not 0·(−inf) = NaN),
    # a positive weight still gives a probability that underflows to exactly 0.
    floor_pi = xp.finfo(log_pi.dtype).min / 4
    floor_mu = xp.finfo(log_mu.dtype).min / 4
    log_pi = xp.where(log_pi < floor_pi, xp.full_like(log_pi, floor_pi), log_pi)
    log_mu = xp.where(log_mu < floor_mu, xp.full_like(log_mu, floor_mu), log_mu)
    return log_softmax((1.0 - beta) * log_pi + beta * log_mu)


def mirror_step_log(log_center, delta):
    """One entropic mirror-descent step π⁺ ∝ π_c · exp(δ), in log space.

    log π⁺ = log π_c + δ − log Σ_k π_c(k) e^{δ_k}   (NLHF Lemma 2's update form).

    Args:
      log_center: [..., K] log-probabilities of the centre π_c.
      delta: [..., K] increment (e.g. η · P(y ≻ π')).

    Returns:
      [..., K] log-probabilities of π⁺.
    """
    return log_softmax(log_center + delta)


def softmax_policy_gradient(probs, values):
    """∇_θ E_{y∼π_θ}[f(y)] for a softmax policy π_θ = softmax(θ) and fixed f.

    ∂/∂θ_k Σ_j π_j f_j = π_k (f_k − Σ_j π_j f_j).

    Args:
      probs: [..., K] policy π_θ.
      values: [..., K] f(y) per response.

    Returns:
      [..., K] gradient with respect to the logits θ.
    """
    xp = array_namespace(probs, values)
    baseline = xp.sum(probs * values, axis=-1, keepdims=True)
    return probs * (values - baseline)
