"""``fixpoint perf dcfp``: DCFP's sparse linear solve vs CDP on a precomputed operator, same accuracy.

Process: a random-walk MRP on S states (x → x−1, x, x+1, reflecting, Dirichlet(1) weights;
rewards r(x) ~ U[0, 1]), γ = 0.99, global support [0, 1/(1−γ)] with M atoms, built directly as a
``SparseMarkovRewardProcess`` (no dense S×S array). Its transition graph is local, so the
CDF-coordinate system (I − A) F = b (Rowland et al. 2024, arXiv 2402.07598, Eq. 10) is a 2-D grid
(state × atom) with short couplings, which nested dissection factorises with modest fill-in.

Rows (medians of ≥ 5 runs after a warm-up, ``_perf_common.time_call``; CPU time beside wall time):
  * ``DCFP (library: …)``: ``categorical_fixed_point`` with its default solver — build A, b
    (Numba, CSR transitions), a fill-reducing order from the product structure (breadth-first
    levels of the transition graph × atom bands, nested dissection), then Intel MKL PARDISO with a
    float32 factor and float64 refinement when the ``fast`` extra (pypardiso) is installed, else
    SuperLU in that order with diagonal pivots; ``max_abs_diff`` / ``sup_cramer_to_dcfp``: distance
    to the SuperLU answer; ``lu_fill`` / ``lu_mb``: PARDISO's own report of the factor's
    non-zeros and of its memory (factor + symbolic data; it sees the C allocations);
  * ``DCFP (SuperLU, structured order; without the fast extra)``: the same without pypardiso;
  * ``DCFP (SuperLU, COLAMD; previous, solve only)``: the previous library solver (I − A, SuperLU
    with COLAMD and threshold pivoting, one solve; build excluded);
  * ``CDP (precomputed operator)``: ``categorical_dp`` — A and b built once, then F ← A F + b (one
    sparse mat-vec per step) until the sup-Cramér change is ≤ 1e-8·(1−√γ)/√γ, which bounds the
    distance to the fixed point by 1e-8 (√γ-contraction); the achieved sup-Cramér distance to the
    DCFP solution is reported (``sup_cramer_to_dcfp``). Its time is the median build time plus
    (median seconds per step, timed on blocks of steps) × (steps the full run needed); the single
    full run's wall time is shown beside it (``seconds_full_run``);
  * ``CDP (per-step projection, previous)``: the previous kernel (binary search per atom, dense S×S
    rows, every step). Its full run takes minutes, so it is timed on a fixed block of steps and its
    time to the same tolerance is (median seconds per step) × (steps CDP needed) — the iterates of
    both CDPs are the same up to rounding (tested), so they need the same number of steps.
  * ``DCFP (library), large`` at S·(M−1) = 10⁶ (S = 5000, M = 201; ``--quick``: 2.5·10⁴) in a
    fresh subprocess (median of 5 solves): the peak resident memory of the solves (Linux VmHWM,
    reset just before them; it covers PARDISO's and SuperLU's C allocations) minus the resident
    memory before them is ``dcfp_mb``; with PARDISO also the structured order at this size (3
    solves; the other side of the time/memory trade-off that ``STRUCTURED_ORDER_LIMIT`` settles)
    and SuperLU (the fallback, once), each in another fresh subprocess.
Goal rows: ``speedup_x`` = CDP (precomputed operator) seconds / DCFP seconds (> 1: DCFP faster),
goal ≥ 5 (``speedup_cpu_x`` the same with CPU seconds); at 10⁶ unknowns ``seconds`` < 8 and
``dcfp_mb`` < 1024. Above ``STRUCTURED_ORDER_LIMIT`` unknowns PARDISO orders by METIS (less fill,
slower analysis), so the 10⁶ rows measure that path; ``lu_mb`` there is PARDISO's own memory,
the floor of this factorisation.

``python -m fixpoint_rl.benchmarks.perf_dcfp --study [S] [M]`` times the other orderings and
solvers tried (see ``solver_study``); they are not run by ``fixpoint perf``.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.sparse.linalg

from ._perf_common import load_1m, time_call, with_machine_header
from ._runner import BenchConfig

# ratio columns read: speedup_x = baseline / ours (> 1 faster); x_floor* = ours / floor (< 1 faster)
DISPLAY_COLUMNS = ("seconds", "speedup_x", "speedup_cpu_x", "cpu_s", "dcfp_mb", "lu_mb", "iterations", "load_1m", "sup_cramer_to_dcfp")
GOAL_SPEEDUP = 5.0
GOAL_LARGE_S = 8.0
GOAL_LARGE_MB = 1024.0


def walk_mrp(n_states: int, gamma: float, seed: int):
    """The random-walk MRP as a dense ``MarkovRewardProcess`` (for the previous CDP kernel)."""
    from fixpoint_rl.envs.mdp import MarkovRewardProcess

    sparse = sparse_walk_mrp(n_states, gamma, seed)
    return MarkovRewardProcess(P=sparse.P.toarray(), reward=sparse.reward.toarray(), gamma=gamma)


def sparse_walk_mrp(n_states: int, gamma: float, seed: int):
    """The random-walk MRP as a ``SparseMarkovRewardProcess`` (O(S) memory)."""
    from fixpoint_rl.tabular.model_based import SparseMarkovRewardProcess

    rng = np.random.default_rng(seed)
    rows, cols, probs = [], [], []
    for x in range(n_states):
        nbrs = np.unique(np.clip([x - 1, x, x + 1], 0, n_states - 1))
        rows.extend([x] * nbrs.shape[0])
        cols.extend(nbrs.tolist())
        probs.extend(rng.dirichlet(np.ones(nbrs.shape[0])).tolist())
    r = rng.random(n_states)
    P = scipy.sparse.csr_matrix((probs, (rows, cols)), shape=(n_states, n_states))
    R = scipy.sparse.csr_matrix((r[np.asarray(rows)], (rows, cols)), shape=(n_states, n_states))
    return SparseMarkovRewardProcess(P=P, reward=R, gamma=gamma)


def _support(gamma: float, m: int) -> np.ndarray:
    return np.linspace(0.0, 1.0 / (1.0 - gamma), m)  # rewards in [0, 1]: returns in [0, 1/(1−γ)]


def _sup_cramer(atoms, p, q) -> float:
    d = np.cumsum(p - q, axis=1)[:, :-1]
    return float(np.sqrt(np.max((d * d * np.diff(atoms)).sum(axis=1))))


def _probs(F, S, m):
    cdf = np.ones((S, m))
    cdf[:, :-1] = F.reshape(S, m - 1)
    return np.diff(cdf, axis=1, prepend=0.0)


def _factor(A, permc_spec="COLAMD", diagonal=False):
    n = A.shape[0]
    system = (scipy.sparse.identity(n, format="csr") - A).tocsc()
    if diagonal:
        return scipy.sparse.linalg.splu(system, permc_spec=permc_spec, diag_pivot_thresh=0.0,
                                        options={"SymmetricMode": True})
    return scipy.sparse.linalg.splu(system, permc_spec=permc_spec)


def run(config: BenchConfig) -> pd.DataFrame:
    from fixpoint_rl.tabular._kernels import model_based as _k
    from fixpoint_rl.tabular.model_based import (
        _build_system, _identity_minus, _operator_arrays, _pardiso_library, _pardiso_refined,
        _sparse_solver, _structured_order, _transitions, categorical_dp, categorical_fixed_point,
    )

    gamma = 0.99
    accuracy = 1e-8
    S, m = config.pick((100, 51), (1000, 201), (1000, 201))
    repeats = 5
    process = sparse_walk_mrp(S, gamma, config.seed)
    atoms = _support(gamma, m)
    problem = f"walk S={S} m={m} γ={gamma}"

    tiny = sparse_walk_mrp(3, gamma, 0)  # compile / load every kernel before timing
    categorical_fixed_point(tiny, _support(gamma, 5), method="superlu")
    categorical_fixed_point(tiny, _support(gamma, 41))  # loads PARDISO's library when installed
    categorical_dp(tiny, _support(gamma, 5), iterations=2)

    solver = _sparse_solver("sparse")  # what the library uses at this size: PARDISO if installed
    dcfp = categorical_fixed_point(process, atoms, method="superlu")
    t_dcfp = time_call(lambda: categorical_fixed_point(process, atoms), repeats=repeats)
    library_gap = float(np.max(np.abs(categorical_fixed_point(process, atoms) - dcfp)))
    t_superlu = time_call(lambda: categorical_fixed_point(process, atoms, method="superlu"),
                          repeats=repeats)
    A, b = _build_system(_transitions(process), atoms)
    t_build = time_call(lambda: _build_system(_transitions(process), atoms), repeats=repeats)
    lu = _factor(A)
    fill = int(lu.L.nnz + lu.U.nnz)
    del lu
    t_colamd = time_call(lambda: _factor(A).solve(b), repeats=repeats)
    pardiso_stats = {}
    if solver == "pardiso":
        _pardiso_refined(_pardiso_library(), _identity_minus(A), b, True, pardiso_stats,
                         order=_structured_order(_transitions(process), m - 1, A))

    root = math.sqrt(gamma)
    change_tol = accuracy * (1 - root) / root
    start = time.perf_counter()
    cdp = categorical_dp(process, atoms, iterations=1_000_000, tol=change_tol)
    cdp_full_s = time.perf_counter() - start
    steps = int(cdp.extras["steps"])
    gap = _sup_cramer(atoms, cdp.final, dcfp)
    # CDP time to the tolerance = operator build + (median seconds per step) × steps, the per-step
    # cost timed on blocks of steps (5 samples after a warm-up); one full run above checks it
    block = config.pick(20, 100, 100)
    F0 = np.zeros(S * (m - 1)) + 1.0  # δ_{z_0}: CDF 1 everywhere
    gaps = np.ascontiguousarray(np.diff(atoms))
    operator = _operator_arrays(A)
    t_steps = time_call(lambda: _k._cdp_operator_run(*operator, b, F0, gaps, S, block, 0.0, block),
                        repeats=repeats)
    cdp_total = t_build.wall_s + t_steps.wall_s / block * steps
    cdp_cpu = t_build.cpu_s + t_steps.cpu_s / block * steps

    dense = walk_mrp(S, gamma, config.seed)
    P, R = np.array(dense.P), np.array(dense.reward)
    probs0 = np.zeros((S, m))
    probs0[:, 0] = 1.0
    old_block = config.pick(20, 50, 50)
    t_old = time_call(lambda: _k._cdp_run(P, R, gamma, atoms, probs0, old_block, 0.0, old_block),
                      repeats=repeats)
    old_total = t_old.wall_s / old_block * steps
    old_cpu = t_old.cpu_s / old_block * steps

    def row(name, timing, **extra):
        base = dict(algorithm=name, problem=problem, unknowns=S * (m - 1),
                    seconds=timing.wall_s, cpu_s=timing.cpu_s, spread=timing.spread,
                    repeats=timing.repeats, load_1m=load_1m(), claim=None, holds=None)
        base.update(extra)
        return base

    library_name = {"pardiso": "DCFP (library: PARDISO, structured order, float32 + refinement)",
                    "superlu": "DCFP (library: SuperLU, structured order)"}[solver]
    rows = [
        row(library_name, t_dcfp, speedup_x=cdp_total / t_dcfp.wall_s,
            speedup_cpu_x=cdp_cpu / t_dcfp.cpu_s, sup_cramer_to_dcfp=_sup_cramer(
                atoms, categorical_fixed_point(process, atoms), dcfp),
            max_abs_diff=library_gap, lu_fill=pardiso_stats.get("factor_nnz"),
            lu_mb=(pardiso_stats["permanent_kb"] + pardiso_stats["factor_kb"]) / 1024
            if pardiso_stats else None, refinement_steps=pardiso_stats.get("refinement_steps")),
        row("  of which: build A, b (Numba, CSR)", t_build, nnz_A=int(A.nnz)),
        row("DCFP (SuperLU, structured order; without the fast extra)", t_superlu,
            speedup_x=cdp_total / t_superlu.wall_s, speedup_cpu_x=cdp_cpu / t_superlu.cpu_s,
            sup_cramer_to_dcfp=0.0),
        row("DCFP (SuperLU, COLAMD; previous, solve only)", t_colamd, lu_fill=fill,
            lu_mb=fill * 12 / 2**20, speedup_x=cdp_total / t_colamd.wall_s,
            speedup_cpu_x=cdp_cpu / t_colamd.cpu_s),
        dict(row("CDP (precomputed operator; library)", t_steps), seconds=cdp_total, cpu_s=cdp_cpu,
             iterations=steps, speedup_x=1.0, sup_cramer_to_dcfp=gap, seconds_full_run=cdp_full_s,
             note=f"build + {t_steps.wall_s / block * 1e3:.3g} ms/step × {steps} steps"),
        dict(row("CDP (per-step projection; previous)", t_old), seconds=old_total, cpu_s=old_cpu,
             iterations=steps, speedup_x=cdp_total / old_total,
             note=f"{t_old.wall_s / old_block * 1e3:.3g} ms/step × {steps} steps"),
        dict(algorithm="DCFP vs CDP (precomputed operator)", problem=problem,
             seconds=t_dcfp.wall_s, speedup_x=cdp_total / t_dcfp.wall_s,
             speedup_cpu_x=cdp_cpu / t_dcfp.cpu_s, sup_cramer_to_dcfp=gap, load_1m=load_1m(),
             claim=f"speedup_x (= CDP-operator s / DCFP s) ≥ {GOAL_SPEEDUP}, CDP within "
                   f"{10 * accuracy:g} sup-Cramér of DCFP",
             # the goal is for S = 1000, M = 201: not judged at the --quick smoke size
             holds=None if config.quick else bool(cdp_total / t_dcfp.wall_s >= GOAL_SPEEDUP
                                                  and gap <= 10 * accuracy)),
    ]
    S_big, m_big = config.pick((250, 101), (5000, 201), (5000, 201))
    rows.extend(_large_rows(S_big, m_big, gamma, config.seed + 1, judged=not config.quick))
    table = pd.DataFrame(rows)
    return with_machine_header(table)


_LARGE = """
import json, resource, sys, time
import numpy as np
from fixpoint_rl.benchmarks.perf_dcfp import sparse_walk_mrp, _support
from fixpoint_rl.tabular.model_based import categorical_fixed_point
S, m, gamma, seed, method = (int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]),
                             sys.argv[6])
