"""The faster kernels of issue 14 against the implementations they replace (kept as oracles).

Tolerances: each new kernel computes the same real numbers as its oracle with a different order or
grouping of float64 operations (e.g. p·(1 − f)·w instead of p·w·(1 − f), a CSR sum in another
order); on O(1) quantities the difference is a few ulps per term times the number of terms, far
below 1e-12. Where the order of operations is identical the comparison is exact (==).
"""

from __future__ import annotations

import numpy as np
import pytest
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
        # a second sweep reuses the dense product's scratch buffer: the first result is untouched
        Y2 = rng.normal(size=(25, 31))
        second = _backup(model, Y2, mdp.gamma, support)
        np.testing.assert_allclose(new, oracle, rtol=0, atol=1e-12)
        oracle2 = kq._backup_outcomes(Y2, model.offsets, model.next_state, model.reward,
                                      model.prob, mdp.gamma, *grid)
        np.testing.assert_allclose(second, oracle2, rtol=0, atol=1e-12)


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


@settings(max_examples=12)  # each example compiles nothing new and runs 3 thread counts
@given(seeds, st.integers(1, 2), st.sampled_from([1, 2, 31, 33, 97, 300]), st.integers(0, 7))
def test_nash_md_threads_equal_serial_kernel(seed, n_ctx, k, iterations):
    """``run_nash_md_threads`` (1, 2 and 3 threads claiming row chunks of every iteration) gives
    bitwise the serial ``_run_block`` Nash-MD iterates: each row of log π_{t+1} is computed by one
    thread with ``_context_block``'s arithmetic, and every thread forms π^μ_t from the same
    complete log π_t. K ∈ {1, 2, 31, 33}: one chunk; 97, 300: several (32 and 38 rows), with a
    ragged last one; T = 0 leaves the iterate untouched, as the serial kernel does."""
    from fixpoint_rl.envs.preference import random_contextual_game
    from fixpoint_rl.tabular._kernels import nlhf as kn

    game = random_contextual_game(n_ctx, k, seed % 1000, "mixture")
    pref, ref = _nlhf_arrays(game)
    etas = np.random.default_rng(seed).uniform(0.1, 10.0, size=iterations)
    log_ref = np.log(ref)
    want_log, want = np.log(ref), ref.copy()
    kn._run_block(kn.NASH_MD, want_log, want, log_ref, pref, etas, 0.1, 0.0, ref.copy(), 0, 0,
                  np.random.default_rng(0))
    for threads in (1, 2, 3):
        got_log, got = np.log(ref), ref.copy()
        kn.run_nash_md_threads(got_log, got, log_ref, pref, etas, 0.1, threads)
        np.testing.assert_array_equal(got_log, want_log)
        np.testing.assert_array_equal(got, want)


