"""The DCFP study environments and their supports (envs/dcfp_envs.py), against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.envs.dcfp_envs import (
    DCFP_ENVIRONMENTS,
    chain,
    environment_support,
    global_support,
    return_bounds,
    two_state,
)
from fixpoint_rl.tabular import categorical_fixed_point, monte_carlo_return_distribution


@pytest.mark.parametrize("name", sorted(DCFP_ENVIRONMENTS))
def test_specifications(name):
    mrp = DCFP_ENVIRONMENTS[name]()
    assert mrp.gamma == 0.9
    np.testing.assert_allclose(mrp.P.sum(axis=1), 1.0, atol=1e-12)
    assert mrp.P.min() >= 0
    # rewards depend on the source state only and lie in [0, 1] (the setting of Rowland et al. 2024, arXiv 2402.07598)
    assert np.all(mrp.reward == mrp.reward[:, :1]) and mrp.reward.min() >= 0 and mrp.reward.max() <= 1
    atoms = global_support(mrp, 11)
    assert atoms[0] == 0.0 and np.isclose(atoms[-1], mrp.reward.max() / (1 - mrp.gamma))


def test_two_state_values_by_hand():
    # P = ½ everywhere: both states share the same future, so V0 − V1 = r0 − r1 = 1 and the
    # average (V0 + V1)/2 = ½/(1−γ) = 5; hence V = (5.5, 4.5).
    mrp = two_state()
    np.testing.assert_allclose(mrp.reward[:, 0], [1.0, 0.0])
    atoms = global_support(mrp, 101)
    np.testing.assert_allclose(categorical_fixed_point(mrp, atoms) @ atoms, [5.5, 4.5], atol=1e-10)


@given(st.integers(2, 8), st.floats(0.0, 0.98))
def test_deterministic_chain_return_is_a_dirac_at_the_hand_computed_value(S, gamma):
    # forward = 1: from x the reward 1 starts after S−1−x steps, so G(x) = γ^{S−1−x}/(1−γ) exactly.
    mrp = chain(S, gamma=gamma, forward=1.0)
    lower, upper = return_bounds(mrp)
    exact = gamma ** (S - 1 - np.arange(S)) / (1 - gamma)
    np.testing.assert_allclose(lower, exact, atol=1e-9)  # value-iteration tolerance 1e-12/(1−γ)
    np.testing.assert_allclose(upper, exact, atol=1e-9)


@pytest.mark.parametrize("name", sorted(DCFP_ENVIRONMENTS))
def test_environment_support_brackets_sampled_returns_and_sits_inside_global(name):
    mrp = DCFP_ENVIRONMENTS[name]()
    env = environment_support(mrp, 7)
    glob = global_support(mrp, 7)
    returns = monte_carlo_return_distribution(mrp, 300, seed=1)
    assert env[0] <= returns.min() + 1e-6 and returns.max() <= env[-1] + 1e-6  # 1e-6 truncation
    assert glob[0] <= env[0] + 1e-9 and env[-1] <= glob[-1] + 1e-9


def test_seeded_random_environments_are_reproducible_and_invalid_inputs_raise():
    a, b = DCFP_ENVIRONMENTS["low_random"](seed=3), DCFP_ENVIRONMENTS["low_random"](seed=3)
    np.testing.assert_array_equal(a.P, b.P)
    assert not np.array_equal(a.P, DCFP_ENVIRONMENTS["low_random"](seed=4).P)
    for bad in (dict(n_states=1), dict(gamma=1.0), dict(forward=0.0)):
        with pytest.raises(ValueError):
            chain(**bad)
    with pytest.raises(ValueError, match="mrp"):
        global_support("not an mrp", 5)
    with pytest.raises(ValueError, match="m"):
        environment_support(two_state(), 1)
    with pytest.raises(ValueError, match="stay"):
        two_state(stay=1.5)
