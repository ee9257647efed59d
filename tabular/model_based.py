"""Model-based distributional RL with a generative model: DCFP, CDP, QDP, Monte Carlo.

Rowland, Wenliang, Munos, Lyle, Tang, Dabney, "Near-Minimax-Optimal Distributional Reinforcement
Learning with a Generative Model", NeurIPS 2024 (arXiv 2402.07598). CDP and QDP as in Bellemare,
Dabney & Rowland, "Distributional Reinforcement Learning" (MIT Press 2023), Ch. 5.

Pipeline (one sample-complexity experiment):
  1. ``sample_empirical_model(mrp, N, seed)``: N next-state draws per state give P̂ (the generative-model setting of Rowland et al. 2024).
  2. ``categorical_fixed_point(mrp_hat, support)``: DCFP, the fixed point of Π_C T_{P̂} by one linear
     solve F = A F + b in CDF coordinates with the last coordinate pinned at 1 (Rowland et al. 2024, Eq. 10; pinning the last coordinate removes the singularity that mass
     conservation causes in probability coordinates).
  3. Compare with the truth: ``monte_carlo_return_distribution`` or ``high_resolution_reference``
     (DCFP on a fine grid, W1 bias ≤ Δ_fine/(2(1−γ))) via ``sup_wasserstein1``.
Baselines: ``categorical_dp`` (CDP, iterate η ← Π_C T η) and ``quantile_dp`` (QDP).

Every function accepts a ``MarkovRewardProcess`` or a ``TabularMDP`` together with ``policy``
(reduced by ``TabularMDP.markov_reward_process(policy)``). Shapes: S states, M atoms, N samples.

Valid range: any process of finite return span (``RETURN_LIMIT``), supports of ≥ 2 increasing
atoms, tol > 0, truncation_tol > 0; fixed iteration counts, sample counts, m and m_fine within the
work/memory budget of ``fixpoint_rl.envs.checks.check_size_budget`` (refused up front beyond it,
with the estimate). Inside it results are finite; outside it ``ValueError`` names the argument.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from fixpoint_rl.envs.checks import (
    as_float_array, as_generator, check_choice, check_distribution, check_int, check_scalar,
    check_size_budget, describe,
)
from fixpoint_rl.envs.mdp import MarkovRewardProcess, TabularMDP

from ._jit import Stopwatch
from ._kernels import model_based as _k
from .core.categorical import CategoricalSupport, wasserstein1
from .core.result import SolverResult

__all__ = [
    "sample_empirical_model",
    "categorical_fixed_point",
    "dcfp_linear_system",
    "categorical_dp",
    "quantile_dp",
    "monte_carlo_return_distribution",
    "high_resolution_reference",
    "HighResolutionReference",
    "SparseMarkovRewardProcess",
    "sample_stochastic_cdf_bellman",
    "sup_wasserstein1",
]

# Above this many unknowns S·(M−1) the system is solved with a sparse LU (SuperLU, COLAMD); below
# it a dense LU. Measured on the study environments (S ≤ 10, M = 21…201): SuperLU took 0.5–5 ms
# where the dense LU took 0.2–460 ms (A has O(M/γ) non-zeros per block, and dense BLAS suffers on a
# shared machine), so dense is kept only for tiny systems.
DENSE_LIMIT = 100
# ``high_resolution_reference(method="auto")`` uses the direct solve up to this many unknowns and CDP
# beyond (sparse LU of a few densely connected states on a 3000-atom grid took ~40 s; CDP < 1 s).
REFERENCE_DIRECT_LIMIT = 5000
# ``categorical_dp`` precomputes its sparse operator (the DCFP matrix A, ~16 bytes per non-zero
# while built) up to this many non-zeros; above it, and for dense-P processes only, it falls back
# to the per-step kernel (no operator in memory, each step ~1.6× slower on the perf process).
CDP_OPERATOR_LIMIT = 30_000_000


# --- inputs ---------------------------------------------------------------------------------------


def _as_mrp(process, policy=None) -> MarkovRewardProcess:
    """A MarkovRewardProcess from an MRP, or from a TabularMDP and a policy [S, A]."""
    if isinstance(process, MarkovRewardProcess):
        if policy is not None:
            raise ValueError("policy must be None when mrp is a MarkovRewardProcess")
        return process
    if isinstance(process, TabularMDP):
        if policy is None:
            raise ValueError("policy is required when mrp is a TabularMDP")
        return process.markov_reward_process(policy)
    raise ValueError(
        f"mrp must be a MarkovRewardProcess or a TabularMDP (with policy), got {type(process).__name__}"
    )


def _arrays(mrp: MarkovRewardProcess) -> tuple[np.ndarray, np.ndarray, float]:
    return (
        np.ascontiguousarray(mrp.P, dtype=np.float64),
        np.ascontiguousarray(mrp.reward, dtype=np.float64),
        float(mrp.gamma),
    )


@dataclasses.dataclass(frozen=True)
class SparseMarkovRewardProcess:
    """A finite discounted Markov reward process with sparse transitions (no dense S×S array).

    Accepted by ``categorical_fixed_point``, ``dcfp_linear_system``, ``categorical_dp`` and
    ``high_resolution_reference`` (with ``support``); memory is O(E) for E transitions, so DCFP
    scales to S·M ≈ 10⁶ unknowns on processes with few successors per state.

    Attributes:
      P: [S, S] scipy.sparse matrix of transition probabilities (stored as CSR, explicit zeros
        removed); rows sum to 1 within 1e-9.
      reward: [S, S] scipy.sparse matrix or dense array; only its entries on P's non-zero pattern
        are used (an entry missing from a sparse ``reward`` is a reward of 0).
      gamma: discount γ ∈ [0, 1).

    Valid range: gamma in [0, 1); P [S, S] scipy.sparse row-stochastic; reward [S, S] finite on P's
    sparsity pattern.
    """

    P: Any
    reward: Any
    gamma: float

    def __post_init__(self) -> None:
        if not scipy.sparse.issparse(self.P):
            raise ValueError(f"P must be a scipy.sparse matrix, got {type(self.P).__name__}")
        P = scipy.sparse.csr_matrix(self.P, dtype=np.float64, copy=True)
        S = P.shape[0]
        if P.shape != (S, S) or S < 1:
            raise ValueError(f"P must be a square (S, S) matrix, got shape {P.shape}")
        P.sum_duplicates()
        P.eliminate_zeros()
        P.sort_indices()
        if not np.all(np.isfinite(P.data)) or (P.data.size and P.data.min() < 0):
            raise ValueError("P must have finite, non-negative entries")
        sums = np.asarray(P.sum(axis=1)).ravel()
        worst = float(np.max(np.abs(sums - 1.0)))
        if worst > 1e-9:
            raise ValueError(f"P must have rows summing to 1, got a row sum off by {worst:.3g}")
        if self.reward is None or np.shape(self.reward) != (S, S):
            raise ValueError(f"reward must have shape ({S}, {S}), got {np.shape(self.reward)}")
        rows = np.repeat(np.arange(S), np.diff(P.indptr))
        if scipy.sparse.issparse(self.reward):
            values = np.asarray(scipy.sparse.csr_matrix(self.reward)[rows, P.indices]).ravel()
        else:
            values = as_float_array("reward", self.reward, shape=(S, S))[rows, P.indices]
        values = np.ascontiguousarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError("reward must be finite on the transitions of P")
        gamma = check_scalar("gamma", self.gamma, low=0.0, high=1.0, high_inclusive=False)
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "reward", scipy.sparse.csr_matrix(
            (values, P.indices.copy(), P.indptr.copy()), shape=(S, S)))
        object.__setattr__(self, "gamma", gamma)

    @property
    def n_states(self) -> int:
        return int(self.P.shape[0])

    def values(self) -> np.ndarray:
        """V [S] = (I − γP)^{-1} r̄ by a sparse LU, r̄[x] = Σ_x' P(x, x') r(x, x')."""
        S = self.n_states
        mean_reward = np.asarray(self.P.multiply(self.reward).sum(axis=1)).ravel()
        system = (scipy.sparse.identity(S, format="csc") - self.gamma * self.P).tocsc()
        return scipy.sparse.linalg.spsolve(system, mean_reward)


def _transitions(process, policy=None):
    """CSR transitions (indptr, indices, prob, reward [E]), γ and S of any accepted process."""
    if isinstance(process, SparseMarkovRewardProcess):
        if policy is not None:
            raise ValueError("policy must be None when mrp is a SparseMarkovRewardProcess")
        P = process.P
        return (P.indptr.astype(np.int64), P.indices.astype(np.int64), P.data,
                process.reward.data, process.gamma, process.n_states)
    P, R, gamma = _arrays(_as_mrp(process, policy))
    rows, cols = np.nonzero(P > 0)
    indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=P.shape[0])))).astype(np.int64)
    return (indptr, cols.astype(np.int64), np.ascontiguousarray(P[rows, cols]),
            np.ascontiguousarray(R[rows, cols]), gamma, P.shape[0])


