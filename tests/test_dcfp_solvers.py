"""DCFP, CDP, QDP and the samplers (Rowland et al. 2024, arXiv 2402.07598).

Every check uses an answer computed another way: CDP power iteration (for DCFP), the scalar linear
solve V = (I − γP)^{-1} r̄ (means), dense eigenvalues (ρ(A)), a fine-grid DCFP with its own bias
bound (W1 bounds), plain averages of independent samples (stochastic CDF equation, Monte Carlo),
and the core array-API projection (kernel twin).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixpoint_rl.envs.dcfp_envs import (
    DCFP_ENVIRONMENTS,
    chain,
    environment_support,
    global_support,
    high_random,
    low_random,
    two_state,
)
from fixpoint_rl.envs.mdp import MarkovRewardProcess, chain_mdp
from fixpoint_rl.tabular import (
    categorical_dp,
    categorical_fixed_point,
    monte_carlo_return_distribution,
    quantile_dp,
    sample_empirical_model,
    sample_stochastic_cdf_bellman,
)
from fixpoint_rl.tabular.core.categorical import CategoricalSupport, categorical_projection
from fixpoint_rl.tabular.model_based import (
    dcfp_linear_system,
    high_resolution_reference,
    sup_wasserstein1,
)

ENVS = sorted(DCFP_ENVIRONMENTS)


@st.composite
def random_mrps(draw, max_states: int = 5):
    """Random MRPs: S ∈ [1, 5], sparse-ish rows (some exact zeros), signed transition rewards."""
    S = draw(st.integers(1, max_states))
    seed = draw(st.integers(0, 2**31 - 1))
    gamma = draw(st.floats(0.0, 0.95))
    rng = np.random.default_rng(seed)
    P = rng.random((S, S)) * (rng.random((S, S)) < 0.6)
    P[np.arange(S), rng.integers(0, S, S)] += 0.1  # every row has some mass
    P /= P.sum(axis=1, keepdims=True)
    R = rng.uniform(-1.0, 1.0, (S, S))
    return MarkovRewardProcess(P=P, reward=R, gamma=gamma)


# --- DCFP: limit of CDP, probability rows, mean, spectrum ------------------------------------


def _cdp_limit(mrp, atoms):
    # Stop at sup-Cramér change 1e-15; the remaining error is ≤ change·√γ/(1−√γ) ≈ 4e-14 at γ = 0.95,
    # and max|Δprob| ≤ 2·ℓ2/√Δ, far below the 1e-10 tolerance used below.
    return categorical_dp(mrp, atoms, iterations=50_000, tol=1e-15).final


@pytest.mark.parametrize("name", ENVS)
def test_dcfp_equals_cdp_limit_on_study_environments(name):
    mrp = DCFP_ENVIRONMENTS[name]()
    for atoms in (global_support(mrp, 31), environment_support(mrp, 31)):
        probs = categorical_fixed_point(mrp, atoms)
        assert np.max(np.abs(probs - _cdp_limit(mrp, atoms))) < 1e-10  # issue: "to 1e-10"


@given(random_mrps(), st.integers(2, 12))
def test_dcfp_equals_cdp_limit_probability_rows_and_mean_on_random_mrps(mrp, m):
    atoms = global_support(mrp, m)  # covers [r_min/(1−γ), r_max/(1−γ)] ⊇ every return
    probs = categorical_fixed_point(mrp, atoms)
    assert np.max(np.abs(probs - _cdp_limit(mrp, atoms))) < 1e-10
    # rows are probability vectors: sum 1 up to rounding, min ≥ −1e-12 (derived)
    assert np.max(np.abs(probs.sum(axis=1) - 1.0)) < 1e-12
    assert probs.min() >= -1e-12
    # mean = V^π by an independent scalar linear solve (derived); rounding ~1e-14·|z|
    assert np.max(np.abs(probs @ atoms - mrp.values())) < 1e-9


@pytest.mark.parametrize("name", ENVS)
@pytest.mark.parametrize("support_kind", ["global", "environment"])
def test_dcfp_mean_equals_value_with_covering_support(name, support_kind):
    mrp = DCFP_ENVIRONMENTS[name](gamma=0.99)
    make = global_support if support_kind == "global" else environment_support
    atoms = make(mrp, 101)
    probs = categorical_fixed_point(mrp, atoms)
    V = np.linalg.solve(np.eye(mrp.n_states) - 0.99 * mrp.P, (mrp.P * mrp.reward).sum(axis=1))
    assert np.max(np.abs(probs @ atoms - V)) < 1e-9  # issue tolerance; observed ~1e-13
    assert probs.min() >= -1e-12


def test_sparse_and_dense_solves_agree():
    mrp = high_random(n_states=12, gamma=0.95, seed=3)
    atoms = global_support(mrp, 81)
    dense = categorical_fixed_point(mrp, atoms, method="dense")
    sparse = categorical_fixed_point(mrp, atoms, method="sparse")
    assert np.max(np.abs(dense - sparse)) < 1e-10  # two LU factorisations of the same system


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9, 0.95, 0.99])
def test_spectral_radius_of_A_equals_gamma(gamma):
    # ρ(A) ≤ γ by the W1 contraction; = γ via the mean direction (derived)
    for mrp in (high_random(n_states=4, gamma=gamma, seed=1), two_state(gamma=gamma)):
        A, _ = dcfp_linear_system(mrp, global_support(mrp, 21))
        rho = np.max(np.abs(np.linalg.eigvals(A.toarray())))
        assert abs(rho - gamma) < 1e-8  # eigenvalue of a 80×80 matrix; rounding ≪ 1e-8


@pytest.mark.parametrize("name", ENVS)
def test_w1_approximation_bound_against_fine_grid(name):
    mrp = DCFP_ENVIRONMENTS[name]()
    ref = high_resolution_reference(mrp, 2001)
    for m in (11, 51):
        for atoms in (global_support(mrp, m), environment_support(mrp, m)):
            probs = categorical_fixed_point(mrp, atoms)
            bound = (atoms[1] - atoms[0]) / (2 * (1 - mrp.gamma))
            # W1(η_C, η^π) ≤ Δ/(2(1−γ)); the reference itself is within its own bias bound
            err = sup_wasserstein1(atoms, probs, ref.atoms, ref.probs)
            assert err <= bound + ref.w1_bias_bound


def test_tabular_mdp_with_policy_matches_its_markov_reward_process():
    mdp = chain_mdp(4, gamma=0.8)
    pi = np.full((4, 2), 0.5)
    mrp = mdp.markov_reward_process(pi)
    atoms = global_support(mrp, 21)
    np.testing.assert_array_equal(
        categorical_fixed_point(mdp, atoms, policy=pi), categorical_fixed_point(mrp, atoms)
    )
    assert categorical_dp(mdp, atoms, iterations=5, policy=pi).final.shape == (4, 21)


def test_core_support_object_and_array_give_same_answer():
    mrp = two_state()
    support = CategoricalSupport(0.0, 10.0, 41)
    np.testing.assert_array_equal(
        categorical_fixed_point(mrp, support), categorical_fixed_point(mrp, support.atoms)
    )


def test_kernel_projection_twin_matches_core_projection():
    from fixpoint_rl.tabular._kernels.model_based import _project_add

    rng = np.random.default_rng(0)
    support = CategoricalSupport(-1.0, 2.0, 13)
    ys = np.concatenate([rng.uniform(-2, 3, 40), support.atoms])  # incl. on-grid and clipped
    w = rng.normal(size=ys.shape[0])  # signed weights
    out = np.zeros(13)
    for y, wi in zip(ys, w):
        _project_add(support.atoms, y, wi, out)
    assert np.max(np.abs(out - categorical_projection(ys, w, support))) < 1e-13


# --- CDP / QDP -----------------------------------------------------------------------------------


def test_cdp_result_metrics_and_tol_stop():
    mrp = low_random()
    res = categorical_dp(mrp, global_support(mrp, 21), tol=1e-9)
    assert res.metrics["cramer_change"][-1] <= 1e-9
    assert res.metrics["iteration"][-1] == res.extras["steps"]
    assert res.config["solver"] == "categorical_dp"


@pytest.mark.parametrize("name", ENVS)
def test_qdp_valid_quantiles_and_error_shrinks_with_m(name):
    mrp = DCFP_ENVIRONMENTS[name]()
    ref = high_resolution_reference(mrp, 2001)
    lo, hi = environment_support(mrp, 2)
    errors = []
    for m in (4, 16, 64):
        res = quantile_dp(mrp, m, tol=1e-12)
        theta = res.final
        assert np.all(np.diff(theta, axis=1) >= 0)  # quantiles are non-decreasing
        assert theta.min() >= lo - 1e-9 and theta.max() <= hi + 1e-9  # within the return range
        # fixed point: one more step changes nothing beyond the stopping tolerance (γ-contraction)
        again = quantile_dp(mrp, m, iterations=res.extras["steps"] + 1).final
        assert np.max(np.abs(again - theta)) <= 1e-11
        errors.append(sup_wasserstein1(theta, None, ref.atoms, ref.probs))
    # error shrinks with m (allowing the reference's own bias in the comparison)
    assert errors[2] < errors[0]
    assert errors[2] <= errors[1] + 2 * ref.w1_bias_bound


# --- samplers ------------------------------------------------------------------------------------


def test_empirical_model_is_a_frequency_table_with_clt_sized_error():
    mrp = high_random(n_states=6, seed=2)
    n = 4000
    hat = sample_empirical_model(mrp, n, seed=7)
    counts = hat.P * n
    assert np.allclose(counts, np.round(counts), atol=1e-9)
    assert np.all(hat.P[mrp.P == 0] == 0)
    sd = np.sqrt(mrp.P * (1 - mrp.P) / n)
    assert np.all(np.abs(hat.P - mrp.P) <= 5 * sd + 1e-12)  # 5σ per entry (36 entries)
    np.testing.assert_array_equal(hat.reward, mrp.reward)


def test_seeds_are_reproducible():
    mrp = low_random()
    atoms = global_support(mrp, 11)
    a = sample_empirical_model(mrp, 50, seed=3).P
    np.testing.assert_array_equal(a, sample_empirical_model(mrp, 50, seed=3).P)
    assert not np.array_equal(a, sample_empirical_model(mrp, 50, seed=4).P)
    m1 = monte_carlo_return_distribution(mrp, 20, seed=5)
    np.testing.assert_array_equal(m1, monte_carlo_return_distribution(mrp, 20, seed=5))
    c1 = sample_stochastic_cdf_bellman(mrp, atoms, 5, seed=6)
    np.testing.assert_array_equal(c1, sample_stochastic_cdf_bellman(mrp, atoms, 5, seed=6))
    assert not np.array_equal(c1, sample_stochastic_cdf_bellman(mrp, atoms, 5, seed=7))


@pytest.mark.parametrize("name,n", [("two_state", 20_000), ("high_random", 3_000)])
def test_stochastic_cdf_bellman_mean_is_fixed_point(name, n):
    mrp = DCFP_ENVIRONMENTS[name]()
    atoms = global_support(mrp, 21)
    cdfs = sample_stochastic_cdf_bellman(mrp, atoms, n, seed=0)
    assert np.all(np.diff(cdfs, axis=2) >= -1e-12) and np.all(cdfs[..., -1] == 1.0)
    F = np.cumsum(categorical_fixed_point(mrp, atoms), axis=1)
    # CLT-sized error, made valid for the rare-event tail coordinates (where σ̂ underestimates σ)
    # by the empirical Bernstein bound for [0, 1]-valued samples (Maurer & Pontil 2009):
    # |mean − F| ≤ √(2σ̂² log(2/δ)/n) + 7 log(2/δ)/(3(n−1)), δ = 1e-9 / K (union over K coordinates);
    # plus 1e-9 for the 1e-10 truncation and rounding.
    K = F.size
    log_term = np.log(2 * K / 1e-9)
    bound = np.sqrt(2 * cdfs.var(axis=1) * log_term / n) + 7 * log_term / (3 * (n - 1)) + 1e-9
    assert np.all(np.abs(cdfs.mean(axis=1) - F) <= bound)
    # and in the bulk (F ∈ [0.05, 0.95]) the plain 5σ̂/√n CLT band holds
    bulk = (F > 0.05) & (F < 0.95)
    se = cdfs.std(axis=1) / np.sqrt(n)
    assert np.all((np.abs(cdfs.mean(axis=1) - F) <= 5 * se)[bulk])


def test_monte_carlo_mean_matches_value():
    mrp = two_state()
    returns = monte_carlo_return_distribution(mrp, 4000, seed=1)
    se = returns.std(axis=1) / np.sqrt(4000)
    assert np.all(np.abs(returns.mean(axis=1) - mrp.values()) <= 5 * se + 1e-6)  # 1e-6 truncation
    assert np.all(np.diff(returns, axis=1) >= 0)


@settings(max_examples=10)
@given(random_mrps(max_states=3), st.integers(0, 1000))
def test_stochastic_cdf_realisations_are_cdfs_of_probability_vectors(mrp, seed):
    atoms = global_support(mrp, 9)
    cdfs = sample_stochastic_cdf_bellman(mrp, atoms, 4, seed=seed)
    probs = np.diff(cdfs, axis=2, prepend=0.0)
    assert probs.min() >= -1e-12 and np.allclose(cdfs[..., -1], 1.0)


# --- invalid inputs ------------------------------------------------------------------------------


def test_invalid_inputs_raise_value_error():
    mrp = two_state()
    atoms = global_support(mrp, 11)
    with pytest.raises(ValueError, match="n_samples"):
        sample_empirical_model(mrp, 0, seed=0)
    with pytest.raises(ValueError, match="m"):
        quantile_dp(mrp, 1, iterations=3)
    with pytest.raises(ValueError, match="support"):
        categorical_fixed_point(mrp, np.array([0.0]))  # m < 2
    with pytest.raises(ValueError, match="increasing"):
        categorical_fixed_point(mrp, np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="increasing"):
        categorical_dp(mrp, np.array([0.0, 0.0, 1.0]), iterations=3)
    with pytest.raises(ValueError, match="P"):
        MarkovRewardProcess(P=np.array([[0.5, 0.4], [0.5, 0.5]]), reward=np.zeros((2, 2)), gamma=0.9)
    with pytest.raises(ValueError, match="gamma"):
        chain(gamma=1.0)
    with pytest.raises(ValueError, match="gamma"):
        two_state(gamma=-0.1)
    with pytest.raises(ValueError, match="mrp"):
        categorical_fixed_point({"P": np.eye(2)}, atoms)
    with pytest.raises(ValueError, match="iterations"):
        categorical_dp(mrp, atoms)
    with pytest.raises(ValueError, match="n_episodes"):
        monte_carlo_return_distribution(mrp, 0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        sample_stochastic_cdf_bellman(mrp, atoms, 3, seed=-1)
    with pytest.raises(ValueError, match="n"):
        sample_stochastic_cdf_bellman(mrp, atoms, 0, seed=0)
    with pytest.raises(ValueError, match="method"):
        categorical_fixed_point(mrp, atoms, method="cholesky")
    with pytest.raises(ValueError, match="m"):
        global_support(mrp, 1)


@given(st.lists(st.floats(-5, 5), min_size=2, max_size=6))
def test_non_increasing_supports_rejected(values):
    atoms = np.array(values)
    if np.all(np.diff(atoms) > 0):
        atoms = atoms[::-1].copy()  # make it non-increasing
    with pytest.raises(ValueError, match="support"):
        categorical_fixed_point(two_state(), atoms)


def test_environment_support_covers_sampled_returns():
    for name in ENVS:
        mrp = DCFP_ENVIRONMENTS[name]()
        atoms = environment_support(mrp, 5)
        returns = monte_carlo_return_distribution(mrp, 200, seed=0)
        assert returns.min() >= atoms[0] - 1e-6 and returns.max() <= atoms[-1] + 1e-6
        g = global_support(mrp, 5)
        assert g[0] <= atoms[0] + 1e-9 and atoms[-1] <= g[-1] + 1e-9


def test_categorical_dp_rejects_an_init_that_is_not_a_distribution():
    # audit follow-up: rows summing to M used to pass straight through the iteration
    from fixpoint_rl.envs import two_state
    from fixpoint_rl.tabular import CategoricalSupport, categorical_dp

    mrp = two_state()
    support = CategoricalSupport(0.0, 10.0, 11)
    with pytest.raises(ValueError, match="init must sum to 1"):
        categorical_dp(mrp, support, iterations=3, init=np.ones((2, 11)))


# --- solver options of categorical_fixed_point -----------------------------------------------------

from fixpoint_rl.tabular import model_based as _mb  # noqa: E402  (solver internals for the fallbacks)
from fixpoint_rl.tabular.model_based import SparseMarkovRewardProcess  # noqa: E402

# Every option is checked against the dense LAPACK LU of the same system. pypardiso (the `fast`
# extra) is also a test dependency (`dev`), so the PARDISO path always runs here; the fallback and
# refusal tests below cover the library's behaviour without it.
SOLVERS = ["superlu", "sparse", "auto", "pardiso"]


def test_pypardiso_is_installed_for_the_tests():
    assert _mb._pardiso_library() is not None, "pip install -e '.[dev]' installs pypardiso (MKL PARDISO)"


def _solver_tolerance(mrp, atoms):
    """Max |Δprob| allowed between a solver and the dense LU. Direct solves differ by rounding
    (≈ 1e-14 here). PARDISO stops refining at max|residual| ≤ REFINE_RESIDUAL; A is a γ-contraction
    in ‖F‖ = max_x Σ_i Δ_i |F_x,i| (sup-W1), so ‖ΔF‖ ≤ span·res/(1 − γ) and max|ΔF| ≤ that / Δ_min,
    |Δprob| ≤ 2 max|ΔF|: ≤ 2e-11 on the random MRPs (γ ≤ 0.95), 2e-10 on the γ = 0.99 walk. Plus
    1e-10 for the direct solves' rounding (observed ≈ 1e-14)."""
    gaps = np.diff(atoms)
    bound = 2 * (atoms[-1] - atoms[0]) * _mb.REFINE_RESIDUAL / ((1 - mrp.gamma) * gaps.min())
    return bound + 1e-10


