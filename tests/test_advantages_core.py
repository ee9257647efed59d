"""Batched group advantages in tabular/core (numpy and torch): row-by-row equality with the tabular
one-group LOO advantages (hand vectors, ties, hypothesis groups), numpy/torch parity in float64,
unbiasedness of the n > k pass@k estimator and of the pass@k / maj@k value estimates by enumerating
every n-tuple of responses on a softmax bandit, and GRPO / RLOO against their written-out formulas
(the peer check against TRL's trainer code lives in tests/test_llm_rl_trl.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.tabular import leave_one_out_advantages as tabular_loo
from fixpoint_rl.tabular import objective_gradient, objective_value
from fixpoint_rl.tabular.core.advantages import (
    group_normalized_advantages,
    leave_one_out_advantages,
    majority_at_k_estimate,
    pass_at_k_estimate,
    rloo_advantages,
    unbiased_pass_at_k_advantages,
)
from fixpoint_rl.tabular.core.mirror import softmax

OBJECTIVES = ("mean", "pass_at_k", "majority_vote")


def _both(function, *arrays, **kwargs):
    """Run on numpy and on torch float64; return both as numpy."""
    as_numpy = function(*arrays, **kwargs)
    as_torch = function(*(torch.as_tensor(a) if isinstance(a, np.ndarray) else a for a in arrays), **kwargs)
    return np.asarray(as_numpy), as_torch.numpy()


def test_paper_vectors_and_ties_batched():
    rewards = np.array([[0.1, 0.9, 0.5, 0.3], [0.2, 0.9, 0.5, 0.9]])
    for got in _both(leave_one_out_advantages, rewards, "pass_at_k"):
        # exact: 0.9 − 0.5 is one subtraction in both forms; ties at the max give exact zeros
        np.testing.assert_array_equal(got, [[0, 0.9 - 0.5, 0, 0], [0, 0, 0, 0]])
    # majority vote (0, 0, 1) with R = (1, 0): removing a 0-vote gives a 1–1 tie worth 0.5
    votes = np.array([[0, 0, 1], [0, 1, 2]])
    rewards = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.3]])
    for got in _both(leave_one_out_advantages, rewards, "majority_vote", votes):
        # three-way tie (1.3/3) minus a two-way tie of the remaining answers
        np.testing.assert_allclose(
            got, [[0.5, 0.5, 0.0], [1.3 / 3 - 0.15, 1.3 / 3 - 0.65, 1.3 / 3 - 0.5]], atol=1e-15
        )


groups = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.lists(st.lists(st.integers(0, 3), min_size=n, max_size=n), min_size=1, max_size=5),
        st.lists(st.floats(-2, 2), min_size=4, max_size=4),
    )
)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("centered", [False, True])
@given(data=groups)
def test_batched_equals_tabular_row_by_row(objective, centered, data):
    labels, answer_reward = data
    answers = np.array(labels, dtype=np.int64)
    # small integer labels with 4 reward levels: ties at the max and in the vote are frequent
    rewards = np.array(answer_reward)[answers]
    if objective != "majority_vote":
        rewards = answers / 2.0
    votes = answers if objective == "majority_vote" else None
    expected = np.stack(
        [tabular_loo(rewards[b], objective, None if votes is None else votes[b], centered=centered) for b in range(len(rewards))]
    )
    for got in _both(leave_one_out_advantages, rewards, objective, votes, centered=centered):
        # same arithmetic up to summation order: a few ulps of values of size ≤ 4
        np.testing.assert_allclose(got, expected, atol=1e-12)


@given(st.lists(st.floats(-3, 3), min_size=2, max_size=8))
def test_mean_is_rloo_over_n_and_rloo_is_the_written_formula(values):
    rewards = np.array([values])
    n = rewards.shape[1]
    expected = np.array([[v - (sum(values) - v) / (n - 1) for v in values]])
    for got in _both(rloo_advantages, rewards):
        np.testing.assert_allclose(got, expected, atol=1e-12)
    for got in _both(leave_one_out_advantages, rewards, "mean"):
        np.testing.assert_allclose(got, expected / n, atol=1e-12)


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
@given(st.lists(st.lists(st.floats(-3, 3), min_size=4, max_size=4), min_size=1, max_size=4))
def test_grpo_matches_written_formula(scale_rewards, rows):
    rewards = np.array(rows)
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    if scale_rewards == "group":
        expected = centred / (rewards.std(axis=1, ddof=1, keepdims=True) + 1e-4)
    elif scale_rewards == "batch":
        expected = centred / ((rewards.std(ddof=1) if rewards.size > 1 else 0.0) + 1e-4)
    else:
        expected = centred
    for got in _both(group_normalized_advantages, rewards, scale_rewards=scale_rewards):
        # division by std + 1e-4 amplifies round-off by at most 1e4
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_rloo_normalize_matches_trl_formula():
    rewards = np.array([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.0, 1.0]])
    raw = rloo_advantages(rewards)
    expected = (raw - raw.mean()) / (raw.std(ddof=1) + 1e-4)
    for got in _both(rloo_advantages, rewards, normalize=True):
        np.testing.assert_allclose(got, expected, atol=1e-13)


def _tuples(num_responses, n):
    return np.array(list(itertools.product(range(num_responses), repeat=n)), dtype=np.int64)


@pytest.mark.parametrize("n,k", [(2, 1), (3, 2), (4, 2), (4, 3), (3, 3), (5, 2)])
def test_unbiased_pass_at_k_estimator_by_enumeration(n, k):
    """E over all K^n tuples of Σ_i A_i (e_{y_i} − π) equals the exact ∇ E[max of k] (closed form)."""
    rng = np.random.default_rng(n * 10 + k)
    logits = rng.normal(size=3)
    reward = np.array([0.0, 0.35, 1.0])[rng.permutation(3)]
    probs = softmax(logits)
    tuples = _tuples(3, n)
    weights = np.prod(probs[tuples], axis=1)
    for backend in (np, torch):
        advantages = np.asarray(unbiased_pass_at_k_advantages(backend.asarray(reward[tuples]), k))
        score = np.eye(3)[tuples] - probs  # [T, n, K]
        expected_gradient = np.einsum("t,ti,tik->k", weights, advantages, score)
        # enumeration sums ≤ 243 products of size ≤ 1: float64 round-off ~1e-15
        np.testing.assert_allclose(
            expected_gradient, objective_gradient(logits, reward, "pass_at_k", k), atol=1e-13
        )
        estimate = np.asarray(pass_at_k_estimate(backend.asarray(reward[tuples]), k))
        np.testing.assert_allclose(weights @ estimate, objective_value(probs, reward, "pass_at_k", k), atol=1e-13)
    if n == k:
        np.testing.assert_allclose(
            unbiased_pass_at_k_advantages(reward[tuples], k), leave_one_out_advantages(reward[tuples], "pass_at_k"), atol=1e-15
        )


def test_binary_pass_at_k_estimate_is_chen_formula():
    n, k = 8, 3
    for correct in range(n + 1):
        rewards = np.zeros((1, n))
        rewards[0, :correct] = 1.0
        expected = 1.0 - math.comb(n - correct, k) / math.comb(n, k)
        np.testing.assert_allclose(pass_at_k_estimate(rewards, k), [expected], atol=1e-14)


@pytest.mark.parametrize("n,k", [(3, 2), (4, 3), (4, 4)])
def test_majority_at_k_estimate_is_unbiased_by_enumeration(n, k):
    rng = np.random.default_rng(7)
    logits = rng.normal(size=4)
    response_answer = np.array([0, 1, 1, 2])
    answer_reward = np.array([1.0, 0.0, 0.4])
    reward = answer_reward[response_answer]
    probs = softmax(logits)
    tuples = _tuples(4, n)
    weights = np.prod(probs[tuples], axis=1)
    for backend in (np, torch):
        estimate = np.asarray(
            majority_at_k_estimate(backend.asarray(reward[tuples]), backend.asarray(response_answer[tuples]), k)
        )
        exact = objective_value(probs, reward, "majority_vote", k, response_answer)
        np.testing.assert_allclose(weights @ estimate, exact, atol=1e-13)


def test_n_equal_one_and_gradients_flow_through_torch():
    assert leave_one_out_advantages(np.array([[0.7]]), "pass_at_k")[0, 0] == 0.7
    assert leave_one_out_advantages(np.array([[0.7]]), "mean")[0, 0] == 0.7
    np.testing.assert_array_equal(group_normalized_advantages(np.array([[0.7]])), [[0.0]])
    rewards = torch.tensor([[0.1, 0.9, 0.5]], dtype=torch.float64, requires_grad=True)
    group_normalized_advantages(rewards).sum().backward()
    assert torch.isfinite(rewards.grad).all()


def test_invalid_inputs_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="rewards"):
        leave_one_out_advantages(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="rewards"):
        leave_one_out_advantages(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="rewards"):
        leave_one_out_advantages(np.array([[1, 0]]))  # integer rewards
    with pytest.raises(ValueError, match="objective"):
        leave_one_out_advantages(np.zeros((1, 2)), "median")
    with pytest.raises(ValueError, match="answers"):
        leave_one_out_advantages(np.zeros((1, 2)), "majority_vote")
    with pytest.raises(ValueError, match="answers"):
        leave_one_out_advantages(np.zeros((1, 2)), "majority_vote", np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="rewards must be equal"):
        leave_one_out_advantages(np.array([[1.0, 0.0]]), "majority_vote", np.array([[0, 0]]))
    with pytest.raises(ValueError, match="k must"):
        unbiased_pass_at_k_advantages(np.zeros((1, 3)), 4)
    with pytest.raises(ValueError, match="k must"):
        pass_at_k_estimate(np.zeros((1, 3)), 0)
    with pytest.raises(ValueError, match="scale_rewards"):
        group_normalized_advantages(np.zeros((1, 3)), "std")
    with pytest.raises(ValueError, match="epsilon"):
        group_normalized_advantages(np.zeros((1, 3)), epsilon=float("nan"))
    with pytest.raises(ValueError, match="rewards"):
        rloo_advantages(np.zeros((2, 1)))
