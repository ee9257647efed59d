"""Generalized Preference Optimization (GPO) losses as functions of the log-ratio margin.

Tang et al., "Generalized Preference Optimization: A Unified Approach to Offline Alignment",
ICML 2024 (arXiv 2402.05749). One formula per loss, written once against the array API, so numpy
(tabular) and torch (deep) code share it and autograd flows through it.

The loss of one preference triple (x, y_w, y_l) is

    f(β·ρ),   ρ = log π(y_w|x)/π_ref(y_w|x) − log π(y_l|x)/π_ref(y_l|x)        (GPO §2)

with f a surrogate of the 0-1 loss, f′(0) < 0 (GPO §3, Table 1; all convex except Savage):

=======================  =====================  ========  =======  ========================
kind                     f(x)                   f′(0)     f″(0)    Bayes link x*(p)
=======================  =====================  ========  =======  ========================
``logistic`` (DPO)       log(1 + e^{−x})        −1/2      1/4      logit p
``hinge`` (SLiC)         max(0, 1 − x)          −1        0        sign(2p − 1)
``squared`` (IPO)        (x − 1)²               −2        2        2p − 1
``exponential``          e^{−x}                 −1        1        ½ logit p
``truncated_quadratic``  max(0, 1 − x)²         −2        2        2p − 1
``savage``               1 / (1 + e^{x})²       −1/4      1/8      logit p
=======================  =====================  ========  =======  ========================

Scale conventions against TRL's ``DPOTrainer(loss_type=...)`` (``huggingface/trl`` f2cd577; Δ is
TRL's chosen-minus-rejected log-ratio, i.e. our ρ):

* ``sigmoid``: −log σ(β_T Δ)            = ``gpo_loss(Δ, β_T, "logistic")`` exactly.
* ``hinge``:   relu(1 − β_T Δ)          = ``gpo_loss(Δ, β_T, "hinge")`` exactly.
* ``ipo``:     (Δ̄ − 1/(2β_T))²          = ``gpo_loss(Δ̄, 2β_T, "squared") / (4β_T²)``, i.e. the GPO
  squared loss with β_GPO = 2·β_TRL, divided by the positive constant β_GPO² = 4β_T². TRL's
  ``DPOTrainer`` computes Δ̄ from *per-token-averaged* log-probabilities (``OnlineDPOTrainer``
  from summed ones), so the identity holds only when ρ is formed the same way. Minimisers agree;
  gradients differ by the factor 1/(4β_T²).

Here β multiplies the margin inside f (GPO's parameterisation), so the population minimiser of a
single pair labelled "y wins" with probability p is ρ* = x*(p)/β (``bayes_link(p, kind) / beta``).

Valid range: β > 0, finite real margins for which the loss is finite (every margin for the
logistic, hinge and Savage losses; |β·margin| ≲ 1e154 for the quadratic ones and β·margin ≥ −709
for the exponential one in float64). Outside it ``ValueError`` names margin and beta.
"""

from __future__ import annotations

import numbers

import numpy as np
from array_api_compat import array_namespace

from ...envs.checks import check_scalar, describe

__all__ = [
    "GPO_ALIASES",
    "GPO_KINDS",
    "check_kind",
    "bayes_link",
    "gpo_loss",
    "gpo_loss_derivative",
    "gpo_loss_second_derivative",
    "loss_derivatives_at_zero",
    "regularization_ratio",
]

GPO_KINDS = ("logistic", "hinge", "squared", "exponential", "truncated_quadratic", "savage")
# the existing methods each loss reproduces (GPO Table 1), accepted wherever a kind is: β keeps
# GPO's meaning (it multiplies the margin inside f), so
#   "dpo"  = logistic: DPO's β exactly (TRL ``sigmoid`` with the same β);
#   "ipo"  = squared:  β = 2τ for IPO's regulariser τ (TRL ``ipo`` with β_T: pass beta = 2·β_T);
#   "slic" = hinge:    SLiC-HF's margin δ = 1/β (max(0, 1 − βρ) = β·max(0, δ − ρ)).
GPO_ALIASES = {"dpo": "logistic", "ipo": "squared", "slic": "hinge"}


def check_kind(kind) -> str:
    """The canonical GPO kind of ``kind`` (a name in ``GPO_KINDS`` or an alias in ``GPO_ALIASES``).

    Raises ``ValueError`` listing the kinds and the aliases.
    """
    if isinstance(kind, str):
        key = kind.strip().lower()
        if key in GPO_KINDS:
            return key
        if key in GPO_ALIASES:
            return GPO_ALIASES[key]
    aliases = ", ".join(f"{a!r} (= {k!r})" for a, k in GPO_ALIASES.items())
    raise ValueError(f"kind must be one of {GPO_KINDS} or an alias {aliases}, got {describe(kind)}")