def _sparse_copy(mrp):
    import scipy.sparse

    return SparseMarkovRewardProcess(P=scipy.sparse.csr_matrix(mrp.P),
                                     reward=scipy.sparse.csr_matrix(mrp.reward), gamma=mrp.gamma)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name", ENVS)
def test_every_solver_gives_the_dense_lu_fixed_point_on_study_environments(solver, name):
    mrp = DCFP_ENVIRONMENTS[name](gamma=0.95)
    atoms = environment_support(mrp, 61)
    dense = categorical_fixed_point(mrp, atoms, method="dense")
    tol = _solver_tolerance(mrp, atoms)
    for process in (mrp, _sparse_copy(mrp)):  # dense and sparse inputs
        probs = categorical_fixed_point(process, atoms, method=solver)
        assert np.max(np.abs(probs - dense)) < tol


@settings(max_examples=15)
@given(random_mrps(max_states=6), st.integers(2, 40), st.sampled_from(SOLVERS))
def test_every_solver_gives_the_dense_lu_fixed_point_on_random_mrps(mrp, m, solver):
    atoms = global_support(mrp, m)
    dense = categorical_fixed_point(mrp, atoms, method="dense")
    probs = categorical_fixed_point(_sparse_copy(mrp), atoms, method=solver)
    assert np.max(np.abs(probs - dense)) < _solver_tolerance(mrp, atoms)
    assert np.max(np.abs(probs @ atoms - mrp.values())) < 1e-9  # mean = V^π (scalar solve)


