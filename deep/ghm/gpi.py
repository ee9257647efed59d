"""Policy evaluation and generalised policy improvement with geometric horizon models.

Value identity (Farebrother et al. 2025, arXiv 2503.09817, value identity): Q^π(s, a) =
(1−γ)^{-1} E_{X ~ m^π(·|s,a)}[r(X)], so one model of m^π evaluates π for any reward. GPI
(Barreto et al. 2017; TD-Flow's planning experiments): with models of a finite set of policies {π_1, …, π_P},
act with π_GPI(s) = π_{i*(s)}(s), i*(s) ∈ argmax_i Q^{π_i}(s, π_i(s)); then
Q^{π_GPI} ≥ max_i Q^{π_i} everywhere (GPI theorem).

Shapes: B sources, n samples per source, d dimension, P policies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fixpoint_rl.envs.checks import as_float_array, check_int, check_scalar

__all__ = ["gpi_select", "model_sampler", "successor_values"]


def successor_values(
    sampler: Callable[[int], np.ndarray],
    reward: Callable[[np.ndarray], np.ndarray],
    gamma: float,
    n_samples: int,
) -> np.ndarray:
    """Monte-Carlo value (1−γ)^{-1} mean_j r(X_j) from a successor-measure sampler.

    Args:
      sampler: n ↦ samples [B, n, d] of m(·|s_b, a_b) (a trained GHM or an exact sampler).
      reward: r applied to [B, n, d] → [B, n].
      gamma: discount γ ∈ [0, 1).
      n_samples: samples per source.

    Returns:
      [B] value estimates.
    """
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    n_samples = check_int("n_samples", n_samples, low=1)
    samples = as_float_array("samples", sampler(n_samples), ndim=3)
    rewards = as_float_array("rewards", reward(samples), shape=samples.shape[:2])
    return rewards.mean(axis=1) / (1.0 - gamma)


def gpi_select(values: Any) -> np.ndarray:
    """i*(s) = argmax_i values[i, s] (first maximiser on ties): values [P, B] → [B] int64."""
    values = as_float_array("values", values, ndim=2)
    if values.shape[0] < 1:
        raise ValueError(f"values must hold at least one policy, got shape {values.shape}")
    return np.argmax(values, axis=0).astype(np.int64)


def model_sampler(
    model: Callable,
    cond: np.ndarray,
    *,
    seed: int,
    steps: int = 10,
    method: str = "midpoint",
) -> Callable[[int], np.ndarray]:
    """A sampler n ↦ [B, n, d] (numpy, float64) of a trained GHM at the conditioning rows cond
    [B, c], for :func:`successor_values` (the ODE from N(0, I) integrated over [0, 1])."""
    import torch

    from .metrics import sample_model

    cond = as_float_array("cond", cond, ndim=2)
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    dtype = parameter.dtype if parameter is not None else torch.float64
    device = parameter.device if parameter is not None else torch.device("cpu")

    def sampler(n: int) -> np.ndarray:
        n = check_int("n", n, low=1)
        generator = torch.Generator(device=device).manual_seed(check_int("seed", seed, low=0))
        rows = torch.as_tensor(np.repeat(cond, n, axis=0), dtype=dtype, device=device)
        x = sample_model(model, rows, generator=generator, steps=steps, method=method)
        return x.double().cpu().numpy().reshape(cond.shape[0], n, -1)

    return sampler