# (f′(0), f″(0)) per kind (Tang et al. 2024, arXiv 2402.05749, Table 1; Taylor coefficients at 0).
_DERIVATIVES_AT_ZERO = {
    "logistic": (-0.5, 0.25),
    "hinge": (-1.0, 0.0),
    "squared": (-2.0, 2.0),
    "exponential": (-1.0, 1.0),
    "truncated_quadratic": (-2.0, 2.0),
    "savage": (-0.25, 0.125),
}


def _as_array(name, value):
    """Array-API array from ``value`` (numpy for Python scalars / lists), checked finite."""
    if isinstance(value, (numbers.Real, list, tuple)) and not isinstance(value, bool):
        value = np.asarray(value, dtype=np.float64)
    elif isinstance(value, (bool, str, bytes)) or value is None:
        raise ValueError(f"{name} must be an array of numbers, got {describe(value)}")
    try:
        xp = array_namespace(value)
    except TypeError as error:
        raise ValueError(f"{name} must be an array of numbers, got {describe(value)}") from error
    if xp.isdtype(value.dtype, "complex floating"):
        raise ValueError(f"{name} must be real, got complex values {describe(value)}")
    if isinstance(value, np.ndarray) and value.dtype.kind not in "fc":
        if value.dtype.kind not in "iub":
            raise ValueError(f"{name} must be an array of numbers, got dtype {value.dtype}")
        value = value.astype(np.float64)
    if not bool(xp.all(xp.isfinite(value))):
        raise ValueError(f"{name} must be finite (no NaN or inf), got {describe(value)}")
    return xp, value


def _softplus(xp, x):
    """log(1 + e^x), overflow-free: max(x, 0) + log1p(e^{−|x|})."""
    return xp.maximum(x, xp.zeros_like(x)) + xp.log1p(xp.exp(-xp.abs(x)))


def _f(xp, x, kind):
    zero = xp.zeros_like(x)
    if kind == "logistic":
        return _softplus(xp, -x)
    if kind == "hinge":
        return xp.maximum(1.0 - x, zero)
    if kind == "squared":
        return (x - 1.0) ** 2
    if kind == "exponential":
        return xp.exp(-x)
    if kind == "truncated_quadratic":
        return xp.maximum(1.0 - x, zero) ** 2
    # savage: σ(−x)² = exp(−2·softplus(x))
    return xp.exp(-2.0 * _softplus(xp, x))


def _f_prime(xp, x, kind):
    zero = xp.zeros_like(x)
    if kind == "logistic":
        return -xp.exp(-_softplus(xp, x))  # −σ(−x)
    if kind == "hinge":
        return xp.where(x < 1.0, -xp.ones_like(x), zero)  # relu's convention: 0 at the kink
    if kind == "squared":
        return 2.0 * (x - 1.0)
    if kind == "exponential":
        return -xp.exp(-x)
    if kind == "truncated_quadratic":
        return -2.0 * xp.maximum(1.0 - x, zero)
    # savage: d/dx σ(−x)² = −2 σ(−x)² σ(x)
    return -2.0 * xp.exp(-2.0 * _softplus(xp, x) - _softplus(xp, -x))


def _f_second(xp, x, kind):
    if kind == "logistic":
        return xp.exp(-_softplus(xp, x) - _softplus(xp, -x))  # σ(x)σ(−x)
    if kind == "hinge":
        return xp.zeros_like(x)  # 0 away from the kink
    if kind == "squared":
        return xp.full_like(x, 2.0)
    if kind == "exponential":
        return xp.exp(-x)
    if kind == "truncated_quadratic":
        return xp.where(x < 1.0, xp.full_like(x, 2.0), xp.zeros_like(x))
    # savage, with s = σ(−x): f″ = s²(1 − s)(4 − 6s); negative for x < −log 2 (f is not convex)
    s = xp.exp(-_softplus(xp, x))
    return s**2 * (1.0 - s) * (4.0 - 6.0 * s)


def _finite(xp, out, kind):
    """The valid range of the losses is where they are finite in the margin's dtype: |βρ| up to
    ~1e154 for the quadratic kinds, βρ ≥ −709 for ``exponential`` in float64 (every other kind
    is finite for every finite βρ). Outside it, a ValueError instead of a silent inf/NaN."""
    if not bool(xp.all(xp.isfinite(out))):
        raise ValueError(
            f"margin and beta are outside the valid range of kind={kind!r}: the loss of β·margin "
            f"overflows (|β·margin| must stay below ~1e154 for quadratic kinds, β·margin ≥ −709 "
            f"for 'exponential')"
        )
    return out