def _atoms(support) -> np.ndarray:
    """Atoms [M] from a CategoricalSupport or an array; strictly increasing, M ≥ 2."""
    if isinstance(support, CategoricalSupport):
        return np.ascontiguousarray(support.atoms, dtype=np.float64)
    atoms = as_float_array("support", support, ndim=1)
    if atoms.shape[0] < 2:
        raise ValueError(f"support must hold at least 2 atoms (m ≥ 2), got shape {atoms.shape}")
    gaps = np.diff(atoms)
    if np.any(gaps <= 0):
        raise ValueError(f"support must be strictly increasing, got minimum gap {gaps.min()!r}")
    return atoms


def _cum_rows(P: np.ndarray) -> np.ndarray:
    cum = np.cumsum(P, axis=1)
    cum[:, -1] = 1.0  # guard against rounding: every uniform draw lands in some state
    return np.ascontiguousarray(cum)


def _horizon(gamma: float, span: float, tol: float) -> int:
    """Steps T with γ^T·span ≤ tol (truncating a discounted sum of rewards of range ``span``)."""
    if gamma == 0.0:
        return 1
    if span <= 0.0:
        return 1
    # log(tol) − log(span), not log(tol/span): the ratio underflows to 0 for subnormal tol;
    # capped so that an absurd horizon reaches check_size_budget as a float, not an overflow
    steps = math.ceil((math.log(tol) - math.log(span)) / math.log(gamma))
    return max(1, int(min(steps, 2**62)))


# --- generative model -----------------------------------------------------------------------------


def sample_empirical_model(mrp, n_samples: int, seed, *, policy=None) -> MarkovRewardProcess:
    """Empirical MRP from a generative model: P̂(x, ·) = counts of N i.i.d. draws X' ~ P(x, ·) / N.

    Args:
      mrp: MarkovRewardProcess (or TabularMDP with ``policy``).
      n_samples: N ≥ 1 draws per state.
      seed: int or np.random.Generator (Numba draws from it; same seed, same model).

    Returns:
      MarkovRewardProcess with P̂ [S, S], the same reward [S, S], γ and initial distribution.

    Valid range: n_samples ≥ 1 (an int) with S·n_samples within the work budget.
    """
    mrp = _as_mrp(mrp, policy)
    n_samples = check_int("n_samples", n_samples, low=1)
    check_size_budget("n_samples", n_samples, work=float(mrp.n_states) * n_samples * 10)  # S·N draws
    rng = as_generator("seed", seed)
    P, R, gamma = _arrays(mrp)
    counts = _k._sample_counts(_cum_rows(P), n_samples, rng)
    return MarkovRewardProcess(P=counts / n_samples, reward=R, gamma=gamma, initial=mrp.initial)


# --- DCFP -----------------------------------------------------------------------------------------


def dcfp_linear_system(mrp, support, *, policy=None) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    """The DCFP system F = A F + b in CDF coordinates (Rowland et al. 2024, arXiv 2402.07598, Eq. 10).

    F[x·(M−1) + i] = F_x(z_i) for i < M−1 (the last CDF coordinate is pinned at 1, which removes the
    mass-conservation singularity of the probability-coordinate system).
    A[(x, i), (x', j)] = P(x, x') C_{x x'}[i, j] with C = (L H Dm)[:M−1, :M−1] for the projected
    pushforward b_{r(x,x'),γ}, and b[(x, i)] = Σ_x' P(x, x') c_{x x'}[i] with c = (L H Dm)[:M−1, M−1].

    Returns:
      (A as CSR [S(M−1), S(M−1)], b [S(M−1)]).

    Valid range: no numeric arguments; any MRP and support (policy only with an MDP).
    """
    transitions = _transitions(mrp, policy)
    atoms = _atoms(support)
    return _build_system(transitions, atoms)


