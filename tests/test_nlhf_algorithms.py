"""NLHF algorithms (tabular/nlhf.py) against answers computed another way.

Oracles: hand-computed vectors, π*_τ from
``regularized_nash_equilibrium`` (Newton / convex program, independent of these algorithms), fixed
points of the biased equation solved here with scipy's root finder, Theorem 1's inequalities,
the numpy single-step functions (shared formulas in tabular.core.mirror) for the Numba kernel, and
per-context runs for contextual games.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from fixpoint_rl.envs import (
    bradley_terry,
    dice,
    random_contextual_game,
    random_game,
    rock_paper_scissors,
    three_type_cycle,
)
from fixpoint_rl.tabular import (
    best_response_to_reference,
    exploitability,
    fictitious_play,
    nash_md,
    nash_md_pg,
    nash_mirror_prox,
    online_mirror_descent,
    regularized_nash_equilibrium,
    rlhf_bradley_terry,
    self_play_md,
)
from fixpoint_rl.tabular.core.mirror import kl_divergence
from fixpoint_rl.tabular.nlhf import (
    nash_md_step,
    nash_mirror_prox_step,
    self_play_md_step,
    theorem_step_sizes,
)

DICE_REF = (0.5, 0.3, 0.2)

games = st.builds(
    random_game,
    K=st.integers(2, 8),
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["antisymmetric", "bradley_terry", "mixture"]),
    ref=st.sampled_from(["uniform", "dirichlet"]),
)


def biased_fixed_point(game, tau, beta):
    """Solve π ∝ μ exp(P(y ≻ π^β)/τ), π^β ∝ π^(1−β) μ^β, by scipy's root finder on log π.

    Independent of the algorithms: the stationary equation of constant-η Nash-MD (β = ητ) and of
    expected Nash-MD-PG with mixture β (derived).
    """
    pref, log_mu = np.asarray(game.pref), np.log(np.asarray(game.ref))

    def normalise(z):
        return z - np.logaddexp.reduce(z)

    def residual(log_pi):
        log_pi = normalise(log_pi)
        opponent = np.exp(normalise((1 - beta) * log_pi + beta * log_mu))
        return log_pi - normalise(log_mu + pref @ opponent / tau)

    solution = optimize.root(residual, log_mu.copy(), method="hybr", tol=1e-14)
    assert np.max(np.abs(residual(solution.x))) < 1e-12
    return np.exp(normalise(solution.x))


# ---------------------------------------------------------------- single steps and kernel parity


def test_one_nash_md_step_matches_notes_dice_vector():
    # hand-computed vector: π = (.6,.3,.1), μ uniform, τ = 0.1, η = 5 (ητ = ½).
    # The hand-computed vector has 5 significant digits, hence atol 1e-5.
    step = nash_md_step([0.6, 0.3, 0.1], np.full(3, 1 / 3), dice().pref, eta=5.0, tau=0.1)
    np.testing.assert_allclose(step, [0.49092, 0.30882, 0.20026], atol=1e-5)


@given(game=games, tau=st.floats(0.02, 2.0), eta_tau=st.floats(0.05, 1.0), steps=st.integers(1, 5))
def test_kernel_iterates_equal_the_numpy_single_steps(game, tau, eta_tau, steps):
    # The Numba kernel is the scalar-loop twin of tabular.core.mirror's formulas: both are float64
    # evaluations of the same expression, so they agree to rounding (1e-12 relative).
    eta = eta_tau / tau
    pi_md = pi_sp = pi_mp = np.asarray(game.ref)
    for _ in range(steps):
        pi_md = nash_md_step(pi_md, game.ref, game.pref, eta, tau)
        pi_sp = self_play_md_step(pi_sp, game.ref, game.pref, eta, tau)
        pi_mp = nash_mirror_prox_step(pi_mp, game.ref, game.pref, eta, tau)[1]
    np.testing.assert_allclose(
        nash_md(game, tau, steps, eta=eta, schedule="constant").final, pi_md, rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(self_play_md(game, tau, steps, eta=eta).final, pi_sp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nash_mirror_prox(game, tau, steps, eta=eta).final, pi_mp, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- Theorem 1


def check_theorem_one(result, tau, tol=1e-12):
    iterations, kl, eta = (result.metric(n) for n in ("iteration", "kl", "eta"))
    assert np.array_equal(iterations, np.arange(len(kl)))
    np.testing.assert_allclose(eta[:-1], theorem_step_sizes(tau, len(kl) - 1))
    # one-step inequality KL_{t+1} ≤ (1 − η_t τ) KL_t + 2η_t²; tol covers the oracle's residual
    # (≤ 1e-12) and rounding in KL sums.
    one_step = (1 - eta[:-1] * tau) * kl[:-1] + 2 * eta[:-1] ** 2
    assert np.all(kl[1:] <= one_step + tol)
    # KL_T ≤ 8/(τ²(T+1)) at every T (η_0 τ = 1, so KL_1 is already inside the bound)
    assert np.all(kl <= 8 / (tau**2 * (iterations + 1)) + tol)


def test_theorem_one_on_dice_every_step():
    tau, game = 0.1, dice(ref=DICE_REF)
    result = nash_md(game, tau, 3000, checkpoint_every=1)
    check_theorem_one(result, tau)
    # measured independently: the schedule reaches ~1e-11 after 20k steps; after 3k steps it is far below the bound
    assert result.last("kl") < 1e-8


@given(game=games, tau=st.floats(0.05, 1.0))
def test_theorem_one_on_random_games(game, tau):
    check_theorem_one(nash_md(game, tau, 300, checkpoint_every=1), tau)


def test_theorem_one_on_a_contextual_game():
    game = random_contextual_game(20, 6, seed=3, ref="dirichlet")
    check_theorem_one(nash_md(game, 0.2, 300, checkpoint_every=1), 0.2)


# ---------------------------------------------------------------- constant-η bias and Nash-MD-PG


@pytest.mark.parametrize("eta", [1.0, 5.0])
def test_constant_eta_nash_md_converges_to_the_biased_fixed_point(eta):
    tau, game = 0.1, dice(ref=DICE_REF)
    expected = biased_fixed_point(game, tau, eta * tau)
    result = nash_md(game, tau, 4000, eta=eta, schedule="constant")
    # geometric convergence (rate ≈ 1 − ητ·const): after 4000 steps rounding dominates, 1e-10 is safe
    np.testing.assert_allclose(result.final, expected, atol=1e-10)
    # measured independently: KL(π*_τ, ·) stalls near 4.3e-6 (η = 1) and 1.1e-4 (η = 5): not π*_τ
    assert result.last("kl") == pytest.approx({1.0: 4.3e-6, 5.0: 1.1e-4}[eta], rel=0.05)
    if eta == 5.0:  # hand-computed vector (6 digits)
        np.testing.assert_allclose(result.final, [0.517842, 0.254530, 0.227627], atol=2e-6)


@pytest.mark.parametrize("mixture", [0.0, 0.125, 0.5, 1.0])
def test_expected_nash_md_pg_stationary_point(mixture):
    tau, game = 0.1, dice(ref=DICE_REF)
    result = nash_md_pg(game, tau, 20_000, learning_rate=5.0, mixture=mixture)
    expected = biased_fixed_point(game, tau, mixture)
    np.testing.assert_allclose(result.final, expected, atol=1e-9)
    star = regularized_nash_equilibrium(game, tau)
    if mixture == 0.0:  # only self-play's stationary point is π*_τ
        np.testing.assert_allclose(result.final, star, atol=1e-9)
        assert result.last("exploitability") < 1e-12
    else:  # notes: KL(π*_τ, ·) = 6.7e-6, 1.1e-4, 4.7e-4 for β = 0.125, 0.5, 1
        assert result.last("kl") == pytest.approx({0.125: 6.7e-6, 0.5: 1.1e-4, 1.0: 4.7e-4}[mixture], rel=0.05)


def test_pg_with_mixture_equal_eta_tau_matches_constant_eta_nash_md():
    tau, eta, game = 0.1, 5.0, dice(ref=DICE_REF)
    md = nash_md(game, tau, 4000, eta=eta, schedule="constant").final
    pg = nash_md_pg(game, tau, 20_000, learning_rate=5.0, mixture=eta * tau).final
    np.testing.assert_allclose(pg, md, atol=1e-9)


def test_best_response_to_reference_is_the_mixture_one_pg_stationary_point():
    # β = 1: the opponent is μ; the closed form π ∝ μ exp(Pμ/τ) must be PG's stationary point.
    tau, game = 0.1, dice(ref=DICE_REF)
    br = best_response_to_reference(game, tau)
    np.testing.assert_allclose(br.final, biased_fixed_point(game, tau, 1.0), atol=1e-12)
    assert br.last("exploitability") > 1e-6  # exploitable (preference-hacks)


# ---------------------------------------------------------------- exact fixed points


@given(game=games, tau=st.floats(0.02, 2.0), eta_tau=st.floats(0.01, 1.0))
def test_regularized_nash_is_an_exact_fixed_point_of_self_play_and_nash_mp(game, tau, eta_tau):
    star = regularized_nash_equilibrium(game, tau)
    eta = eta_tau / tau
    # the oracle's fixed-point residual is ≤ 1e-12, so one step moves π* by at most ~1e-12
    np.testing.assert_allclose(self_play_md(game, tau, 3, eta=eta, init=star).final, star, atol=1e-11)
    half, full = nash_mirror_prox_step(star, game.ref, game.pref, 2 * eta, tau)
    np.testing.assert_allclose(half, star, atol=1e-11)
    np.testing.assert_allclose(full, star, atol=1e-11)


def test_constant_eta_nash_md_step_moves_off_the_regularized_nash():
    # contrast with self-play: the regularisation sits in the opponent, so π*_τ is not stationary
    tau, game = 0.1, dice(ref=DICE_REF)
    star = regularized_nash_equilibrium(game, tau)
    assert np.max(np.abs(nash_md_step(star, game.ref, game.pref, 5.0, tau) - star)) > 1e-4


@given(game=games, tau=st.floats(0.05, 1.0), eta=st.floats(0.5, 2.0))
def test_nash_mirror_prox_kl_decreases_geometrically(game, tau, eta):
    result = nash_mirror_prox(game, tau, 60, eta=eta, checkpoint_every=1)
    kl = result.metric("kl")
    active = kl[:-1] > 1e-12  # above the floor set by the oracle's accuracy
    # Tiapkin et al. 2025 (arXiv 2505.19731): contraction ≤ 1/(1+ητ) per iteration for η ≤ 2
    assert np.all(kl[1:][active] <= kl[:-1][active] / (1 + eta * tau) + 1e-13)


# ---------------------------------------------------------------- mirror-descent lemmas

simplex = st.integers(2, 8).flatmap(
    lambda k: st.tuples(*[st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k) for _ in range(3)])
)


def _normalise(v):
    v = np.asarray(v)
    return v / v.sum()


@given(vectors=simplex, scale=st.floats(0.01, 5.0), c=st.floats(0.0, 1.0), seed=st.integers(0, 999))
def test_mirror_descent_lemmas(vectors, scale, c, seed):
    from fixpoint_rl.tabular.core.mirror import geometric_mixture_log, mirror_step_log

    pi, pi_minus, mu = (_normalise(v) for v in vectors)
    delta = scale * np.random.default_rng(seed).uniform(-1, 1, size=pi.shape)
    # Lemma 2 (tight form via Hoeffding): KL(π, π⁻e^δ/Z) ≤ KL(π, π⁻) + ⟨π⁻ − π, δ⟩ + ½‖δ‖²_∞
    plus = np.exp(mirror_step_log(np.log(pi_minus), delta))
    lhs = kl_divergence(pi, plus)
    rhs = kl_divergence(pi, pi_minus) + (pi_minus - pi) @ delta + 0.5 * np.max(np.abs(delta)) ** 2
    assert lhs <= rhs + 1e-12
    # Lemma 1: KL(π, π^μ) ≤ (1−c) KL(π, π_t) + c KL(π, μ)
    mix = np.exp(geometric_mixture_log(np.log(pi_minus), np.log(mu), c))
    assert kl_divergence(pi, mix) <= (1 - c) * kl_divergence(pi, pi_minus) + c * kl_divergence(pi, mu) + 1e-12


# ---------------------------------------------------------------- baselines


def test_fictitious_play_average_converges_to_regularized_nash():
    tau, game = 0.1, rock_paper_scissors(ref=DICE_REF)
    result = fictitious_play(game, tau, 4000)
    kl_avg = result.metric("kl_average")
    # smooth fictitious play's average converges at ~1/T; require a 100× drop and a small value
    assert kl_avg[-1] < 1e-2 * kl_avg[1] and kl_avg[-1] < 1e-4
    np.testing.assert_allclose(result.extras["average"].sum(), 1.0)


@given(game=games, tau=st.floats(0.05, 1.0), eta_tau=st.floats(0.05, 1.0))
def test_online_mirror_descent_equals_self_play_md(game, tau, eta_tau):
    # NLHF eqs. 7-8: π_{t+1} ∝ π^μ_t exp(η P(y ≻ π_t)) with π^μ_t ∝ π_t^(1−ητ) μ^(ητ) is, after
    # normalisation, the self-play (MTPO) update μ^(ητ) π_t^(1−ητ) exp(η P(y ≻ π_t)); rounding only.
    eta = eta_tau / tau
    omd = online_mirror_descent(game, tau, 20, eta=eta).final
    np.testing.assert_allclose(omd, self_play_md(game, tau, 20, eta=eta).final, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- NLHF App. A and §3.2


def test_app_a_preference_beats_reward_maximiser():
    game = bradley_terry([0.0, np.log(9.0), np.log(2.0)])
    rewards = np.array([0.0, np.log(9.0), np.log(2.0)])
    # the constrained class {π(y1) = 2π(y2)} is π = (2a, a, 1 − 3a), a ∈ [0, 1/3]
    grid = np.linspace(0, 1 / 3, 3001)
    policies = np.stack([2 * grid, grid, 1 - 3 * grid], axis=1)
    pi_r = policies[np.argmax(policies @ rewards)]
    np.testing.assert_allclose(pi_r, [2 / 3, 1 / 3, 0], atol=1e-12)
    pi_p = np.array([0.0, 0.0, 1.0])
    # π_P is the preference maximiser of the class: it wins or ties against every member
    assert np.all(pi_p @ game.pref @ policies.T >= 0.5 - 1e-12)
    assert pi_p @ game.pref @ pi_r == pytest.approx(50 / 99, abs=1e-12)
    assert pi_r @ rewards > pi_p @ rewards


@given(eps=st.floats(0.01, 0.3))
def test_rlhf_bradley_terry_jumps_with_the_sign_of_eps_while_nash_moves_continuously(eps):
    up, down = three_type_cycle(eps), three_type_cycle(-eps)
    # NLHF §3.2: unregularised BT-RLHF picks y1 for ε > 0 and y2 for ε < 0
    np.testing.assert_array_equal(rlhf_bradley_terry(up, 0.0).final, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(rlhf_bradley_terry(down, 0.0).final, [0.0, 1.0, 0.0])
    # the Nash equilibrium (c, b, a) moves by O(ε) between ±ε (Lipschitz, constant ≤ 2 in sup norm)
    nash_up = np.array([1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps])
    nash_down = np.array([1 / 3 - eps / 2, 1 / 3 - eps / 2, 1 / 3 + eps])
    assert np.max(np.abs(nash_up - nash_down)) <= 2 * eps + 1e-12
    for game, nash in ((up, nash_up), (down, nash_down)):
        assert exploitability(game, nash) < 1e-12
    # and the regularised equilibrium at τ = 0.05 is continuous too: it moves by at most
    # (1/τ)·‖ΔP‖ (a crude Lipschitz bound), while RLHF's policy moves by 1 in sup norm
    gap = np.max(np.abs(regularized_nash_equilibrium(up, 0.05) - regularized_nash_equilibrium(down, 0.05)))
    assert gap < 1.0


@given(rewards=st.lists(st.floats(-3, 3), min_size=2, max_size=6), seed=st.integers(0, 99))
def test_bradley_terry_fit_recovers_true_rewards(rewards, seed):
    # on an exact BT game the population MLE is the generating reward up to a constant
    rewards = np.asarray(rewards)
    mu = np.random.default_rng(seed).dirichlet(np.ones(len(rewards))) * 0.9 + 0.1 / len(rewards)
    result = rlhf_bradley_terry(bradley_terry(rewards, ref=mu), 0.5)
    # L-BFGS on a smooth strictly convex (on Σμr = 0) objective, gtol 1e-12: 1e-5 on r is safe
    np.testing.assert_allclose(result.extras["reward"], rewards - mu @ rewards, atol=1e-5)
    np.testing.assert_allclose(result.final, mu * np.exp(rewards / 0.5) / (mu @ np.exp(rewards / 0.5)), atol=1e-5)


# ---------------------------------------------------------------- sampled versions


@pytest.mark.parametrize("solver", ["nash_md", "self_play_md"])
def test_sampled_versions_error_shrinks_with_n_and_seed_reproduces(solver):
    tau, game = 0.2, random_game(6, seed=1, ref="dirichlet")
    run = {"nash_md": lambda n, s: nash_md(game, tau, 400, n_samples=n, seed=s),
           "self_play_md": lambda n, s: self_play_md(game, tau, 400, eta=2.5, n_samples=n, seed=s)}[solver]
    errors = {n: np.mean([run(n, seed).last("kl") for seed in range(4)]) for n in (10, 100, 1000, 10_000)}
    # the stochastic part of the error scales like 1/n (variance of a mean of n Bernoullis):
    # it must decrease with n, and ×100 more samples must cut it by at least 10× (≈ 100× for the
    # pure-noise part; Nash-MD's deterministic O(1/T) part, ~1e-6 at T = 400, limits the last ratio)
    assert errors[10] > errors[100] > errors[1000] > errors[10_000]
    assert errors[1000] < errors[10] / 10 and errors[10_000] < errors[100] / 10
    assert errors[10_000] < 1e-3
    a, b = run(100, 7), run(100, 7)
    np.testing.assert_array_equal(a.final, b.final)
    np.testing.assert_array_equal(a.metric("kl"), b.metric("kl"))
    assert not np.array_equal(a.final, run(100, 8).final)


def test_sampled_nash_md_pg_is_reproducible_and_approaches_the_stationary_point():
    tau, game = 0.1, dice(ref=DICE_REF)
    a = nash_md_pg(game, tau, 3000, learning_rate=2.0, n_samples=200, seed=3)
    b = nash_md_pg(game, tau, 3000, learning_rate=2.0, n_samples=200, seed=3)
    np.testing.assert_array_equal(a.final, b.final)
    # unbiased gradient noise with a constant step: the iterate hovers near π*_τ
    assert a.last("kl") < 1e-3


# ---------------------------------------------------------------- contextual games


def test_contextual_run_equals_per_context_runs():
    game = random_contextual_game(5, 4, seed=2, ref="dirichlet")
    tau = 0.3
    together = nash_md(game, tau, 50)
    sp = self_play_md(game, tau, 50, eta=2.0)
    for x in range(5):
        alone = game.context(x)
        np.testing.assert_allclose(together.final[x], nash_md(alone, tau, 50).final, atol=1e-14)
        np.testing.assert_allclose(sp.final[x], self_play_md(alone, tau, 50, eta=2.0).final, atol=1e-14)
    weights = np.asarray(game.context_weights)
    star = regularized_nash_equilibrium(game, tau)
    assert together.last("kl") == pytest.approx(kl_divergence(star, together.final) @ weights, rel=1e-12)


# ---------------------------------------------------------------- invalid inputs


@given(tau=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.just(float("nan")), st.just(float("inf"))))
@settings(max_examples=15)
def test_non_positive_or_non_finite_tau_is_rejected(tau):
    game = dice()
    for call in (
        lambda: nash_md(game, tau, 10),
        lambda: self_play_md(game, tau, 10, eta=1.0),
        lambda: nash_mirror_prox(game, tau, 10),
        lambda: fictitious_play(game, tau, 10),
        lambda: nash_md_pg(game, tau, 10),
        lambda: best_response_to_reference(game, tau),
        lambda: nash_md_step([0.5, 0.3, 0.2], [1 / 3] * 3, game.pref, 1.0, tau),
    ):
        with pytest.raises(ValueError, match="tau"):
            call()


@given(tau=st.floats(0.01, 10.0), excess=st.floats(1.0001, 100.0))
@settings(max_examples=15)
def test_eta_tau_above_one_is_rejected(tau, excess):
    game, eta = dice(), excess / tau
    with pytest.raises(ValueError, match="eta"):
        nash_md(game, tau, 10, eta=eta, schedule="constant")
    with pytest.raises(ValueError, match="eta"):
        self_play_md(game, tau, 10, eta=eta)
    with pytest.raises(ValueError, match="eta"):
        nash_md_step([0.5, 0.3, 0.2], [1 / 3] * 3, game.pref, eta, tau)


@pytest.mark.parametrize(
    "call",
    [
        lambda g: nash_md(g, 0.1, 0),
        lambda g: nash_md(g, 0.1, 10, eta=1.0),  # eta with the theorem schedule
        lambda g: nash_md(g, 0.1, 10, schedule="constant"),  # constant without eta
        lambda g: nash_md(g, 0.1, 10, schedule="linear"),
        lambda g: nash_md(g, 0.1, 10, n_samples=0),
        lambda g: nash_md(g, 0.1, 10, seed=-1),
        lambda g: nash_md(g, 0.1, 10, init=[1.0, 0.0, 0.0]),  # zero in init
        lambda g: nash_md(g, 0.1, 10, init=[0.5, 0.5]),  # wrong shape
        lambda g: nash_md(g, 0.1, 10, init=[0.5, 0.5, np.nan]),
        lambda g: nash_md(g, 0.1, 10, checkpoints=1),
        lambda g: nash_md(g.pref, 0.1, 10),  # not a PreferenceGame
        lambda g: nash_md_pg(g, 0.1, 10, mixture=1.5),
        lambda g: nash_md_pg(g, 0.1, 10, learning_rate=0.0),
        lambda g: nash_mirror_prox(g, 0.1, 10, eta=-1.0),
        lambda g: rlhf_bradley_terry(g, -0.1),
        lambda g: rlhf_bradley_terry(g, 0.1, n_pairs=0),
        lambda g: nash_md_step([0.5, 0.3, 0.2], [0.5, 0.5, 0.0], g.pref, 1.0, 0.1),  # μ with a zero
        lambda g: nash_md_step([0.5, 0.3, 0.2], [1 / 3] * 3, g.pref[:2], 1.0, 0.1),  # wrong pref shape
        lambda g: self_play_md_step([0.5, 0.3, np.nan], [1 / 3] * 3, g.pref, 1.0, 0.1),
    ],
)
def test_invalid_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call(dice())


def test_sampled_bradley_terry_fit_approaches_the_population_fit():
    # the empirical MLE on n pairs from μ×μ is consistent: its error shrinks like n^(-1/2)
    game = three_type_cycle(0.2, ref=[0.5, 0.3, 0.2])
    exact = rlhf_bradley_terry(game, 0.1).extras["reward"]
    errors = [
        np.mean([np.max(np.abs(rlhf_bradley_terry(game, 0.1, n_pairs=n, seed=s).extras["reward"] - exact))
                 for s in range(5)])
        for n in (1_000, 100_000)
    ]
    # ×100 samples → ×10 smaller error in expectation; demand ×4 (5 seeds average out the noise)
    assert errors[1] < errors[0] / 4
    a, b = (rlhf_bradley_terry(game, 0.1, n_pairs=500, seed=9) for _ in range(2))
    np.testing.assert_array_equal(a.final, b.final)


def test_checkpoints_and_result_fields():
    game = dice(ref=DICE_REF)
    every = nash_md(game, 0.1, 100, checkpoint_every=25)
    np.testing.assert_array_equal(every.metric("iteration"), [0, 25, 50, 75, 100])
    logspaced = self_play_md(game, 0.1, 10_000, eta=2.0, checkpoints=20)
    iterations = logspaced.metric("iteration")
    assert iterations[0] == 0 and iterations[-1] == 10_000 and len(iterations) <= 20
    assert np.all(np.diff(iterations) > 0) and np.all(np.diff(np.log(iterations[1:])) > 0.1)
    assert every.config["solver"] == "nash_md" and every.config["seed"] == 0
    assert every.wall_time_s >= 0 and every.compile_time_s >= 0
    np.testing.assert_allclose(every.extras["reference_solution"], regularized_nash_equilibrium(game, 0.1))


def test_single_steps_validate_the_preference_matrix():
    # audit follow-up: the step functions take raw arrays, so they must validate pref themselves
    from fixpoint_rl.tabular.nlhf import nash_md_step, self_play_md_step

    uniform = np.ones(3) / 3
    for step in (nash_md_step, self_play_md_step):
        with pytest.raises(ValueError, match="pref"):
            step(uniform, uniform, np.full((3, 3), 2.0), 1.0, 0.1)
        with pytest.raises(ValueError, match="pref"):
            step(uniform, uniform, np.full((3, 3), 0.2), 1.0, 0.1)