import fixpoint_rl.tabular.model_based as mb
if len(sys.argv) > 7:  # override the PARDISO ordering switch (the structured-order row)
    mb.STRUCTURED_ORDER_LIMIT = int(sys.argv[7])
categorical_fixed_point(sparse_walk_mrp(3, gamma, 0), _support(gamma, 41), method=method)
process = sparse_walk_mrp(S, gamma, seed)
atoms = _support(gamma, m)


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


base = status_kb("VmRSS")  # resident before the solves (imports, compiled kernels, the process)
try:  # reset the peak-RSS mark (VmHWM) so it covers only the solves (Linux ≥ 4.0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
walls, cpus = [], []
for _ in range(int(sys.argv[5])):
    cpu = time.process_time()
    start = time.perf_counter()
    probs = categorical_fixed_point(process, atoms, method=method)
    walls.append(time.perf_counter() - start)
    cpus.append(time.process_time() - cpu)
err = float(np.max(np.abs(probs @ atoms - process.values())))
del probs
peak = status_kb("VmHWM")
if peak < 0:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from fixpoint_rl.tabular import model_based as mb
A, b = mb._build_system(mb._transitions(process), atoms)
stats = {}
if method == "pardiso":
    order = (mb._structured_order(mb._transitions(process), m - 1, A)
             if b.shape[0] <= mb.STRUCTURED_ORDER_LIMIT else None)  # as the library chooses
    mb._pardiso_refined(mb._pardiso_library(), mb._identity_minus(A), b, True, stats, order=order)