def test_atomic_counter_hands_out_each_claim_once():
    """``_sync.fetch_add`` from three threads at once (nogil kernels): the counter ends at the
    number of increments and the returned claims are exactly 0 … n − 1, each once (a plain
    read-modify-write would lose increments and repeat claims under contention)."""
    import threading

    from numba import njit

    from fixpoint_rl.tabular._kernels import _sync

    @njit(nogil=True)
    def claim_many(counters, claims, n):
        while True:
            c = _sync.fetch_add(counters, 0, 1)
            if c >= n:
                return
            claims[c] += 1

    n = 300_000
    counters = np.zeros(16, dtype=np.int64)
    claims = np.zeros(n, dtype=np.int64)
    claim_many(np.zeros(16, dtype=np.int64), np.zeros(1, dtype=np.int64), 1)  # compile
    workers = [threading.Thread(target=claim_many, args=(counters, claims, n)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert counters[0] == n + 3  # n claims plus one failed claim per thread
    np.testing.assert_array_equal(claims, np.ones(n, dtype=np.int64))


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


def test_round_robin_sampler_takes_one_sample_per_round_and_refuses_fewer_than_five():
    import pytest

    from fixpoint_rl.benchmarks._perf_rounds import Sampler, sample_round_robin

    calls = {"a": [], "b": []}
    samplers = {name: Sampler(lambda n, name=name: calls[name].append(n), 0.0) for name in calls}
    assert all(sampler.n == 1 for sampler in samplers.values())  # min_time 0: one unit a sample
    sample_round_robin(samplers, 5)
    for name, sampler in samplers.items():
        assert len(sampler.walls) == len(sampler.cpus) == len(sampler.switches) == 5
        assert calls[name] == [1] * 7  # warm-up, calibration, then 5 samples of one unit
        assert sampler.fastest <= sampler.wall
    kernel_seconds = Sampler(lambda n: 0.5 * n, 0.0)  # run() may report its own seconds
    kernel_seconds.sample()
    assert kernel_seconds.walls == [0.5]
    with pytest.raises(ValueError, match="rounds"):
        sample_round_robin(samplers, 4)


@pytest.mark.slow
def test_perf_scripts_quick_tables_have_goal_rows_and_exact_kernels():
    """``fixpoint perf nlhf|qlambda --quick``: every correctness claim holds, goal rows are not
    judged at smoke sizes (holds None), and the Q(λ) dense case carries the 3× bound row."""
    from fixpoint_rl.benchmarks import perf_nlhf, perf_qlambda
    from fixpoint_rl.benchmarks._runner import BenchConfig

    config = BenchConfig(size="quick", seed=0, progress=False)
    nlhf_table = perf_nlhf.run(config)
    exact = nlhf_table[nlhf_table.algorithm == "every Nash-MD kernel == serial kernel"]
    assert len(exact) == 1 and exact.holds.all() and (exact.max_abs_diff_vs_serial <= 1e-12).all()
    assert {"kernel: serial", "kernel: threads (library), 2 threads"} <= set(nlhf_table.algorithm)
    qlambda_table = perf_qlambda.run(config)
    judged = qlambda_table[qlambda_table.claim.notna()]
    exact = judged[judged.algorithm == "every variant == previous kernel"]
    assert len(exact) == 2 and exact.holds.all()
    goals = judged[judged.algorithm != "every variant == previous kernel"]
    assert goals.holds.isna().all()
    assert (qlambda_table.algorithm == "bound: ≥ 3× scatter needs scatter / floor ≥ 3").sum() == 1


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


def test_dense_backup_row_blocks_on_two_threads_equal_the_serial_backup(monkeypatch):
    """The two-core dense backup (two row blocks, one-thread BLAS each) against the serial path:
    the same sums per entry, so equal to rounding (1e-12; observed bitwise)."""
    from fixpoint_rl.envs.mdp import garnet
    from fixpoint_rl.tabular import qlambda as ql

    mdp = garnet(40, 3, branching=40, seed=2, gamma=0.9)
    support = CategoricalSupport(-12.0, 12.0, 31)
    model = ql._model(mdp)
    assert not model.sparse and model.fast
    Y = np.random.default_rng(0).normal(size=(40, 31))
    monkeypatch.setattr(ql, "parallel_worthwhile", lambda work, threshold: False)
    serial = ql._backup(model, Y, mdp.gamma, support).copy()
    monkeypatch.setattr(ql, "parallel_worthwhile", lambda work, threshold: True)
    blocks = ql._backup(model, Y, mdp.gamma, support)
    np.testing.assert_allclose(blocks, serial, rtol=0, atol=1e-12)
    # and the serial path itself against the hat-matrix oracle of the projection
    mixed = model.P_flat @ Y
    hat = np.zeros_like(mixed)
    for k in range(model.values_sa.shape[1]):
        targets = model.values_sa[:, k, None] + mdp.gamma * support.atoms
        hat += model.probs_sa[:, k, None] * categorical_projection(targets, mixed, support)
    np.testing.assert_allclose(serial, hat, rtol=0, atol=1e-12)
