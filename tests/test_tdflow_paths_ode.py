"""Paths, the analytic fixed-point velocity, fixed-step ODEs and CNF log-likelihoods (TD-Flow).

Oracles: Gaussian conditioning by Monte Carlo, finite differences of the continuity equation,
matrix exponentials, exact Gaussian-mixture densities (numpy/torch parity in float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fixpoint_rl.deep.ghm.ode import divergence, integrate, log_likelihood
from fixpoint_rl.deep.ghm.paths import AffinePath
from fixpoint_rl.envs.ghm_tasks import garnet_embedding, rotation_system
from fixpoint_rl.tabular.core.successor import (
    gaussian_mixture_log_density,
    gaussian_mixture_path,
    path_coefficients,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ["straight", "curved"])
def test_path_boundary_conditions_and_derivatives(kind):
    t = np.linspace(0.0, 1.0, 11)
    alpha, beta, dalpha, dbeta = path_coefficients(t, kind)
    assert alpha[0] == 0 and beta[0] == 1 and alpha[-1] == 1 and abs(beta[-1]) < 1e-15
    # derivatives by central differences (h = 1e-6: truncation O(h²) ≈ 1e-12, rounding ≈ 1e-10)
    h = 1e-6
    a_plus, b_plus, _, _ = path_coefficients(t[1:-1] + h, kind)
    a_minus, b_minus, _, _ = path_coefficients(t[1:-1] - h, kind)
    np.testing.assert_allclose((a_plus - a_minus) / (2 * h), dalpha[1:-1], atol=1e-8)
    np.testing.assert_allclose((b_plus - b_minus) / (2 * h), dbeta[1:-1], atol=1e-8)


def test_conditional_velocity_forms_agree():
    """u_{t|1}(X_t|x1) = α̇x1 + β̇(X_t − αx1)/β equals α̇x1 + β̇x0 along X_t = αx1 + βx0."""
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(64, 3, generator=g, dtype=torch.float64), torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.99
    for kind in ("straight", "curved"):
        path = AffinePath(kind)
        xt = path.interpolate(x0, x1, t)
        torch.testing.assert_close(path.conditional_velocity(xt, x1, t),
                                   path.endpoint_velocity(x0, x1, t), atol=1e-10, rtol=0)
    straight = AffinePath("straight")
    xt = straight.interpolate(x0, x1, t)
    torch.testing.assert_close(straight.conditional_velocity(xt, x1, t),
                               (x1 - xt) / (1 - t)[:, None], atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="kind"):
        AffinePath("wiggly")


def _two_gaussians():
    weights = np.array([0.3, 0.7])              # (1−γ, γ) with γ = 0.7
    means = np.array([[-1.0], [1.5]])
    covs = np.array([[[0.2]], [[0.5]]])
    return weights, means, covs


@pytest.mark.parametrize("kind", ["straight", "curved"])
def test_mixture_velocity_identity_eq26_and_continuity_equation_1d(kind):
    """TD-Flow App. E.2 eq. 26: the (1−γ, γ) mixture of two CFM paths has velocity
    [(1−γ)p¹v¹ + γp²v²]/[(1−γ)p¹ + γp²]; and (p, v) satisfy ∂_t p + ∂_x(p v) = 0."""
    w, mu, cov = _two_gaussians()
    x = np.linspace(-3, 3, 61)[:, None]
    for t0 in (0.1, 0.4, 0.8):
        t = np.full(61, t0)
        log_p, v = gaussian_mixture_path(x, t, w, mu, cov, kind)
        parts = [gaussian_mixture_path(x, t, w[k : k + 1] / w[k], mu[k : k + 1], cov[k : k + 1], kind)
                 for k in range(2)]
        p1, p2 = np.exp(parts[0][0]), np.exp(parts[1][0])
        mixed = (w[0] * p1 * parts[0][1][:, 0] + w[1] * p2 * parts[1][1][:, 0]) / (w[0] * p1 + w[1] * p2)
        np.testing.assert_allclose(v[:, 0], mixed, atol=1e-12)
        np.testing.assert_allclose(np.exp(log_p), w[0] * p1 + w[1] * p2, rtol=1e-12)
        # continuity equation by central differences, h = 1e-5: truncation O(h²) ~ 1e-10,
        # rounding ~ 1e-16/h ~ 1e-11 relative to p ≤ 1.
        h = 1e-5
        dp_dt = (np.exp(gaussian_mixture_path(x, t + h, w, mu, cov, kind)[0])
                 - np.exp(gaussian_mixture_path(x, t - h, w, mu, cov, kind)[0])) / (2 * h)
        flux = lambda y: np.exp(gaussian_mixture_path(y, t, w, mu, cov, kind)[0]) * \
            gaussian_mixture_path(y, t, w, mu, cov, kind)[1][:, 0]
        dflux_dx = (flux(x + h) - flux(x - h)) / (2 * h)
        np.testing.assert_allclose(dp_dt + dflux_dx, 0.0, atol=1e-7)


def test_analytic_marginal_velocity_matches_monte_carlo_estimate():
    """u_t(x) = E[α̇X_1 + β̇X_0 | X_t = x] estimated by self-normalised importance weighting of
    X_1 ~ m (the tabular embedding's exact successor measure) with weights N(x; α X_1, β² I)."""
    problem = garnet_embedding(4, 2, gamma=0.9, seed=1, noise_std=0.3)
    w, means, covs = problem.successor_mixture(np.array([2]), np.array([1]))
    rng = np.random.default_rng(0)
    n = 400_000
    component = rng.choice(4, size=n, p=w[0])
    x1 = means[component] + 0.3 * rng.standard_normal((n, 4))
    for kind in ("straight", "curved"):
        for t0 in (0.3, 0.7):
            alpha, beta, dalpha, dbeta = (float(c) for c in path_coefficients(np.array(t0), kind))
            x = alpha * means[1] + beta * rng.standard_normal(4) * 0.5  # a point with mass nearby
            _, analytic = gaussian_mixture_path(x[None], np.array([t0]), w, means, covs, kind)
            log_k = -0.5 * np.sum((x - alpha * x1) ** 2, axis=1) / beta**2
            weights = np.exp(log_k - log_k.max())
            u = dalpha * x1 + dbeta * (x - alpha * x1) / beta
            # batch means over 20 batches give the estimator's standard error
            estimates = []
            for part in np.array_split(np.arange(n), 20):
                estimates.append((weights[part, None] * u[part]).sum(0) / weights[part].sum())
            estimates = np.array(estimates)
            se = estimates.std(axis=0, ddof=1) / math.sqrt(20)
            estimate = (weights[:, None] * u).sum(0) / weights.sum()
            assert np.all(np.abs(estimate - analytic[0]) < 5 * se + 1e-3), (kind, t0, estimate, analytic)


def test_gaussian_mixture_path_numpy_torch_parity():
    system = rotation_system(2, gamma=0.8)
    states = system.source_states(3, seed=0)
    w, mu, cov = system.successor_mixture(states, tol=1e-6)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2))
    t = np.array([0.0, 0.5, 0.95])
    for kind in ("straight", "curved"):
        lp_np, v_np = gaussian_mixture_path(x, t, w, mu, cov, kind)
        lp_t, v_t = gaussian_mixture_path(*(torch.tensor(a) for a in (x, t, w, mu, cov)), kind)
        np.testing.assert_allclose(lp_t.numpy(), lp_np, atol=1e-12)
        np.testing.assert_allclose(v_t.numpy(), v_np, atol=1e-12)


