"""JEPO (Tang et al. 2025, arXiv 2503.19618): bound ordering with hand-computed toy values, the Jensen gap as
KL(q ‖ posterior), unbiased leave-one-out estimators by enumeration, and the no-CoT = SFT reduction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.tabular import (
    cot_posterior,
    jensen_bound,
    jepo_expected_gradient,
    jepo_gradient,
    log_evidence,
    multi_sample_bound,
    rl_gradient,
    train_cot,
)
from fixpoint_rl.tabular.core.mirror import kl_divergence, softmax

TOY_Q = np.array([0.5, 0.3, 0.2])
TOY_LIKELIHOOD = np.array([0.9, 0.2, 0.05])


def test_toy_bounds_from_the_notes():
    # the hand-computed values have 6 decimals, so 1e-6 is the rounding of the quoted values
    expected = [-1.134658, -0.868791, -0.781075, -0.741729, -0.720422]
    values = [multi_sample_bound(TOY_Q, TOY_LIKELIHOOD, n) for n in range(1, 6)]
    np.testing.assert_allclose(values, expected, atol=1e-6)
    assert jensen_bound(TOY_Q, TOY_LIKELIHOOD) == pytest.approx(expected[0], abs=1e-6)
    assert log_evidence(TOY_Q, TOY_LIKELIHOOD) == pytest.approx(-0.653926, abs=1e-6)
    gap = log_evidence(TOY_Q, TOY_LIKELIHOOD) - jensen_bound(TOY_Q, TOY_LIKELIHOOD)
    assert gap == pytest.approx(0.480732, abs=1e-6)


def _random_model(seed):
    rng = np.random.default_rng(seed)
    cots = int(rng.integers(1, 5))
    return rng.dirichlet(np.ones(cots)), rng.uniform(0.01, 1.0, size=cots)


@given(st.integers(0, 2**31 - 1))
def test_bounds_increase_with_n_up_to_the_evidence(seed):
    q, likelihood = _random_model(seed)
    values = [multi_sample_bound(q, likelihood, n) for n in range(1, 7)]
    evidence = log_evidence(q, likelihood)
    # exact sums: monotone up to rounding (1e-12)
    assert np.all(np.diff(values) >= -1e-12)
    assert values[-1] <= evidence + 1e-12
    # Jensen gap identity: log π(a*) − L⁽¹⁾ = KL(q ‖ posterior), independently computed
    gap = kl_divergence(q, cot_posterior(q, likelihood))
    assert evidence - values[0] == pytest.approx(gap, abs=1e-12)


def test_multi_sample_bound_approaches_the_evidence():
    evidence = log_evidence(TOY_Q, TOY_LIKELIHOOD)
    gap_5 = evidence - multi_sample_bound(TOY_Q, TOY_LIKELIHOOD, 5)
    gap_40 = evidence - multi_sample_bound(TOY_Q, TOY_LIKELIHOOD, 40)
    # the IWAE gap decays like Var/(2 n π(a*)²): 8× more samples → several times smaller
    assert 0 < gap_40 < gap_5 / 4


def _random_logits(seed):
    rng = np.random.default_rng(seed)
    cots, answers = int(rng.integers(1, 4)), int(rng.integers(2, 4))
    return rng.normal(size=cots), rng.normal(size=(cots, answers)), int(rng.integers(0, answers))


@pytest.mark.parametrize("bound", ["single", "multi"])
@pytest.mark.parametrize("n", [1, 2, 3])
@given(seed=st.integers(0, 2**31 - 1))
def test_estimators_unbiased_by_enumeration(bound, n, seed):
    cot_logits, answer_logits, target = _random_logits(seed)
    q = softmax(cot_logits)
    mean_cot = np.zeros_like(cot_logits)
    mean_answer = np.zeros_like(answer_logits)
    for tuple_ in itertools.product(range(q.size), repeat=n):
        weight = np.prod(q[list(tuple_)])
        cot_part, answer_part = jepo_gradient(cot_logits, answer_logits, target, np.array(tuple_), bound=bound)
        mean_cot += weight * cot_part
        mean_answer += weight * answer_part
    exact_cot, exact_answer = jepo_expected_gradient(cot_logits, answer_logits, target, n, bound=bound)
    # exact sums of ≤ 27 terms: rounding only
    np.testing.assert_allclose(mean_cot, exact_cot, atol=1e-12)
    np.testing.assert_allclose(mean_answer, exact_answer, atol=1e-12)

    # and the exact gradient is the derivative of the bound (central differences, step 1e-6: ≲ 1e-9)
    size = n if bound == "multi" else 1

    def bound_value(phi, psi):
        return multi_sample_bound(softmax(phi), softmax(psi)[:, target], size)

    step = 1e-6
    numeric_cot = [
        (bound_value(cot_logits + step * e, answer_logits) - bound_value(cot_logits - step * e, answer_logits)) / (2 * step)
        for e in np.eye(cot_logits.size)
    ]
    np.testing.assert_allclose(exact_cot, numeric_cot, atol=1e-8)
    numeric_answer = np.zeros_like(answer_logits)
    for index in np.ndindex(answer_logits.shape):
        e = np.zeros_like(answer_logits)
        e[index] = step
        numeric_answer[index] = (bound_value(cot_logits, answer_logits + e) - bound_value(cot_logits, answer_logits - e)) / (2 * step)
    np.testing.assert_allclose(exact_answer, numeric_answer, atol=1e-8)


@pytest.mark.parametrize("bound", ["single", "multi"])
@given(n=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_without_chain_of_thought_the_gradient_is_sft(bound, n, seed):
    rng = np.random.default_rng(seed)
    answer_logits = rng.normal(size=(1, 4))
    target = int(rng.integers(0, 4))
    cot_part, answer_part = jepo_gradient(np.zeros(1), answer_logits, target, np.zeros(n, dtype=int), bound=bound)
    sft = np.eye(4)[target] - softmax(answer_logits[0])  # ∇ log softmax(ψ)[a*]
    np.testing.assert_allclose(cot_part, [0.0], atol=1e-15)
    np.testing.assert_allclose(answer_part[0], sft, atol=1e-14)


def _learning_problem():
    cot_logits = np.zeros(4)
    answer_logits = np.zeros((4, 5))
    answer_logits[0, 0] = 2.0  # CoT 0 tends to lead to the right answer 0
    answer_logits[1:, 0] = -2.0
    return cot_logits, answer_logits


@pytest.mark.parametrize("method", ["jepo", "jepo_multi", "rl", "sft"])
def test_training_raises_the_evidence(method):
    cot_logits, answer_logits = _learning_problem()
    result = train_cot(cot_logits, answer_logits, 0, method, n=4, iterations=300, learning_rate=1.0)
    assert result.last("log_evidence") > -0.05
    assert result.metric("log_evidence")[0] < -1.0
    # bounds always below the evidence (1e-12: rounding)
    assert np.all(result.metric("jensen_bound") <= result.metric("bound_n") + 1e-12)
    assert np.all(result.metric("bound_n") <= result.metric("log_evidence") + 1e-12)
    if method == "sft":
        np.testing.assert_allclose(result.final, np.full(4, 0.25), atol=1e-15)  # q untouched


def test_sampled_training_reproducible():
    cot_logits, answer_logits = _learning_problem()
    for method in ("jepo", "jepo_multi", "rl", "sft"):
        first = train_cot(cot_logits, answer_logits, 0, method, sampled=True, iterations=40, seed=5)
        again = train_cot(cot_logits, answer_logits, 0, method, sampled=True, iterations=40, seed=5)
        other = train_cot(cot_logits, answer_logits, 0, method, sampled=True, iterations=40, seed=6)
        np.testing.assert_array_equal(first.metric("log_evidence"), again.metric("log_evidence"))
        assert not np.array_equal(first.metric("log_evidence"), other.metric("log_evidence"))


@pytest.mark.parametrize(
    "call",
    [
        lambda: multi_sample_bound([0.5, 0.6], [0.5, 0.5], 2),
        lambda: multi_sample_bound([0.5, 0.5], [0.5, 0.5], 0),
        lambda: multi_sample_bound([0.5, 0.5], [0.0, 0.5], 2),
        lambda: multi_sample_bound([0.5, 0.5], [np.nan, 0.5], 2),
        lambda: jensen_bound([0.5, 0.5], [1.5, 0.5]),
        lambda: jepo_gradient(np.zeros(2), np.zeros((2, 3)), 3, np.array([0, 1])),
        lambda: jepo_gradient(np.zeros(2), np.zeros((3, 3)), 0, np.array([0, 1])),
        lambda: jepo_gradient(np.zeros(2), np.zeros((2, 3)), 0, np.array([0, 2])),
        lambda: jepo_gradient(np.zeros(2), np.zeros((2, 3)), 0, np.array([0, 1]), bound="iwae"),
        lambda: train_cot(np.zeros(2), np.zeros((2, 3)), 0, "ppo"),
        lambda: rl_gradient(np.zeros(2), np.zeros((2, 3)), 0, np.array([0])),
        lambda: rl_gradient(np.zeros(2), np.zeros((2, 3)), 0, np.array([0, 1]), np.array([0, 3])),
        lambda: train_cot(np.zeros(2), np.zeros((2, 3)), 0, "rl", n=1, sampled=True),
        lambda: train_cot(np.zeros(2), np.zeros((2, 3)), 0, "jepo", learning_rate=0.0),
    ],
)
def test_invalid_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


@given(st.integers(0, 2**31 - 1))
def test_variance_reduced_rl_gradient_is_the_conditional_expectation_of_rloo(seed):
    # Theorem D.5 checked exactly: enumerate all (c_1, a_1, c_2, a_2) with n = 2
    cot_logits, answer_logits, target = _random_logits(seed)
    q, answer_probs = softmax(cot_logits), softmax(answer_logits)
    cots_range, answers_range = range(q.size), range(answer_probs.shape[1])
    exact_cot = q * (answer_probs[:, target] - q @ answer_probs[:, target])  # ∇_φ π(a*)
    first_vanilla = [np.zeros_like(cot_logits), np.zeros_like(answer_logits)]
    second_vanilla = 0.0
    first_reduced = [np.zeros_like(cot_logits), np.zeros_like(answer_logits)]
    second_reduced = 0.0
    for c in itertools.product(cots_range, repeat=2):
        cots = np.array(c)
        weight_c = q[cots].prod()
        conditional = [np.zeros_like(cot_logits), np.zeros_like(answer_logits)]
        for a in itertools.product(answers_range, repeat=2):
            answers = np.array(a)
            weight_a = answer_probs[cots, answers].prod()
            g = rl_gradient(cot_logits, answer_logits, target, cots, answers)
            for slot in range(2):
                conditional[slot] += weight_a * g[slot]
                first_vanilla[slot] += weight_c * weight_a * g[slot]
            second_vanilla += weight_c * weight_a * (np.sum(g[0] ** 2) + np.sum(g[1] ** 2))
        reduced = rl_gradient(cot_logits, answer_logits, target, cots)
        # E[vanilla RLOO | CoTs] = variance-reduced estimator (exact sums: 1e-12)
        np.testing.assert_allclose(conditional[0], reduced[0], atol=1e-12)
        np.testing.assert_allclose(conditional[1], reduced[1], atol=1e-12)
        for slot in range(2):
            first_reduced[slot] += weight_c * reduced[slot]
        second_reduced += weight_c * (np.sum(reduced[0] ** 2) + np.sum(reduced[1] ** 2))
    np.testing.assert_allclose(first_vanilla[0], exact_cot, atol=1e-12)
    np.testing.assert_allclose(first_reduced[0], exact_cot, atol=1e-12)
    np.testing.assert_allclose(first_reduced[1], first_vanilla[1], atol=1e-12)
    # same mean, so comparing second moments compares total variances
    assert second_reduced <= second_vanilla + 1e-12