@functools.lru_cache(maxsize=1)
def _walk_and_dense_answer():
    from fixpoint_rl.benchmarks.perf_dcfp import sparse_walk_mrp

    mrp = sparse_walk_mrp(20, 0.99, seed=0)
    atoms = np.linspace(0.0, 100.0, 101)
    return mrp, atoms, categorical_fixed_point(mrp, atoms, method="dense")


@pytest.mark.parametrize("solver", SOLVERS)
def test_solvers_agree_at_high_discount_on_a_sparse_walk(solver):
    # γ = 0.99, the perf benchmark's process at a small size: the conditioning the refinement faces
    mrp, atoms, reference = _walk_and_dense_answer()
    probs = categorical_fixed_point(mrp, atoms, method=solver)
    assert np.max(np.abs(probs - reference)) < _solver_tolerance(mrp, atoms)
    assert np.max(np.abs(probs @ atoms - mrp.values())) < 1e-9


class _FailingPardiso:
    """Stands in for MKL: every PARDISO call reports error −3 (e.g. out of memory)."""

    calls = 0

    def pardiso(self, *args):
        type(self).calls += 1
        args[-1]._obj.value = -3

    def MKL_Set_Num_Threads_Local(self, n):  # noqa: N802 (MKL's name)
        return 0


def test_pardiso_errors_fall_back_to_superlu(monkeypatch):
    mrp = high_random(n_states=8, gamma=0.9, seed=4)
    atoms = global_support(mrp, 31)
    monkeypatch.setattr(_mb, "_PARDISO_LIBRARY", _FailingPardiso())
    probs = categorical_fixed_point(mrp, atoms, method="pardiso")
    assert _FailingPardiso.calls >= 2  # float32 and float64 attempts (each factor + release)
    np.testing.assert_array_equal(probs, categorical_fixed_point(mrp, atoms, method="superlu"))


