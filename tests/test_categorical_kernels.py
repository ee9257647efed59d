"""Parity of the categorical closed forms across backends.

* Numba scatter-form twin (``tabular/_kernels/categorical.py``, also inlined in
  ``_kernels/qlambda._project_rows``) against the core hat-matrix form on random *signed* masses,
  including atoms exactly on the grid, at both ends and out of range. Both compute the same real
  numbers with different float64 rounding: 1e-12 on O(1) masses.
* torch (float64) against numpy for every core categorical function: the same array-API code on
  two namespaces must agree to rounding (1e-12).
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.tabular import (
    CategoricalSupport,
    categorical_projection,
    cramer_distance,
    distribution_mean,
    from_cdf,
    pushforward,
    to_cdf,
    wasserstein1,
)
from fixpoint_rl.tabular._kernels.categorical import _project_batch, _pushforward_matrix
from fixpoint_rl.tabular._kernels.qlambda import _project_rows
from fixpoint_rl.tabular.core.categorical import projection_matrix

supports = st.builds(
    CategoricalSupport, v_min=st.floats(-5, 0), v_max=st.floats(0.5, 10), m=st.integers(2, 40)
)
seeds = st.integers(0, 2**32 - 1)


def _atoms_with_edge_cases(rng, support, shape):
    y = rng.uniform(support.v_min - 3, support.v_max + 3, size=shape)
    flat = y.reshape(-1)
    k = flat.size // 3
    flat[:k] = support.atoms[rng.integers(0, support.m, size=k)]  # exactly on the grid
    flat[k] = support.v_min
    flat[k + 1] = support.v_max
    return y


@given(supports, seeds)
def test_scatter_kernel_matches_hat_matrix(support, seed):
    rng = np.random.default_rng(seed)
    y = _atoms_with_edge_cases(rng, support, (5, 9))
    w = rng.normal(size=(5, 9))
    kernel = _project_batch(y, w, support.v_min, support.v_max, support.delta, support.m)
    np.testing.assert_allclose(kernel, categorical_projection(y, w, support), atol=1e-12)


@given(supports, seeds, st.floats(-3, 3), st.floats(0, 0.999))
def test_pushforward_kernels_match_core(support, seed, reward, gamma):
    rng = np.random.default_rng(seed)
    K = _pushforward_matrix(reward, gamma, support.v_min, support.v_max, support.delta, support.m)
    H = projection_matrix(pushforward(support.atoms, reward, gamma), support)
    np.testing.assert_allclose(K, H, atol=1e-12)
    mixed = rng.normal(size=(4, support.m))
    values = np.full((4, 1), reward)
    rows = _project_rows(mixed, values, np.ones((4, 1)), gamma, support.v_min, support.v_max, support.delta)
    core = categorical_projection(pushforward(support.atoms, values[:, 0], gamma), mixed, support)
    np.testing.assert_allclose(rows, core, atol=1e-12)


@given(supports, seeds)
def test_torch_float64_parity(support, seed):
    rng = np.random.default_rng(seed)
    y = _atoms_with_edge_cases(rng, support, (3, 7))
    w = rng.normal(size=(3, 7))
    p, q = rng.normal(size=(2, 3, support.m))
    q = q - (q.sum(-1, keepdims=True) - p.sum(-1, keepdims=True)) / support.m
    T = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    pairs = [
        (categorical_projection(y, w, support), categorical_projection(T(y), T(w), support)),
        (to_cdf(p), to_cdf(T(p))),
        (from_cdf(p), from_cdf(T(p))),
        (distribution_mean(p, support), distribution_mean(T(p), support)),
        (cramer_distance(p, q, support), cramer_distance(T(p), T(q), support)),
        (wasserstein1(p, q, support), wasserstein1(T(p), T(q), support)),
        (
            cramer_distance(w, w, atoms_p=y, atoms_q=y[:, ::-1].copy()),
            cramer_distance(T(w), T(w), atoms_p=T(y), atoms_q=T(y[:, ::-1].copy())),
        ),
        (
            wasserstein1(w, w[:, ::-1].copy(), atoms_p=y, atoms_q=y),
            wasserstein1(T(w), T(w[:, ::-1].copy()), atoms_p=T(y), atoms_q=T(y)),
        ),
        (pushforward(support.atoms, w[:, 0], 0.7), pushforward(T(support.atoms), T(w[:, 0]), 0.7)),
    ]
    for numpy_value, torch_value in pairs:
        assert isinstance(torch_value, torch.Tensor)
        assert torch_value.dtype == torch.float64
        np.testing.assert_allclose(torch_value.numpy(), numpy_value, atol=1e-12)


def test_torch_projection_is_differentiable_in_mass():
    support = CategoricalSupport(0.0, 1.0, 5)
    mass = torch.tensor([0.3, -0.2, 0.9], dtype=torch.float64, requires_grad=True)
    atoms = torch.tensor([0.1, 0.55, 1.4], dtype=torch.float64)
    out = categorical_projection(atoms, mass, support)
    out.sum().backward()
    # d(total mass)/d mass_j = 1 for every source atom (mass preservation)
    np.testing.assert_allclose(mass.grad.numpy(), np.ones(3), atol=1e-12)
