"""``fixpoint perf dcfp``: DCFP's sparse linear solve vs CDP run to the same accuracy.

Process: a random-walk MRP on S states (x → x−1, x, x+1, reflecting, Dirichlet(1) weights;
rewards r(x) ~ U[0, 1]), γ = 0.99, global support [0, 1/(1−γ)] with M atoms. Its transition graph is
local, so the CDF-coordinate system (I − A) F = b (distributional.md §3.3) factorises with modest
fill-in under COLAMD. (A random *dense-graph* P makes the sparse LU fill in badly: for S = 200,
M = 201 SuperLU took 12–55 s; there CDP or a Krylov solver is the better choice.)

Rows:
  * DCFP: build A, b + sparse LU + recover probabilities (wall-clock, after a warm-up compile).
  * CDP: iterate from δ_{z_0} until the sup-Cramér change is ≤ 1e-8·(1−√γ)/√γ, which bounds the
    distance to the fixed point by 1e-8 (√γ-contraction); the achieved sup-Cramér distance to the
    DCFP solution is reported. ``speedup`` = CDP seconds / DCFP seconds (goal ≥ 10).
  * DCFP at S·M ≈ 10^6 unknowns (``full`` only; default runs S·M ≈ 2·10^5), with peak memory:
    tracemalloc peak (numpy/scipy Python-level buffers) and the process's max RSS (getrusage,
    includes SuperLU's C allocations; lifetime peak, so an upper bound).
"""

from __future__ import annotations

import math
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

from ._runner import BenchConfig


def walk_mrp(n_states: int, gamma: float, seed: int):
    from fixpoint_rl.envs.mdp import MarkovRewardProcess

    rng = np.random.default_rng(seed)
    P = np.zeros((n_states, n_states))
    for x in range(n_states):
        nbrs = np.unique(np.clip([x - 1, x, x + 1], 0, n_states - 1))
        P[x, nbrs] = rng.dirichlet(np.ones(nbrs.shape[0]))
    r = rng.random(n_states)
    return MarkovRewardProcess(P=P, reward=np.repeat(r[:, None], n_states, 1), gamma=gamma)


def _sup_cramer(atoms, p, q) -> float:
    d = np.cumsum(p - q, axis=1)[:, :-1]
    return float(np.sqrt(np.max((d * d * np.diff(atoms)).sum(axis=1))))


def run(config: BenchConfig) -> pd.DataFrame:
    from fixpoint_rl.envs.dcfp_envs import global_support
    from fixpoint_rl.tabular.model_based import categorical_dp, categorical_fixed_point

    gamma = 0.99
    accuracy = 1e-8
    S, m = config.pick((100, 51), (1000, 201), (1000, 201))
    mrp = walk_mrp(S, gamma, config.seed)
    atoms = global_support(mrp, m)

    # warm-up: compile / load every kernel on a tiny instance
    tiny = walk_mrp(3, gamma, 0)
    categorical_fixed_point(tiny, global_support(tiny, 5), method="sparse")
    categorical_dp(tiny, global_support(tiny, 5), iterations=2)

    start = time.perf_counter()
    dcfp = categorical_fixed_point(mrp, atoms, method="sparse")
    dcfp_s = time.perf_counter() - start

    root = math.sqrt(gamma)
    change_tol = accuracy * (1 - root) / root
    start = time.perf_counter()
    cdp = categorical_dp(mrp, atoms, iterations=1_000_000, tol=change_tol)
    cdp_s = time.perf_counter() - start
    gap = _sup_cramer(atoms, cdp.final, dcfp)
    unknowns = S * (m - 1)
    rows = [
        dict(algorithm="DCFP (splu)", problem=f"walk S={S} m={m} γ={gamma}", unknowns=unknowns,
             seconds=dcfp_s, iterations=1, unknowns_per_s=unknowns / dcfp_s, speedup=cdp_s / dcfp_s,
             sup_cramer_to_dcfp=0.0, peak_tracemalloc_mb=np.nan, max_rss_mb=np.nan, holds=None),
        dict(algorithm="CDP (to 1e-8)", problem=f"walk S={S} m={m} γ={gamma}", unknowns=unknowns,
             seconds=cdp_s, iterations=cdp.extras["steps"], unknowns_per_s=unknowns / cdp_s,
             speedup=1.0, sup_cramer_to_dcfp=gap, peak_tracemalloc_mb=np.nan, max_rss_mb=np.nan,
             holds=bool(gap <= 10 * accuracy)),
    ]

    S_big, m_big = config.pick((500, 101), (1000, 201), (5000, 201))
    big = walk_mrp(S_big, gamma, config.seed + 1)
    big_atoms = global_support(big, m_big)
    tracemalloc.start()
    start = time.perf_counter()
    probs = categorical_fixed_point(big, big_atoms, method="sparse")
    big_s = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    mean_err = float(np.max(np.abs(probs @ big_atoms - big.values())))
    rows.append(dict(algorithm="DCFP (splu, large)", problem=f"walk S={S_big} m={m_big} γ={gamma}",
                     unknowns=S_big * (m_big - 1), seconds=big_s, iterations=1,
                     unknowns_per_s=S_big * (m_big - 1) / big_s, speedup=np.nan,
                     sup_cramer_to_dcfp=np.nan, peak_tracemalloc_mb=peak / 2**20, max_rss_mb=rss_mb,
                     holds=bool(mean_err < 1e-6)))
    return pd.DataFrame(rows)
