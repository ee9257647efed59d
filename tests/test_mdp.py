"""TabularMDP / MarkovRewardProcess specifications and generators (fixpoint_rl.envs.mdp).

Oracles: hand-computed transition matrices (chain, two-state), the Bellman equation
Q = R + γ P (π Q) checked as a residual (independent of the linear solve used in the code), and
the reduction V(s) = Σ_a π(a|s) Q(s, a). Tolerances: 1e-10 on O(10) values from 20×20 linear
solves (condition number ≤ 1/(1−γ) = 10).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.envs import MarkovRewardProcess, TabularMDP, chain_mdp, garnet, two_state_mdp
from fixpoint_rl.envs.mdp import (
    check_policy,
    epsilon_greedy_policy,
    greedy_policy,
    random_policy,
    uniform_policy,
)

seeds = st.integers(0, 2**32 - 1)


@given(st.integers(1, 8), st.integers(1, 4), st.data(), seeds)
def test_garnet_is_valid_and_reproducible(S, A, data, seed):
    b = data.draw(st.integers(1, S))
    mdp = garnet(S, A, b, seed)
    np.testing.assert_allclose(mdp.P.sum(-1), 1.0, atol=1e-12)
    assert np.all((mdp.P > 0).sum(-1) == b)
    again = garnet(S, A, b, seed)
    np.testing.assert_array_equal(mdp.P, again.P)
    np.testing.assert_array_equal(mdp.reward, again.reward)
    assert mdp.reward_kind == "state_action"


@given(st.integers(1, 6), st.integers(1, 3), seeds, st.sampled_from(["state_action", "transition"]))
def test_reward_outcomes_and_expected_reward(S, A, seed, kind):
    mdp = garnet(S, A, S, seed, reward_kind=kind)
    values, joint = mdp.reward_outcomes()
    np.testing.assert_allclose(joint.sum(axis=(2, 3)), 1.0, atol=1e-12)
    np.testing.assert_allclose((values * joint).sum(axis=(2, 3)), mdp.expected_reward, atol=1e-12)


def test_reward_distribution_representation():
    P = np.array([[[1.0]]])
    mdp = TabularMDP(P=P, reward=[[[0.0, 2.0]]], reward_probs=[[[0.25, 0.75]]], gamma=0.5)
    assert mdp.reward_kind == "distribution"
    np.testing.assert_allclose(mdp.expected_reward, [[1.5]])
    values, joint = mdp.reward_outcomes()
    np.testing.assert_allclose(joint[0, 0, 0], [0.25, 0.75])
    with pytest.raises(ValueError, match="deterministic"):
        mdp.state_action_process([[1.0]])


@given(st.integers(1, 6), st.integers(1, 3), seeds, st.sampled_from(["state_action", "transition"]))
def test_state_action_process_values_solve_the_bellman_equation(S, A, seed, kind):
    mdp = garnet(S, A, max(1, S // 2), seed, reward_kind=kind, gamma=0.8)
    pi = random_policy(mdp, seed)
    mrp = mdp.state_action_process(pi)
    q = mrp.values().reshape(S, A)
    residual = mdp.expected_reward + mdp.gamma * np.einsum("sat,tb,tb->sa", mdp.P, pi, q) - q
    assert np.max(np.abs(residual)) < 1e-10
    np.testing.assert_allclose(mrp.initial, (mdp.initial[:, None] * pi).reshape(-1), atol=1e-15)


@given(st.integers(1, 6), st.integers(1, 3), seeds)
def test_state_mrp_for_deterministic_policy(S, A, seed):
    mdp = garnet(S, A, S, seed, gamma=0.7)
    pi = greedy_policy(np.random.default_rng(seed).random((S, A)))
    v = mdp.markov_reward_process(pi).values()
    q = mdp.state_action_process(pi).values().reshape(S, A)
    np.testing.assert_allclose(v, (pi * q).sum(1), atol=1e-10)


def test_state_mrp_rejects_action_dependent_rewards():
    mdp = two_state_mdp()
    mdp2 = TabularMDP(P=mdp.P, reward=[[0.0, 1.0], [0.0, 0.0]], gamma=0.9)
    with pytest.raises(ValueError, match="state_action_process"):
        mdp2.markov_reward_process(uniform_policy(mdp2))
    # rewards per state are action independent: the state MRP is exact even for stochastic π
    mrp = mdp.markov_reward_process(uniform_policy(mdp))
    np.testing.assert_allclose(mrp.P, [[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(mrp.expected_reward, [1.0, 0.0])


def test_chain_and_two_state_specifications():
    chain = chain_mdp(4, slip=0.25, gamma=0.5)
    np.testing.assert_allclose(chain.P[0, 0], [0.75, 0.25, 0, 0])
    np.testing.assert_allclose(chain.P[1, 1], [0.25, 0, 0.75, 0])
    np.testing.assert_allclose(chain.P[3, 1], [0, 0, 0.25, 0.75])
    np.testing.assert_allclose(chain.expected_reward[:, 0], [0, 0, 0, 1])
    np.testing.assert_allclose(chain.initial, [1, 0, 0, 0])
    two = two_state_mdp(stay=0.8)
    np.testing.assert_allclose(two.P[0, 0], [0.8, 0.2])
    np.testing.assert_allclose(two.P[1, 1], [0.8, 0.2])
    assert two.return_range() == (0.0, pytest.approx(10.0))


def test_specs_are_frozen_and_read_only():
    mdp = two_state_mdp()
    with pytest.raises(Exception):
        mdp.gamma = 0.5
    with pytest.raises(ValueError):
        mdp.P[0, 0, 0] = 0.3
    mrp = mdp.markov_reward_process(greedy_policy(np.eye(2)))
    with pytest.raises(ValueError):
        mrp.reward[0, 0] = 3.0


def test_policy_helpers():
    mdp = garnet(3, 2, 2, 0)
    np.testing.assert_allclose(uniform_policy(mdp), 0.5)
    pi = greedy_policy([[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(pi, [[0, 1], [1, 0], [1, 0]])
    np.testing.assert_allclose(epsilon_greedy_policy(pi, 0.2), 0.8 * pi + 0.1)
    np.testing.assert_allclose(check_policy(mdp, pi), pi)


GOOD_P = np.full((2, 2, 2), 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(P=np.full((2, 2, 2), 0.6), reward=np.zeros((2, 2)), gamma=0.9),  # rows sum to 1.2
        dict(P=np.array([[[1.5, -0.5]] * 2] * 2), reward=np.zeros((2, 2)), gamma=0.9),
        dict(P=np.full((2, 2, 3), 1 / 3), reward=np.zeros((2, 2)), gamma=0.9),  # not [S, A, S]
        dict(P=GOOD_P, reward=np.zeros((2, 3)), gamma=0.9),
        dict(P=GOOD_P, reward=np.full((2, 2), np.nan), gamma=0.9),
        dict(P=GOOD_P, reward=np.zeros((2, 2)), gamma=1.0),
        dict(P=GOOD_P, reward=np.zeros((2, 2)), gamma=-0.1),
        dict(P=GOOD_P, reward=np.zeros((2, 2)), gamma=0.9, initial=[0.7, 0.7]),
        dict(P=GOOD_P, reward=np.zeros((2, 2, 2)), gamma=0.9, reward_probs=np.full((2, 2, 2), 0.7)),
        dict(P=GOOD_P, reward=np.zeros((2, 2)), gamma=0.9, reward_probs=np.full((2, 2, 1), 1.0)),
    ],
)
def test_invalid_mdp_raises(kwargs):
    with pytest.raises(ValueError):
        TabularMDP(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(P=[[0.5, 0.6], [0.5, 0.5]], reward=np.zeros((2, 2)), gamma=0.5),
        dict(P=[[0.5, 0.5], [0.5, 0.5]], reward=np.zeros((2, 3)), gamma=0.5),
        dict(P=[[0.5, 0.5], [0.5, 0.5]], reward=np.zeros((2, 2)), gamma=1.5),
        dict(P=np.full((2, 3), 1 / 3), reward=np.zeros((2, 3)), gamma=0.5),
    ],
)
def test_invalid_mrp_raises(kwargs):
    with pytest.raises(ValueError):
        MarkovRewardProcess(**kwargs)


@given(st.lists(st.floats(-1, 2), min_size=2, max_size=2))
def test_invalid_policy_raises(row):
    mdp = garnet(2, 2, 1, 0)
    pi = np.array([row, [0.5, 0.5]])
    if np.all(pi >= 0) and abs(sum(row) - 1) < 1e-9:
        pi[0, 0] += 0.1
    with pytest.raises(ValueError, match="pi"):
        check_policy(mdp, pi)
    with pytest.raises(ValueError):
        check_policy(mdp, np.full((3, 2), 0.5))


@pytest.mark.parametrize(
    "call",
    [
        lambda: garnet(0, 2, 1, 0),
        lambda: garnet(3, 2, 4, 0),
        lambda: garnet(3, 2, 1, -1),
        lambda: garnet(3, 2, 1, 0, reward_kind="bogus"),
        lambda: chain_mdp(1),
        lambda: chain_mdp(3, slip=1.5),
        lambda: two_state_mdp(stay=-0.1),
        lambda: epsilon_greedy_policy(np.eye(2), 1.5),
    ],
)
def test_invalid_generator_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
