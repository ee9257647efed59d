"""Inference-time k-sample objectives (Tang, Zheng, Synnaeve & Munos 2025, arXiv 2503.19595): leave-one-out advantages,
exact unbiasedness by enumeration of all K^k sample tuples, k = 1 → REINFORCE, mean → RLOO, and the
majority vote with its tie rule (ties broken uniformly at random: f = mean reward of tied answers)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.tabular import (
    k_sample_gradient,
    k_sample_objective,
    leave_one_out_advantages,
    objective_gradient,
    objective_value,
    train_k_sample,
)
from fixpoint_rl.tabular.core.mirror import softmax, softmax_policy_gradient


def test_pass_at_k_advantage_vectors_from_the_notes():
    np.testing.assert_allclose(leave_one_out_advantages([0.1, 0.9, 0.5, 0.3]), [0, 0.4, 0, 0], atol=1e-15)
    np.testing.assert_array_equal(leave_one_out_advantages([0.2, 0.9, 0.5, 0.9]), np.zeros(4))


@given(st.lists(st.integers(0, 1), min_size=2, max_size=8))
def test_binary_pass_at_k_signal_iff_exactly_one_correct(bits):
    advantages = leave_one_out_advantages(np.array(bits, dtype=float), "pass_at_k")
    if sum(bits) == 1:
        np.testing.assert_array_equal(advantages, np.array(bits, dtype=float))
    else:
        np.testing.assert_array_equal(advantages, np.zeros(len(bits)))


@given(st.lists(st.floats(-5, 5), min_size=2, max_size=8))
def test_pass_at_k_advantage_is_gap_to_second_best_for_unique_max(values):
    rewards = np.array(values)
    advantages = leave_one_out_advantages(rewards, "pass_at_k")
    order = np.sort(rewards)
    best = np.flatnonzero(rewards == order[-1])
    expected = np.zeros(rewards.size)
    if best.size == 1:
        expected[best[0]] = order[-1] - order[-2]
    np.testing.assert_allclose(advantages, expected, atol=1e-12)


def test_majority_vote_tie_rule():
    # two answers once each: coin flip between rewards 1 and 0 → 0.5
    assert k_sample_objective([1.0, 0.0], "majority_vote", answers=[0, 1]) == 0.5
    # clear majority of answer 0
    assert k_sample_objective([1.0, 1.0, 0.0, 0.2], "majority_vote", answers=[0, 0, 1, 2]) == 1.0
    # two-way tie 2–2 between answers 0 (reward 1) and 1 (reward 0): 0.5; answer 2 is not tied
    assert k_sample_objective([1, 0, 0, 1, 0.3], "majority_vote", answers=[0, 1, 1, 0, 2]) == 0.5
    # three-way tie: mean of (1, 0, 0.3)
    assert k_sample_objective([1, 0, 0.3], "majority_vote", answers=[0, 1, 2]) == pytest.approx(1.3 / 3)
    # the sample order does not matter (symmetric f)
    assert k_sample_objective([0, 1.0], "majority_vote", answers=[1, 0]) == 0.5


def test_majority_vote_advantages_nonzero_only_when_removal_changes_the_vote():
    # votes (0, 0, 1) with R(0)=1, R(1)=0: f = 1. Removing a 0-vote gives a 1–1 tie (0.5): A = 0.5;
    # removing the 1-vote keeps the majority: A = 0.
    np.testing.assert_allclose(
        leave_one_out_advantages([1, 1, 0], "majority_vote", answers=[0, 0, 1]), [0.5, 0.5, 0.0]
    )
    # a 3–1 majority is robust to removing any one vote
    np.testing.assert_array_equal(
        leave_one_out_advantages([1, 1, 1, 0], "majority_vote", answers=[0, 0, 0, 1]), np.zeros(4)
    )


def test_k_equal_one_is_reinforce_without_baseline():
    for objective in ("mean", "pass_at_k"):
        assert leave_one_out_advantages([0.7], objective)[0] == 0.7
    logits = np.array([0.3, -0.2, 0.5])
    reward = np.array([0.1, 1.0, 0.4])
    probs = softmax(logits)
    for y in range(3):
        expected = reward[y] * (np.eye(3)[y] - probs)
        np.testing.assert_allclose(k_sample_gradient(logits, [y], reward, "pass_at_k"), expected, atol=1e-15)


@given(st.lists(st.floats(-3, 3), min_size=2, max_size=8))
def test_mean_objective_with_leave_one_out_is_rloo(values):
    rewards = np.array(values)
    k = rewards.size
    rloo = rewards - (rewards.sum() - rewards) / (k - 1)
    np.testing.assert_allclose(leave_one_out_advantages(rewards, "mean"), rloo / k, atol=1e-12)


def _instance(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(2, 5))
    logits = rng.normal(size=size)
    answers = rng.integers(0, 3, size=size)
    answer_reward = rng.uniform(0, 1, size=3)
    answer_reward[0] = 1.0
    return logits, answer_reward[answers], answers


def _enumerate(logits, reward, objective, k, answers):
    probs = softmax(logits)
    value, gradient = 0.0, np.zeros(logits.size)
    for tuple_ in itertools.product(range(logits.size), repeat=k):
        index = np.array(tuple_)
        weight = np.prod(probs[index])
        value += weight * k_sample_objective(reward[index], objective, answers[index])
        gradient += weight * k_sample_gradient(logits, index, reward, objective, answers)
    return value, gradient


@pytest.mark.parametrize("objective", ["mean", "pass_at_k", "majority_vote"])
@pytest.mark.parametrize("k", [1, 2, 3])
@given(seed=st.integers(0, 2**31 - 1))
def test_leave_one_out_estimator_is_unbiased_by_enumeration(objective, k, seed):
    logits, reward, answers = _instance(seed)
    value, gradient = _enumerate(logits, reward, objective, k, answers)
    # exact sums over ≤ 4³ tuples vs closed forms / answer-count sums: rounding only (1e-12)
    assert objective_value(softmax(logits), reward, objective, k, answers) == pytest.approx(value, abs=1e-12)
    np.testing.assert_allclose(objective_gradient(logits, reward, objective, k, answers), gradient, atol=1e-12)
    # and the exact gradient is the derivative of the exact value (central differences, step 1e-6:
    # error ≲ 1e-9)
    step = 1e-6
    numeric = [
        (objective_value(softmax(logits + step * e), reward, objective, k, answers)
         - objective_value(softmax(logits - step * e), reward, objective, k, answers)) / (2 * step)
        for e in np.eye(logits.size)
    ]
    np.testing.assert_allclose(gradient, numeric, atol=1e-8)


def test_binary_pass_at_k_gradient_matches_analytic_formula():
    # K = 3, k = 3, response 1 correct: ∇[1 − (1 − p)^k] = softmax_policy_gradient(π, k(1−p)^{k−1}·e_1).
    # The hand-computed vector (−0.113957, 0.226202, −0.112244) comes with an unstated π; solving
    # 3p(1−p)³ = 0.226202 (small root) and the two other components for π gives the π below (6 digits).
    probs = np.array([0.450752, 0.105268, 0.443980])
    probs /= probs.sum()
    logits = np.log(probs)
    reward = np.array([0.0, 1.0, 0.0])
    p = probs[1]
    analytic = softmax_policy_gradient(probs, 3 * (1 - p) ** 2 * reward)
    _, enumerated = _enumerate(logits, reward, "pass_at_k", 3, np.zeros(3, dtype=int))
    np.testing.assert_allclose(enumerated, analytic, atol=1e-13)
    # π is known to ~1e-6, so the 6-digit vector is matched to 1e-5
    np.testing.assert_allclose(enumerated, [-0.113957, 0.226202, -0.112244], atol=1e-5)
    assert objective_value(probs, reward, "pass_at_k", 3) == pytest.approx(1 - (1 - p) ** 3, abs=1e-14)


def test_centred_variant_is_biased_but_sums_to_zero():
    logits = np.array([0.2, -0.4, 0.1])
    reward = np.array([1.0, 0.0, 0.3])
    probs = softmax(logits)
    biased = np.zeros(3)
    for tuple_ in itertools.product(range(3), repeat=3):
        index = np.array(tuple_)
        advantages = leave_one_out_advantages(reward[index], "pass_at_k", centered=True)
        assert abs(advantages.sum()) < 1e-12
        biased += np.prod(probs[index]) * k_sample_gradient(logits, index, reward, "pass_at_k", centered=True)
    exact = objective_gradient(logits, reward, "pass_at_k", 3)
    assert np.abs(biased - exact).max() > 1e-3


def _tradeoff_problem():
    rng = np.random.default_rng(0)
    prompts, responses = 12, 6
    logits = rng.normal(size=(prompts, responses))
    logits[:, 0] += np.linspace(-4.0, 1.0, prompts)  # response 0 is the correct one; varied difficulty
    reward = np.zeros((prompts, responses))
    reward[:, 0] = 1.0
    return logits, reward


def test_pass_at_1_versus_pass_at_k_trade_off():
    logits, reward = _tradeoff_problem()
    mean_pg = train_k_sample(logits, reward, "mean", 1, iterations=100, learning_rate=1.0, eval_ks=(1, 16))
    pass_pg = train_k_sample(logits, reward, "pass_at_k", 16, iterations=100, learning_rate=1.0, eval_ks=(1, 16))
    assert mean_pg.last("pass_at_1") > pass_pg.last("pass_at_1")
    assert pass_pg.last("pass_at_16") > mean_pg.last("pass_at_16")
    # "objective" records the trained objective: pass@16 for the pass@k run
    np.testing.assert_allclose(pass_pg.metric("objective"), pass_pg.metric("pass_at_16"), atol=1e-14)


def test_sampled_training_reproducible_and_improves():
    logits, reward = _tradeoff_problem()
    answers = np.tile(np.array([0, 1, 1, 2, 2, 3]), (logits.shape[0], 1))
    kwargs = dict(response_answer=answers, iterations=60, learning_rate=0.5, sampled=True, eval_ks=(1,))
    first = train_k_sample(logits, reward, "majority_vote", 4, seed=1, **kwargs)
    again = train_k_sample(logits, reward, "majority_vote", 4, seed=1, **kwargs)
    other = train_k_sample(logits, reward, "majority_vote", 4, seed=2, **kwargs)
    np.testing.assert_array_equal(first.final, again.final)
    assert not np.array_equal(first.final, other.final)
    assert first.last("objective") > first.metric("objective")[0]


@pytest.mark.parametrize(
    "call",
    [
        lambda: leave_one_out_advantages([1.0, 0.0], "best_of_n"),
        lambda: leave_one_out_advantages([], "pass_at_k"),
        lambda: leave_one_out_advantages([1.0, np.nan], "pass_at_k"),
        lambda: leave_one_out_advantages([1.0, 0.0], "majority_vote"),
        lambda: leave_one_out_advantages([1.0, 0.0], "majority_vote", answers=[0, 0]),
        lambda: leave_one_out_advantages([1.0, 0.0], "majority_vote", answers=[0.5, 1.0]),
        lambda: objective_value([0.5, 0.6], [1.0, 0.0], "pass_at_k", 2),
        lambda: objective_value([0.5, 0.5], [1.0, 0.0], "pass_at_k", 0),
        lambda: objective_value([0.5, 0.5], [1.0, 0.0], "pass_at_k", -3),
        lambda: objective_value([0.5, np.nan], [1.0, 0.0], "mean", 2),
        lambda: objective_gradient([0.0, 0.0], [1.0, 0.0], "majority", 2),
        lambda: objective_gradient([0.0, 0.0], [1.0, 0.0], "majority_vote", 2),
        lambda: k_sample_gradient([0.0, 0.0], [2], [1.0, 0.0], "mean"),
        lambda: train_k_sample(np.zeros((2, 3)), np.zeros((2, 3)), "pass_at_k", 0),
        lambda: train_k_sample(np.zeros((2, 3)), np.zeros((2, 2)), "pass_at_k", 2),
        lambda: train_k_sample(np.zeros((2, 3)), np.zeros((2, 3)), "pass_at_k", 2, learning_rate=-1.0),
    ],
)
def test_invalid_inputs_raise(call):
    with pytest.raises(ValueError):
        call()