def _build_system(transitions, atoms):
    """(A as CSR, b) from CSR transitions (``_transitions``); built by a Numba kernel in O(E·M)."""
    indptr, indices, prob, reward, gamma, S = transitions
    m = atoms.shape[0]
    n = S * (m - 1)
    nnz = _k._dcfp_triplet_count_csr(indptr, indices, prob, reward, gamma, atoms)
    index_type = np.int32 if max(nnz, n) < 2**31 else np.int64  # halves index memory at scale
    rows = np.empty(nnz, dtype=index_type)
    cols = np.empty(nnz, dtype=index_type)
    vals = np.empty(nnz)
    b = np.zeros(n)
    _k._dcfp_triplets_csr(indptr, indices, prob, reward, gamma, atoms, rows, cols, vals, b)
    A = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))
    del rows, cols, vals
    return A, b


def _cdf_to_probs(cdf):
    """probs [S, M] = first differences of the CDFs [S, M]. The exact CDFs are non-decreasing; a
    difference that rounding made negative (|p| ≤ 1e-12, i.e. a few ulps of the O(1) CDF values)
    is set to 0, so the result is a valid distribution for validated consumers."""
    probs = np.diff(cdf, axis=1, prepend=0.0)
    probs[(probs < 0.0) & (probs >= -1e-12)] = 0.0
    return probs


def _operator_arrays(A):
    """CSR arrays of A for ``_cdp_operator_run``: int64 row starts, uint32 column indices (unsigned:
    Numba then skips the negative-index test in the mat-vec's gather; 5 % per step measured at
    S = 1000, M = 201) and float64 values."""
    index_type = np.uint32 if A.shape[1] < 2**32 else np.int64
    return A.indptr.astype(np.int64), A.indices.astype(index_type), A.data


def _solve_sparse(system, b, order=None):
    """Solve system·F = b (system = I − A as CSR, ``_identity_minus``) by SuperLU.

    With ``order`` (``_structured_order``): the symmetrically permuted system, factorised in that
    order (NATURAL) with diagonal pivots — I − A is a non-singular M-matrix, so every pivot is
    positive and no row exchange is needed (Berman & Plemmons 1994, Ch. 6). Without: COLAMD with
    threshold pivoting (scipy's default). Measured at S = 1000, M = 201 (random walk, CPU):
    structured order 1.0 s, fill 1.7·10⁷; COLAMD 1.75 s, fill 2.5·10⁷.

    Also tried (``fixpoint_rl.benchmarks.perf_dcfp.solver_study``; same process): COLAMD with
    diagonal pivots 2.5 s, same fill as COLAMD; MMD_AT_PLUS_A and MMD_ATA far slower (> 140 s);
    NATURAL on the state-major order (banded) and RCM fill 7·10⁷; METIS nested dissection (pymetis)
    41 % less fill but its ordering costs more than it saves; ILU(10⁻⁴)+GMRES/BiCGSTAB 2.0–2.3 s
    with 3.5× less memory; Krylov methods without a preconditioner need 650–1100 mat-vecs
    (GMRES(30/100), LGMRES, GCROT) or break down (BiCGSTAB), with block symmetric Gauss–Seidel and
    a coarse space of K per-state moments (K = 1…16) still 80–140.
    """
    if order is None:
        return scipy.sparse.linalg.splu(system.tocsc(), permc_spec="COLAMD").solve(b)
    permuted = system[order][:, order].tocsc()
    lu = scipy.sparse.linalg.splu(permuted, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                                  options={"SymmetricMode": True})
    del permuted
    F = np.empty_like(b)
    F[order] = lu.solve(b[order])
    return F


# --- optional sparse direct solver: Intel MKL PARDISO (the ``fast`` extra, package pypardiso) ----

# Iterative refinement stops when the float64 residual max|b − (I − A)F| is at most this. In the
# norm ‖F‖ = max_x Σ_i Δ_i |F_x,i| (sup-W1 on CDFs) A is a γ-contraction (Rowland et al. 2024), so
# the sup-W1 error of the answer is ≤ (z_{M−1} − z_0)·REFINE_RESIDUAL/(1 − γ): 1e-10 at span 100,
# γ = 0.99. The float64 residual itself carries ≈ 1e-15 of rounding (≈ 10 products per row).
REFINE_RESIDUAL = 1e-14
_PARDISO_LIBRARY = None


def _pardiso_library():
    """Intel MKL's runtime library as loaded by ``pypardiso`` (None when it is not installed)."""
    global _PARDISO_LIBRARY
    if _PARDISO_LIBRARY is None:
        try:
            import pypardiso

            _PARDISO_LIBRARY = pypardiso.PyPardisoSolver().libmkl
            _PARDISO_LIBRARY.pardiso.restype = None  # arguments are passed as explicit ctypes
            _PARDISO_LIBRARY.pardiso.argtypes = None
        except (ImportError, OSError):  # not installed, or mkl_rt not found
            _PARDISO_LIBRARY = False
    return _PARDISO_LIBRARY or None


def _mkl_threads() -> int:
    """MKL threads for one PARDISO call: 0 (MKL's own setting) when ``MKL_NUM_THREADS`` is set or a
    core is free (``_threads.core_is_free``), else 1 (a descheduled thread stalls the parallel
    factorisation on a loaded machine, as for the BLAS and Numba kernels in ``_threads``)."""
    import os

    from ._threads import core_is_free

    if "MKL_NUM_THREADS" in os.environ:
        return 0
    return 0 if core_is_free() else 1