def test_gaussian_mixture_path_validates_shapes():
    w, mu, cov = _two_gaussians()
    with pytest.raises(ValueError, match="means"):
        gaussian_mixture_path(np.zeros((2, 2)), np.zeros(2), w, mu, cov)
    with pytest.raises(ValueError, match="weights"):
        gaussian_mixture_path(np.zeros((2, 1)), np.zeros(2), w[:1], mu, cov)
    with pytest.raises(ValueError, match="kind"):
        gaussian_mixture_path(np.zeros((2, 1)), np.zeros(2), w, mu, cov, "wiggly")


# ----------------------------------------------------------------------------- ODE


def test_fixed_step_methods_have_their_orders_on_a_linear_ode():
    """dx/dt = A x: error at t = 1 against expm(A) shrinks like h^1, h^2, h^4."""
    from scipy.linalg import expm

    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.float64)
    x0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    exact = x0 @ torch.tensor(expm(A.numpy())).T
    field = lambda x, t: x @ A.T
    for method, order in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        errors = [float((integrate(field, x0, 1.0, steps=n, method=method) - exact).norm())
                  for n in (20, 40)]
        observed = math.log2(errors[0] / errors[1])
        assert abs(observed - order) < 0.15, (method, observed)


def test_integrate_to_per_sample_times_and_backward():
    field = lambda x, t: -x + t[:, None]            # x(t) = (x0 − 1)e^{−t} + t − 1 + ... closed form
    x0 = torch.zeros(3, 1, dtype=torch.float64)
    t_end = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    x = integrate(field, x0, t_end, steps=200, method="rk4")
    exact = (t_end - 1 + torch.exp(-t_end))[:, None]  # solution of x' = −x + t, x(0) = 0
    torch.testing.assert_close(x, exact, atol=1e-10, rtol=0)
    back = integrate(field, x, 0.0, t_start=t_end, steps=200, method="rk4")
    torch.testing.assert_close(back, x0, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="method"):
        integrate(field, x0, 1.0, method="adams")
    with pytest.raises(ValueError, match="steps"):
        integrate(field, x0, 1.0, steps=0)
    with pytest.raises(ValueError, match="t_end"):
        integrate(field, x0, torch.ones(2, dtype=torch.float64))


