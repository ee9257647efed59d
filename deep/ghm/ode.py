"""Fixed-step ODE integration of flow-matching fields, divergences and CNF log-likelihoods.

TD-Flow (Farebrother et al. 2025, arXiv 2503.09817, §4 and appendix) samples a model by integrating
dx/dt = v(x, t) from x_0 ~ N(0, I) at t = 0 and, for TD²-CFM, integrates the target field only up
to a per-sample time t (midpoint method with step t/10). Log-likelihoods use the instantaneous
change of variables (Chen et al. 2018, Theorem 1): d log p_t(x_t)/dt = −∇·v(x_t, t), so
log p_1(x_1) = log N(x_0; 0, I) − ∫_0^1 ∇·v(x_t, t) dt with x_t integrated backward from x_1.
The divergence is exact (d reverse-mode passes) for small d and Hutchinson's estimator
E[εᵀ (∂v/∂x) ε] with Rademacher ε otherwise (Grathwohl et al. 2019).

A fixed step count is used on purpose (as in the paper: the step count is part of the model, see
its Table 10), so no adaptive solver library is needed. Shapes: B batch, d dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fixpoint_rl.envs.checks import check_choice, check_int

__all__ = [
    "DIVERGENCES",
    "EXACT_DIVERGENCE_MAX_DIM",
    "METHODS",
    "divergence",
    "integrate",
    "log_likelihood",
]

METHODS = ("euler", "midpoint", "rk4")
DIVERGENCES = ("auto", "exact", "hutchinson")
# "auto" computes the divergence exactly up to this dimension (d reverse passes per evaluation),
# Hutchinson's single-probe estimate above it.
EXACT_DIVERGENCE_MAX_DIM = 32

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _step(f: Field, y: torch.Tensor, t: torch.Tensor, h: torch.Tensor, method: str) -> torch.Tensor:
    hc = h[:, None]
    if method == "euler":
        return y + hc * f(y, t)
    if method == "midpoint":
        k1 = f(y, t)
        return y + hc * f(y + 0.5 * hc * k1, t + 0.5 * h)
    k1 = f(y, t)
    k2 = f(y + 0.5 * hc * k1, t + 0.5 * h)
    k3 = f(y + 0.5 * hc * k2, t + 0.5 * h)
    k4 = f(y + hc * k3, t + h)
    return y + hc / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def _times(name: str, value, like: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(value):
        value = torch.full((like.shape[0],), float(value), dtype=like.dtype, device=like.device)
    if value.shape != (like.shape[0],):
        raise ValueError(f"{name} must have shape ({like.shape[0]},), got {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} must be finite")
    return value.to(like.dtype)


def integrate(
    field: Field,
    x: torch.Tensor,
    t_end,
    *,
    t_start=0.0,
    steps: int = 10,
    method: str = "midpoint",
) -> torch.Tensor:
    """Integrate dx/dt = field(x, t) from t_start to a per-sample t_end in ``steps`` equal steps.

    Args:
      field: v(x [B, D], t [B]) → [B, D].
      x: [B, D] initial points at t_start.
      t_end, t_start: [B] tensors or floats (t_end < t_start integrates backward).
      steps: number of steps (the step of sample i is (t_end_i − t_start_i)/steps).
      method: ``"euler"``, ``"midpoint"`` (the paper's choice) or ``"rk4"``.

    Returns:
      [B, D] the points at t_end. Gradients flow through unless called under ``torch.no_grad``.
    """
    steps = check_int("steps", steps, low=1)
    method = check_choice("method", method, METHODS)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (B, D), got {tuple(x.shape)}")
    t0 = _times("t_start", t_start, x)
    t1 = _times("t_end", t_end, x)
    h = (t1 - t0) / steps
    t = t0
    for i in range(steps):
        x = _step(field, x, t, h, method)
        t = t0 + (i + 1) * h
    return x


def divergence(
    field: Field,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    method: str = "auto",
    generator: torch.Generator | None = None,
    probes: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(v(x, t), ∇·v(x, t)) with the divergence exact or by Hutchinson's estimator.

    Returns the velocity [B, d] and divergence [B], detached from the graph.
    """
    method = check_choice("method", method, DIVERGENCES)
    probes = check_int("probes", probes, low=1)
    d = x.shape[1]
    if method == "auto":
        method = "exact" if d <= EXACT_DIVERGENCE_MAX_DIM else "hutchinson"
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = field(xg, t)
        if method == "exact":
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for i in range(d):
                (grad,) = torch.autograd.grad(v[:, i].sum(), xg, retain_graph=i < d - 1)
                div = div + grad[:, i]
        else:
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for p in range(probes):
                eps = torch.randint(0, 2, x.shape, generator=generator, device=x.device)
                eps = 2.0 * eps.to(x.dtype) - 1.0
                (vjp,) = torch.autograd.grad(v, xg, grad_outputs=eps, retain_graph=p < probes - 1)
                div = div + (vjp * eps).sum(dim=1)
            div = div / probes
    return v.detach(), div.detach()


def log_likelihood(
    field: Field,
    x1: torch.Tensor,
    *,
    steps: int = 10,
    method: str = "midpoint",
    divergence_method: str = "auto",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """log p_1(x_1) of the flow from N(0, I), by the instantaneous change of variables.

    Integrates the augmented system d(x, ℓ)/dt = (v, −∇·v) backward from (x_1, 0) at t = 1 to
    t = 0 with the same fixed-step scheme, so ℓ(0) = ∫_0^1 ∇·v dt and
    log p_1(x_1) = log N(x_0; 0, I) − ℓ(0). Returns [B] (no gradient).
    """
    if x1.ndim != 2:
        raise ValueError(f"x1 must have shape (B, d), got {tuple(x1.shape)}")
    d = x1.shape[1]

    def augmented(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v, div = divergence(field, y[:, :d], t, method=divergence_method, generator=generator)
        return torch.cat([v, -div[:, None]], dim=1)

    y1 = torch.cat([x1.detach(), torch.zeros_like(x1[:, :1])], dim=1)
    with torch.no_grad():
        y0 = integrate(augmented, y1, 0.0, t_start=1.0, steps=steps, method=method)
    x0, delta = y0[:, :d], y0[:, d]
    # delta = −∫_1^0 ∇·v dt = ∫_0^1 ∇·v dt ; log p_1(x_1) = log p_0(x_0) − ∫_0^1 ∇·v dt
    log_p0 = -0.5 * (x0**2).sum(dim=1) - 0.5 * d * math.log(2.0 * math.pi)
    return log_p0 - delta