print(json.dumps(dict(walls=walls, cpus=cpus, mean_err=err, base_rss_kb=base, peak_rss_kb=peak,
                      nnz_A=int(A.nnz), stats=stats)))
"""


def _large_run(S, m, gamma, seed, method, repeats, order_limit=None):
    extra = [] if order_limit is None else [str(order_limit)]
    out = subprocess.run([sys.executable, "-c", _LARGE, str(S), str(m), str(gamma), str(seed),
                          str(repeats), method] + extra, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _large_rows(S: int, m: int, gamma: float, seed: int, judged: bool = True) -> list[dict]:
    """DCFP at S·(M−1) unknowns, timed in a fresh subprocess (warm-up on a tiny process, then the
    median of 5 solves) so that its peak RSS is DCFP's own (plus imports, reported beside it);
    SuperLU (the fallback) once in another fresh subprocess, for comparison."""
    from fixpoint_rl.tabular.model_based import _sparse_solver

    solver = _sparse_solver("sparse")
    problem = f"walk S={S} m={m} γ={gamma}"
    unknowns = S * (m - 1)
    rows = []
    runs = [(solver, 5, None, None)]
    if solver == "pardiso":  # the other PARDISO ordering, and SuperLU (the fallback)
        runs += [("pardiso", 3, 10**12, "structured order; faster, more fill"),
                 ("superlu", 1, None, "fallback")]
    for method, repeats, order_limit, label in runs:
        run = _large_run(S, m, gamma, seed, method, repeats, order_limit)
        seconds = float(np.median(run["walls"]))
        cpu = float(np.median(run["cpus"]))
        peak_mb = run["peak_rss_kb"] / 1024.0
        base_mb = run["base_rss_kb"] / 1024.0
        err = run["mean_err"]
        stats = run["stats"]
        library = label is None
        name = f"DCFP (library: {method}), large" if library else f"DCFP ({method}, {label}), large"
        common = dict(problem=problem, unknowns=unknowns, load_1m=load_1m(), peak_rss_mb=peak_mb,
                      rss_before_mb=base_mb, dcfp_mb=peak_mb - base_mb, nnz_A=run["nnz_A"])
        rows.append(dict(
            algorithm=name, seconds=seconds, cpu_s=cpu, repeats=len(run["walls"]), mean_err=err,
            mean_err_ok=bool(err < 1e-6), **common,
            claim=f"seconds < {GOAL_LARGE_S} at S·(M−1) = {unknowns:.0e}" if library else None,
            holds=bool(seconds < GOAL_LARGE_S and err < 1e-6) if library and judged else None))
        rows.append(dict(
            algorithm=name + ": memory", **common, lu_fill=stats.get("factor_nnz"),
            lu_mb=(stats["permanent_kb"] + stats["factor_kb"]) / 1024 if stats else None,
            claim=(f"dcfp_mb (= peak RSS during the solves − RSS before) < {GOAL_LARGE_MB:.0f} MB"
                   if library else None),
            holds=bool(peak_mb - base_mb < GOAL_LARGE_MB) if library and judged else None))
    return rows


def solver_study(S: int = 1000, m: int = 201, gamma: float = 0.99, seed: int = 0) -> pd.DataFrame:
    """Orderings and solvers for (I − A) F = b tried for issue 14 (one timed run each).

    SuperLU with each ``permc_spec`` and pivoting mode; a METIS nested-dissection ordering
    (pymetis, when installed) applied symmetrically before an unpermuted SuperLU; reverse
    Cuthill–McKee + banded-order SuperLU; the library's structured nested dissection
    (``_structured_order``) before SuperLU, and before PARDISO (float32 + refinement, float64)
    beside PARDISO's METIS ordering, when pypardiso is installed; and ILU(τ)-preconditioned
    GMRES / BiCGSTAB.
    """
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    from fixpoint_rl.tabular.model_based import _build_system, _transitions

    process = sparse_walk_mrp(S, gamma, seed)
    A, b = _build_system(_transitions(process), _support(gamma, m))
    n = b.shape[0]
    M = (scipy.sparse.identity(n, format="csr") - A).tocsr()
    M.sort_indices()
    Mc = M.tocsc()
    rows = []

    def record(name, fn):
        start = time.perf_counter()
        try:
            x, extra = fn()
            seconds = time.perf_counter() - start
            residual = float(np.max(np.abs(M @ x - b)))
        except Exception as error:  # a solver that fails is a result of the study, not a crash
            seconds, residual, extra = time.perf_counter() - start, np.nan, f"failed: {error}"
        rows.append(dict(solver=name, seconds=seconds, residual=residual, detail=extra,
                         max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                         load_1m=load_1m()))
        print(rows[-1], flush=True)

    def splu(matrix, spec, diagonal):
        options = dict(diag_pivot_thresh=0.0, options={"SymmetricMode": True}) if diagonal else {}
        lu = scipy.sparse.linalg.splu(matrix, permc_spec=spec, **options)
        return lu, f"fill={lu.L.nnz + lu.U.nnz}"

    for spec in ("COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL"):
        for diagonal in (True, False):
            if spec == "NATURAL" and not diagonal:
                continue
            if spec.startswith("MMD") and n > 50_000:
                continue  # > 240 s at n = 2·10⁵ (see the closing note); run the study smaller

            def f(spec=spec, diagonal=diagonal):
                lu, detail = splu(Mc, spec, diagonal)
                return lu.solve(b), detail

            record(f"splu {spec} {'diagonal' if diagonal else 'partial'} pivots", f)

    def permuted(perm, name):
        def f():
            lu, detail = splu(M[perm][:, perm].tocsc(), "NATURAL", True)
            x = np.empty(n)
            x[perm] = lu.solve(b[perm])
            return x, detail
        record(name, f)

    from fixpoint_rl.tabular import model_based as mb

    transitions = mb._transitions(process)
    start = time.perf_counter()
    structured = mb._structured_order(transitions, m - 1, A)
    print(f"structured order {time.perf_counter() - start:.3f} s", flush=True)
    permuted(structured, "structured nested dissection + splu NATURAL (library, no extra)")
    if mb._pardiso_library() is not None:
        for single in (True, False):
            for name, order in (("structured", structured), ("METIS", None)):
                def f(single=single, order=order):
                    stats = {}
                    x = mb._pardiso_refined(mb._pardiso_library(), M, b, single, stats, order)
                    return x, (f"fill={stats.get('factor_nnz')} "
                               f"MB={(stats['permanent_kb'] + stats['factor_kb']) / 1024:.0f}")
                record(f"PARDISO {name} {'float32 + refinement' if single else 'float64'}", f)
    graph = (abs(M) + abs(M.T)).tocsr()
    permuted(reverse_cuthill_mckee(graph, symmetric_mode=True), "RCM + splu NATURAL")
    try:
        import pymetis

        graph.setdiag(0)
        graph.eliminate_zeros()
        start = time.perf_counter()
        order = np.asarray(pymetis.nested_dissection(xadj=graph.indptr, adjncy=graph.indices)[0])
        print(f"METIS ordering {time.perf_counter() - start:.2f} s", flush=True)
        permuted(order, "METIS nested dissection + splu NATURAL")
    except ImportError:
        pass
    for drop, fill in ((1e-4, 10), (1e-5, 20)):
        for name, krylov in (("gmres(50)", lambda op, pre: scipy.sparse.linalg.gmres(
                op, b, M=pre, rtol=1e-12, restart=50, maxiter=200)),
                             ("bicgstab", lambda op, pre: scipy.sparse.linalg.bicgstab(
                op, b, M=pre, rtol=1e-12, maxiter=1000))):
            def f(drop=drop, fill=fill, krylov=krylov):
                ilu = scipy.sparse.linalg.spilu(Mc, drop_tol=drop, fill_factor=fill)
                pre = scipy.sparse.linalg.LinearOperator(M.shape, ilu.solve)
                x, info = krylov(M, pre)
                return x, f"ilu fill={ilu.L.nnz + ilu.U.nnz} info={info}"
            record(f"spilu(drop={drop}, fill={fill}) + {name}", f)
    return pd.DataFrame(rows)


if __name__ == "__main__":  # pragma: no cover - manual study
    if len(sys.argv) > 1 and sys.argv[1] == "--study":
        size = [int(a) for a in sys.argv[2:4]]
        print(solver_study(*size).to_string())
