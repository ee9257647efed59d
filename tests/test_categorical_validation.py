"""Input validation of the categorical core and the trace coefficients (audit follow-up).

The core is backend-neutral, so validation is checked on numpy and torch inputs alike: NaN never
propagates silently, shape mismatches name the argument, γ outside [0, 1] is rejected.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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
from fixpoint_rl.tabular.core.categorical import projection_matrix
from fixpoint_rl.tabular.qlambda import trace_coefficients

SUPPORT = CategoricalSupport(0.0, 1.0, 5)


@pytest.mark.parametrize("to_backend", [np.asarray, torch.as_tensor], ids=["numpy", "torch"])
def test_nan_inputs_raise_value_errors_naming_the_argument(to_backend):
    good = to_backend(np.array([0.2, 0.8]))
    bad = to_backend(np.array([np.nan, 0.8]))
    grid_mass = to_backend(np.full(5, 0.2))
    grid_bad = to_backend(np.array([np.nan, 0.2, 0.2, 0.2, 0.4]))
    with pytest.raises(ValueError, match="mass must be finite"):
        categorical_projection(good, bad, SUPPORT)
    with pytest.raises(ValueError, match="atoms_src must be finite"):
        categorical_projection(bad, good, SUPPORT)
    with pytest.raises(ValueError, match="atoms_src must be finite"):
        projection_matrix(bad, SUPPORT)
    with pytest.raises(ValueError, match="mass_p must be finite"):
        cramer_distance(grid_bad, grid_mass, SUPPORT)
    with pytest.raises(ValueError, match="mass_q must be finite"):
        wasserstein1(grid_mass, grid_bad, SUPPORT)
    with pytest.raises(ValueError, match="mass must be finite"):
        to_cdf(bad)
    with pytest.raises(ValueError, match="cdf must be finite"):
        from_cdf(bad)
    with pytest.raises(ValueError, match="mass must have last dimension 5"):
        distribution_mean(good, SUPPORT)


def test_shapes_gamma_and_reward_are_checked():
    with pytest.raises(ValueError, match="atoms_src and mass must have the same shape"):
        categorical_projection(np.array([0.1, 0.2]), np.array([1.0]), SUPPORT)
    with pytest.raises(ValueError, match="mass_p must have last dimension 5"):
        cramer_distance(np.ones(4) / 4, np.ones(5) / 5, SUPPORT)
    with pytest.raises(ValueError, match="gamma must lie in"):
        pushforward(SUPPORT.atoms, 1.0, 1.5)
    with pytest.raises(ValueError, match="reward must be finite"):
        pushforward(SUPPORT.atoms, float("nan"), 0.9)
    with pytest.raises(ValueError, match="mass must have at least 1 dimension"):
        to_cdf(np.float64(1.0))


@given(
    hnp.arrays(np.float64, (3, 2), elements=st.floats(0.01, 1.0)),
    hnp.arrays(np.float64, (3, 2), elements=st.floats(0.01, 1.0)),
    st.floats(0.0, 1.0),
)
def test_trace_coefficients_match_the_table(pi_raw, mu_raw, lam):
    # Munos et al. 2016 (arXiv 1606.02647), Table 1: c = λ (Q(λ)), λ·min(1, π/μ) (Retrace), λ·π (tree-backup), written
    # here element by element with Python floats, independently of the vectorised implementation.
    pi = pi_raw / pi_raw.sum(1, keepdims=True)
    mu = mu_raw / mu_raw.sum(1, keepdims=True)
    expected = {
        "q_lambda": [[lam for a in range(2)] for s in range(3)],
        "retrace": [[lam * min(1.0, pi[s, a] / mu[s, a]) for a in range(2)] for s in range(3)],
        "tree_backup": [[lam * pi[s, a] for a in range(2)] for s in range(3)],
    }
    for trace, table in expected.items():
        # one multiplication and one division per entry: agreement to 1e-15 relative is rounding
        np.testing.assert_allclose(trace_coefficients(pi, mu, lam, trace), table, rtol=1e-15)


def test_trace_coefficients_reject_non_policies():
    with pytest.raises(ValueError, match="pi must"):
        trace_coefficients(np.full((3, 2), 5.0), np.full((3, 2), 0.5), 0.5, "retrace")
    with pytest.raises(ValueError, match="mu must"):
        trace_coefficients(np.full((3, 2), 0.5), np.full((3, 2), -1.0), 0.5, "retrace")
