"""Per-sample gradient variance of the TD-Flow losses (TD-Flow Theorems 2–3), by Monte Carlo.

σ² = Tr Cov(g) of the per-item gradient g = ∇_θ [(1−γ) ℓ_→ + γ ℓ_↷] over everything an item draws
(the transition (S, A, S′), t, the noises and the bootstrap). Farebrother et al. 2025 (arXiv
2503.09817): Theorem 2, σ²_TD-CFM = σ²_TD²-CFM + γ² E Tr Cov_{X_1|S,A,X_t}(∇v^⊤ u_{t|1}); Theorem 3,
σ²_TD-CFM(C) = σ²_TD²-CFM + γ² E Tr Cov_{Z|S,A,X_t}(∇v^⊤ u_{t|Z}), zero on straight paths with
non-crossing interpolants. Both assume the previous path is the Gaussian-smoothed m^{(n)}_1, which
:class:`~fixpoint_rl.deep.ghm.analytic.AnalyticField` satisfies exactly, so it serves as the target.

Per-item gradients use ``torch.func`` (``functional_call`` + ``vmap(grad)``) in chunks; the
estimate is the unbiased sample trace-covariance (1/(n−1)) Σ‖g_i − ḡ‖².
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call, grad, vmap

from fixpoint_rl.envs.checks import check_int

from .losses import regression_terms
from .paths import AffinePath

__all__ = ["per_sample_gradient_variance"]


def per_sample_gradient_variance(
    model: torch.nn.Module,
    variant: str,
    *,
    cond: torch.Tensor,
    next_state: torch.Tensor,
    next_cond: torch.Tensor,
    target_field: Callable,
    gamma: float,
    path: AffinePath,
    generator: torch.Generator,
    ode_steps: int = 10,
    ode_method: str = "midpoint",
    chunk: int = 512,
) -> dict[str, float]:
    """Tr Cov of the per-item gradient of ``variant``'s loss over the n given transitions.

    Each row of (cond, next_state, next_cond) [n, ·] is one item with its own t and noises.

    Returns:
      ``trace_cov`` (the variance σ²), ``mean_norm`` ‖ḡ‖ (the expected gradient's norm, shared by
      unbiased variants up to Monte-Carlo error) and ``n``.
    """
    chunk = check_int("chunk", chunk, low=2)
    n = cond.shape[0]
    if n < 2:
        raise ValueError(f"cond must hold at least 2 items, got {n}")
    params = {name: p.detach() for name, p in model.named_parameters()}

    def item_loss(parameters, x, t, c, target, weight):
        out = functional_call(model, parameters, (x[None], t[None], c[None]))[0]
        return weight * ((out - target) ** 2).sum()

    total = None
    total_sq = 0.0
    for start in range(0, n, chunk):
        part = slice(start, min(n, start + chunk))
        terms = regression_terms(
            variant, cond=cond[part], next_state=next_state[part], next_cond=next_cond[part],
            target_field=target_field, gamma=gamma, path=path, generator=generator,
            ode_steps=ode_steps, ode_method=ode_method,
        )
        flat = None
        for term in terms:
            weight = torch.full((term.x.shape[0],), term.weight, dtype=term.x.dtype)
            grads = vmap(grad(item_loss), in_dims=(None, 0, 0, 0, 0, 0))(
                params, term.x, term.t, term.cond, term.target, weight)
            g = torch.cat([grads[name].reshape(grads[name].shape[0], -1) for name in params], 1)
            flat = g if flat is None else flat + g
        flat = flat.double()
        total = flat.sum(0) if total is None else total + flat.sum(0)
        total_sq += float((flat**2).sum())
    mean = total / n
    trace_cov = (total_sq - n * float((mean**2).sum())) / (n - 1)
    return {"trace_cov": trace_cov, "mean_norm": float(mean.norm()), "n": int(n)}
