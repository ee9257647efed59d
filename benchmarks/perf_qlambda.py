"""Expected distributional backup (S = 500, A = 8, M = 101): Numba vs numpy vs the matmul floor.

One *backup* is one sweep of the per-step-projected Q(λ) recursion (distributional.md §2.2):
  Y[x'] = Σ_{a'} (π − λμ)(x', a') η(x', a') + λ Σ_{a'} μ(x', a') U(x', a')        [S, M]
  U'[x, a] = Π_C (b_{r(x,a),γ})_# Σ_{x'} P(x'|x, a) Y[x']                         [S·A, M]
All three variants are timed in the same run on the same arrays, after warm-up/compilation:
  * ``numba``: ``_mix_next`` kernel, one BLAS product, scatter projection kernel (the library path);
  * ``numpy_loop``: straightforward numpy — the same product, then the core hat-matrix projection
    row by row (a Python loop over the S·A rows);
  * ``numpy_vectorized``: the hat-matrix projection vectorised over chunks of rows;
  * ``floor``: the dense [S·A, S] × [S, M] matrix product alone.
Two MDPs: a dense Garnet (branching = S; the library uses the BLAS product) and a sparse one
(branching = 10; the library mixes with a CSR kernel, O(nnz·M), and can beat the dense floor).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from fixpoint_rl.envs.mdp import epsilon_greedy_policy, garnet, greedy_policy
from fixpoint_rl.tabular._kernels import qlambda as _k
from fixpoint_rl.tabular.core.categorical import CategoricalSupport, categorical_projection
from fixpoint_rl.tabular.qlambda import _backup, _model

from ._runner import BenchConfig


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(config: BenchConfig) -> pd.DataFrame:
    S, A, M = config.pick((120, 8, 51), (500, 8, 101), (500, 8, 101))
    repeats = config.pick(3, 7, 21)
    frames = [_run_one(S, A, M, branching, repeats, config.seed) for branching in (S, 10)]
    return pd.concat(frames, ignore_index=True)


def _run_one(S: int, A: int, M: int, branching: int, repeats: int, seed: int) -> pd.DataFrame:
    lam = 0.8
    mdp = garnet(S, A, branching, seed, gamma=0.9)
    support = CategoricalSupport(0.0, 10.0, M)
    rng = np.random.default_rng(seed)
    pi = greedy_policy(rng.random((S, A)))
    mu = epsilon_greedy_policy(pi, 0.3)
    rho = lam * mu
    coeff = pi - rho
    eta = rng.dirichlet(np.ones(M), size=(S, A))
    U = rng.dirichlet(np.ones(M), size=(S, A))
    model = _model(mdp)
    z = support.atoms
    reward = mdp.reward.reshape(S * A)

    def numba_backup():
        Y = _k._mix_next(eta, U, coeff, rho)
        return _backup(model, Y, mdp.gamma, support)

    def mix_numpy():
        return np.einsum("sa,sam->sm", coeff, eta) + np.einsum("sa,sam->sm", rho, U)

    def numpy_loop():
        mixed = model.P_flat @ mix_numpy()
        out = np.empty_like(mixed)
        for row in range(S * A):
            out[row] = categorical_projection(reward[row] + mdp.gamma * z, mixed[row], support)
        return out

    def numpy_vectorized(chunk=256):
        mixed = model.P_flat @ mix_numpy()
        out = np.empty_like(mixed)
        for lo in range(0, S * A, chunk):
            hi = min(lo + chunk, S * A)
            atoms = reward[lo:hi, None] + mdp.gamma * z[None, :]
            out[lo:hi] = categorical_projection(atoms, mixed[lo:hi], support)
        return out

    Yfixed = mix_numpy()

    def floor():
        return model.P_flat @ Yfixed

    reference = numpy_vectorized()
    agree = float(np.max(np.abs(numba_backup() - reference)))
    agree_loop = float(np.max(np.abs(numpy_loop() - reference)))
    timings = {
        "numba": _best_time(numba_backup, repeats),
        "numpy_loop": _best_time(numpy_loop, max(1, repeats // 3)),
        "numpy_vectorized": _best_time(numpy_vectorized, repeats),
        "floor": _best_time(floor, repeats),
    }
    rows = []
    problem = f"garnet S={S} A={A} M={M} branching={branching}"
    for name, seconds in timings.items():
        rows.append(
            {
                "algorithm": name,
                "problem": problem,
                "holds": None,
                "seconds_per_backup": seconds,
                "backups_per_s": 1.0 / seconds,
                "speedup_vs_numpy_loop": timings["numpy_loop"] / seconds,
                "speedup_vs_numpy_vectorized": timings["numpy_vectorized"] / seconds,
                "ratio_to_floor": seconds / timings["floor"],
                "max_abs_diff_vs_numpy": agree if name == "numba" else (agree_loop if name == "numpy_loop" else 0.0),
            }
        )
    # the one claim checked here is correctness (all variants compute the same backup)
    rows.append(
        {
            "algorithm": "numba == numpy",
            "problem": problem,
            "holds": bool(agree < 1e-12 and agree_loop < 1e-12),
            "max_abs_diff_vs_numpy": max(agree, agree_loop),
        }
    )
    return pd.DataFrame(rows)
