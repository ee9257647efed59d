"""Training targets of the TD-Flow variants and the Monte-Carlo CFM oracle.

Farebrother et al., "Temporal Difference Flows", ICML 2025 (arXiv 2503.09817). Every variant is a
squared-error velocity regression at t ~ U[0, 1] on offline (S, A, S′) with the template of the
paper's Algorithm 1 (§4): per item, ℓ = (1−γ) ℓ_→ + γ ℓ_↷, where

* ℓ_→ = ‖v_θ(X_t | S, A) − u_{t|1}(X_t | S′)‖², X_t ~ p_{t|1}(·|S′) — plain CFM towards the next
  state (shared by all three TD variants);
* ℓ_↷ is the bootstrap term, with θ̄ the EMA target network and A′ = π(S′):

  - **TD-CFM** (§4): X_1 = ψ_1(X_0′ | S′, A′; θ̄) (target ODE from noise X_0′ to t = 1),
    X_t ~ p_{t|1}(·|X_1) with *fresh* noise X_0, target u_{t|1}(X_t | X_1);
  - **TD-CFM(C)** (§4, coupled): the same X_1 but X_t = α_t X_1 + β_t X_0′ reuses the noise that
    generated X_1, target u_{t|0,1} = α̇_t X_1 + β̇_t X_0′;
  - **TD²-CFM** (§4, Lemma 1): X̂_t = ψ_t(X_0 | S′, A′; θ̄) (target ODE integrated only
    up to the item's t), target the target network's own velocity v_t(X̂_t | S′, A′; θ̄).

* **MC-CFM** (the oracle baseline): plain CFM towards X_1 ~ m^π(·|S, A) drawn by a
  Geometric-horizon rollout (needs on-policy rollouts, which the offline setting lacks).

The paper's text also describes TD-CFM as "X_1 = S′ with probability 1−γ"; Algorithm 1 takes
the expectation over that coin instead (weights 1−γ and γ), which has the same expected gradient
and less variance. This module implements Algorithm 1. The ODE to the bootstrap uses a fixed-step
method (the paper: midpoint, 10 steps, step t/10).

Each variant is expressed as a list of :class:`Regression` terms computed without gradient, so
the same :func:`regression_loss` gives the batch loss, and per-sample gradients (for the variance
study of Theorems 2–3) come from the per-item losses. Shapes: B batch, d sample dim, c cond dim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from fixpoint_rl.envs.checks import check_choice, check_int, check_scalar

from .ode import METHODS, integrate
from .paths import AffinePath

__all__ = [
    "Regression",
    "VARIANTS",
    "ema_update",
    "regression_loss",
    "regression_terms",
]

VARIANTS = ("mc_cfm", "td_cfm", "td_cfm_coupled", "td2_cfm")

ConditionalField = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Regression:
    """One weighted squared-error term weight·‖v_θ(x, t | cond) − target‖² (all tensors detached).

    Attributes: x [B, d], t [B], cond [B, c], target [B, d], weight (a float).
    """

    x: torch.Tensor
    t: torch.Tensor
    cond: torch.Tensor
    target: torch.Tensor
    weight: float


def regression_loss(model: ConditionalField, terms: list[Regression]) -> torch.Tensor:
    """Per-item loss Σ_terms weight·‖v_θ(x, t | cond) − target‖²_2: [B] (mean it for the batch)."""
    total = None
    for term in terms:
        residual = model(term.x, term.t, term.cond) - term.target
        loss = term.weight * (residual**2).sum(dim=1)
        total = loss if total is None else total + loss
    return total


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def regression_terms(
    variant: str,
    *,
    cond: torch.Tensor,
    next_state: torch.Tensor | None = None,
    next_cond: torch.Tensor | None = None,
    successor: torch.Tensor | None = None,
    target_field: ConditionalField | None = None,
    gamma: float,
    path: AffinePath,
    generator: torch.Generator | None = None,
    ode_steps: int = 10,
    ode_method: str = "midpoint",
    t: torch.Tensor | None = None,
) -> list[Regression]:
    """The regression terms of one batch for ``variant`` (see the module docstring).

    Args:
      variant: ``"mc_cfm"``, ``"td_cfm"``, ``"td_cfm_coupled"`` or ``"td2_cfm"``.
      cond: [B, c] (S, A).
      next_state: [B, d] S′ (TD variants).
      next_cond: [B, c] (S′, π(S′)) (TD variants).
      successor: [B, d] Monte-Carlo samples X ~ m^π(·|S, A) (``mc_cfm`` only).
      target_field: the EMA target network v(x, t, cond) (TD variants with γ > 0).
      gamma: discount γ ∈ [0, 1).
      path: the affine probability path.
      generator: torch generator for t and the noises.
      ode_steps, ode_method: fixed-step integration of the target ODE.
      t: optional [B] times (default U[0, 1) from ``generator``).
    """
    variant = check_choice("variant", variant, VARIANTS)
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    ode_steps = check_int("ode_steps", ode_steps, low=1)
    check_choice("ode_method", ode_method, METHODS)
    if cond.ndim != 2:
        raise ValueError(f"cond must have shape (B, c), got {tuple(cond.shape)}")
    B = cond.shape[0]
    if t is None:
        t = torch.rand((B,), generator=generator, dtype=cond.dtype, device=cond.device)
    with torch.no_grad():
        if variant == "mc_cfm":
            if successor is None or successor.ndim != 2 or successor.shape[0] != B:
                raise ValueError("mc_cfm needs successor samples of shape (B, d)")
            x0 = _noise(successor, generator)
            return [Regression(path.interpolate(x0, successor, t), t, cond,
                               path.endpoint_velocity(x0, successor, t), 1.0)]
        if next_state is None or next_state.ndim != 2 or next_state.shape[0] != B:
            raise ValueError(f"{variant} needs next_state of shape ({B}, d)")
        if next_cond is None or tuple(next_cond.shape) != tuple(cond.shape):
            raise ValueError(f"{variant} needs next_cond of shape {tuple(cond.shape)}")
        x0 = _noise(next_state, generator)
        terms = [Regression(path.interpolate(x0, next_state, t), t, cond,
                            path.endpoint_velocity(x0, next_state, t), 1.0 - gamma)]
        if gamma == 0.0:
            return terms
        if target_field is None:
            raise ValueError(f"{variant} with gamma > 0 needs a target_field")

        def target(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            return target_field(x, time, next_cond)

        z = _noise(next_state, generator)
        if variant == "td2_cfm":
            x_hat = integrate(target, z, t, steps=ode_steps, method=ode_method)
            terms.append(Regression(x_hat, t, cond, target(x_hat, t), gamma))
            return terms
        x1 = integrate(target, z, 1.0, steps=ode_steps, method=ode_method)
        x0_path = z if variant == "td_cfm_coupled" else _noise(next_state, generator)
        terms.append(Regression(path.interpolate(x0_path, x1, t), t, cond,
                                path.endpoint_velocity(x0_path, x1, t), gamma))
        return terms


@torch.no_grad()
def ema_update(target: torch.nn.Module, online: torch.nn.Module, decay: float) -> None:
    """Polyak averaging θ̄ ← ζ θ̄ + (1 − ζ) θ (Algorithm 1's last line; the paper: ζ = 0.999)."""
    decay = check_scalar("decay", decay, low=0.0, high=1.0)
    for p_target, p_online in zip(target.parameters(), online.parameters()):
        p_target.mul_(decay).add_(p_online, alpha=1.0 - decay)