def test_divergence_exact_and_hutchinson_on_a_nonlinear_field():
    W = torch.tensor([[0.5, -1.0, 0.2], [0.3, 0.1, -0.4], [1.0, 0.0, 0.7]], dtype=torch.float64)
    field = lambda x, t: torch.tanh(x @ W.T) * (1 + t[:, None])
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.full((5,), 0.3, dtype=torch.float64)
    # analytic: ∂v_i/∂x_i = (1 − tanh²(Wx)_i) W_ii (1 + t)
    expected = ((1 - torch.tanh(x @ W.T) ** 2) * torch.diag(W)).sum(1) * 1.3
    _, exact = divergence(field, x, t, method="exact")
    torch.testing.assert_close(exact, expected, atol=1e-12, rtol=0)
    # Hutchinson is unbiased: the mean of 4000 Rademacher probes is within 5 s.e. of the exact
    # value (the single-probe variance is 2 Σ_{i≠j} J_ij², so s.e. ≤ 0.05 here)
    _, hutch = divergence(field, x, t, method="hutchinson", probes=4000,
                          generator=torch.Generator().manual_seed(1))
    assert torch.all((hutch - expected).abs() < 0.06)


def test_log_likelihood_of_a_linear_flow_is_exact_gaussian():
    """v(x, t) = a x maps N(0, 1) to N(0, e^{2a}) at t = 1; divergence = a·d."""
    a = 0.4
    field = lambda x, t: a * x
    x1 = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = log_likelihood(field, x1, steps=40, method="rk4")
    var = math.exp(2 * a)
    expected = -0.5 * (x1**2).sum(1) / var - math.log(2 * math.pi * var)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=0)


def test_flowing_the_analytic_fixed_point_field_reproduces_the_successor_measure():
    """Integrating the analytic marginal velocity from N(0, I) gives samples of m^π (EMD at the
    finite-sample floor) and the CNF log-likelihood equals the exact mixture log-density."""
    from fixpoint_rl.deep.ghm.metrics import emd

    system = rotation_system(2, gamma=0.8)
    state = system.source_states(1, seed=0)
    w, mu, cov = system.successor_mixture(state, tol=1e-6)
    n = 256
    W, MU, C = torch.tensor(w), torch.tensor(np.repeat(mu, n, 0)), torch.tensor(cov)
    field = lambda x, t: gaussian_mixture_path(x, t, W, MU[: x.shape[0]], C, "straight")[1]
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x1 = integrate(field, x0, 1.0, steps=20, method="rk4").numpy()
    exact = system.sample_successor(np.repeat(state, n, 0), seed=1)
    floor = emd(system.sample_successor(np.repeat(state, n, 0), seed=2), exact)
    # two exact samples of 256 points differ by the floor; a correct flow is no further away
    # than 1.5× the floor (observed ratio ≈ 1.0)
    assert emd(x1, exact) < 1.5 * floor
    xs = torch.tensor(exact[:6])
    got = log_likelihood(field, xs, steps=40, method="rk4")
    expected = gaussian_mixture_log_density(xs, W, MU[:6], C)
    # RK4 with 40 steps: observed error ≈ 1e-6 in log-density
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