def _pardiso_refined(library, system, b, single: bool, stats: dict | None = None, order=None):
    """F with max|b − system·F| ≤ REFINE_RESIDUAL by PARDISO (real unsymmetric, METIS nested
    dissection or the given order), factorised in float32 (``single``) or float64,
    with iterative refinement in float64 (residuals computed in float64, corrections solved with
    the factor). Mixed precision halves the factor's memory; refinement converges when
    cond·ε₃₂ < 1 (Wilkinson/Moler), here 3 steps from ≈ 1e-7 to ≤ 1e-15. None when refinement
    stalls (residual not halved by a step) or PARDISO reports an error. ``stats`` (a dict), when
    given, receives PARDISO's own memory report (kB; it sees the C allocations) and the factor's
    non-zeros, the refinement steps and the final residual. ``order`` [n] (int32): an elimination
    order to use instead of PARDISO's METIS ordering (``_structured_order``)."""
    import ctypes

    n = b.shape[0]
    real = np.float32 if single else np.float64
    values = system.data.astype(real)
    indptr = np.asarray(system.indptr, dtype=np.int32)  # no copy when scipy already uses int32
    indices = np.asarray(system.indices, dtype=np.int32)
    handle = np.zeros(64, dtype=np.int64)
    iparm = np.zeros(64, dtype=np.int32)
    iparm[0] = 1  # own settings (1-based names below: iparm(k) = iparm[k − 1])
    iparm[1] = 2  # METIS nested dissection (unless an order is given)
    iparm[4] = 0 if order is None else 1  # use the given elimination order
    iparm[9] = 6 if single else 13  # pivot perturbation 10^-k
    # no scaling and no weighted matching: I − A is a non-singular M-matrix (A ≥ 0, ρ(A) = γ < 1),
    # so elimination in any symmetric order meets positive pivots (Berman & Plemmons 1994, Ch. 6);
    # matching only cost time and 25 MB per 10⁶ unknowns
    iparm[10] = 0
    iparm[12] = 0
    iparm[17] = -1  # report the factor's non-zeros in iparm(18)
    iparm[27] = 1 if single else 0  # float32 factorisation
    iparm[34] = 1  # zero-based indices
    pointer = ctypes.c_void_p

    def call(phase, rhs, out):
        error = ctypes.c_int32(0)
        library.pardiso(handle.ctypes.data_as(pointer), ctypes.byref(ctypes.c_int32(1)),
                        ctypes.byref(ctypes.c_int32(1)), ctypes.byref(ctypes.c_int32(11)),
                        ctypes.byref(ctypes.c_int32(phase)), ctypes.byref(ctypes.c_int32(n)),
                        values.ctypes.data_as(pointer), indptr.ctypes.data_as(pointer),
                        indices.ctypes.data_as(pointer),
                        pointer(0) if order is None else order.ctypes.data_as(pointer),
                        ctypes.byref(ctypes.c_int32(1)), iparm.ctypes.data_as(pointer),
                        ctypes.byref(ctypes.c_int32(0)), rhs.ctypes.data_as(pointer),
                        out.ctypes.data_as(pointer), ctypes.byref(error))
        return error.value

    scratch = np.zeros(n, dtype=real)
    threads = _mkl_threads()
    previous = library.MKL_Set_Num_Threads_Local(ctypes.c_int(threads)) if threads else None
    try:
        if call(12, scratch, scratch.copy()) != 0:  # ordering, symbolic and numeric factorisation
            return None
        F = np.zeros(n)
        worst = np.inf
        for step in range(10):
            residual = b - system @ F
            new_worst = float(np.max(np.abs(residual)))
            if stats is not None:
                stats.update(analysis_kb=int(iparm[14]), permanent_kb=int(iparm[15]),
                             factor_kb=int(iparm[16]), factor_nnz=int(iparm[17]),
                             refinement_steps=step, residual=new_worst)
            if new_worst <= REFINE_RESIDUAL:
                return F
            if not new_worst <= 0.5 * worst:  # stalled (or NaN)
                return None
            worst = new_worst
            correction = np.zeros(n, dtype=real)
            if call(33, np.ascontiguousarray(residual, dtype=real), correction) != 0:
                return None
            F += correction
        return None
    finally:
        call(-1, scratch, scratch.copy())  # release PARDISO's memory
        if previous is not None:
            library.MKL_Set_Num_Threads_Local(ctypes.c_int(previous))


def _solve_pardiso(system, b, library, order=None):
    """Solve system·F = b (system = I − A as CSR, ``_identity_minus``) by PARDISO: a float32
    factor with float64 refinement, then a float64 factor if that stalls, then SuperLU (also for
    systems beyond PARDISO's 32-bit indices).

    Measured (``fixpoint_rl.benchmarks.perf_dcfp``; random walk, M = 201, γ = 0.99, one MKL thread,
    loaded machine): at S = 1000 (2·10⁵ unknowns, structured order) the whole DCFP call took
    0.64 s CPU against 1.02 s with SuperLU in the same order and 1.73 s for the previous COLAMD
    SuperLU solve alone; METIS ordering instead of the structured one 1.18 s (its analysis is
    60 % of PARDISO's time). At S = 5000 (10⁶ unknowns, METIS) 7.0 s CPU and 1002 MB peak
    against SuperLU's 6.3 s and 1502 MB (the float32 factor stores half the bytes)."""
    if system.nnz < 2**31 - 1:
        for single in (True, False):
            F = _pardiso_refined(library, system, b, single, order=order)
            if F is not None:
                return F
    return _solve_sparse(system, b, order)


# Leaf size of the structured nested dissection (boxes of at most this many unknowns are not
# split): 8, 16, 32, 64, 256 gave 0.63, 0.71, 0.69, 0.76, 1.19 s of PARDISO CPU (ordering included
# separately, 0.15 s in Python at 8) at S = 1000, M = 201.
ND_LEAF = 8
# PARDISO uses the structured order up to this many unknowns and its METIS ordering above, where
# memory binds: at S = 5000, M = 201 (10⁶ unknowns, float32 factor) the structured order took
# 3.6 s CPU and 1060 MB (factor 1.19·10⁸ non-zeros), METIS 8.8 s CPU and 984 MB (1.03·10⁸), under
# load. The SuperLU path always uses the structured order (it is still well ahead of COLAMD).
STRUCTURED_ORDER_LIMIT = 500_000


