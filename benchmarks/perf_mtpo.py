"""``fixpoint perf mtpo``: backward-recursion throughput (state–action updates per second) on a
random layered game with ~10^6 state–action pairs: the fused Numba kernel against a
straightforward vectorised numpy implementation (per-layer ``np.add.reduceat`` over the CSR
arrays), measured in the same run after warm-up; plus the wall time of one full MTPO iteration
(forward pass, terminal values, fused backward recursion + update)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ._runner import BenchConfig


def numpy_backward(game, pi, alpha, values):
    """Reference numpy backward induction: Q [N_dec, A], V [N] (values' final entries filled)."""
    A = game.num_actions
    starts, nxt, probs = game.transition_starts, game.transition_next, game.transition_probs
    log_ref = np.log(game.reference)
    q = np.empty((game.num_decision_states, A))
    for h in range(game.horizon - 1, -1, -1):
        lo, hi = int(game.layer_starts[h]), int(game.layer_starts[h + 1])
        e_lo, e_hi = starts[lo * A], starts[hi * A]
        weighted = probs[e_lo:e_hi] * values[nxt[e_lo:e_hi]]
        qbar = np.add.reduceat(weighted, starts[lo * A : hi * A] - e_lo).reshape(hi - lo, A)
        p = pi[lo:hi]
        kl = np.sum(p * (np.log(p) - log_ref[lo:hi]), axis=1)
        q[lo:hi] = qbar - alpha * kl[:, None]
        values[lo:hi] = np.sum(p * q[lo:hi], axis=1)
    return q, values


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(config: BenchConfig) -> pd.DataFrame:
    from fixpoint_rl.envs.dialogue import random_layered_game
    import numba

    from fixpoint_rl.tabular import _kernels
    from fixpoint_rl.tabular._kernels import mtpo as k
    from fixpoint_rl.tabular.multiturn import mtpo

    del _kernels
    states = config.pick(600, 6250, 6250)
    game = random_layered_game(num_contexts=4, horizon=5, states_per_layer=states,
                               num_actions=10, branching=3, final_states=200, seed=config.seed)
    pairs = game.num_state_action_pairs
    alpha, repeats = 0.1, config.pick(2, 3, 5)
    pi = np.array(game.reference)
    log_ref = np.log(pi)
    values = np.zeros(game.num_states)
    values[game.num_decision_states :] = np.random.default_rng(0).random(game.num_final_states)
    q = np.empty_like(pi)
    kl = np.empty(game.num_decision_states)
    new = np.empty_like(pi)
    args = (pi, log_ref, alpha, 0.0, k.EVALUATE, game.transition_starts, game.transition_next,
            game.transition_probs, values, q, kl, new)
    k._backward_step(*args)  # warm-up / compile
    numba_s = _best(lambda: k._backward_step(*args), repeats)
    pargs = args + (np.asarray(game.layer_starts),)
    k._backward_step_parallel(*pargs)
    parallel_s = _best(lambda: k._backward_step_parallel(*pargs), repeats)
    numpy_values = values.copy()
    numpy_s = _best(lambda: numpy_backward(game, pi, alpha, numpy_values), repeats)
    agree = float(np.max(np.abs(numpy_backward(game, pi, alpha, numpy_values)[0] - q)))
    mtpo(game, alpha, 1, checkpoints=2, reference_solution=pi)  # warm-up
    result = mtpo(game, alpha, config.pick(2, 5, 10), checkpoints=2, reference_solution=pi)
    per_iteration = result.wall_time_s / result.config["iterations"]
    return pd.DataFrame([
        {"algorithm": "numba backward (fused)", "problem": game.name, "pairs": pairs,
         "seconds": numba_s, "updates_per_s": pairs / numba_s, "ratio_vs_numpy": numpy_s / numba_s,
         "max_abs_diff": agree, "holds": None},
        {"algorithm": f"numba backward (prange, {numba.get_num_threads()} threads)",
         "problem": game.name, "pairs": pairs, "seconds": parallel_s,
         "updates_per_s": pairs / parallel_s, "ratio_vs_numpy": numpy_s / parallel_s,
         "max_abs_diff": agree, "holds": None},
        {"algorithm": "numpy backward (reduceat)", "problem": game.name, "pairs": pairs,
         "seconds": numpy_s, "updates_per_s": pairs / numpy_s, "ratio_vs_numpy": 1.0,
         "max_abs_diff": 0.0, "holds": None},
        {"algorithm": "one MTPO iteration", "problem": game.name, "pairs": pairs,
         "seconds": per_iteration, "updates_per_s": pairs / per_iteration,
         "ratio_vs_numpy": numpy_s / per_iteration, "max_abs_diff": np.nan, "holds": None},
    ])
