"""The faster kernels of issue 14 against the implementations they replace (kept as oracles).

Tolerances: each new kernel computes the same real numbers as its oracle with a different order or
grouping of float64 operations (e.g. p·(1 − f)·w instead of p·w·(1 − f), a CSR sum in another
order); on O(1) quantities the difference is a few ulps per term times the number of terms, far
below 1e-12. Where the order of operations is identical the comparison is exact (==).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fixpoint_rl.tabular._kernels import qlambda as kq
from fixpoint_rl.tabular.core.categorical import CategoricalSupport, categorical_projection

seeds = st.integers(0, 2**32 - 1)


# --- Q(λ) backup: precomputed projection tables --------------------------------------------------


def _rows_with_edge_cases(rng, support, n_rows, n_out, gamma):
    """Reward outcomes [n_rows, n_out] that put targets r + γ z_j below, above and exactly on atoms."""
    values = rng.uniform(support.v_min - 2.0, support.v_max + 2.0, size=(n_rows, n_out))
    values[0, 0] = support.v_min - 100.0  # every target clipped to v_min
    values[1 % n_rows, 0] = support.v_max + 100.0  # every target clipped to v_max
    values[2 % n_rows, 0] = support.v_min * (1 - gamma)  # r + γ v_min = v_min exactly
    values[3 % n_rows, 0] = support.v_max * (1 - gamma)  # r + γ v_max = v_max exactly
    probs = rng.dirichlet(np.ones(n_out), size=n_rows)
    return values, probs


@given(seeds, st.integers(2, 60), st.integers(1, 3), st.floats(0.0, 0.999))
def test_projection_table_matches_per_element_kernel(seed, m, n_out, gamma):
    rng = np.random.default_rng(seed)
    support = CategoricalSupport(-3.0, 7.0, m)
    grid = (support.v_min, support.v_max, support.delta)
    values, probs = _rows_with_edge_cases(rng, support, 6, n_out, gamma)
    mixed = rng.normal(size=(6, m))  # signed masses (Q(λ) targets have negative bins)
    tables = kq._projection_table(values, probs, gamma, *grid, m)
    new = kq._project_rows_table(mixed, *tables)
    old = kq._project_rows(mixed, values, probs, gamma, *grid)
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-12)
    # and against the core hat-matrix form of Π_C, term by term (an independent oracle)
    z = support.atoms
    hat = np.zeros_like(mixed)
    for k in range(n_out):
        hat += probs[:, k, None] * categorical_projection(values[:, k, None] + gamma * z, mixed, support)
    np.testing.assert_allclose(new, hat, rtol=0, atol=1e-12)


def test_projection_table_entries_are_valid_splits():
    support = CategoricalSupport(0.0, 10.0, 11)
    values = np.array([[-50.0], [0.5], [50.0]])
    lower, w_lo, w_hi = kq._projection_table(values, np.ones((3, 1)), 0.9, 0.0, 10.0, 1.0, 11)
    assert lower.dtype == np.int32 and lower.min() >= 0 and lower.max() <= 9
    np.testing.assert_array_equal(w_lo + w_hi, 1.0)  # one unit of mass per target
    # clipped below: everything on atom 0; clipped above: everything on atom 10
    np.testing.assert_array_equal(lower[0], 0)
    np.testing.assert_array_equal(w_lo[0], 1.0)
    np.testing.assert_array_equal(lower[2], 9)
    np.testing.assert_array_equal(w_hi[2], 1.0)
    # r = 0.5, γ = 0.9, z_j = j: target 0.5 + 0.9 j, split by hand for j = 3 (3.2 → atoms 3, 4)
    assert lower[1, 0, 3] == 3
    np.testing.assert_allclose([w_lo[1, 0, 3], w_hi[1, 0, 3]], [0.8, 0.2], atol=1e-12)


@given(seeds, st.integers(2, 40), st.floats(0.0, 0.99))
def test_fused_csr_backup_matches_mix_then_project(seed, m, gamma):
    rng = np.random.default_rng(seed)
    S, rows = 7, 9
    support = CategoricalSupport(-1.0, 4.0, m)
    grid = (support.v_min, support.v_max, support.delta)
    counts = rng.integers(1, 4, size=rows)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    columns = rng.integers(0, S, size=offsets[-1]).astype(np.int64)
    weights = rng.random(offsets[-1])
    values, probs = _rows_with_edge_cases(rng, support, rows, 2, gamma)
    Y = rng.normal(size=(S, m))
    tables = kq._projection_table(values, probs, gamma, *grid, m)
    fused = kq._backup_csr_table(Y, offsets, columns, weights, *tables)
    old = kq._project_rows(kq._mix_rows_csr(Y, offsets, columns, weights), values, probs, gamma, *grid)
    np.testing.assert_allclose(fused, old, rtol=0, atol=1e-12)


def test_library_backup_reuses_tables_and_matches_outcome_kernel():
    """qlambda._backup (table path, dense and sparse P) against the per-outcome kernel, which
    projects every (s, a, s') outcome separately (the general-reward path, an independent form)."""
    from fixpoint_rl.envs.mdp import garnet
    from fixpoint_rl.tabular.qlambda import _backup, _model

    support = CategoricalSupport(0.0, 10.0, 31)
    grid = (support.v_min, support.v_max, support.delta)
    rng = np.random.default_rng(3)
    for branching in (25, 3):
        mdp = garnet(25, 3, branching, 1, gamma=0.9)
        model = _model(mdp)
        assert model.sparse == (branching == 3)
        Y = rng.normal(size=(25, 31))
        new = _backup(model, Y, mdp.gamma, support)
        first = model.projection_tables(mdp.gamma, support)
        assert model.projection_tables(mdp.gamma, support) is first  # cached, not rebuilt
        oracle = kq._backup_outcomes(Y, model.offsets, model.next_state, model.reward, model.prob,
                                     mdp.gamma, *grid)
        np.testing.assert_allclose(new, oracle, rtol=0, atol=1e-12)


# --- DCFP / CDP: CSR transitions, the precomputed CDP operator, sparse processes ------------------


def _random_mrp(S, seed, successors=3, gamma=0.9):
    from fixpoint_rl.envs.mdp import MarkovRewardProcess

    rng = np.random.default_rng(seed)
    P = np.zeros((S, S))
    for x in range(S):
        nbrs = rng.choice(S, size=min(successors, S), replace=False)
        P[x, nbrs] = rng.dirichlet(np.ones(nbrs.shape[0]))
    R = rng.normal(size=(S, S))
    return MarkovRewardProcess(P=P, reward=R, gamma=gamma)


def _sparse_twin(mrp):
    import scipy.sparse

    from fixpoint_rl.tabular.model_based import SparseMarkovRewardProcess

    return SparseMarkovRewardProcess(P=scipy.sparse.csr_matrix(mrp.P),
                                     reward=scipy.sparse.csr_matrix(mrp.reward * (mrp.P > 0)),
                                     gamma=mrp.gamma)


@given(seeds, st.integers(1, 12), st.integers(2, 30), st.floats(0.0, 0.99))
def test_csr_system_builder_equals_dense_builder(seed, S, m, gamma):
    """Same (x, x', j, i) visits and arithmetic: A and b identical (==) to the dense-P kernel's."""
    import scipy.sparse

    from fixpoint_rl.tabular._kernels import model_based as km
    from fixpoint_rl.tabular.model_based import _build_system, _transitions

    mrp = _random_mrp(S, seed, gamma=gamma)
    rng = np.random.default_rng(seed)
    atoms = np.sort(rng.uniform(-5, 5, size=m)) + np.arange(m) * 1e-3  # uneven, increasing
    P, R = np.array(mrp.P), np.array(mrp.reward)
    nnz = km._dcfp_triplet_count(P, R, gamma, atoms)
    rows, cols, vals = np.empty(nnz, np.int64), np.empty(nnz, np.int64), np.empty(nnz)
    b_old = np.zeros(S * (m - 1))
    km._dcfp_triplets(P, R, gamma, atoms, rows, cols, vals, b_old)
    A_old = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(S * (m - 1),) * 2)
    for process in (mrp, _sparse_twin(mrp)):
        A_new, b_new = _build_system(_transitions(process), atoms)
        assert (A_new != A_old).nnz == 0
        np.testing.assert_array_equal(b_new, b_old)


