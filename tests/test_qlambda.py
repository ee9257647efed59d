"""Distributional Q(λ), Retrace and tree-backup (Tang et al. 2024, arXiv 2402.05766).

Independent oracles used here:
  * ``_one_step_oracle``: nested Python loops over (s, a, s', k) with the core hat-matrix
    projection — Π_C T^π written from its definition;
  * ``_eta_c_oracle``: η_C by a least-squares solve of the dense linear system
    η = L η, Σ_i η(s, a, i) = 1, with L assembled entry by entry from the hat matrix (no iteration);
  * Q^π by ``np.linalg.solve`` of (I − γ P^π_sa) q = R;
  * scalar Q(λ)/Retrace/tree-backup/n-step returns by the rlax-style backward recursion
    (``general_off_policy_returns_from_action_values``), written here on scalars;
  * exhaustive enumeration of all length-2 windows to get the exact expectation of sampled targets;
  * Monte-Carlo returns for η^π, compared with the W1 approximation bound Δ/(2(1−γ)).
Tolerances are stated at each assertion.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixpoint_rl.envs import TabularMDP, garnet
from fixpoint_rl.envs.mdp import epsilon_greedy_policy, greedy_policy, random_policy
from fixpoint_rl.tabular import (
    CategoricalSupport,
    categorical_projection,
    contraction_modulus,
    cramer_distance,
    distribution_mean,
    distributional_operator,
    q_lambda_bound_from_mismatch,
    q_lambda_contraction_bound,
    wasserstein1,
)
from fixpoint_rl.tabular.core.categorical import projection_matrix
from fixpoint_rl.tabular.qlambda import (
    categorical_evaluation_fixed_point,
    distributional_td_learning,
    iterate_distributional_operator,
    monte_carlo_returns,
    policy_q_values,
    sampled_distributional_target,
    trace_coefficients,
    value_mode_rate,
)

TRACES = ["q_lambda", "retrace", "tree_backup"]
GAMMA = 0.9
# rewards in [0, 1): every return lies in [0, 1/(1−γ)) = [0, 10) — no clipping, means preserved
SUPPORT = CategoricalSupport(0.0, 10.0, 21)
seeds = st.integers(0, 2**32 - 1)


def _problem(seed, S=4, A=2, eps=0.3, kind="state_action", branching=2):
    mdp = garnet(S, A, branching, seed, gamma=GAMMA, reward_kind=kind)
    rng = np.random.default_rng(seed)
    pi = greedy_policy(rng.random((S, A)))
    mu = epsilon_greedy_policy(pi, eps)
    return mdp, pi, mu


def _one_step_oracle(mdp, eta, pi, support):
    values, joint = mdp.reward_outcomes()
    S, A, M = eta.shape
    out = np.zeros_like(eta)
    for s, a in itertools.product(range(S), range(A)):
        for s1 in range(S):
            nxt = sum(pi[s1, b] * eta[s1, b] for b in range(A))
            for k in range(values.shape[-1]):
                if joint[s, a, s1, k] > 0:
                    atoms = values[s, a, s1, k] + mdp.gamma * support.atoms
                    out[s, a] += joint[s, a, s1, k] * categorical_projection(atoms, nxt, support)
    return out


def _eta_c_oracle(mdp, pi, support):
    values, joint = mdp.reward_outcomes()
    S, A, M = mdp.n_states, mdp.n_actions, support.m
    L = np.zeros((S, A, M, S, A, M))
    for s, a, s1, k in itertools.product(range(S), range(A), range(S), range(values.shape[-1])):
        if joint[s, a, s1, k] == 0:
            continue
        H = projection_matrix(values[s, a, s1, k] + mdp.gamma * support.atoms, support)  # [j, i]
        for b in range(A):
            L[s, a, :, s1, b, :] += joint[s, a, s1, k] * pi[s1, b] * H.T
    n = S * A * M
    L = L.reshape(n, n)
    mass_rows = np.kron(np.eye(S * A), np.ones((1, M)))
    system = np.vstack([np.eye(n) - L, mass_rows])
    rhs = np.concatenate([np.zeros(n), np.ones(S * A)])
    solution, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    return solution.reshape(S, A, M)


def _random_eta(rng, S, A, M, signed=False):
    eta = rng.dirichlet(np.ones(M), size=(S, A))
    if signed:
        eta = eta + 0.3 * rng.normal(size=eta.shape)
        eta -= (eta.sum(-1, keepdims=True) - 1.0) / M
    return eta


# --- special cases --------------------------------------------------------------------------


@given(seeds, st.sampled_from(["state_action", "transition"]))
@settings(max_examples=10)
def test_lambda_zero_is_one_step_operator_for_every_trace(seed, kind):
    mdp, pi, mu = _problem(seed, kind=kind)
    rng = np.random.default_rng(seed)
    eta = _random_eta(rng, 4, 2, SUPPORT.m, signed=True)
    expected = _one_step_oracle(mdp, eta, pi, SUPPORT)
    for trace in TRACES:
        for projection, horizon in (("per_step", None), ("per_step", 3), ("per_branch", 2)):
            out = distributional_operator(
                mdp, eta, pi, mu, 0.0, support=SUPPORT, trace=trace, projection=projection,
                horizon=horizon,
            )
            # sums of ≤ 40 O(1) products: 1e-12
            np.testing.assert_allclose(out, expected, atol=1e-12)


@given(seeds)
@settings(max_examples=8)
def test_on_policy_lambda_one_is_monte_carlo_independent_of_eta(seed):
    mdp, pi, _ = _problem(seed)
    mu = random_policy(mdp, seed)  # stochastic on-policy case: μ = π
    rng = np.random.default_rng(seed)
    first = distributional_operator(mdp, _random_eta(rng, 4, 2, 21), mu, mu, 1.0, support=SUPPORT)
    second = distributional_operator(mdp, _random_eta(rng, 4, 2, 21, True), mu, mu, 1.0, support=SUPPORT)
    # the inner solve stops at a 1e-14 sup change; rate γ gives error ≤ 1e-14/(1−γ) ≈ 1e-13
    np.testing.assert_allclose(first, second, atol=1e-11)
    np.testing.assert_allclose(first, _eta_c_oracle(mdp, mu, SUPPORT), atol=1e-10)
    assert contraction_modulus(mdp, mu, mu, 1.0, support=SUPPORT, n_probes=1, iterations=2) < 1e-10


# --- targets: mass and sign ----------------------------------------------------------------------


@given(seeds, st.floats(0, 1), st.sampled_from(TRACES))
@settings(max_examples=15)
def test_every_expected_target_has_mass_one(seed, lam, trace):
    mdp, pi, mu = _problem(seed, eps=0.5)
    eta = _random_eta(np.random.default_rng(seed), 4, 2, 21, signed=True)
    for projection, horizon in (("per_step", None), ("per_branch", 3)):
        out = distributional_operator(
            mdp, eta, pi, mu, lam, support=SUPPORT, trace=trace, projection=projection, horizon=horizon
        )
        np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-12)


@given(seeds)
@settings(max_examples=10)
def test_retrace_and_tree_backup_nonnegative_q_lambda_signed(seed):
    # greedy π against ε-greedy μ: λμ(a') > π(a') = 0 on every non-greedy action
    mdp, pi, mu = _problem(seed, eps=0.5, branching=4)
    greedy = np.argmax(pi, 1)
    eta = np.zeros((4, 2, 21))
    eta[:, :, -1] = 1.0  # non-greedy actions: Dirac at the top atom
    eta[np.arange(4), greedy, -1] = 0.0
    eta[np.arange(4), greedy, 0] = 1.0  # greedy action: Dirac at the bottom atom
    for projection, horizon in (("per_step", None), ("per_branch", 3)):
        for trace in ("retrace", "tree_backup"):
            out = distributional_operator(
                mdp, eta, pi, mu, 1.0, support=SUPPORT, trace=trace, projection=projection, horizon=horizon
            )
            assert out.min() >= -1e-14
        q_lambda = distributional_operator(
            mdp, eta, pi, mu, 1.0, support=SUPPORT, projection=projection, horizon=horizon
        )
        assert q_lambda.min() < -1e-3


# --- fixed points ----------------------------------------------------------------------------


@given(seeds, st.sampled_from([0.0, 0.5, 0.9, 1.0]), st.sampled_from(TRACES), st.floats(0.0, 0.6))
@settings(max_examples=12)
def test_per_step_fixed_point_is_eta_c_and_mean_is_q_pi(seed, lam, trace, eps):
    mdp, pi, mu = _problem(seed, eps=eps)
    eta_c = _eta_c_oracle(mdp, pi, SUPPORT)
    result = iterate_distributional_operator(
        mdp, pi, mu, lam, support=SUPPORT, trace=trace, tol=1e-12, reference=eta_c
    )
    assert result.extras["converged"]
    # stop at sup-ℓ2 change 1e-12 with rate ≤ 0.95: error ≲ 2e-11 in ℓ2; masses to 1e-9
    np.testing.assert_allclose(result.final, eta_c, atol=1e-9)
    np.testing.assert_allclose(
        distribution_mean(result.final, SUPPORT), policy_q_values(mdp, pi), atol=1e-8
    )


@given(seeds, st.sampled_from([0.5, 1.0]), st.sampled_from(TRACES))
@settings(max_examples=6)
def test_per_branch_fixed_point_mean_is_q_pi(seed, lam, trace):
    mdp, pi, mu = _problem(seed, eps=0.3)
    result = iterate_distributional_operator(
        mdp, pi, mu, lam, support=SUPPORT, trace=trace, projection="per_branch", horizon=3, tol=1e-11
    )
    assert result.extras["converged"]
    np.testing.assert_allclose(
        distribution_mean(result.final, SUPPORT), policy_q_values(mdp, pi), atol=1e-8
    )


def test_power_iteration_eta_c_matches_linear_solve():
    mdp, pi, _ = _problem(3, kind="transition")
    eta = categorical_evaluation_fixed_point(mdp, pi, support=SUPPORT)
    # power iteration stopped at a 1e-12 sup change, rate γ = 0.9: error ≤ 1e-11
    np.testing.assert_allclose(eta, _eta_c_oracle(mdp, pi, SUPPORT), atol=1e-10)


def test_eta_c_close_to_monte_carlo_returns():
    mdp, pi, _ = _problem(5)
    support = CategoricalSupport(0.0, 10.0, 101)
    eta = categorical_evaluation_fixed_point(mdp, pi, support=support)
    samples = monte_carlo_returns(mdp, pi, 4000, seed=1)
    q = policy_q_values(mdp, pi)
    n = samples.shape[-1]
    for s, a in itertools.product(range(4), range(2)):
        x = samples[s, a]
        # W1 bound Δ/(2(1−γ)) = 0.25 plus the empirical-measure error (≈ spread/√N ≲ 0.05)
        w1 = wasserstein1(eta[s, a], np.full(n, 1.0 / n), atoms_p=support.atoms, atoms_q=x)
        assert w1 <= support.delta / (2 * (1 - GAMMA)) + 0.1
        # the Monte-Carlo mean is within 5 standard errors of Q^π
        assert abs(x.mean() - q[s, a]) <= 5 * x.std() / np.sqrt(n) + 1e-9


# --- contraction -------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("eps", [0.1, 0.6])
def test_lipschitz_ratio_never_exceeds_beta_two(lam, eps):
    mdp, pi, mu = _problem(11, eps=eps)
    ratio = contraction_modulus(mdp, pi, mu, lam, support=SUPPORT, n_probes=2, iterations=8)
    kappa = np.max(np.abs(pi - lam * mu).sum(1))
    beta2 = np.sqrt(GAMMA) * kappa / (1 - lam * np.sqrt(GAMMA))
    # the MDP form takes contraction_modulus's arguments and computes the same κ (rounding only)
    assert q_lambda_contraction_bound(mdp, pi, mu, lam) == pytest.approx(beta2, rel=1e-12)
    assert ratio <= beta2 + 1e-12
    mismatch = np.max(np.abs(pi - mu).sum(1))
    assert beta2 <= q_lambda_bound_from_mismatch(GAMMA, lam, mismatch, p=2) + 1e-12
    assert ratio > 0.0


def test_contraction_bound_closed_form_and_region():
    g = 0.81
    assert q_lambda_bound_from_mismatch(g, 0.0, 1.0, p=2) == pytest.approx(0.9)
    assert q_lambda_bound_from_mismatch(g, 0.5, 0.4, p=1) == pytest.approx(g * 0.7 / (1 - 0.5 * g))
    # β_p < 1 ⇔ λε < (1 − γ^{1/p})/γ^{1/p}
    edge = (1 - 0.9) / 0.9
    assert q_lambda_bound_from_mismatch(g, 1.0, edge * 0.99, p=2) < 1 < q_lambda_bound_from_mismatch(
        g, 1.0, edge * 1.01, p=2
    )


@given(seeds, st.floats(0, 1), st.floats(0, 1))
@settings(max_examples=10)
def test_value_mode_rate(seed, lam, eps):
    mdp, pi, _ = _problem(seed)
    mu = epsilon_greedy_policy(random_policy(mdp, seed), eps)
    rate = value_mode_rate(mdp, pi, mu, lam, support=SUPPORT)
    # exact eigenvalue of the mean dynamics; the inner solve (1e-15) limits accuracy to ~1e-12
    assert rate == pytest.approx(GAMMA * (1 - lam) / (1 - lam * GAMMA), abs=1e-9)


def test_asymptotic_rate_matches_value_mode_for_small_mismatch():
    # regression check of §2.3's observation: for small ‖π − μ‖ the value mode is the slowest
    mdp, pi, mu = _problem(4, eps=0.1)
    for lam in (0.0, 0.5):
        rate = contraction_modulus(mdp, pi, mu, lam, support=SUPPORT, mode="rate", n_probes=2, iterations=60)
        assert rate == pytest.approx(GAMMA * (1 - lam) / (1 - lam * GAMMA), abs=2e-2)


# --- sampled targets ---------------------------------------------------------------------------


def _scalar_return(q, pi, c, states, actions, rewards, gamma):
    """rlax-style backward recursion on scalars: G_t = r_t + γ[V(x') − c q(x', a') + c G_{t+1}]."""
    n = len(rewards)
    v = lambda x: float(np.dot(pi[x], q[x]))  # noqa: E731
    G = rewards[n - 1] + gamma * v(states[n])
    for t in range(n - 2, -1, -1):
        x1, a1 = states[t + 1], actions[t + 1]
        G = rewards[t] + gamma * (v(x1) - c[x1, a1] * q[x1, a1] + c[x1, a1] * G)
    return G


@given(seeds, st.integers(1, 6), st.floats(0, 1), st.sampled_from(TRACES + ["n_step"]))
def test_sampled_target_means_equal_scalar_returns(seed, n, lam, trace):
    rng = np.random.default_rng(seed)
    S, A, M = 4, 3, 31
    support = CategoricalSupport(0.0, 10.0, M)
    eta = rng.dirichlet(np.ones(M) * 0.5, size=(S, A))
    pi = rng.dirichlet(np.ones(A), size=S)
    mu = rng.dirichlet(np.ones(A), size=S)
    states = rng.integers(0, S, n + 1)
    actions = rng.integers(0, A, n + 1)
    rewards = rng.random(n)
    c = trace_coefficients(pi, mu, lam, trace)
    q = distribution_mean(eta, support)
    if trace == "n_step":  # plain n-step return Σ γ^t r_t + γ^n V(x_n), no correction terms
        expected = sum(0.9**t * rewards[t] for t in range(n)) + 0.9**n * float(pi[states[n]] @ q[states[n]])
    else:
        expected = _scalar_return(q, pi, c, states, actions, rewards, 0.9)
    for projection in ("per_branch", "per_step"):
        target = sampled_distributional_target(
            eta, pi, states, actions, rewards, lam, support=support, gamma=0.9, trace=trace, mu=mu,
            projection=projection,
        )
        # sums of ≤ 6·3·31 O(1) terms: 1e-11
        assert target.sum() == pytest.approx(1.0, abs=1e-12)
        assert distribution_mean(target, support) == pytest.approx(expected, abs=1e-11)


@pytest.mark.parametrize("trace", TRACES)
@pytest.mark.parametrize("projection", ["per_step", "per_branch"])
def test_expected_sampled_target_equals_truncated_operator(trace, projection):
    # enumerate every length-2 window (x1, a1, x2) under μ: Σ Pr · target = 𝒜 with horizon 2
    mdp, pi, mu = _problem(7, S=3, A=2, eps=0.4, branching=3)
    rng = np.random.default_rng(0)
    eta = _random_eta(rng, 3, 2, 21, signed=True)
    lam = 0.7
    expected = distributional_operator(
        mdp, eta, pi, mu, lam, support=SUPPORT, trace=trace, projection=projection, horizon=2
    )
    R = mdp.expected_reward
    for s, a in itertools.product(range(3), range(2)):
        total = np.zeros(21)
        for x1, a1, x2 in itertools.product(range(3), range(2), range(3)):
            prob = mdp.P[s, a, x1] * mu[x1, a1] * mdp.P[x1, a1, x2]
            if prob == 0:
                continue
            target = sampled_distributional_target(
                eta, pi, np.array([s, x1, x2]), np.array([a, a1, 0]), np.array([R[s, a], R[x1, a1]]),
                lam, support=SUPPORT, gamma=GAMMA, trace=trace, mu=mu, projection=projection,
            )
            total += prob * target
        np.testing.assert_allclose(total, expected[s, a], atol=1e-12)


# --- learning ---------------------------------------------------------------------------------


def test_td_learning_converges_towards_eta_c_and_is_reproducible():
    mdp, pi, mu = _problem(2, eps=0.3)
    kwargs = dict(support=SUPPORT, n_steps=4, n_updates=30_000, n_checkpoints=5, seed=3)
    result = distributional_td_learning(mdp, pi, mu, 0.8, **kwargs)
    errors = result.metric("mean_cramer_error")
    start = float(np.mean(cramer_distance(np.full((4, 2, 21), 1 / 21), result.extras["reference"], SUPPORT)))
    # stochastic approximation: the error must fall well below the uniform start's
    assert errors[-1] < 0.3 * start
    again = distributional_td_learning(mdp, pi, mu, 0.8, **kwargs)
    np.testing.assert_array_equal(result.final, again.final)
    np.testing.assert_allclose(result.final.sum(-1), 1.0, atol=1e-9)


# --- invalid inputs -----------------------------------------------------------------------------


@given(st.one_of(st.floats(-5, -1e-9), st.floats(1 + 1e-9, 5), st.just(float("nan"))))
@settings(max_examples=10)
def test_lambda_outside_unit_interval_raises(lam):
    mdp, pi, mu = _problem(0)
    eta = np.full((4, 2, 21), 1 / 21)
    with pytest.raises(ValueError, match="lam"):
        distributional_operator(mdp, eta, pi, mu, lam, support=SUPPORT)
    with pytest.raises(ValueError, match="lam"):
        q_lambda_bound_from_mismatch(0.9, lam, 0.5)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(pi=np.full((4, 2), 0.6)), "pi"),
        (dict(mu=np.full((4, 3), 1 / 3)), "mu"),
        (dict(eta=np.full((4, 2, 21), 0.5)), "eta"),
        (dict(eta=np.full((4, 2, 20), 1 / 20)), "eta"),
        (dict(support=(0.0, 10.0, 21)), "support"),
        (dict(trace="importance"), "trace"),
        (dict(projection="never"), "projection"),
        (dict(projection="per_branch"), "horizon"),
        (dict(horizon=0), "horizon"),
        (dict(mdp="not an mdp"), "mdp"),
    ],
)
def test_invalid_operator_inputs_raise(change, match):
    mdp, pi, mu = _problem(0)
    kwargs = dict(
        mdp=mdp, eta=np.full((4, 2, 21), 1 / 21), pi=pi, mu=mu, lam=0.5, support=SUPPORT
    )
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        distributional_operator(**kwargs)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: q_lambda_bound_from_mismatch(1.0, 0.5, 0.5), "gamma"),
        (lambda: q_lambda_bound_from_mismatch(-0.1, 0.5, 0.5), "gamma"),
        (lambda: q_lambda_bound_from_mismatch(0.9, 0.5, 2.5), "eps"),
        (lambda: q_lambda_bound_from_mismatch(0.9, 0.5, 0.5, p=0.5), "p"),
        (lambda: TabularMDP(P=np.full((2, 2, 2), 0.5), reward=np.zeros((2, 2)), gamma=1.0), "gamma"),
        (lambda: CategoricalSupport(10.0, 0.0, 21), "increasing"),
        (
            lambda: sampled_distributional_target(
                np.full((2, 2, 3), 1 / 3), np.full((2, 2), 0.5), [0, 1], [0, 0], [1.0], 0.5,
                support=CategoricalSupport(0, 1, 3), gamma=0.9, trace="retrace",
            ),
            "mu",
        ),
        (
            lambda: sampled_distributional_target(
                np.full((2, 2, 3), 1 / 3), np.full((2, 2), 0.5), [0, 5], [0, 0], [1.0], 0.5,
                support=CategoricalSupport(0, 1, 3), gamma=0.9,
            ),
            "states",
        ),
        (
            lambda: sampled_distributional_target(
                np.full((2, 2, 3), 1 / 3), np.full((2, 2), 0.5), [0, 1], [0, 0], [1.0], 0.5,
                support=CategoricalSupport(0, 1, 3), gamma=1.0,
            ),
            "gamma",
        ),
        (lambda: monte_carlo_returns(_problem(0)[0], _problem(0)[1], 0, seed=0), "n_samples"),
        (
            lambda: distributional_td_learning(
                *_problem(0), 0.5, support=SUPPORT, trace="bogus", n_updates=10
            ),
            "trace",
        ),
    ],
)
def test_invalid_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("trace", TRACES)
def test_per_step_fixed_point_matches_dcfp_direct_solve(trace):
    # cross-check with the DCFP issue's direct linear solve on the state–action MRP
    from fixpoint_rl.tabular import categorical_fixed_point

    mdp = garnet(4, 2, 2, 5, gamma=GAMMA, reward_kind="transition")
    pi, mu = random_policy(mdp, 1), random_policy(mdp, 2)
    dcfp = categorical_fixed_point(mdp.state_action_process(pi), SUPPORT).reshape(4, 2, 21)
    result = iterate_distributional_operator(mdp, pi, mu, 0.7, support=SUPPORT, trace=trace, tol=1e-12)
    # iteration stopped at a 1e-12 sup-ℓ2 change; the direct solve is exact to ~1e-14
    np.testing.assert_allclose(result.final, dcfp, atol=1e-9)