def gpo_loss(margin, beta, kind):
    """Elementwise GPO loss f(β·ρ) of log-ratio margins ρ (GPO §2, Table 1).

    Args:
      margin: [...] log-ratio margins ρ = log π/π_ref(y_w) − log π/π_ref(y_l) (numpy array, torch
        tensor or Python number).
      beta: scalar > 0, multiplies the margin inside f (see the module docstring for TRL scales).
      kind: one of ``GPO_KINDS``, or an alias: ``"dpo"`` (logistic), ``"ipo"`` (squared; β = 2τ
        for IPO's τ), ``"slic"`` (hinge; margin 1/β).

    Returns:
      [...] losses, same array type as ``margin`` (differentiable under torch autograd).

    Valid range: beta > 0 (finite); margin finite, with the loss of beta·margin finite
    (|beta·margin| ≲ 1e154 for the quadratic kinds, beta·margin ≥ −709 for the exponential one);
    kind one of the listed losses or aliases.
    """
    kind = check_kind(kind)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    xp, margin = _as_array("margin", margin)
    return _finite(xp, _f(xp, beta * margin, kind), kind)


def gpo_loss_derivative(margin, beta, kind):
    """d/dρ f(β·ρ) = β·f′(β·ρ), elementwise; shapes as :func:`gpo_loss`.

    At the kinks of ``hinge`` (βρ = 1) the value is 0, matching ``relu``'s subgradient convention.

    Valid range: as gpo_loss: beta > 0 (finite); margin finite, the derivative at beta·margin
    finite.
    """
    kind = check_kind(kind)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    xp, margin = _as_array("margin", margin)
    return _finite(xp, beta * _f_prime(xp, beta * margin, kind), kind)


def gpo_loss_second_derivative(margin, beta, kind):
    """d²/dρ² f(β·ρ) = β²·f″(β·ρ), elementwise; shapes as :func:`gpo_loss`.

    ``hinge`` gives 0 (its curvature is a point mass at the kink); ``savage`` is negative for
    βρ < −log 2: the Savage loss is not convex.
    """
    kind = check_kind(kind)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    xp, margin = _as_array("margin", margin)
    return _finite(xp, beta**2 * _f_second(xp, beta * margin, kind), kind)


def loss_derivatives_at_zero(kind):
    """(f′(0), f″(0)) of the GPO loss ``kind`` (Table 1; f″ is 0 for the hinge, a.e.)."""
    kind = check_kind(kind)
    return _DERIVATIVES_AT_ZERO[kind]


def regularization_ratio(kind):
    """f″(0)/|f′(0)|: weight of the offline regulariser relative to the linear term (GPO §4).

    To second order, E f(βρ) ≈ f(0) + f′(0)βE[ρ] + ½f″(0)β²E[ρ²]; equal effective regularisation
    needs equal β·f″(0)/|f′(0)|, hence β_logistic ≈ 2·β_squared.
    """
    first, second = loss_derivatives_at_zero(kind)
    return second / abs(first)


def bayes_link(p, kind):
    """Bayes link x*(p) = argmin_x p·f(x) + (1 − p)·f(−x) of the GPO loss ``kind`` (GPO §3).

    Args:
      p: [...] probabilities that the first response wins, strictly inside (0, 1).
      kind: one of ``GPO_KINDS``.

    Returns:
      [...] the minimising margin x* (the population optimum is ρ* = x*/β). For ``hinge`` it is
      sign(2p − 1) (0 at p = ½, where every x ∈ [−1, 1] is optimal); for ``truncated_quadratic``
      it is 2p − 1.

    Valid range: no numeric arguments; p in (0, 1) (array-like, any shape); kind one of the losses
    of gpo_loss.
    """
    kind = check_kind(kind)
    xp, p = _as_array("p", p)
    if bool(xp.any(p <= 0.0)) or bool(xp.any(p >= 1.0)):
        raise ValueError(f"p must lie strictly inside (0, 1), got {describe(p)}")
    if kind in ("logistic", "savage"):
        return xp.log(p) - xp.log1p(-p)
    if kind == "exponential":
        return 0.5 * (xp.log(p) - xp.log1p(-p))
    if kind == "hinge":
        return xp.sign(2.0 * p - 1.0)
    return 2.0 * p - 1.0