@given(seeds, st.integers(1, 8), st.integers(2, 25), st.floats(0.0, 0.95), st.integers(1, 60))
def test_operator_cdp_matches_previous_cdp_kernel(seed, S, m, gamma, iterations):
    """CDP on the precomputed operator (CDF coordinates) against the previous kernel, which
    projects every atom of every transition in every step (probability coordinates): the same
    iterates up to rounding (1e-12 on probabilities, and on the recorded Cramér changes)."""
    from fixpoint_rl.tabular._kernels import model_based as km
    from fixpoint_rl.tabular.model_based import categorical_dp

    mrp = _random_mrp(S, seed, gamma=gamma)
    atoms = np.linspace(-4.0, 4.0, m)
    rng = np.random.default_rng(seed)
    init = rng.dirichlet(np.ones(m), size=S)
    P, R = np.array(mrp.P), np.array(mrp.reward)
    old, done, it_old, ch_old = km._cdp_run(P, R, gamma, atoms, init, iterations, 0.0, 1)
    for process in (mrp, _sparse_twin(mrp)):
        new = categorical_dp(process, atoms, iterations=iterations, init=init)
        np.testing.assert_allclose(new.final, old, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(new.metrics["iteration"], it_old)
        np.testing.assert_allclose(new.metrics["cramer_change"], ch_old, rtol=0, atol=1e-12)


def test_sparse_process_dcfp_equals_dense_and_mean_is_value():
    from fixpoint_rl.tabular.model_based import categorical_fixed_point, high_resolution_reference

    mrp = _random_mrp(20, 5, gamma=0.95)
    atoms = np.linspace(-3.0 / 0.05, 3.0 / 0.05, 31)
    sparse = _sparse_twin(mrp)
    for method in ("sparse", "dense"):
        dense_probs = categorical_fixed_point(mrp, atoms, method=method)
        sparse_probs = categorical_fixed_point(sparse, atoms, method=method)
        np.testing.assert_allclose(sparse_probs, dense_probs, rtol=0, atol=1e-12)
    # the categorical projection preserves the mean inside the support: mean = V^π (linear solve)
    np.testing.assert_allclose(sparse_probs @ atoms, mrp.values(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(sparse.values(), mrp.values(), rtol=0, atol=1e-12)
    ref = high_resolution_reference(sparse, support=atoms, method="dcfp")
    np.testing.assert_allclose(ref.probs, dense_probs, rtol=0, atol=1e-12)


def test_sparse_process_validation():
    import pytest
    import scipy.sparse

    from fixpoint_rl.tabular.model_based import SparseMarkovRewardProcess, high_resolution_reference

    P = scipy.sparse.csr_matrix(np.array([[0.5, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="P must be a scipy.sparse"):
        SparseMarkovRewardProcess(P=P.toarray(), reward=np.zeros((2, 2)), gamma=0.9)
    with pytest.raises(ValueError, match="rows summing to 1"):
        SparseMarkovRewardProcess(P=P * 0.5, reward=np.zeros((2, 2)), gamma=0.9)
    with pytest.raises(ValueError, match="non-negative"):
        SparseMarkovRewardProcess(P=scipy.sparse.csr_matrix([[1.5, -0.5], [0, 1]]),
                                  reward=np.zeros((2, 2)), gamma=0.9)
    with pytest.raises(ValueError, match="reward must have shape"):
        SparseMarkovRewardProcess(P=P, reward=np.zeros((3, 3)), gamma=0.9)
    with pytest.raises(ValueError, match="gamma"):
        SparseMarkovRewardProcess(P=P, reward=np.zeros((2, 2)), gamma=1.0)
    ok = SparseMarkovRewardProcess(P=P, reward=np.ones((2, 2)), gamma=0.9)
    with pytest.raises(ValueError, match="support is required"):
        high_resolution_reference(ok)


# --- MTPO: layer-by-layer sweep, uint32 successors, vectorised log π ------------------------------


def _layered(seed, zero_probs=False):
    from fixpoint_rl.envs.dialogue import random_layered_game

    game = random_layered_game(num_contexts=3, horizon=4, states_per_layer=40, num_actions=4,
                               branching=3, final_states=12, seed=seed)
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(game.num_actions), size=game.num_decision_states)
    if zero_probs:  # exact zeros exercise the −inf entries of log π
        pi[::3, 0] = 0.0
        pi /= pi.sum(axis=1, keepdims=True)
    values = np.zeros(game.num_states)
    values[game.num_decision_states :] = rng.random(game.num_final_states)
    return game, pi, values


@given(seeds, st.sampled_from([0, 1, 2, 3]), st.floats(0.01, 2.0), st.floats(0.0, 5.0),
       st.booleans())
def test_layer_sweep_matches_fused_kernel(seed, mode, alpha, eta, zero_probs):
    """``_backward_layers`` (and its prange twin) against the previous fused reverse sweep, every
    mode: values, Q, KL and the new policy to 1e-12 (log π from numpy vs the kernel's scalar log
    may differ by an ulp)."""
    from fixpoint_rl.tabular._kernels import mtpo as km
    from fixpoint_rl.tabular._threads import numba_threads
    from fixpoint_rl.tabular.multiturn import _log_policy

    game, pi, values = _layered(seed, zero_probs)
    log_ref = np.log(game.reference)
    starts, probs = np.asarray(game.transition_starts), np.asarray(game.transition_probs)
    nxt64 = np.asarray(game.transition_next)
    layers = np.asarray(game.layer_starts, dtype=np.int64)

    def buffers():
        return values.copy(), np.empty(pi.shape), np.empty(pi.shape[0]), np.empty(pi.shape)

    v0, q0, kl0, new0 = buffers()
    km._backward_step(pi, log_ref, alpha, eta, mode, starts, nxt64, probs, v0, q0, kl0, new0)
    outs = []
    for kernel, threads in ((km._backward_layers, None), (km._backward_layers_parallel, 1),
                            (km._backward_layers_parallel, 2)):
        v, q, kl, new = buffers()
        with numba_threads(threads):
            kernel(pi, _log_policy(pi), log_ref, alpha, eta, mode, starts,
                   nxt64.astype(np.uint32), probs, v, q, kl, new, layers)
        for got, want in ((v, v0), (q, q0), (kl, kl0)):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        if mode != 0:
            np.testing.assert_allclose(new, new0, rtol=0, atol=1e-12)
        outs.append((v, q, kl, new if mode != 0 else None))
    # serial, 1-thread and 2-thread sweeps: bitwise identical (thread count changes nothing)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            if a is not None:
                np.testing.assert_array_equal(a, b)


def test_mtpo_results_independent_of_parallel_choice(monkeypatch):
    """The library's MTPO loop with the parallel sweep forced on (2 threads) and off: same bits."""
    from fixpoint_rl.tabular import multiturn

    game, _, _ = _layered(4)
    results = []
    for forced in (True, False):
        monkeypatch.setattr(multiturn, "parallel_worthwhile", lambda work, threshold, f=forced: f)
        results.append(multiturn.mtpo(game, 0.2, 6, checkpoints=2,
                                      reference_solution=np.asarray(game.reference)).final)
    np.testing.assert_array_equal(results[0], results[1])


# --- NLHF: context-by-context blocks, contexts or rows over threads --------------------------------


def _nlhf_arrays(game):
    K = game.n_actions
    pref = np.ascontiguousarray(np.asarray(game.pref).reshape(-1, K, K))
    ref = np.ascontiguousarray(np.asarray(game.ref).reshape(-1, K))
    return pref, ref


@settings(max_examples=10)  # each example runs 5 kernels, two of them on 2 threads
@given(seeds, st.sampled_from([0, 1, 2, 3, 4, 5]), st.integers(1, 6))
def test_nlhf_parallel_blocks_equal_serial_kernel(seed, method, iterations):
    """Exact payoffs: ``_run_block_contexts`` (1 and 2 threads) and ``_run_block_rows`` (1 and 2
    threads) give bitwise the same iterates as the serial ``_run_block`` for every algorithm:
    the same operations in the same order per context, one thread per output entry."""
    from fixpoint_rl.envs.preference import random_contextual_game
    from fixpoint_rl.tabular._kernels import nlhf as kn
    from fixpoint_rl.tabular._threads import numba_threads

    game = random_contextual_game(5, 7, seed % 1000, "mixture")
    pref, ref = _nlhf_arrays(game)
    etas = np.random.default_rng(seed).uniform(0.1, 3.0, size=iterations)

    def run(kernel, threads):
        log_pi, pi, avg = np.log(ref), ref.copy(), ref.copy()
        with numba_threads(threads):
            if kernel is kn._run_block:
                kernel(method, log_pi, pi, np.log(ref), pref, etas, 0.1, 0.25, avg, 3, 0,
                       np.random.default_rng(0))
            else:
                kernel(method, log_pi, pi, np.log(ref), pref, etas, 0.1, 0.25, avg, 3)
        return log_pi, pi, avg

    serial = run(kn._run_block, None)
    for kernel in (kn._run_block_contexts, kn._run_block_rows):
        for threads in (1, 2):
            for got, want in zip(run(kernel, threads), serial):
                np.testing.assert_array_equal(got, want)


def test_nash_md_wrapper_independent_of_thread_choice(monkeypatch):
    """nash_md through the public wrapper with the two-thread kernels forced on and off (large K
    single context and a contextual game): identical results and metrics."""
    from fixpoint_rl.envs.preference import random_contextual_game, random_game
    from fixpoint_rl.tabular import nlhf

    for game in (random_game(600, 1, "mixture"), random_contextual_game(64, 16, 2, "mixture")):
        ref = np.asarray(game.ref)
        runs = []
        for forced in (True, False):
            monkeypatch.setattr(nlhf, "parallel_worthwhile", lambda work, threshold, f=forced: f)
            runs.append(nlhf.nash_md(game, 0.1, 20, reference=ref, checkpoints=3))
        np.testing.assert_array_equal(runs[0].final, runs[1].final)
        np.testing.assert_array_equal(runs[0].metrics["kl"], runs[1].metrics["kl"])


# --- perf plumbing ----------------------------------------------------------------------------------


def test_time_call_takes_medians_and_refuses_fewer_than_five_repeats():
    import pytest

    from fixpoint_rl.benchmarks._perf_common import header_line, machine_header, time_call

    calls = []
    timing = time_call(lambda: calls.append(1), repeats=5, min_sample_s=0.0)
    assert len(calls) == 1 + 5  # one warm-up, then five samples of one call each
    assert timing.min_s <= timing.wall_s <= timing.max_s and timing.repeats == 5
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=4)
    header = machine_header()
    assert header["blas"] and header["blas"][0]["num_threads"] >= 1
    assert len(header["load_average_1_5_15"]) == 3
    assert "BLAS" in header_line(header)


def test_blas_and_numba_thread_limits_are_restored():
    import numba
    from threadpoolctl import threadpool_info

    from fixpoint_rl.tabular._threads import blas_threads, numba_threads

    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    with blas_threads(1):
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == before
    n = numba.get_num_threads()
    with numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == n


def test_cdp_falls_back_to_per_step_kernel_above_operator_limit(monkeypatch):
    """Above ``CDP_OPERATOR_LIMIT`` non-zeros a dense-P process runs the per-step kernel: the same
    iterates (1e-12) as the operator path, flagged in ``extras``."""
    from fixpoint_rl.tabular import model_based

    mrp = _random_mrp(9, 2, gamma=0.9)
    atoms = np.linspace(-10.0, 10.0, 41)
    with_operator = model_based.categorical_dp(mrp, atoms, iterations=40)
    monkeypatch.setattr(model_based, "CDP_OPERATOR_LIMIT", 0)
    per_step = model_based.categorical_dp(mrp, atoms, iterations=40)
    assert with_operator.extras["operator"] and not per_step.extras["operator"]
    np.testing.assert_allclose(per_step.final, with_operator.final, rtol=0, atol=1e-12)
    np.testing.assert_allclose(per_step.metrics["cramer_change"],
                               with_operator.metrics["cramer_change"], rtol=0, atol=1e-12)