def test_pardiso_stalled_refinement_falls_back_to_float64_then_superlu(monkeypatch):
    # a residual target of 0 cannot be met: float32 stalls, float64 stalls, SuperLU answers
    mrp = high_random(n_states=8, gamma=0.9, seed=4)
    atoms = global_support(mrp, 31)
    system = _mb._identity_minus(dcfp_linear_system(mrp, atoms)[0])
    b = dcfp_linear_system(mrp, atoms)[1]
    single = _mb._pardiso_refined(_mb._pardiso_library(), system, b, single=True)
    assert np.max(np.abs(b - system @ single)) <= _mb.REFINE_RESIDUAL  # normal case: refined
    monkeypatch.setattr(_mb, "REFINE_RESIDUAL", 0.0)
    assert _mb._pardiso_refined(_mb._pardiso_library(), system, b, single=True) is None
    probs = categorical_fixed_point(mrp, atoms, method="pardiso")
    np.testing.assert_array_equal(probs, categorical_fixed_point(mrp, atoms, method="superlu"))


def test_pardiso_without_pypardiso_is_refused_and_sparse_uses_superlu(monkeypatch):
    mrp = two_state()
    atoms = global_support(mrp, 81)  # 160 unknowns: above DENSE_LIMIT, so "auto" is sparse
    monkeypatch.setattr(_mb, "_PARDISO_LIBRARY", False)
    with pytest.raises(ValueError, match="method='pardiso' needs the optional package pypardiso"):
        categorical_fixed_point(mrp, atoms, method="pardiso")
    superlu = categorical_fixed_point(mrp, atoms, method="superlu")
    np.testing.assert_array_equal(categorical_fixed_point(mrp, atoms, method="sparse"), superlu)
    np.testing.assert_array_equal(categorical_fixed_point(mrp, atoms), superlu)


