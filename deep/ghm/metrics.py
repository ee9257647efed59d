"""Evaluation metrics of geometric horizon models (TD-Flow experiments and appendix).

* :func:`emd` — earth mover's distance between two equal-size samples, solved exactly as an
  assignment problem (``scipy.optimize.linear_sum_assignment``: for uniform weights on n points
  each, an optimal transport plan is a permutation, Birkhoff–von Neumann). The ground cost is an
  argument: ``"sqeuclidean"`` (default, the formula of the paper's appendix and POT's ``ot.dist``
  default) or ``"euclidean"`` (what the main text calls Wasserstein-1), or a callable. Record the
  choice with the number (:data:`DEFAULT_GROUND_COST`).
* :func:`nll_per_dim` — −log p_1(x)/d by the instantaneous change of variables (``ode``).
* :func:`value_mse`, :func:`mean_error` — against exact values / the closed-form mean.
* :func:`sample_model` — draw X ~ m̃(·|cond) by integrating the model's ODE from N(0, I).

scipy's Hungarian solver is used instead of POT: it is exact, already a dependency, and fast for
the few hundred points per source used here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fixpoint_rl.envs.checks import as_float_array, check_choice, check_int

from .ode import integrate, log_likelihood

__all__ = [
    "DEFAULT_GROUND_COST",
    "GROUND_COSTS",
    "emd",
    "mean_error",
    "nll_per_dim",
    "sample_model",
    "value_mse",
]

GROUND_COSTS = ("sqeuclidean", "euclidean")
DEFAULT_GROUND_COST = "sqeuclidean"


def _cost_matrix(x: np.ndarray, y: np.ndarray, cost: str | Callable) -> np.ndarray:
    if callable(cost):
        matrix = as_float_array("cost(x, y)", cost(x, y), shape=(x.shape[0], y.shape[0]))
        return matrix
    check_choice("cost", cost, GROUND_COSTS)
    squared = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    return squared if cost == "sqeuclidean" else np.sqrt(squared)


def emd(x: Any, y: Any, cost: str | Callable = DEFAULT_GROUND_COST) -> float:
    """Exact EMD between the empirical measures of x [n, d] and y [n, d] (uniform weights).

    Returns min over permutations σ of (1/n) Σ_i c(x_i, y_σ(i)).
    """
    x = as_float_array("x", x, ndim=2)
    y = as_float_array("y", y, ndim=2)
    if x.shape != y.shape or x.shape[0] < 1:
        raise ValueError(f"x and y must have the same shape (n ≥ 1, d), got {x.shape} and {y.shape}")
    from scipy.optimize import linear_sum_assignment

    matrix = _cost_matrix(x, y, cost)
    rows, cols = linear_sum_assignment(matrix)
    return float(matrix[rows, cols].mean())


def mean_error(samples: Any, exact_mean: Any) -> np.ndarray:
    """‖mean(samples) − exact_mean‖_2 per source: samples [B, n, d], exact_mean [B, d] → [B]."""
    samples = as_float_array("samples", samples, ndim=3)
    exact_mean = as_float_array("exact_mean", exact_mean, shape=(samples.shape[0], samples.shape[2]))
    return np.linalg.norm(samples.mean(axis=1) - exact_mean, axis=1)


def value_mse(estimates: Any, exact: Any) -> float:
    """mean_i (V̂_i − V_i)²."""
    estimates = as_float_array("estimates", estimates, ndim=1)
    exact = as_float_array("exact", exact, shape=estimates.shape)
    return float(np.mean((estimates - exact) ** 2))


def _conditional(model: Callable, cond: torch.Tensor) -> Callable:
    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x, t, cond)

    return field


@torch.no_grad()
def sample_model(
    model: Callable,
    cond: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    steps: int = 10,
    method: str = "midpoint",
) -> torch.Tensor:
    """One sample X ~ m̃(·|cond) per row: integrate v(·, ·, cond) from N(0, I) over [0, 1]. [B, d]."""
    dim = getattr(model, "dim", None)
    if dim is None:
        raise ValueError("model must expose its sample dimension as .dim")
    x0 = torch.randn((cond.shape[0], dim), generator=generator, dtype=cond.dtype, device=cond.device)
    return integrate(_conditional(model, cond), x0, 1.0, steps=steps, method=method)


def nll_per_dim(
    model: Callable,
    x: torch.Tensor,
    cond: torch.Tensor,
    *,
    steps: int = 10,
    method: str = "midpoint",
    divergence_method: str = "auto",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """−log m̃(x | cond)/d for each row (the paper's normalised NLL): [B]."""
    if x.ndim != 2 or cond.ndim != 2 or x.shape[0] != cond.shape[0]:
        raise ValueError(f"x [B, d] and cond [B, c] must share B, got {tuple(x.shape)}, {tuple(cond.shape)}")
    steps = check_int("steps", steps, low=1)
    log_p = log_likelihood(_conditional(model, cond), x, steps=steps, method=method,
                           divergence_method=divergence_method, generator=generator)
    return -log_p / x.shape[1]