def test_monte_carlo_returns_reproducible_and_truncation_free():
    mdp, pi, _ = _problem(8)
    first = monte_carlo_returns(mdp, pi, 50, seed=4)
    np.testing.assert_array_equal(first, monte_carlo_returns(mdp, pi, 50, seed=4))
    assert not np.array_equal(first, monte_carlo_returns(mdp, pi, 50, seed=5))
    # the default horizon leaves a tail below 1e-10: returns lie in [0, 1/(1−γ)]
    assert first.min() >= 0.0 and first.max() <= 1.0 / (1.0 - GAMMA)


@given(seeds, st.floats(0, 1), st.floats(0, 1), st.sampled_from(["state_action", "transition"]))
@settings(max_examples=10)
def test_lipschitz_ratio_below_beta_two_on_random_instances(seed, lam, mix, kind):
    mdp, pi, _ = _problem(seed, S=3, A=3, kind=kind)
    mu = (1 - mix) * pi + mix * random_policy(mdp, seed)
    ratio = contraction_modulus(mdp, pi, mu, lam, support=SUPPORT, n_probes=1, iterations=4, seed=seed)
    kappa = np.max(np.abs(pi - lam * mu).sum(1))
    # β₂ is an upper bound on the true Lipschitz constant; the measured ratio is a lower estimate
    assert ratio <= np.sqrt(GAMMA) * kappa / (1 - lam * np.sqrt(GAMMA)) + 1e-12
