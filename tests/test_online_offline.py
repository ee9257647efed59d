"""Online vs offline IPO (tabular/online_offline.py).

Oracles: the regularised-Nash fixed point by damped iteration (independent NumPy loop) and its
dice test vector (hand-computed); the two-response closed form σ(logit π_ref + (2p − 1)/β) shared by
offline and online IPO (derived); scipy's BFGS for the proxy fit; exact replay for the
original-order ablation.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

from fixpoint_rl.tabular.core.mirror import kl_divergence, softmax
from fixpoint_rl.tabular.gpo import (
    ipo_optimum,
    kl_to_reference,
    preference_pair_weights,
    sample_preference_dataset,
    solve_gpo,
    win_rate,
)
from fixpoint_rl.tabular.online_offline import (
    fit_proxy_preference,
    kl_win_rate_frontier,
    make_golden_preference,
    max_win_rate_at_kl,
    offline_gpo,
    online_gpo,
    regularized_nash_ipo,
)

DICE = np.array([[0.5, 5 / 9, 4 / 9], [4 / 9, 0.5, 5 / 9], [5 / 9, 4 / 9, 0.5]])


def test_regularized_nash_matches_the_dice_vector():
    # dice vector: τ = 0.1, so β = 2τ = 0.2; the hand-computed vector has 6 decimals.
    pi = regularized_nash_ipo(np.array([[0.5, 0.3, 0.2]]), DICE[None], 0.2)
    np.testing.assert_allclose(pi[0], [0.510348, 0.258332, 0.231320], atol=1e-6)


@settings(max_examples=10)
@given(seed=st.integers(0, 1000), beta=st.floats(0.2, 2.0))
def test_exact_online_ipo_converges_to_the_regularized_nash(seed, beta):
    rng = np.random.default_rng(seed)
    pref = make_golden_preference(2, 4, non_transitivity=0.5, seed=seed)
    ref = softmax(rng.normal(size=(2, 4)))
    oracle = regularized_nash_ipo(ref, pref, beta)
    result = online_gpo(ref, pref, beta, exact=True, steps=3000, learning_rate=0.5 / beta**2)
    # Expected-gradient descent with constant η₀/β² contracts geometrically; 3000 steps reach
    # KL ~ 1e-20 on these instances, so 1e-10 leaves a wide margin.
    assert np.max(kl_divergence(oracle, result.final)) < 1e-10


@given(p=st.floats(0.05, 0.95), beta=st.floats(0.2, 3.0), ref0=st.floats(0.1, 0.9))
def test_two_responses_offline_and_online_ipo_share_the_closed_form(p, beta, ref0):
    ref = np.array([[ref0, 1 - ref0]])
    pref = np.array([[[0.5, p], [1 - p, 0.5]]])
    closed = scipy.special.expit(scipy.special.logit(ref0) + (2 * p - 1) / beta)
    for coverage in (ref, np.array([[0.9, 0.1]])):
        offline = solve_gpo(ref, preference_pair_weights(pref, coverage), beta, "squared")
        assert offline.final[0, 0] == pytest.approx(closed, abs=1e-10)
    online = regularized_nash_ipo(ref, pref, beta)
    assert online[0, 0] == pytest.approx(closed, abs=1e-10)


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    golden = make_golden_preference(3, 5, non_transitivity=0.3, seed=seed)
    ref = softmax(1.5 * rng.normal(size=(3, 5)))
    return ref, golden


def test_offline_on_the_online_stream_in_original_order_replays_online_exactly():
    ref, golden = _setup()
    online = online_gpo(ref, golden, 0.3, steps=200, batch_size=16, learning_rate=2.0, seed=3,
                        golden_pref=golden)
    stream = online.extras["stream"]
    assert len(stream["context"]) == 200 * 16
    replay = offline_gpo(ref, stream["context"], stream["winner"], stream["loser"], 0.3,
                         steps=200, batch_size=16, learning_rate=2.0, order="original",
                         golden_pref=golden)
    np.testing.assert_array_equal(replay.extras["logits"], online.extras["logits"])
    np.testing.assert_array_equal(replay.metric("win_rate"), online.metric("win_rate"))
    shuffled = offline_gpo(ref, stream["context"], stream["winner"], stream["loser"], 0.3,
                           steps=200, batch_size=16, learning_rate=2.0, order="shuffled", seed=0)
    assert not np.array_equal(shuffled.extras["logits"], online.extras["logits"])


def test_online_stream_samples_follow_the_policy_and_labeller():
    # With a tiny learning rate the policy stays π_ref: response frequencies ≈ 2π_ref per pair
    # slot, and the winner of pair (i, j) wins with frequency ≈ P(i ≻ j).
    ref = np.array([[0.2, 0.3, 0.5]])
    pref = DICE[None]
    run = online_gpo(ref, pref, 1.0, steps=2000, batch_size=64, learning_rate=1e-12, seed=1)
    stream = run.extras["stream"]
    counts = np.bincount(np.concatenate([stream["winner"], stream["loser"]]), minlength=3)
    n = len(stream["winner"])
    np.testing.assert_allclose(counts / (2 * n), ref[0], atol=5 * np.sqrt(0.25 / n))
    pair = (stream["winner"] == 0) & (stream["loser"] == 1)
    reverse = (stream["winner"] == 1) & (stream["loser"] == 0)
    observed = pair.sum() / (pair.sum() + reverse.sum())
    assert observed == pytest.approx(5 / 9, abs=5 * np.sqrt(0.25 / (pair.sum() + reverse.sum())))


def test_proxy_fit_matches_bfgs_on_the_penalized_likelihood():
    ref, golden = _setup(1)
    data = sample_preference_dataset(golden, ref, 400, seed=2)
    proxy = fit_proxy_preference(*data, 3, 5, l2=0.05)
    context, winner, loser = data

    def objective(flat):
        r = flat.reshape(3, 5)
        margin = r[context, winner] - r[context, loser]
        return np.mean(np.logaddexp(0.0, -margin)) + 0.025 * np.sum(r**2)

    found = scipy.optimize.minimize(objective, np.zeros(15), method="BFGS",
                                    options={"gtol": 1e-10}).x.reshape(3, 5)
    expected = scipy.special.expit(found[:, :, None] - found[:, None, :])
    np.testing.assert_allclose(proxy, expected, atol=1e-6)  # BFGS gtol 1e-10 → P to ~1e-8


def test_proxy_recovers_a_bradley_terry_golden_with_much_data():
    ref = np.full((1, 4), 0.25)
    golden = make_golden_preference(1, 4, non_transitivity=0.0, seed=5)
    data = sample_preference_dataset(golden, ref, 100_000, seed=6)
    proxy = fit_proxy_preference(*data, 1, 4, l2=1e-6)
    # MLE standard error ≈ 1/sqrt(N·pairs) ≈ 0.01 in logits → < 0.01 in probabilities.
    np.testing.assert_allclose(proxy, golden, atol=0.01)


def test_golden_preference_is_a_preference_and_bt_without_cycles():
    pref = make_golden_preference(2, 5, non_transitivity=0.4, seed=1)
    np.testing.assert_allclose(pref + pref.swapaxes(1, 2), 1.0, atol=1e-15)
    assert np.all((pref >= 0) & (pref <= 1))
    bt = make_golden_preference(2, 5, non_transitivity=0.0, seed=1)
    logit = scipy.special.logit(bt)
    # Bradley–Terry ⇔ logit P additive along paths: logit P_ij + logit P_jk = logit P_ik.
    np.testing.assert_allclose(logit[:, 0, 1] + logit[:, 1, 2], logit[:, 0, 2], atol=1e-10)


def test_frontier_is_reproducible_and_has_every_method():
    ref, golden = _setup(2)
    kwargs = dict(num_samples=300, steps=60, batch_size=8, seed=11)
    first = kl_win_rate_frontier(ref, golden, [0.2, 1.0], **kwargs)
    second = kl_win_rate_frontier(ref, golden, [0.2, 1.0], **kwargs)
    assert first.equals(second)
    assert set(first["method"]) == {"online", "offline", "offline_online_ordered",
                                    "offline_online_shuffled", "offline_final_policy"}
    ordered = first[first.method == "offline_online_ordered"].reset_index(drop=True)
    online = first[first.method == "online"].reset_index(drop=True)
    np.testing.assert_array_equal(ordered[["kl_to_ref", "win_rate"]], online[["kl_to_ref", "win_rate"]])
    # Larger β keeps the policy closer to π_ref, for every method.
    for _, group in first.groupby("method"):
        assert group.sort_values("beta")["kl_to_ref"].is_monotonic_decreasing


def test_same_seed_same_online_run():
    ref, golden = _setup(4)
    a = online_gpo(ref, golden, 0.5, steps=50, seed=9)
    b = online_gpo(ref, golden, 0.5, steps=50, seed=9)
    np.testing.assert_array_equal(a.final, b.final)


@pytest.mark.parametrize(
    "call",
    [
        lambda r, g: online_gpo(r, g, 0.0),
        lambda r, g: online_gpo(r, g, 1.0, kind="kto"),
        lambda r, g: online_gpo(r, g, 1.0, batch_size=0),
        lambda r, g: online_gpo(r, g * 0.9, 1.0),
        lambda r, g: online_gpo(r, g, 1.0, exact="yes"),
        lambda r, g: offline_gpo(r, np.array([0]), np.array([1]), np.array([2]), 1.0, order="random"),
        lambda r, g: offline_gpo(r, np.array([5]), np.array([1]), np.array([2]), 1.0),
        lambda r, g: offline_gpo(r, np.array([0.5]), np.array([1]), np.array([2]), 1.0),
        lambda r, g: kl_win_rate_frontier(r, g, [0.5, -1.0]),
        lambda r, g: kl_win_rate_frontier(r, g, []),
        lambda r, g: make_golden_preference(2, 1),
        lambda r, g: make_golden_preference(2, 3, non_transitivity=1.5),
        lambda r, g: fit_proxy_preference(np.array([0]), np.array([1]), np.array([2]), 3, 5, l2=0.0),
        lambda r, g: regularized_nash_ipo(r, g, float("nan")),
        lambda r, g: max_win_rate_at_kl(r, g, -0.1),
    ],
)
def test_invalid_inputs_raise_value_error(call):
    ref, golden = _setup()
    with pytest.raises(ValueError):
        call(ref, golden)


@given(seed=st.integers(0, 1000), scale=st.floats(0.1, 4.0))
def test_no_policy_beats_the_gibbs_frontier(seed, scale):
    # Gibbs variational principle: any π with KL(π‖π_ref) = k wins at most max_win_rate_at_kl(k).
    rng = np.random.default_rng(seed)
    ref, golden = _setup(seed)
    policy = softmax(np.log(ref) + scale * rng.normal(size=ref.shape))
    best, attained = max_win_rate_at_kl(ref, golden, kl_to_reference(policy, ref))
    assert win_rate(policy, ref, golden) <= best + 1e-12
    # The maximiser spends (up to bisection precision) the whole budget.
    assert kl_to_reference(attained, ref) == pytest.approx(kl_to_reference(policy, ref), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("beta", [0.05, 0.3, 2.0])
def test_offline_ipo_with_reference_coverage_is_on_the_optimal_frontier(beta):
    ref, golden = _setup(3)
    offline = ipo_optimum(ref, golden, ref, beta)
    _, frontier_policy = max_win_rate_at_kl(ref, golden, kl_to_reference(offline, ref))
    np.testing.assert_allclose(frontier_policy, offline, atol=1e-10)  # bisection to ~1e-15 in log τ
    # ... so the online IPO fixed point, at its own KL, does no better (strictly worse here).
    online = regularized_nash_ipo(ref, golden, beta)
    best, _ = max_win_rate_at_kl(ref, golden, kl_to_reference(online, ref))
    assert win_rate(online, ref, golden) < best
