"""Exact oracles of tabular/nash.py against closed forms, hand-computed test vectors, the LP
equilibrium conditions, brute-force optimisation and NLHF's analytic examples (Munos et al.
2024, arXiv 2312.00886, §3.2 and Apps. A, C.1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize

from fixpoint_rl.envs.preference import (
    GAME_KINDS,
    PreferenceGame,
    bradley_terry,
    dice,
    random_contextual_game,
    random_game,
    rock_paper_scissors,
    three_type_cycle,
)
from fixpoint_rl.tabular import (
    exploitability,
    fixed_point_residual,
    nash_equilibrium,
    preference_against,
    preference_between,
    regularized_nash_equilibrium,
    regularized_preference,
)

# The oracle accuracy: fixed-point residual ≤ 1e-12 for τ ≥ 1e-3 and K ≤ 2000.
RESIDUAL = 1e-12
# The hand-computed test vectors are printed with 6 decimals.
SIX_DIGITS = 1e-6
# Exact identities evaluated in float64 (a few rounding errors of size 1e-16 times K ≤ 100).
EXACT = 1e-12
# LP solutions after the exact polish on the support: linear solve accuracy.
LP = 1e-9

log_taus = st.floats(-3.0, 1.0).map(lambda e: float(10.0**e))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def two_action_game(p, mu1):
    return PreferenceGame([[0.5, p], [1 - p, 0.5]], [mu1, 1 - mu1])


# --- two actions: closed form (derived) -------------------------------------------


@pytest.mark.parametrize("mu1, expected", [(0.5, 0.880797), (0.2, 0.648786)])
def test_two_action_test_vectors(mu1, expected):
    pi = regularized_nash_equilibrium(two_action_game(0.7, mu1), 0.1)
    assert pi[0] == pytest.approx(expected, abs=SIX_DIGITS)


@given(st.floats(0.0, 1.0), st.floats(0.01, 0.99), log_taus)
def test_two_action_closed_form(p, mu1, tau):
    pi = regularized_nash_equilibrium(two_action_game(p, mu1), tau)
    # π*_τ(y1) = σ(logit μ(y1) + (p − ½)/τ); the logit argument is ≤ 5e2, and σ's relative
    # conditioning is ≤ 1, so 1e-12 absolute is float64 rounding of a 500-sized argument.
    expected = sigmoid(np.log(mu1 / (1 - mu1)) + (p - 0.5) / tau)
    assert pi[0] == pytest.approx(expected, abs=EXACT)


# --- regularised Nash: notes vector, residual, exploitability --------------------------------


def test_dice_regularized_vector():
    pi = regularized_nash_equilibrium(dice([0.5, 0.3, 0.2]), 0.1)
    np.testing.assert_allclose(pi, [0.510348, 0.258332, 0.231320], atol=SIX_DIGITS)


def test_matches_damped_fixed_point_iteration():
    """Independent reference: a damped iteration π ← (1−λ)π + λ·softmax(log μ + Pπ/τ)."""
    game = random_game(7, 11, "antisymmetric", "dirichlet")
    tau = 0.3
    pi = game.ref.copy()
    for _ in range(20_000):
        logits = np.log(game.ref) + game.pref @ pi / tau
        target = np.exp(logits - logits.max())
        pi = 0.9 * pi + 0.1 * target / target.sum()
    # the damped map contracts (factor ≈ 0.9 + 0.1·‖J‖), so 20k steps reach rounding level
    np.testing.assert_allclose(regularized_nash_equilibrium(game, tau), pi, atol=1e-10)


@given(st.integers(1, 60), st.integers(0, 2**31), st.sampled_from(GAME_KINDS), st.sampled_from(["uniform", "dirichlet"]), log_taus)
def test_regularized_oracle_residual_random_games(K, seed, kind, ref, tau):
    game = random_game(K, seed, kind, ref)
    pi = regularized_nash_equilibrium(game, tau)
    assert pi.shape == (K,) and pi.sum() == pytest.approx(1.0, abs=EXACT)
    assert fixed_point_residual(game, pi, tau) <= RESIDUAL
    # Exploitability is 0 at π*_τ (rounding of a log-sum-exp of size 1/τ ≤ 1e3: 1e-12).
    assert exploitability(game, pi, tau) <= EXACT


@pytest.mark.parametrize("K, tau, kind", [(2000, 1e-3, "antisymmetric"), (300, 1e-3, "mixture")])
def test_regularized_oracle_residual_large(K, tau, kind):
    game = random_game(K, 5, kind, "dirichlet")
    pi = regularized_nash_equilibrium(game, tau)
    assert fixed_point_residual(game, pi, tau) <= RESIDUAL


@pytest.mark.slow
@pytest.mark.parametrize("kind", GAME_KINDS)
def test_regularized_oracle_residual_k2000_all_kinds(kind):
    game = random_game(2000, 1, kind, "dirichlet")
    pi = regularized_nash_equilibrium(game, 1e-3)
    assert fixed_point_residual(game, pi, 1e-3) <= RESIDUAL


@given(st.integers(2, 12), st.integers(0, 2**31), st.sampled_from(GAME_KINDS), log_taus, st.integers(0, 2**31))
def test_exploitability_is_tau_kl_to_best_response_and_positive_off_equilibrium(K, seed, kind, tau, pseed):
    game = random_game(K, seed, kind, "dirichlet")
    star = regularized_nash_equilibrium(game, tau)
    pi = np.random.default_rng(pseed).dirichlet(np.ones(K))
    # Independent identity: exploitability_τ(π) = τ·KL(π ‖ BR_τ(π)), BR_τ(π) ∝ μ exp(Pπ/τ).
    logits = np.log(game.ref) + game.pref @ pi / tau
    log_br = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    kl = float(np.sum(pi * (np.log(pi) - log_br)))
    value = exploitability(game, pi, tau)
    assert value == pytest.approx(tau * kl, rel=1e-9, abs=EXACT)
    # positive away from π*_τ: it is τ·KL, and KL(π‖BR(π)) > 0 unless π = BR(π) = π*_τ
    if np.abs(pi - star).max() > 1e-3:
        assert value > 0


@given(st.integers(2, 4), st.integers(0, 2**31), st.sampled_from([0.0, 0.05, 0.5]), st.integers(0, 2**31))
def test_exploitability_against_brute_force(K, seed, tau, pseed):
    game = random_game(K, seed, "mixture", "dirichlet")
    pi = np.random.default_rng(pseed).dirichlet(np.ones(K))
    if tau == 0.0:
        # enumerate pure strategies: the best response to π is a response
        best = max(preference_between(game, np.eye(K)[y], pi) for y in range(K))
    else:
        # maximise P_τ(π' ≻ π) numerically over softmax logits, from several starts
        def negative(logits):
            q = np.exp(logits - logits.max())
            return -regularized_preference(game, q / q.sum(), pi, tau)

        starts = [np.zeros(K), np.log(game.ref), np.log(game.ref) + game.pref @ pi / tau]
        best = max(-minimize(negative, x0, method="BFGS", options={"gtol": 1e-10}).fun for x0 in starts)
    # BFGS stops at gradient 1e-10 on a smooth concave problem: value error ≪ 1e-8.
    assert exploitability(game, pi, tau) == pytest.approx(best - 0.5, abs=1e-8)


def test_exploitability_zero_only_at_nash_for_tau_zero():
    game = rock_paper_scissors()
    assert exploitability(game, np.full(3, 1 / 3)) == pytest.approx(0.0, abs=EXACT)
    # a pure strategy loses to its counter for sure: 1 − ½
    assert exploitability(game, [1.0, 0.0, 0.0]) == pytest.approx(0.5, abs=EXACT)


# --- unregularised Nash by LP (Munos et al. 2024, §3.2) -------------------------------------------


@pytest.mark.parametrize("game", [dice(), rock_paper_scissors()], ids=["dice", "rps"])
def test_lp_uniform_equilibria(game):
    pi = nash_equilibrium(game)
    np.testing.assert_allclose(pi, np.full(3, 1 / 3), atol=LP)
    np.testing.assert_allclose((game.pref - 0.5) @ pi, 0.0, atol=EXACT)


@given(st.floats(-0.3, 0.3))
def test_lp_three_type_cycle(eps):
    game = three_type_cycle(eps)
    pi = nash_equilibrium(game)
    np.testing.assert_allclose(pi, [1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps], atol=LP)
    np.testing.assert_allclose((game.pref - 0.5) @ pi, 0.0, atol=EXACT)


def test_lp_three_type_cycle_vector():
    np.testing.assert_allclose(nash_equilibrium(three_type_cycle(0.1)), [0.38333, 0.38333, 0.23333], atol=1e-5)


@given(st.integers(1, 40), st.integers(0, 2**31), st.sampled_from(GAME_KINDS))
def test_lp_equilibrium_conditions_random(K, seed, kind):
    game = random_game(K, seed, kind)
    pi = nash_equilibrium(game)
    # symmetric equilibrium: no response beats π*, i.e. P(y ≻ π*) ≤ ½ for all y
    assert np.all(pi >= 0) and pi.sum() == pytest.approx(1.0, abs=EXACT)
    assert preference_against(game, pi).max() <= 0.5 + LP
    assert exploitability(game, pi) <= LP


@given(st.lists(st.floats(-5, 5), min_size=2, max_size=10, unique=True))
def test_lp_bradley_terry_is_the_condorcet_winner(rewards):
    r = np.array(rewards)
    if np.sort(r)[-1] - np.sort(r)[-2] < 1e-3:  # a near-tie makes the winner numerically ambiguous
        return
    pi = nash_equilibrium(bradley_terry(r))
    np.testing.assert_allclose(pi, np.eye(len(r))[np.argmax(r)], atol=LP)


def test_small_tau_regularized_approaches_lp():
    """π*_τ → π* as τ → 0 when π* is unique (three-type cycle)."""
    game = three_type_cycle(0.1)
    error = [np.abs(regularized_nash_equilibrium(game, tau) - nash_equilibrium(game)).max() for tau in (0.1, 0.01, 0.001)]
    assert error[0] > error[1] > error[2] and error[2] < 0.01


# --- NLHF App. A: Elo-consistent preferences, constrained policy class (arXiv 2312.00886) ---


def test_nlhf_appendix_a_preference_vs_reward():
    rewards = np.array([0.0, np.log(9.0), np.log(2.0)])
    game = bradley_terry(rewards)

    def constrained(s):  # the class {π : π(y1) = 2π(y2)}, parameterised by s = π(y3)
        return np.array([2 * (1 - s) / 3, (1 - s) / 3, s])

    pi_reward, pi_pref = constrained(0.0), constrained(1.0)
    assert preference_between(game, pi_pref, pi_reward) == pytest.approx(50 / 99, abs=EXACT)
    grid = np.linspace(0, 1, 1001)
    # π_R maximises expected reward in the class, yet π_P has lower reward and wins > ½ ...
    assert np.argmax([constrained(s) @ rewards for s in grid]) == 0
    assert pi_pref @ rewards < pi_reward @ rewards
    # ... and π_P is the preference maximiser of the class: it is preferred to every member
    assert min(preference_between(game, pi_pref, constrained(s)) for s in grid) >= 0.5 - EXACT


# --- policy-level preferences --------------------------------------------------------------


@given(st.integers(1, 8), st.integers(0, 2**31), st.integers(0, 2**31))
def test_preference_identities(K, seed, pseed):
    game = random_game(K, seed, "mixture", "dirichlet")
    rng = np.random.default_rng(pseed)
    pi, other = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K))
    # P(π ≻ π) = ½ and P(π ≻ π') + P(π' ≻ π) = 1 (antisymmetry)
    assert preference_between(game, pi, pi) == pytest.approx(0.5, abs=EXACT)
    assert preference_between(game, pi, other) + preference_between(game, other, pi) == pytest.approx(1.0, abs=EXACT)
    assert regularized_preference(game, pi, pi, 0.3) == pytest.approx(0.5, abs=EXACT)
    brute = sum(pi[i] * other[j] * game.pref[i, j] for i in range(K) for j in range(K))
    assert preference_between(game, pi, other) == pytest.approx(brute, abs=EXACT)
    np.testing.assert_allclose(preference_against(game, other), [game.pref[i] @ other for i in range(K)], atol=EXACT)


# --- contextual games ----------------------------------------------------------------------


def test_contextual_oracles_match_per_context_solves():
    game = random_contextual_game(5, 6, seed=3, kind="mixture", ref="dirichlet")
    weights = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    game = PreferenceGame(game.pref, game.ref, context_weights=weights)
    tau = 0.05
    star = regularized_nash_equilibrium(game, tau)
    lp = nash_equilibrium(game)
    assert star.shape == (5, 6) and lp.shape == (5, 6)
    assert fixed_point_residual(game, star, tau) <= RESIDUAL
    pi = np.random.default_rng(0).dirichlet(np.ones(6), size=5)
    per_context = []
    for x in range(5):
        single = game.context(x)
        np.testing.assert_allclose(star[x], regularized_nash_equilibrium(single, tau), atol=EXACT)
        assert exploitability(single, lp[x]) <= LP
        per_context.append(exploitability(single, pi[x], tau))
    # ρ-average over contexts (the best response decomposes per context)
    assert exploitability(game, pi, tau) == pytest.approx(weights @ np.array(per_context), abs=EXACT)
    assert exploitability(game, star, tau) <= EXACT
    np.testing.assert_allclose(preference_against(game, pi), np.einsum("xij,xj->xi", game.pref, pi), atol=EXACT)


def test_contextual_residual_many_contexts():
    game = random_contextual_game(300, 16, seed=1, kind="antisymmetric", ref="dirichlet")
    for tau in (1e-3, 0.1):
        assert fixed_point_residual(game, regularized_nash_equilibrium(game, tau), tau) <= RESIDUAL


# --- invalid inputs ------------------------------------------------------------------------


@given(st.one_of(st.floats(max_value=0.0), st.just(np.nan), st.just(np.inf), st.just(-np.inf)))
def test_nonpositive_tau_is_rejected(tau):
    with pytest.raises(ValueError, match="tau"):
        regularized_nash_equilibrium(dice(), tau)
    with pytest.raises(ValueError, match="tau"):
        fixed_point_residual(dice(), np.full(3, 1 / 3), tau)


@given(st.one_of(st.floats(max_value=-1e-300), st.just(np.nan)))
def test_negative_tau_exploitability_is_rejected(tau):
    with pytest.raises(ValueError, match="tau"):
        exploitability(dice(), np.full(3, 1 / 3), tau)


@pytest.mark.parametrize(
    "pi",
    [[0.5, 0.5], [0.5, 0.6, -0.1], [0.5, 0.5, 0.5], [np.nan, 0.5, 0.5], np.full((2, 3), 1 / 3), "uniform"],
)
def test_invalid_policy_is_rejected(pi):
    with pytest.raises(ValueError, match="pi"):
        exploitability(dice(), pi)
    with pytest.raises(ValueError, match="pi"):
        preference_against(dice(), pi)


@pytest.mark.parametrize("game", [dice().pref, None, "dice"])
def test_non_game_is_rejected(game):
    with pytest.raises(ValueError, match="game"):
        nash_equilibrium(game)
    with pytest.raises(ValueError, match="game"):
        regularized_nash_equilibrium(game, 0.1)