def _structured_order(transitions, width: int, A) -> np.ndarray:
    """Fill-reducing elimination order [S·width] for the DCFP system (``_k._nested_dissection``):
    breadth-first levels of the symmetrised transition graph (from a pseudo-peripheral state, found
    by two sweeps, per connected component) times the atom index. Costs two breadth-first searches
    and one pass over A; METIS on the whole system (PARDISO's own ordering) costs ~60 % of PARDISO's
    time at 2·10⁵ unknowns and gives 15 % less fill."""
    from scipy.sparse import csgraph

    indptr, indices = transitions[0], transitions[1]
    S = transitions[-1]
    graph = scipy.sparse.csr_matrix((np.ones(indices.shape[0]), indices, indptr), shape=(S, S))
    graph = (graph + graph.T).tocsr()
    n_comp, labels = csgraph.connected_components(graph, directed=False)
    first = np.full(n_comp, S)
    np.minimum.at(first, labels, np.arange(S))
    starts = first
    for _ in range(2):  # the farthest state from the start, per component: pseudo-peripheral
        dist = csgraph.dijkstra(graph, directed=False, indices=starts, unweighted=True,
                                min_only=True)
        far = np.lexsort((-dist, labels))  # per component, farthest first
        starts = far[np.concatenate(([0], np.flatnonzero(np.diff(labels[far])) + 1))]
    dist = csgraph.dijkstra(graph, directed=False, indices=starts, unweighted=True,
                            min_only=True).astype(np.int64)
    level_states = np.lexsort((np.arange(S), dist, labels)).astype(np.int64)
    key = labels[level_states].astype(np.int64) * (S + 1) + dist[level_states]
    starts_of_levels = np.concatenate(([0], np.flatnonzero(np.diff(key)) + 1))
    level_ptr = np.concatenate((starts_of_levels, [S])).astype(np.int64)
    level_comp = labels[level_states[starts_of_levels]]
    comp_first = np.concatenate(([0], np.flatnonzero(np.diff(level_comp)) + 1))
    roots = np.stack((comp_first, np.concatenate((comp_first[1:], [level_comp.shape[0]]))),
                     axis=1).astype(np.int64)
    band = _k._atom_band(A.indptr, A.indices, width)
    order = np.empty(S * width, dtype=np.int32)
    _k._nested_dissection(level_ptr, level_states, roots, width, band, ND_LEAF, order)
    return order


def _identity_minus(A):
    """I − A as CSR with sorted indices (the DCFP system matrix)."""
    system = (scipy.sparse.identity(A.shape[0], format="csr") - A).tocsr()
    system.sort_indices()
    return system


SPARSE_SOLVERS = ("superlu", "pardiso")


def _sparse_solver(method: str) -> str:
    """The sparse direct solver for ``method`` ("sparse": PARDISO when installed, else SuperLU)."""
    if method == "sparse":
        return "pardiso" if _pardiso_library() is not None else "superlu"
    if method == "pardiso" and _pardiso_library() is None:
        raise ValueError("method='pardiso' needs the optional package pypardiso (Intel MKL "
                         "PARDISO): pip install 'fixpoint-rl[fast]'; or use method='superlu'")
    return method


def categorical_fixed_point(mrp, support, *, policy=None, method: str = "auto") -> np.ndarray:
    """DCFP: the categorical fixed point η_C = Π_C T η_C by a direct linear solve (Rowland et al. 2024).

    Solves (I − A) F = b (Rowland et al. 2024, Eq. 10; ρ(A) = γ < 1 so I − A is invertible) and recovers
    p(x) as the first differences of [F(x); 1]. Equals the limit of ``categorical_dp``.

    Args:
      mrp: MarkovRewardProcess (or TabularMDP with ``policy``).
      support: CategoricalSupport or strictly increasing atoms [M], M ≥ 2.
      method: "auto" (dense LU up to ``DENSE_LIMIT`` unknowns, "sparse" above), "dense" (LAPACK
        LU), "sparse" ("pardiso" when the optional package pypardiso is installed, else
        "superlu"), "superlu" (scipy.sparse.linalg.splu in a nested-dissection order built from
        the product structure, ``_structured_order``, with diagonal pivots) or "pardiso" (Intel
        MKL PARDISO in that order — METIS above ``STRUCTURED_ORDER_LIMIT`` unknowns —, float32
        factor refined in float64 to a residual ≤ ``REFINE_RESIDUAL``; falls back to float64,
        then SuperLU). All give the same fixed point: the direct solves to rounding, PARDISO
        within (z_{M−1} − z_0)·``REFINE_RESIDUAL``/(1 − γ) in sup-W1.

    Returns:
      probs [S, M]: each row a probability vector (sums to 1; entries ≥ 0 up to rounding).

    Valid range: no numeric arguments; any MRP and support (mass beyond the support's ends is
    clipped onto them); method one of the listed solvers.
    """
    transitions = _transitions(mrp, policy)
    atoms = _atoms(support)
    method = check_choice("method", method, ("auto", "dense", "sparse") + SPARSE_SOLVERS)
    A, b = _build_system(transitions, atoms)
    n = b.shape[0]
    if method == "dense" or (method == "auto" and n <= DENSE_LIMIT):
        system = np.eye(n) - A.toarray()
        F = scipy.linalg.solve(system, b, check_finite=False)
    elif _sparse_solver("sparse" if method == "auto" else method) == "pardiso":
        order = _structured_order(transitions, atoms.shape[0] - 1, A) if (
            n <= STRUCTURED_ORDER_LIMIT) else None
        system = _identity_minus(A)
        del A  # at S·M ≈ 10⁶ unknowns each copy of the operator is ≈ 80 MB
        F = _solve_pardiso(system, b, _pardiso_library(), order)
    else:
        order = _structured_order(transitions, atoms.shape[0] - 1, A)
        system = _identity_minus(A)
        del A
        F = _solve_sparse(system, b, order)
    S, m = transitions[-1], atoms.shape[0]
    cdf = np.ones((S, m))
    cdf[:, :-1] = F.reshape(S, m - 1)
    return _cdf_to_probs(cdf)


# --- CDP and QDP ----------------------------------------------------------------------------------


