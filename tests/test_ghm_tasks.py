"""Closed forms of the TD-Flow problems (envs/ghm_tasks.py, tabular/core/successor.py), each
checked against an answer computed another way: power series, Bellman identities, Monte Carlo
with a stated standard error, scipy densities, brute-force sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.envs.ghm_tasks import (
    GHMDataset,
    LinearGaussianSystem,
    PointMassLoop,
    TabularEmbedding,
    garnet_embedding,
    geometric_horizons,
    rotation_system,
)
from fixpoint_rl.tabular.core.successor import gaussian_mixture_log_density, successor_measure


def _power_series_successor(problem: TabularEmbedding, terms: int) -> np.ndarray:
    """(1−γ) Σ_{k<terms} γ^k P_sa (P^π)^k, by repeated multiplication (no linear solve)."""
    S, A = problem.num_states, problem.num_actions
    P_pi = problem.state_transition()
    current = problem.P.reshape(S * A, S).copy()
    total = np.zeros_like(current)
    for k in range(terms):
        total += (1 - problem.gamma) * problem.gamma**k * current
        current = current @ P_pi
    return total.reshape(S, A, S)


@given(seed=st.integers(0, 10_000), gamma=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
       states=st.integers(2, 7), actions=st.integers(2, 3))
def test_successor_measure_rows_bellman_and_power_series(seed, gamma, states, actions):
    problem = garnet_embedding(states, actions, gamma=gamma, seed=seed, branching=min(2, states))
    M = problem.successor_measure()
    # rows are probability vectors: float64 solve of a well-conditioned (I − γP^π), κ ≤ 2/(1−γ)
    assert np.all(M >= -1e-12)
    np.testing.assert_allclose(M.sum(axis=-1), 1.0, atol=1e-11)
    # Bellman identity M = (1−γ)P_sa + γ P_sa M_π, M_π[s'] = Σ_a' π(a'|s') M[s', a']
    M_pi = np.einsum("sa,saj->sj", problem.policy, M)
    bellman = (1 - gamma) * problem.P + gamma * np.einsum("sat,tj->saj", problem.P, M_pi)
    np.testing.assert_allclose(M, bellman, atol=1e-11)
    # against the truncated power series: tail mass γ^terms ≤ 1e-13
    terms = 1 if gamma == 0 else int(math.ceil(math.log(1e-13) / math.log(gamma)))
    np.testing.assert_allclose(M, _power_series_successor(problem, terms), atol=1e-11)


@given(seed=st.integers(0, 10_000), gamma=st.sampled_from([0.0, 0.3, 0.9, 0.99]))
def test_value_identity_tabular(seed, gamma):
    """Q^π = (1−γ)^{-1} M r equals P_sa (I − γP^π)^{-1} r (reward on arrival)."""
    problem = garnet_embedding(5, 2, gamma=gamma, seed=seed)
    reward = np.random.default_rng(seed).standard_normal(5)
    via_successor = problem.successor_measure() @ reward / (1 - gamma)
    np.testing.assert_allclose(via_successor, problem.state_values(reward), atol=1e-10 / (1 - gamma))


def test_successor_measure_numpy_torch_parity():
    torch = pytest.importorskip("torch")
    problem = garnet_embedding(6, 3, gamma=0.95, seed=3)
    P_sa = problem.P.reshape(18, 6)
    P_pi = problem.state_transition()
    expected = successor_measure(P_sa, P_pi, 0.95)
    got = successor_measure(torch.tensor(P_sa), torch.tensor(P_pi), 0.95).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_monte_carlo_sampler_starts_at_the_next_state():
    """X = S_k with k ~ Geom(1−γ) on {1, 2, …} reproduces M; starting at S_0 does not."""
    horizons = geometric_horizons(0.8, 200_000, seed=0)
    assert horizons.min() == 1
    # mean 1/(1−γ) = 5, sd √γ/(1−γ) ≈ 4.47: 5 standard errors of the mean ≈ 0.05
    assert abs(horizons.mean() - 5.0) < 0.05
    problem = garnet_embedding(4, 2, gamma=0.8, seed=11)
    n = 40_000
    s, a = 1, 0
    draws = problem.sample_successor_states(np.full(n, s), np.full(n, a), seed=5)
    freq = np.bincount(draws, minlength=4) / n
    M = problem.successor_measure()[s, a]
    # binomial standard error ≤ 0.0025 per entry; 5 s.e. = 0.0125
    np.testing.assert_allclose(freq, M, atol=0.0125)
    # the off-by-one measure (1−γ) Σ_{k≥0} γ^k Pr(S_k) puts mass 1−γ = 0.2 on S_0 = s itself:
    # it differs from the sampler's frequencies far beyond the tolerance
    off_by_one = (1 - 0.8) * np.eye(4)[s] + 0.8 * M
    assert np.max(np.abs(freq - off_by_one)) > 0.05


def test_geometric_horizons_at_gamma_zero_is_one_step():
    np.testing.assert_array_equal(geometric_horizons(0.0, 5, seed=0), np.ones(5))


# ----------------------------------------------------------------------------- linear-Gaussian


def _system(gamma=0.9):
    F = np.array([[0.6, 0.3, 0.0], [-0.2, 0.7, 0.1], [0.0, 0.2, 0.5]])
    B = np.array([[1.0], [0.5], [0.0]])
    gain = np.array([[-0.1, 0.05, 0.2]])
    return LinearGaussianSystem(A=F - B @ gain, B=B, gain=gain, noise_std=0.3, gamma=gamma)


def test_linear_gaussian_mean_closed_form_against_series_and_samples():
    system = _system()
    states = np.array([[1.0, -2.0, 0.5], [0.0, 0.3, -1.0]])
    w, mu, cov = system.successor_mixture(states)
    assert abs(w.sum() - 1) <= 1e-12 + 1e-15  # omitted mass γ^K ≤ tol = 1e-12
    mean = system.successor_mean(states)
    np.testing.assert_allclose(np.einsum("k,bkd->bd", w, mu), mean, atol=1e-11)
    # with a = K s the closed form is (1−γ)(I − γF)^{-1} F s
    F = system.F
    expected = (1 - 0.9) * np.linalg.solve(np.eye(3) - 0.9 * F, (states @ F.T).T).T
    np.testing.assert_allclose(mean, expected, atol=1e-12)
    # exact sampler: sample mean within 5 standard errors of the closed form
    n = 100_000
    x = system.sample_successor(np.repeat(states[:1], n, axis=0), seed=1)
    se = x.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(x.mean(axis=0) - mean[0]) < 5 * se)


def test_linear_gaussian_second_moment_and_quadratic_value():
    system = _system(gamma=0.8)
    states = np.array([[0.5, -1.0, 2.0]])
    actions = np.array([[0.7]])
    w, mu, cov = system.successor_mixture(states, actions)
    series = np.einsum("k,kij->ij", w, cov + mu[0, :, :, None] * mu[0, :, None, :])
    np.testing.assert_allclose(system.successor_second_moment(states, actions)[0], series, atol=1e-10)
    Q = np.array([[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, 2.0]])
    b = np.array([0.3, -1.0, 0.5])
    value = system.quadratic_value(states, actions, Q=Q, b=b, c=0.7)[0]
    # Monte Carlo: discounted reward-on-arrival sum over rollouts (truncated where γ^H < 1e-9)
    rng = np.random.default_rng(2)
    n, H = 20_000, 95
    x = system.step(np.repeat(states, n, 0), np.repeat(actions, n, 0), rng)
    total = np.zeros(n)
    for k in range(H):
        total += 0.8**k * (np.einsum("bi,ij,bj->b", x, Q, x) + x @ b + 0.7)
        x = system.step(x, None, rng)
    se = total.std() / math.sqrt(n)
    assert abs(total.mean() - value) < 5 * se + 1e-6


def test_linear_gaussian_density_truncation_bound_and_scipy():
    from scipy.stats import multivariate_normal

    system = _system(gamma=0.7)
    state = np.array([[1.0, 0.5, -0.5]])
    x = system.sample_successor(np.repeat(state, 50, 0), seed=4)
    w, mu, cov = system.successor_mixture(state, tol=1e-14)
    exact = np.exp(gaussian_mixture_log_density(x, w, mu[0], cov))
    by_scipy = sum(wk * multivariate_normal(mu[0, k], cov[k]).pdf(x) for k, wk in enumerate(w))
    np.testing.assert_allclose(exact, by_scipy, rtol=1e-10)
    tol = 1e-3
    w2, mu2, cov2 = system.successor_mixture(state, tol=tol)
    truncated = np.exp(gaussian_mixture_log_density(x, w2, mu2[0], cov2))
    gap = exact - truncated
    assert np.all(gap >= -1e-15)
    assert np.all(gap <= system.density_truncation_error(tol) + 1e-14)


def test_rotation_system_is_off_policy_and_seeded():
    system = rotation_system(2, gamma=0.9)
    a = system.offline_dataset(500, seed=3)
    b = system.offline_dataset(500, seed=3)
    np.testing.assert_array_equal(a.cond, b.cond)
    np.testing.assert_array_equal(a.next_state, b.next_state)
    # behaviour actions are random, the evaluated policy's are K s′ = 0
    assert np.abs(a.cond[:, 2:]).mean() > 0.1
    np.testing.assert_array_equal(a.next_cond[:, 2:], 0.0)
    np.testing.assert_array_equal(a.next_cond[:, :2], a.next_state)
    # the next state follows the dynamics: residual noise has sd σ = 0.1
    resid = a.next_state - system.first_mean(a.cond[:, :2], a.cond[:, 2:])
    assert abs(resid.std() - 0.1) < 0.01


def test_tabular_dataset_uses_behaviour_and_evaluated_policies():
    problem = garnet_embedding(4, 2, gamma=0.9, seed=0)
    data = problem.offline_dataset(20_000, seed=1)
    actions = data.cond[:, 4:].argmax(1)
    states = data.cond[:, :4].argmax(1)
    # behaviour is uniform: action frequencies ≈ 1/2 (s.e. 0.0035)
    assert abs(actions.mean() - 0.5) < 0.02
    next_states = data.next_cond[:, :4].argmax(1)
    next_actions = data.next_cond[:, 4:].argmax(1)
    for s in range(4):
        chosen = next_actions[next_states == s]
        assert abs(chosen.mean() - problem.policy[s, 1]) < 0.05
    # observations are the one-hot embedding of s′ plus N(0, 0.1²)
    np.testing.assert_array_less(np.abs(data.next_state - np.eye(4)[next_states]).std(), 0.11)
    assert states.min() == 0 and states.max() == 3


def test_point_mass_loop_circulates_and_values_are_consistent():
    problem = PointMassLoop(gamma=0.9)
    s = problem.source_states(64, seed=0)
    x = s
    rng = np.random.default_rng(0)
    angle0 = np.arctan2(s[:, 1], s[:, 0])
    travelled = np.zeros(64)
    for _ in range(50):
        nxt = problem.step(x, problem.policy(x), rng)
        travelled += np.angle(np.exp(1j * (np.arctan2(nxt[:, 1], nxt[:, 0]) - np.arctan2(x[:, 1], x[:, 0]))))
        x = nxt
    assert np.mean(travelled > 0.5) > 0.9  # counter-clockwise circulation
    assert np.all(np.abs(np.hypot(x[:, 0], x[:, 1]) - 1) < 0.6)
    del angle0
    # value identity: (1−γ)^{-1} E_m[r] from successor samples vs discounted rollouts
    source = s[:1]
    v, se = problem.discounted_value(source, rollouts=4000, seed=1)
    samples = problem.sample_successor(np.repeat(source, 40_000, 0), seed=2)
    r = problem.reward(samples)
    v_m, se_m = r.mean() / 0.1, r.std() / 0.1 / math.sqrt(r.size)
    assert abs(v[0] - v_m) < 5 * math.hypot(se[0], se_m)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: LinearGaussianSystem(A=[[1.1]], B=[[1.0]], gain=[[0.0]], noise_std=0.1, gamma=0.9),
         "spectral radius"),
        (lambda: rotation_system(2, gamma=1.0), "gamma"),
        (lambda: rotation_system(2, gamma=-0.1), "gamma"),
        (lambda: LinearGaussianSystem(A=[[0.5, 0]], B=[[1.0]], gain=[[0.0]], noise_std=0.1,
                                      gamma=0.5), "A"),
        (lambda: LinearGaussianSystem(A=[[0.5]], B=[[1.0]], gain=[[0.0, 1]], noise_std=0.1,
                                      gamma=0.5), "gain"),
        (lambda: LinearGaussianSystem(A=[[0.5]], B=[[1.0]], gain=[[0.0]], noise_std=0.0,
                                      gamma=0.5), "noise_std"),
        (lambda: TabularEmbedding(P=np.full((2, 1, 2), 0.5), policy=np.ones((2, 1)),
                                  behaviour=np.ones((2, 1)), gamma=0.5), "behaviour"),
        (lambda: TabularEmbedding(P=np.full((2, 1, 3), 1 / 3), policy=np.ones((2, 1)),
                                  behaviour=np.ones((2, 1)), gamma=0.5), "P"),
        (lambda: garnet_embedding(3, 2, gamma=float("nan")), "gamma"),
        (lambda: PointMassLoop(gamma=0.9, dt=0.0), "dt"),
        (lambda: rotation_system(2, gamma=0.5).series_length(0.0), "tol"),
        (lambda: rotation_system(2, gamma=0.5).successor_mean(np.zeros((3, 3))), "states"),
        (lambda: garnet_embedding(3, 2, gamma=0.5).condition([0, 5], [0, 1]), "states"),
        (lambda: GHMDataset(cond=np.zeros((2, 3)), next_state=np.zeros((3, 2)),
                            next_cond=np.zeros((2, 3))), "next_state"),
        (lambda: geometric_horizons(0.5, -1, seed=0), "size"),
        (lambda: successor_measure(np.ones((2, 3)) / 3, np.eye(2), 0.5), "P_sa"),
    ],
)
def test_invalid_inputs_raise_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build()
