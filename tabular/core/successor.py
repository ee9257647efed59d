"""Closed forms for successor measures and their flow-matching paths (numpy and torch).

Written once against the array API (``array_api_compat``) so the numpy problem code, the tests and
the torch geometric-horizon models (``fixpoint_rl.deep.ghm``) share every formula.

References: Farebrother, Pirotta, Tirinzoni, Munos, Lazaric, Touati, "Temporal Difference Flows",
ICML 2025, arXiv 2503.09817 (TD-Flow below).

* Normalised successor measure (TD-Flow, background section): m^π(X | s, a) = (1−γ) Σ_{k≥0} γ^k
  Pr(S_{k+1} ∈ X | S_0 = s, A_0 = a, π); the first term is the *next* state. For a finite MDP it is
  the matrix M = (1−γ) P_sa (I − γ P^π)^{-1} (:func:`successor_measure`), which satisfies the
  Bellman equation M = (1−γ) P_sa + γ P_sa M_π with M_π[s'] = Σ_a' π(a'|s') M[(s', a')].
* Affine probability paths (TD-Flow background; Lipman et al. 2023): X_t = α_t X_1 + β_t X_0
  with X_0 ~ N(0, I), α_0 = β_1 = 0, α_1 = β_0 = 1; conditional velocity α̇_t X_1 + β̇_t X_0.
  ``"straight"`` is the OT path α_t = t, β_t = 1 − t; ``"curved"`` is the paper's
  α_t = sin(πt/2), β_t = cos(πt/2) (TD-Flow Table 2) (:func:`path_coefficients`).
* Fixed point of every TD-Flow variant (TD-Flow Theorem 1, Corollary 1): the time-t marginal is
  the Monte-Carlo CFM path m_t = ∫ p_{t|1}(·|x_1) m^π(dx_1). When m^π is a Gaussian mixture
  Σ_k w_k N(μ_k, Σ_k) (a tabular MDP embedded with Gaussian noise; a linear-Gaussian system), m_t is
  the mixture Σ_k w_k N(α_t μ_k, α_t² Σ_k + β_t² I) and its marginal velocity is the
  posterior-weighted average of the component velocities — the mixture-velocity identity of
  TD-Flow App. E.2 (eq. 26) applied to K components (:func:`gaussian_mixture_path`).

Shapes: S states, A actions, B batch, K mixture components, d sample dimension.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace

__all__ = [
    "PATH_KINDS",
    "gaussian_mixture_log_density",
    "gaussian_mixture_path",
    "path_coefficients",
    "successor_measure",
]

PATH_KINDS = ("straight", "curved")


def path_coefficients(t, kind: str = "straight"):
    """(α_t, β_t, α̇_t, β̇_t) of an affine path X_t = α_t X_1 + β_t X_0 (TD-Flow background, Table 2).

    Args:
      t: array of times in [0, 1] (any shape, floating dtype).
      kind: ``"straight"`` (α = t, β = 1 − t) or ``"curved"`` (α = sin(πt/2), β = cos(πt/2)).

    Returns:
      Four arrays shaped like ``t``.
    """
    xp = array_namespace(t)
    if kind == "straight":
        return t, 1.0 - t, xp.ones_like(t), -xp.ones_like(t)
    if kind == "curved":
        half_pi = 0.5 * math.pi
        return (xp.sin(half_pi * t), xp.cos(half_pi * t),
                half_pi * xp.cos(half_pi * t), -half_pi * xp.sin(half_pi * t))
    raise ValueError(f"kind must be one of {PATH_KINDS}, got {kind!r}")


def successor_measure(P_sa, P_pi, gamma: float):
    """Tabular successor measure M = (1−γ) P_sa (I − γ P^π)^{-1} (the successor measure in matrix form).

    Args:
      P_sa: [N, S] next-state probabilities of N conditioning pairs (e.g. the S·A rows
        P[s, a, ·] in the order s·A + a).
      P_pi: [S, S] state transition matrix under the evaluated policy, P^π[s, s'] =
        Σ_a π(a|s) P(s'|s, a).
      gamma: discount γ ∈ [0, 1).

    Returns:
      [N, S] rows M[n, j] = (1−γ) Σ_{k≥0} γ^k Pr(S_{k+1} = j | first step drawn from P_sa[n]);
      each row is a probability vector. Computed by one linear solve with (I − γP^π)ᵀ.
    """
    xp = array_namespace(P_sa, P_pi)
    if not (0.0 <= float(gamma) < 1.0):
        raise ValueError(f"gamma must lie in [0, 1), got {gamma!r}")
    if P_pi.ndim != 2 or P_pi.shape[0] != P_pi.shape[1]:
        raise ValueError(f"P_pi must have shape (S, S), got shape {tuple(P_pi.shape)}")
    if P_sa.ndim != 2 or P_sa.shape[1] != P_pi.shape[0]:
        raise ValueError(
            f"P_sa must have shape (N, {P_pi.shape[0]}), got shape {tuple(P_sa.shape)}"
        )
    S = P_pi.shape[0]
    eye = xp.eye(S, dtype=P_pi.dtype)
    if hasattr(P_pi, "device"):
        eye = xp.asarray(eye, device=P_pi.device)
    # M (I − γP^π) = (1−γ) P_sa  ⇔  (I − γP^π)ᵀ Mᵀ = (1−γ) P_saᵀ
    system = xp.matrix_transpose(eye - gamma * P_pi)
    return xp.matrix_transpose(xp.linalg.solve(system, (1.0 - gamma) * xp.matrix_transpose(P_sa)))


def _log_weights(xp, weights):
    positive = weights > 0
    safe = xp.where(positive, weights, xp.ones_like(weights))
    return xp.where(positive, xp.log(safe), xp.full_like(weights, -math.inf))


def _check_mixture(x, weights, means, covs):
    if x.ndim != 2:
        raise ValueError(f"x must have shape (B, d), got shape {tuple(x.shape)}")
    d = x.shape[1]
    if means.ndim not in (2, 3) or means.shape[-1] != d:
        raise ValueError(f"means must have shape (K, {d}) or (B, K, {d}), got {tuple(means.shape)}")
    K = means.shape[-2]
    if weights.ndim not in (1, 2) or weights.shape[-1] != K:
        raise ValueError(f"weights must have shape ({K},) or (B, {K}), got {tuple(weights.shape)}")
    if covs.ndim not in (3, 4) or tuple(covs.shape[-3:]) != (K, d, d):
        raise ValueError(
            f"covs must have shape ({K}, {d}, {d}) or (B, {K}, {d}, {d}), got {tuple(covs.shape)}"
        )


def gaussian_mixture_path(x, t, weights, means, covs, kind: str = "straight"):
    """Log-density and marginal velocity of the affine path from N(0, I) to a Gaussian mixture.

    The target is m = Σ_k w_k N(μ_k, Σ_k); X_t = α_t X_1 + β_t X_0 with X_1 ~ m, X_0 ~ N(0, I)
    independent. Per component, X_t ~ N(α μ_k, C_k) with C_k = α² Σ_k + β² I, and by Gaussian
    conditioning E[X_1 | X_t = x, k] = μ_k + α Σ_k C_k^{-1}(x − α μ_k),
    E[X_0 | X_t = x, k] = β C_k^{-1}(x − α μ_k). The marginal velocity is
    u_t(x) = Σ_k ρ_k(x) (α̇ E[X_1|x,k] + β̇ E[X_0|x,k]) with posterior weights
    ρ_k(x) ∝ w_k N(x; α μ_k, C_k) — TD-Flow App. E.2 eq. 26 with K components. By TD-Flow
    Corollary 1 this is the vector field of the fixed point shared by TD-CFM, TD-CFM(C), TD²-CFM.

    Args:
      x: [B, d] points.
      t: [B] times in [0, 1] (C_k must be positive definite: t < 1 or Σ_k ≻ 0).
      weights: [K] or [B, K] mixture weights (non-negative; zero weights allowed). They need not
        sum to 1 (a truncated series): the log-density is of the unnormalised mixture.
      means: [K, d] or [B, K, d].
      covs: [K, d, d] or [B, K, d, d] symmetric positive semi-definite covariances.
      kind: path kind, see :func:`path_coefficients`.

    Returns:
      (log_density [B], velocity [B, d]) of the time-t marginal at x.
    """
    xp = array_namespace(x, t, weights, means, covs)
    _check_mixture(x, weights, means, covs)
    d = x.shape[1]
    alpha, beta, dalpha, dbeta = path_coefficients(t, kind)
    a = alpha[:, None, None]                                  # [B, 1, 1]
    b = beta[:, None, None]
    eye = xp.eye(d, dtype=x.dtype)
    if hasattr(x, "device"):
        eye = xp.asarray(eye, device=x.device)
    cov = covs if covs.ndim == 4 else covs[None, ...]         # [B|1, K, d, d]
    C = (a * a)[..., None] * cov + (b * b)[..., None] * eye   # [B, K, d, d]
    C_inv = xp.linalg.inv(C)
    _, logdet = xp.linalg.slogdet(C)                          # [B, K]
    mu = means if means.ndim == 3 else means[None, ...]       # [B|1, K, d]
    resid = x[:, None, :] - a * mu                            # [B, K, d]
    solved = xp.sum(C_inv * resid[:, :, None, :], axis=-1)    # C^{-1} r, [B, K, d]
    quad = xp.sum(resid * solved, axis=-1)                    # [B, K]
    log_w = _log_weights(xp, weights)
    log_w = log_w if log_w.ndim == 2 else log_w[None, :]
    logits = log_w - 0.5 * quad - 0.5 * logdet - 0.5 * d * math.log(2.0 * math.pi)
    top = xp.max(logits, axis=-1, keepdims=True)
    log_density = xp.log(xp.sum(xp.exp(logits - top), axis=-1)) + top[:, 0]
    posterior = xp.exp(logits - log_density[:, None])         # [B, K]
    cov_solved = xp.sum(cov * solved[:, :, None, :], axis=-1)  # Σ_k C^{-1} r
    mean_x1 = mu + a * cov_solved
    mean_x0 = b * solved
    velocity_k = dalpha[:, None, None] * mean_x1 + dbeta[:, None, None] * mean_x0
    velocity = xp.sum(posterior[:, :, None] * velocity_k, axis=1)
    return log_density, velocity


def gaussian_mixture_log_density(x, weights, means, covs):
    """log Σ_k w_k N(x; μ_k, Σ_k) for x [B, d] (shapes as :func:`gaussian_mixture_path`). → [B]."""
    xp = array_namespace(x)
    ones = xp.ones((x.shape[0],), dtype=x.dtype)
    if hasattr(x, "device"):
        ones = xp.asarray(ones, device=x.device)
    log_density, _ = gaussian_mixture_path(x, ones, weights, means, covs, "straight")
    return log_density