@pytest.mark.parametrize("method", ["cholesky", "krylov", "", "PARDISO"])
def test_unknown_solver_option_is_refused(method):
    with pytest.raises(ValueError, match="method"):
        categorical_fixed_point(two_state(), global_support(two_state(), 11), method=method)


def _block_diagonal_mrp(seed):
    """Three disconnected pieces (a chain, a random block, an absorbing state): the structured order
    handles every connected component separately."""
    import scipy.linalg

    parts = [chain(n_states=4, gamma=0.9), high_random(n_states=5, gamma=0.9, seed=seed)]
    P = scipy.linalg.block_diag(*[p.P for p in parts], np.ones((1, 1)))
    R = scipy.linalg.block_diag(*[p.reward for p in parts], np.full((1, 1), 0.5))
    return MarkovRewardProcess(P=P, reward=R, gamma=0.9)


@given(st.integers(0, 2**31 - 1), st.integers(3, 30))
@settings(max_examples=10)
def test_structured_order_is_a_permutation_on_random_and_disconnected_processes(seed, m):
    rng = np.random.default_rng(seed)
    S = int(rng.integers(1, 8))
    P = rng.random((S, S)) * (rng.random((S, S)) < 0.4)
    P[np.arange(S), rng.integers(0, S, S)] += 0.1
    P /= P.sum(axis=1, keepdims=True)
    sparse_random = MarkovRewardProcess(P=P, reward=rng.uniform(-1, 1, (S, S)), gamma=0.9)
    for mrp in (_block_diagonal_mrp(seed % 100), sparse_random):
        atoms = global_support(mrp, m)
        transitions = _mb._transitions(mrp)
        A, _ = _mb._build_system(transitions, atoms)
        order = _mb._structured_order(transitions, m - 1, A)
        np.testing.assert_array_equal(np.sort(order), np.arange(mrp.n_states * (m - 1)))


