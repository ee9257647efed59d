"""C51-family targets and the scatter projection, against independent formulas.

Oracles: the hat-matrix projection (Bellemare et al. 2017 Eq. 7, dense form); CleanRL's
floor/ceil ``(l == u)`` projection and rlax's ``categorical_l2_project`` re-derived here in numpy;
the Numba scalar kernels of ``tabular._kernels``; a scalar re-implementation of the per-branch
sampled target loop (Tang et al. 2026) with terminals; closed-form special cases (λ = 0 is
one-step expected-SARSA C51; the sign pattern of the expected Q(λ) target).

Tolerances: float64 results that differ only in summation order agree to 1e-12 (each entry is a
sum of ≤ a few hundred terms of size ≤ 1, so rounding stays below ~1e-13); float32 against
float64 to 1e-5 (float32 ulp 6e-8 × the same term counts, with margin).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fixpoint_rl.tabular import qlambda as q
from fixpoint_rl.tabular._kernels import qlambda as kq
from fixpoint_rl.tabular._kernels.categorical import _project_batch
from fixpoint_rl.tabular.core.categorical import (
    CategoricalSupport,
    categorical_projection,
    distribution_mean,
    projection_matrix,
)
from fixpoint_rl.tabular.core.multistep import sampled_multistep_target, trace_coefficient

torch.set_num_threads(1)
TRACES = ("q_lambda", "retrace", "tree_backup", "n_step")


# ----------------------------------------------------------------------------- projection oracles
def cleanrl_projection(atoms_src, mass, v_min, v_max, m):
    """CleanRL c51.py: b = (clip(Tz) − v_min)/Δ, l = ⌊b⌋, u = ⌈b⌉, the (l == u) fix, index_add."""
    delta = (v_max - v_min) / (m - 1)
    out = np.zeros((atoms_src.shape[0], m))
    for row in range(atoms_src.shape[0]):
        b = (np.clip(atoms_src[row], v_min, v_max) - v_min) / delta
        lower, upper = np.floor(b).astype(int), np.ceil(b).astype(int)
        d_lower = (upper + (lower == upper) - b) * mass[row]
        d_upper = (b - lower) * mass[row]
        np.add.at(out[row], lower, d_lower)
        np.add.at(out[row], upper, d_upper)
    return out


def rlax_projection(z_p, probs, z_q):
    """rlax ``categorical_l2_project``: clip, then hat weights with left/right bin widths."""
    z_p = np.clip(z_p, z_q[0], z_q[-1])
    d_pos = np.concatenate([z_q[1:], z_q[-1:]]) - z_q  # right width (0 at the last atom)
    d_neg = z_q - np.concatenate([z_q[:1], z_q[:-1]])  # left width (0 at the first atom)
    delta = z_p[:, None, :] - z_q[None, :, None]  # [B, M, N]
    d_sign = delta >= 0
    width = np.where(d_sign, d_pos[None, :, None], d_neg[None, :, None])
    safe = np.where(width > 0, width, 1.0)
    weight = np.where(width > 0, np.clip(1.0 - np.abs(delta) / safe, 0.0, 1.0),
                      (delta == 0).astype(float))
    return np.einsum("bmn,bn->bm", weight, probs)


@given(
    m=st.integers(2, 40),
    n=st.integers(1, 30),
    v_min=st.floats(-20, 0),
    width=st.floats(0.5, 30),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=40, deadline=None)
def test_scatter_equals_hat_cleanrl_rlax_and_numba_on_signed_masses(m, n, v_min, width, seed):
    rng = np.random.default_rng(seed)
    support = CategoricalSupport(v_min, v_min + width, m)
    z = support.atoms
    atoms = rng.uniform(v_min - 0.3 * width, v_min + 1.3 * width, size=(3, n))  # some outside
    on_grid = rng.random((3, n)) < 0.4  # atoms exactly on grid points, both ends included
    atoms = np.where(on_grid, z[rng.integers(0, m, size=(3, n))], atoms)
    atoms[:, 0] = support.v_max
    mass = rng.normal(size=(3, n))  # signed
    scatter = categorical_projection(atoms, mass, support)
    hat = categorical_projection(atoms, mass, support, method="hat")
    np.testing.assert_allclose(scatter, hat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scatter, cleanrl_projection(atoms, mass, support.v_min, support.v_max, m),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(scatter, rlax_projection(atoms, mass, z), rtol=0, atol=1e-12)
    numba = _project_batch(atoms, mass, support.v_min, support.v_max, support.delta, m)
    np.testing.assert_allclose(scatter, numba, rtol=0, atol=1e-12)
    torch_out = categorical_projection(torch.tensor(atoms), torch.tensor(mass), support)
    np.testing.assert_allclose(torch_out.numpy(), hat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scatter.sum(-1), mass.sum(-1), rtol=0, atol=1e-12)


def test_scatter_is_exact_on_grid_points_and_ends():
    support = CategoricalSupport(-3.0, 7.0, 11)
    for k, atom in enumerate(support.atoms):
        out = categorical_projection(np.array([[atom]]), np.array([[1.0]]), support)
        # one-hot up to the rounding of (z_k − v_min)/Δ (a few ulps), never a lost "hole"
        np.testing.assert_allclose(out[0], np.eye(11)[k], rtol=0, atol=1e-15)
        assert out[0].sum() == 1.0
    out = categorical_projection(np.array([[-100.0, 100.0]]), np.array([[0.25, -0.5]]), support)
    expected = np.zeros(11)
    expected[0], expected[-1] = 0.25, -0.5
    assert np.array_equal(out[0], expected)


def test_scatter_projection_is_differentiable_in_mass():
    support = CategoricalSupport(-1.0, 1.0, 5)
    atoms = torch.tensor([[0.1, -0.7, 3.0]], dtype=torch.float64)
    mass = torch.tensor([[0.5, -0.2, 0.7]], dtype=torch.float64, requires_grad=True)
    weights = torch.arange(5, dtype=torch.float64)
    (categorical_projection(atoms, mass, support) @ weights).sum().backward()
    hat = projection_matrix(atoms[0], support)  # [N, M]
    # d/dw_j Σ_i c_i (Π w)_i = Σ_i c_i H[j, i]: the hat matrix row times the weights
    np.testing.assert_allclose(mass.grad[0].numpy(), (hat @ weights).numpy(), atol=1e-12)


def test_projection_method_is_validated():
    support = CategoricalSupport(0.0, 1.0, 3)
    with pytest.raises(ValueError, match="method"):
        categorical_projection([[0.5]], [[1.0]], support, method="dense")


# ----------------------------------------------------------------------------- sampled targets
def _window_problem(seed, S=4, A=3, M=15, n=4):
    rng = np.random.default_rng(seed)
    eta = rng.dirichlet(np.ones(M), size=(S, A))
    pi = rng.dirichlet(np.ones(A), size=S)
    mu = rng.dirichlet(np.ones(A), size=S)
    support = CategoricalSupport(-3.0, 5.0, M)
    return rng, eta, pi, mu, support


def _batched_inputs(eta, pi, mu, windows, lib, dtype):
    states = np.stack([w[0] for w in windows])
    actions = np.stack([w[1] for w in windows])
    rewards = np.stack([w[2] for w in windows])
    nxt = states[:, 1:]
    conv = (lambda a: torch.as_tensor(a, dtype=dtype)) if lib == "torch" else (lambda a: a.astype(dtype))
    long = (lambda a: torch.as_tensor(a)) if lib == "torch" else (lambda a: a)
    return dict(next_mass=conv(eta[nxt]), target_policy=conv(pi[nxt]),
                next_actions=long(actions[:, 1:]), rewards=conv(rewards),
                behaviour_probs=conv(mu[nxt, actions[:, 1:]]))


@pytest.mark.parametrize("trace", TRACES)
@pytest.mark.parametrize("projection", ["per_branch", "per_step"])
def test_batched_torch_target_equals_tabular_target_and_numba_kernel(trace, projection):
    rng, eta, pi, mu, support = _window_problem(1)
    S, A = pi.shape
    n, lam, gamma = 4, 0.8, 0.9
    windows = [(rng.integers(0, S, n + 1), rng.integers(0, A, n + 1), rng.uniform(-1, 1, n))
               for _ in range(16)]
    tabular = np.stack([
        q.sampled_distributional_target(eta, pi, s, a, r, lam, support=support, gamma=gamma,
                                        trace=trace, mu=mu, projection=projection)
        for s, a, r in windows
    ])
    c = np.ascontiguousarray(q.trace_coefficients(pi, mu, lam, trace))
    numba = np.stack([
        kq._sampled_target(eta, pi, c, s, a, r, gamma, projection == "per_step", trace == "n_step",
                           support.v_min, support.v_max, support.delta)
        for s, a, r in windows
    ])
    np.testing.assert_allclose(tabular, numba, rtol=0, atol=1e-12)
    kwargs = dict(support=support, gamma=gamma, lam=lam, trace=trace, projection=projection)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        batched = sampled_multistep_target(**_batched_inputs(eta, pi, mu, windows, "torch", dtype),
                                           **kwargs)
        assert batched.dtype == dtype
        np.testing.assert_allclose(batched.double().numpy(), tabular, rtol=0, atol=tol)
    hat = sampled_multistep_target(**_batched_inputs(eta, pi, mu, windows, "numpy", np.float64),
                                   method="hat", **kwargs)
    np.testing.assert_allclose(hat, tabular, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tabular.sum(-1), 1.0, rtol=0, atol=1e-12)


def _reference_target(next_mass, pi, next_actions, rewards, terminals, mu_taken, lam, trace,
                      gamma, support):
    """The per-branch loop written out for one window, projecting every branch separately."""
    z = support.atoms
    n = rewards.shape[0]
    out = np.zeros(support.m)
    w, G, disc = 1.0, 0.0, 1.0
    for t in range(n):
        G += disc * rewards[t]
        if terminals[t]:
            out += w * categorical_projection(np.array([G]), np.array([1.0]), support, method="hat")
            break
        if trace == "n_step":
            if t == n - 1:
                branch = pi[t] @ next_mass[t]
                out += categorical_projection(G + disc * gamma * z, branch, support, method="hat")
            disc *= gamma
            continue
        coeff = pi[t].copy()
        c = 0.0
        if t < n - 1:
            a1 = next_actions[t]
            c = {"q_lambda": lam, "tree_backup": lam * pi[t][a1],
                 "retrace": lam * min(1.0, pi[t][a1] / mu_taken[t])}[trace]
            coeff[a1] -= c
        out += w * categorical_projection(G + disc * gamma * z, coeff @ next_mass[t], support,
                                          method="hat")
        w *= c
        disc *= gamma
    return out


@pytest.mark.parametrize("trace", TRACES)
def test_terminals_end_the_window_with_a_dirac_at_the_return(trace):
    rng = np.random.default_rng(7)
    B, n, A, M = 24, 5, 3, 21
    support = CategoricalSupport(-4.0, 4.0, M)
    next_mass = rng.dirichlet(np.ones(M), size=(B, n, A))
    pi = rng.dirichlet(np.ones(A), size=(B, n))
    actions = rng.integers(0, A, size=(B, n))
    rewards = rng.uniform(-1, 1, size=(B, n))
    terminals = rng.random((B, n)) < 0.25
    mu_taken = rng.uniform(0.05, 1.0, size=(B, n))
    got = sampled_multistep_target(
        torch.tensor(next_mass), torch.tensor(pi), torch.tensor(actions), torch.tensor(rewards),
        support=support, gamma=0.95, lam=0.7, trace=trace, behaviour_probs=torch.tensor(mu_taken),
        terminals=torch.tensor(terminals),
    ).numpy()
    for b in range(B):
        ref = _reference_target(next_mass[b], pi[b], actions[b], rewards[b], terminals[b],
                                mu_taken[b], 0.7, trace, 0.95, support)
        np.testing.assert_allclose(got[b], ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=0, atol=1e-12)
    # a window whose first step is terminal is exactly δ at the projected reward
    first = np.flatnonzero(terminals[:, 0])
    for b in first:
        expected = categorical_projection(rewards[b, :1], np.ones(1), support)
        np.testing.assert_allclose(got[b], expected, atol=1e-12)


@given(seed=st.integers(0, 2**31 - 1), trace=st.sampled_from(TRACES), n=st.integers(1, 4),
       lam=st.floats(0.0, 1.0))
@settings(max_examples=25, deadline=None)
def test_mass_is_one_and_the_mean_is_preserved_inside_the_support(seed, trace, n, lam):
    rng = np.random.default_rng(seed)
    B, A, M, gamma = 6, 3, 21, 0.9
    support = CategoricalSupport(-10.0, 10.0, M)
    interior = np.abs(support.atoms) <= 5.0  # |G| ≤ 3.44 and γ|z| ≤ 4.5 keep atoms inside
    next_mass = rng.dirichlet(np.ones(M), size=(B, n, A)) * interior
    next_mass /= next_mass.sum(-1, keepdims=True)
    pi = rng.dirichlet(np.ones(A), size=(B, n))
    actions = rng.integers(0, A, size=(B, n))
    rewards = rng.uniform(-1, 1, size=(B, n))
    mu_taken = rng.uniform(0.05, 1.0, size=(B, n))
    target = sampled_multistep_target(next_mass, pi, actions, rewards, support=support, gamma=gamma,
                                      lam=lam, trace=trace, behaviour_probs=mu_taken)
    np.testing.assert_allclose(target.sum(-1), 1.0, rtol=0, atol=1e-12)
    # unprojected mean of the signed mixture, term by term
    z = support.atoms
    expected = np.zeros(B)
    for b in range(B):
        w, G, disc = 1.0, 0.0, 1.0
        for t in range(n):
            G += disc * rewards[b, t]
            coeff = pi[b, t].copy()
            c = 0.0
            if trace == "n_step":
                if t < n - 1:
                    disc *= gamma
                    continue
            elif t < n - 1:
                a1 = actions[b, t]
                c = trace_coefficient(trace, lam, pi[b, t, a1:a1 + 1], mu_taken[b, t:t + 1])[0]
                coeff[a1] -= c
            branch = coeff @ next_mass[b, t]
            expected[b] += w * np.sum(branch * (G + disc * gamma * z))
            w *= c
            disc *= gamma
    np.testing.assert_allclose(distribution_mean(target, support), expected, rtol=0, atol=1e-10)


def test_lambda_zero_is_one_step_expected_sarsa_c51():
    rng, eta, pi, mu, support = _window_problem(3)
    S, A = pi.shape
    for _ in range(10):
        s, a, r = rng.integers(0, S, 5), rng.integers(0, A, 5), rng.uniform(-1, 1, 4)
        for trace in ("q_lambda", "retrace", "tree_backup"):
            got = q.sampled_distributional_target(eta, pi, s, a, r, 0.0, support=support,
                                                  gamma=0.9, trace=trace, mu=mu)
            expected_sarsa = categorical_projection(r[0] + 0.9 * support.atoms,
                                                    pi[s[1]] @ eta[s[1]], support, method="hat")
            np.testing.assert_allclose(got, expected_sarsa, rtol=0, atol=1e-12)


@given(seed=st.integers(0, 2**31 - 1), lam=st.floats(0.05, 1.0))
@settings(max_examples=40, deadline=None)
def test_expected_q_lambda_target_has_negative_bins_exactly_where_lambda_mu_exceeds_pi(seed, lam):
    # x_1 is fixed, a_1 ~ μ; η̄(x_1, a′) = δ at well-separated grid atoms, r = 0, γ = 1/2 and
    # atoms 2k·Δ, so γz lands on grid points and action a′'s mass sits on its own atom. The
    # second step bootstraps at a far-away atom (reward 40), so the first branch's bins show
    # the expected coefficients π(a′) − λμ(a′) (Tang et al. 2026, trajectory form).
    rng = np.random.default_rng(seed)
    A = 4
    support = CategoricalSupport(-50.0, 50.0, 101)  # Δ = 1
    atoms_of = np.array([4.0, 8.0, 12.0, 16.0])  # γ·z = 2, 4, 6, 8
    z = support.atoms
    eta1 = np.stack([(z == v).astype(float) for v in atoms_of])  # [A, M]
    eta2 = np.stack([(z == 0.0).astype(float)] * A)
    pi = rng.dirichlet(np.ones(A))
    mu = rng.dirichlet(np.ones(A))
    gap = pi - lam * mu
    assume(np.min(np.abs(gap)) > 1e-6)  # at a tie the sign is not defined
    expected = np.zeros(support.m)
    for a1 in range(A):
        next_mass = np.stack([eta1, eta2])[None]  # [1, 2, A, M]
        target = sampled_multistep_target(
            next_mass, np.stack([pi, pi])[None], np.array([[a1, 0]]), np.array([[0.0, 40.0]]),
            support=support, gamma=0.5, lam=lam, trace="q_lambda",
        )[0]
        expected += mu[a1] * target
    first_branch = expected[np.isin(z, atoms_of / 2)]
    np.testing.assert_allclose(first_branch, gap, atol=1e-12)
    assert np.array_equal(first_branch < 0, lam * mu > pi)
    np.testing.assert_allclose(expected.sum(), 1.0, atol=1e-12)


def test_retrace_needs_behaviour_probabilities_and_inputs_are_validated():
    support = CategoricalSupport(-1.0, 1.0, 3)
    args = (np.full((1, 2, 2, 3), 1 / 3), np.full((1, 2, 2), 0.5), np.zeros((1, 2), dtype=np.int64),
            np.zeros((1, 2)))
    with pytest.raises(ValueError, match="behaviour_probs"):
        sampled_multistep_target(*args, support=support, gamma=0.9, lam=1.0, trace="retrace")
    with pytest.raises(ValueError, match="rewards"):
        sampled_multistep_target(*args[:3], np.array([[0.0, np.nan]]), support=support, gamma=0.9,
                                 lam=1.0)
    with pytest.raises(ValueError, match="target_policy"):
        sampled_multistep_target(args[0], np.full((1, 2, 3), 0.5), *args[2:], support=support,
                                 gamma=0.9, lam=1.0)
    with pytest.raises(ValueError, match="next_actions"):
        sampled_multistep_target(*args[:2], np.array([[5, 0]]), args[3], support=support, gamma=0.9,
                                 lam=1.0)
    with pytest.raises(ValueError, match="trace"):
        sampled_multistep_target(*args, support=support, gamma=0.9, lam=1.0, trace="vtrace")
    with pytest.raises(ValueError, match="gamma"):
        sampled_multistep_target(*args, support=support, gamma=1.0, lam=1.0)