def _budget(iterations, tol, default_iterations: int, per_iteration: float = 1.0) -> tuple[int, float]:
    """(iteration cap, tol). Without ``tol`` every iteration runs, so ``iterations`` · the cost of
    one iteration must fit the work budget (refused up front otherwise); with ``tol`` the cap only
    bounds a run that stops at convergence."""
    if iterations is None and tol is None:
        raise ValueError("give iterations or tol (or both), got neither")
    its = default_iterations if iterations is None else check_int("iterations", iterations, low=1)
    t = 0.0 if tol is None else check_scalar("tol", tol, low=0.0, low_inclusive=False)
    if tol is None:
        check_size_budget("iterations", its, work=float(its) * per_iteration)
    # the kernels record one change per iteration: an [its] float64 array, allocated up front
    check_size_budget("iterations", its, memory_bytes=8.0 * its)
    return its, t


def categorical_dp(
    mrp, support, iterations: int | None = None, tol: float | None = None, *, policy=None, init=None
) -> SolverResult:
    """CDP: η_{k+1}(x) = Σ_x' P(x, x') Π_C (b_{r(x,x'),γ})_# η_k(x') (Bellemare, Dabney & Rowland 2023, Ch. 5).

    A √γ-contraction in sup-Cramér and γ in sup-W1, so ≈ log(1/ε)/log(1/γ) iterations.

    Args:
      iterations: maximum number of steps (default 1_000_000 when only ``tol`` is given).
      tol: stop when the sup-Cramér distance between successive iterates is ≤ tol.
      init: probs [S, M] to start from (default δ_{z_0} in every state).

    Returns:
      SolverResult: final probs [S, M]; metrics "iteration" and "cramer_change" (sup over states of
      ℓ2(η_k, η_{k−1}), recorded every ``max(1, T // 200)`` steps and at the last step).

    Valid range: iterations ≥ 1 (an int, within the work budget) or tol > 0 (finite): at least one
    of them; policy/init as documented.
    """
    transitions = _transitions(mrp, policy)
    atoms = _atoms(support)
    # one CDP step: a sparse mat-vec with ≈ E·M nonzeros (E transitions, M atoms)
    its, t = _budget(iterations, tol, 1_000_000,
                     per_iteration=float(transitions[1].shape[0] + 1) * atoms.shape[0])
    S, m = transitions[-1], atoms.shape[0]
    if init is None:
        probs0 = np.zeros((S, m))
        probs0[:, 0] = 1.0
    else:
        probs0 = check_distribution("init", init, shape=(S, m))
    every = max(1, its // 200)
    gaps = np.ascontiguousarray(np.diff(atoms))
    F0 = np.ascontiguousarray(np.cumsum(probs0, axis=1)[:, :-1].reshape(-1))
    clock = Stopwatch()
    indptr, indices, prob, reward, gamma, _ = transitions
    nnz = _k._dcfp_triplet_count_csr(indptr, indices, prob, reward, gamma, atoms)
    if nnz > CDP_OPERATOR_LIMIT and not isinstance(mrp, SparseMarkovRewardProcess):
        # the operator would not fit comfortably in memory (e.g. a few dense states on a very fine
        # grid): the per-step kernel, which projects every atom of every transition each step
        P, R, gamma = _arrays(_as_mrp(mrp, policy))
        probs0 = np.ascontiguousarray(probs0)
        clock.compile(_k._cdp_run, P, R, gamma, atoms, probs0, its, t, every)
        with clock.running():
            probs, done, iters, changes = _k._cdp_run(P, R, gamma, atoms, probs0, its, t, every)
        return SolverResult(
            final=probs, metrics={"iteration": iters, "cramer_change": changes},
            wall_time_s=clock.wall_s, compile_time_s=clock.compile_s,
            config={"solver": "categorical_dp", "iterations": iterations, "tol": tol, "m": m,
                    "S": S},
            extras={"atoms": atoms, "steps": int(done), "operator": False})
    tiny = (np.array([0, 1]), np.array([0]), np.array([1.0]), np.array([0.0]), 0.5, 1)
    tiny_A, tiny_b = _build_system(tiny, atoms[:2])  # compiles the builder outside the clock
    clock.compile(_k._cdp_operator_run, *_operator_arrays(tiny_A), tiny_b, F0[:1], gaps[:1], 1, 1, t,
                  1)
    with clock.running():
        # the operator (binary searches and projection weights) is built once, then every step is
        # one sparse mat-vec; the build is part of CDP's wall time
        A, b = _build_system(transitions, atoms)
        F, done, iters, changes = _k._cdp_operator_run(*_operator_arrays(A), b, F0, gaps, S, its,
                                                       t, every)
        cdf = np.ones((S, m))
        cdf[:, :-1] = F.reshape(S, m - 1)
        probs = _cdf_to_probs(cdf)
    return SolverResult(
        final=probs,
        metrics={"iteration": iters, "cramer_change": changes},
        wall_time_s=clock.wall_s,
        compile_time_s=clock.compile_s,
        config={"solver": "categorical_dp", "iterations": iterations, "tol": tol, "m": m, "S": S},
        extras={"atoms": atoms, "steps": int(done), "operator": True},
    )


def quantile_dp(
    mrp, m: int, iterations: int | None = None, tol: float | None = None, *, policy=None
) -> SolverResult:
    """QDP: θ_{k+1}(x) = quantiles τ_i = (2i+1)/(2M) of Σ_x' P(x,x') (1/M) Σ_j δ_{r(x,x') + γ θ_k(x', j)}.

    The quantile projection is a W∞ non-expansion, so QDP is a γ-contraction in sup-W∞
    (Bellemare, Dabney & Rowland 2023, Ch. 5). The returned locations are non-decreasing per state.

    Args:
      m: number of quantile atoms M ≥ 2.
      iterations / tol: budget; tol stops when the sup-W∞ change between iterates is ≤ tol.

    Returns:
      SolverResult: final θ [S, M] (each state's distribution is (1/M) Σ_i δ_{θ[x, i]}); metrics
      "iteration" and "winf_change".

    Valid range: m ≥ 2 (an int); iterations ≥ 1 (within the work budget) or tol > 0 (finite).
    """
    mrp = _as_mrp(mrp, policy)
    m = check_int("m", m, low=2)
    check_size_budget("m", m, memory_bytes=4 * 8.0 * mrp.n_states * m)
    # one QDP step: S² pairs of m quantiles, sorted (≈ m log m)
    its, t = _budget(iterations, tol, 1_000_000,
                     per_iteration=float(mrp.n_states) ** 2 * m * max(math.log2(m), 1.0))
    P, R, gamma = _arrays(mrp)
    S = P.shape[0]
    theta0 = np.zeros((S, m))
    clock = Stopwatch()
    clock.compile(_k._qdp_run, P, R, gamma, theta0, its, t)
    with clock.running():
        theta, done, changes = _k._qdp_run(P, R, gamma, theta0, its, t)
    return SolverResult(
        final=theta,
        metrics={"iteration": np.arange(1, done + 1, dtype=np.int64), "winf_change": changes[:done]},
        wall_time_s=clock.wall_s,
        compile_time_s=clock.compile_s,
        config={"solver": "quantile_dp", "m": m, "iterations": iterations, "tol": tol, "S": S},
        extras={"steps": int(done)},
    )


# --- ground truth ---------------------------------------------------------------------------------


def monte_carlo_return_distribution(
    mrp, n_episodes: int, seed, *, policy=None, truncation_tol: float = 1e-6
) -> np.ndarray:
    """Sampled returns G = Σ_{t<T} γ^t r(X_t, X_{t+1}) from every start state (Numba).

    T is the smallest horizon with γ^T (r_max − r_min)/(1−γ) ≤ ``truncation_tol``, so each sampled
    return is within ``truncation_tol`` of an exact draw of the return (W1 bias ≤ truncation_tol).

    Returns:
      returns [S, n_episodes], sorted along the last axis (an empirical distribution per state).

    Valid range: n_episodes ≥ 1 (an int, within the work budget); truncation_tol in (0, 1).
    """
    mrp = _as_mrp(mrp, policy)
    n_episodes = check_int("n_episodes", n_episodes, low=1)
    truncation_tol = check_scalar("truncation_tol", truncation_tol, low=0.0, low_inclusive=False)
    rng = as_generator("seed", seed)
    P, R, gamma = _arrays(mrp)
    used = R[P > 0]
    span = float(np.max(np.abs(used))) / (1.0 - gamma) if used.size else 0.0
    horizon = _horizon(gamma, span, truncation_tol)
    check_size_budget("n_episodes", n_episodes, memory_bytes=2 * 8.0 * mrp.n_states * n_episodes,
                      work=float(mrp.n_states) * n_episodes * horizon)
    out = _k._monte_carlo_returns(_cum_rows(P), R, gamma, horizon, n_episodes, rng)
    return np.sort(out, axis=1)


def _solver_probs(name, value):
    """[S, M] probability rows as solvers produce them: entries may carry rounding of either sign
    (≈1e-16 per entry after a sparse LU or CDF differencing), far below any modelling error, so
    the tolerances are −1e-9 per entry and 1e-6 per row sum."""
    probs = as_float_array(name, value, ndim=2)
    if probs.size == 0 or np.any(probs < -1e-9) or np.max(np.abs(probs.sum(axis=1) - 1.0)) > 1e-6:
        raise ValueError(f"{name} must hold one probability vector per state (rows ≥ 0 summing "
                         f"to 1), got {describe(probs)}")
    return probs


@dataclasses.dataclass(frozen=True)
class HighResolutionReference:
    """DCFP on a fine grid, used as ground truth.

    Attributes:
      atoms: [M_fine] grid.
      probs: [S, M_fine] categorical fixed point on it.
      w1_bias_bound: sup_x W1(η_fine(x), η^π(x)) ≤ Δ_fine/(2(1−γ)) (projection error Δ/2 per
        step, W1 non-expansion of Π_C, γ-contraction).

    Valid range: w1_bias_bound ≥ 0 (finite); atoms [M] increasing and finite; probs [S, M]
    distributions.
    """

    atoms: np.ndarray
    probs: np.ndarray
    w1_bias_bound: float

    def __post_init__(self) -> None:
        atoms = as_float_array("atoms", self.atoms, ndim=1)
        if atoms.shape[0] < 2 or np.any(np.diff(atoms) <= 0):
            raise ValueError(f"atoms must be ≥ 2 strictly increasing values, got {describe(atoms)}")
        probs = _solver_probs("probs", self.probs)
        if probs.shape[1] != atoms.shape[0]:
            raise ValueError(f"probs must have shape (S, {atoms.shape[0]}) to match atoms, got "
                             f"shape {probs.shape}")
        bound = check_scalar("w1_bias_bound", self.w1_bias_bound, low=0.0)
        object.__setattr__(self, "atoms", atoms)
        object.__setattr__(self, "probs", probs)
        object.__setattr__(self, "w1_bias_bound", bound)


def high_resolution_reference(
    mrp, m_fine: int = 4001, *, support=None, policy=None, method: str = "auto"
) -> HighResolutionReference:
    """High-resolution reference: the categorical fixed point with ``m_fine`` atoms on ``support``
    (default: the exact return range of the process, ``fixpoint_rl.envs.dcfp_envs.environment_support``),
    with its W1 bias bound Δ_fine/(2(1−γ)) (W1 projection error Δ/2 over a γ-contraction) reported beside it.

    Args:
      method: "dcfp" (direct solve), "cdp" (CDP iterated to a sup-Cramér change of 1e-13, whose
        remaining W1 error ≤ √L·change·√γ/(1−√γ) with L the grid length is added to the bound; much
        faster than a sparse LU for a few densely connected states on a very fine grid), or "auto"
        (dcfp up to ``REFERENCE_DIRECT_LIMIT`` unknowns, else cdp).

    Valid range: m_fine ≥ 2 (an int, within memory); the MRP's returns of finite span.
    """
    from fixpoint_rl.envs.dcfp_envs import environment_support

    if isinstance(mrp, SparseMarkovRewardProcess):
        if policy is not None:
            raise ValueError("policy must be None when mrp is a SparseMarkovRewardProcess")
        if support is None:
            raise ValueError("support is required when mrp is a SparseMarkovRewardProcess, got None")
    else:
        mrp = _as_mrp(mrp, policy)
    m_fine = check_int("m_fine", m_fine, low=2)
    # the [S, M_fine] answer, the sparse (S·M_fine)² system (≈ S² M_fine nonzeros) and its LU
    check_size_budget("m_fine", m_fine, memory_bytes=16 * 8.0 * mrp.n_states ** 2 * m_fine)
    method = check_choice("method", method, ("auto", "dcfp", "cdp"))
    atoms = environment_support(mrp, m_fine) if support is None else _atoms(support)
    gaps = np.diff(atoms)
    if np.max(gaps) - np.min(gaps) > 1e-9 * np.max(gaps):
        raise ValueError("support must be evenly spaced for the Δ/(2(1−γ)) bias bound")
    bound = float(gaps[0]) / (2.0 * (1.0 - mrp.gamma))
    if method == "auto":
        method = "dcfp" if mrp.n_states * (atoms.shape[0] - 1) <= REFERENCE_DIRECT_LIMIT else "cdp"
    if method == "dcfp":
        probs = categorical_fixed_point(mrp, atoms)
    else:
        result = categorical_dp(mrp, atoms, iterations=1_000_000, tol=1e-13)
        probs = result.final
        root = math.sqrt(mrp.gamma)
        change = float(result.metrics["cramer_change"][-1])
        bound += math.sqrt(float(atoms[-1] - atoms[0])) * change * root / (1.0 - root)
    return HighResolutionReference(atoms=atoms, probs=probs, w1_bias_bound=bound)


def sup_wasserstein1(atoms_p, probs_p, atoms_q, probs_q) -> float:
    """max_x W1(p(x), q(x)) between per-state discrete distributions (exact, merged supports).

    Argument order: each measure as (locations, weights) — the scipy
    (``scipy.stats.wasserstein_distance``), POT and rlax habit, and the order of every function
    here that takes explicit atoms. (The grid distances ``wasserstein1`` / ``cramer_distance``
    take masses only positionally; their locations come by keyword.)

    Args:
      atoms_p: [M] shared atoms or [S, M] per-state atoms (e.g. QDP quantiles, sorted MC returns).
      probs_p: [S, M] weights; None means uniform (1/M each, for quantiles and samples).
      atoms_q, probs_q: likewise [K] / [S, K].

    Valid range: no numeric arguments; atoms_p, atoms_q [M] finite; probs_p, probs_q [S, M]
    distributions with matching S.
    """
    atoms_p = as_float_array("atoms_p", atoms_p, ndim=(1, 2))
    atoms_q = as_float_array("atoms_q", atoms_q, ndim=(1, 2))
    if probs_p is not None:
        probs_p = _solver_probs("probs_p", probs_p)
    if probs_q is not None:
        probs_q = _solver_probs("probs_q", probs_q)
    counts = {}
    for a_name, a, p_name, pr in (("atoms_p", atoms_p, "probs_p", probs_p),
                                  ("atoms_q", atoms_q, "probs_q", probs_q)):
        if pr is not None:
            counts[p_name] = pr.shape[0]
        elif a.ndim == 2:
            counts[a_name] = a.shape[0]
    if not counts:
        raise ValueError("cannot infer the number of states: give probs_p/probs_q or per-state "
                         "atoms_p/atoms_q")
    if len(set(counts.values())) > 1:
        raise ValueError(f"{' and '.join(counts)} must have the same number of states (rows), got "
                         f"{', '.join(f'{k}: {v}' for k, v in counts.items())}")
    S = next(iter(counts.values()))

    def expand(a, pr, name):
        a2 = np.broadcast_to(a, (S, a.shape[-1])) if a.ndim == 1 else a
        if pr is None:
            pr2 = np.full(a2.shape, 1.0 / a2.shape[1])
        else:
            pr2 = as_float_array(name, pr, shape=a2.shape)
        order = np.argsort(a2, axis=1, kind="stable")
        return np.take_along_axis(a2, order, 1), np.take_along_axis(pr2, order, 1)

    ap, pp = expand(atoms_p, probs_p, "probs_p")
    aq, pq = expand(atoms_q, probs_q, "probs_q")
    return float(np.max(wasserstein1(pp, pq, atoms_p=ap, atoms_q=aq)))


# --- stochastic categorical CDF Bellman equation --------------------------------------------------


def sample_stochastic_cdf_bellman(
    mrp, support, n: int, seed, *, policy=None, truncation_tol: float = 1e-10
) -> np.ndarray:
    """Random CDFs from the stochastic categorical CDF Bellman equation (Rowland et al. 2024, arXiv 2402.07598, Eq. 16).

    𝔽(x) =ᵈ C_{x X'} 𝔽(X') + c_{x X'} with X' ~ P(x, ·), unrolled along one sampled trajectory per
    draw: 𝔽(x) = c_{X_0X_1} + C_{X_0X_1} c_{X_1X_2} + …, truncated after T steps with
    γ^T (z_{M−1} − z_0) ≤ ``truncation_tol`` (each realisation's W1 error from the truncation).
    Each realisation is the CDF of a genuine probability vector; E[𝔽(x)] = F(x), the DCFP fixed point.

    Returns:
      cdfs [S, n, M] (non-decreasing, last entry 1).

    Valid range: n ≥ 1 (an int, within the work budget); truncation_tol in (0, 1).
    """
    mrp = _as_mrp(mrp, policy)
    atoms = _atoms(support)
    n = check_int("n", n, low=1)
    truncation_tol = check_scalar("truncation_tol", truncation_tol, low=0.0, low_inclusive=False)
    rng = as_generator("seed", seed)
    P, R, gamma = _arrays(mrp)
    horizon = _horizon(gamma, float(atoms[-1] - atoms[0]), truncation_tol)
    # [S, n, M] output; each draw unrolls horizon steps over M atoms
    S, M = P.shape[0], atoms.shape[0]
    check_size_budget("n", n, memory_bytes=8.0 * S * n * M)
    culprit = ("truncation_tol", truncation_tol) if horizon > n else ("n", n)
    check_size_budget(*culprit, work=float(S) * n * horizon * M)
    return _k._stochastic_cdf_samples(_cum_rows(P), R, gamma, atoms, horizon, n, rng)