@pytest.mark.parametrize("solver", SOLVERS)
def test_solvers_on_a_disconnected_process(solver):
    mrp = _block_diagonal_mrp(3)
    atoms = global_support(mrp, 41)
    dense = categorical_fixed_point(mrp, atoms, method="dense")
    probs = categorical_fixed_point(mrp, atoms, method=solver)
    assert np.max(np.abs(probs - dense)) < _solver_tolerance(mrp, atoms)


def test_superlu_orders_agree(monkeypatch):
    # the structured order (NATURAL, diagonal pivots) and COLAMD (threshold pivoting): two LU
    # factorisations of the same M-matrix, equal to rounding
    from fixpoint_rl.benchmarks.perf_dcfp import sparse_walk_mrp

    mrp = sparse_walk_mrp(60, 0.99, seed=1)
    atoms = np.linspace(0.0, 100.0, 81)
    transitions = _mb._transitions(mrp)
    A, b = _mb._build_system(transitions, atoms)
    system = _mb._identity_minus(A)
    structured = _mb._solve_sparse(system, b, _mb._structured_order(transitions, 80, A))
    colamd = _mb._solve_sparse(system, b)
    assert np.max(np.abs(structured - colamd)) < 1e-12  # CDF values; observed ≈ 1e-15


def test_pardiso_metis_and_structured_orders_agree(monkeypatch):
    mrp, atoms, reference = _walk_and_dense_answer()
    structured = categorical_fixed_point(mrp, atoms, method="pardiso")
    monkeypatch.setattr(_mb, "STRUCTURED_ORDER_LIMIT", 0)  # PARDISO's METIS ordering
    metis = categorical_fixed_point(mrp, atoms, method="pardiso")
    for probs in (structured, metis):
        assert np.max(np.abs(probs - reference)) < _solver_tolerance(mrp, atoms)
