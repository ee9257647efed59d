"""``fixpoint bench nlhf``: Nash-MD (NLHF Theorem 1) and the algorithms it is compared with.

Games: intransitive dice, rock–paper–scissors, the three-type cycle (ε = 0.1), random games with
K = 10 / 100 / 1000 and a contextual game (X = 1000, K = 16) (``--quick``: K = 200 and X = 100 for
the two largest, fewer iterations); μ is a random full-support policy
(uniform μ makes π*_τ uniform on the cyclic games). For each (algorithm, game) the row reports the
final ``kl`` = KL(π*_τ‖π_T), the τ-regularised ``exploitability``, the least-squares log–log
``slope`` of KL against T over the checkpoints, ``wall_s``, and, where a theorem makes a claim,
its text (``claim``), the ``bound`` at T and whether it held at every checkpoint (``holds``):

  nash_md (theorem schedule)   KL_T ≤ 8/(τ²(T+1)) at every checkpoint   (Munos et al. 2024,
                               arXiv 2312.00886, Theorem 1), and its one-step inequality
  nash_mirror_prox (η = 1)     KL_k ≤ KL_0 (1+ητ)^(−k) at every checkpoint (Tiapkin et al. 2025)

Every other algorithm is a baseline without a last-iterate claim (``holds`` is None).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._runner import BenchConfig

DISPLAY_COLUMNS = ("kl", "bound", "slope", "iterations", "wall_s", "exploitability", "K", "X")
TAU = 0.1
CLAIM_NASH_MD = "KL_T ≤ 8/(τ²(T+1)) at every checkpoint and the one-step inequality (Theorem 1)"
CLAIM_NASH_MP = "KL_k ≤ KL_0 (1+ητ)^(−k) at every checkpoint (Tiapkin et al. 2025)"
MIXTURE_RATIO = 0.5  # ητ of the constant-step baselines


def _games(config: BenchConfig):
    from fixpoint_rl.envs import (
        dice,
        random_contextual_game,
        random_game,
        rock_paper_scissors,
        three_type_cycle,
    )

    rng = np.random.default_rng(config.seed)
    skewed = rng.dirichlet(np.full(3, 3.0))
    games = [
        ("dice", dice(ref=skewed)),
        ("rps", rock_paper_scissors(ref=skewed)),
        ("three_type_cycle(0.1)", three_type_cycle(0.1, ref=skewed)),
    ]
    for k in config.pick((10, 100, 200), (10, 100, 1000), (10, 100, 1000)):
        games.append((f"random(K={k})", random_game(k, seed=config.seed + k, ref="dirichlet")))
    x = config.pick(100, 1000, 1000)
    games.append((f"contextual(X={x},K=16)", random_contextual_game(x, 16, seed=config.seed, ref="dirichlet")))
    return games


def _iterations(config: BenchConfig, k: int, contexts: int) -> int:
    work = k * k * contexts
    if work >= 10**5:
        return config.pick(150, 200, 20_000)
    return config.pick(1000, 3000, 100_000)


def _row(name, problem, game, tau, result, bound=None, holds=None, average=False, claim=None):
    from fixpoint_rl.tabular import loglog_slope

    kl_key, gap_key = ("kl_average", "exploitability_average") if average else ("kl", "exploitability")
    iterations = result.metric("iteration")
    kl = result.metric(kl_key)
    slope = loglog_slope(iterations, kl, floor=1e-13, too_few="nan") if len(kl) >= 3 else float("nan")
    return {
        "algorithm": name,
        "problem": problem,
        "claim": claim,
        "holds": holds,
        "K": int(game.n_actions),
        "X": int(game.n_contexts),
        "tau": tau,
        "iterations": int(iterations[-1]),
        "kl": float(kl[-1]),
        "exploitability": float(result.metric(gap_key)[-1]),
        "slope": slope,
        "bound": bound,
        "wall_s": result.wall_time_s,
    }


def run(config: BenchConfig) -> pd.DataFrame:
    from fixpoint_rl.tabular import (
        best_response_to_reference,
        fictitious_play,
        nash_md,
        nash_md_pg,
        nash_mirror_prox,
        online_mirror_descent,
        regularized_nash_equilibrium,
        rlhf_bradley_terry,
        self_play_md,
    )

    tau = TAU
    eta = MIXTURE_RATIO / tau
    rows = []
    for problem, game in config.track(_games(config), "NLHF games"):
        k, contexts = game.n_actions, game.n_contexts
        iterations = _iterations(config, k, contexts)
        star = regularized_nash_equilibrium(game, tau)
        common = dict(reference=star, checkpoints=30)

        # Nash-MD, Theorem 1: KL_T ≤ 8/(τ²(T+1)) at every checkpoint (tolerance: oracle residual)
        result = nash_md(game, tau, iterations, **common)
        bounds = 8.0 / (tau**2 * (result.metric("iteration") + 1.0))
        holds = bool(np.all(result.metric("kl") <= bounds + 1e-12))
        # ... and the one-step inequality KL_{t+1} ≤ (1 − η_t τ) KL_t + 2η_t² at every step of the
        # first iterations (the sharp part of Theorem 1; the 8/(τ²(T+1)) envelope is loose).
        steps = min(iterations, config.pick(100, 300, 2000))
        every = nash_md(game, tau, steps, reference=star, checkpoint_every=1)
        kl_t, eta_t = every.metric("kl"), every.metric("eta")
        one_step = bool(np.all(kl_t[1:] <= (1 - eta_t[:-1] * tau) * kl_t[:-1] + 2 * eta_t[:-1] ** 2 + 1e-12))
        row = _row("nash_md(theorem)", problem, game, tau, result, float(bounds[-1]), holds and one_step,
                   claim=CLAIM_NASH_MD)
        row["one_step_inequality"] = one_step
        rows.append(row)

        result = nash_md(game, tau, iterations, eta=eta, schedule="constant", **common)
        rows.append(_row(f"nash_md(ητ={MIXTURE_RATIO})", problem, game, tau, result))

        result = self_play_md(game, tau, iterations, eta=eta, **common)
        rows.append(_row(f"self_play_md(ητ={MIXTURE_RATIO})", problem, game, tau, result))

        # Nash-MP, η = 1: KL_k ≤ KL_0 (1+ητ)^(−k); floor 1e-13 for the oracle's accuracy
        mp_iterations = min(iterations, config.pick(100, 200, 1000))
        result = nash_mirror_prox(game, tau, mp_iterations, eta=1.0, **common)
        kl = result.metric("kl")
        envelope = kl[0] * (1.0 + tau) ** (-result.metric("iteration").astype(float))
        holds = bool(np.all(kl <= envelope * (1 + 1e-9) + 1e-13))
        rows.append(_row("nash_mirror_prox(η=1)", problem, game, tau, result, float(envelope[-1]), holds,
                         claim=CLAIM_NASH_MP))

        result = online_mirror_descent(game, tau, iterations, eta=eta, **common)
        rows.append(_row(f"online_md(ητ={MIXTURE_RATIO})", problem, game, tau, result))

        result = fictitious_play(game, tau, iterations, **common)
        rows.append(_row("fictitious_play(last)", problem, game, tau, result))
        rows.append(_row("fictitious_play(average)", problem, game, tau, result, average=True))

        for mixture in (0.0, 0.5):
            # softmax-PG gradients scale like π ≈ 1/K, so the step scales like K
            rate = 0.5 * k
            result = nash_md_pg(game, tau, iterations, learning_rate=rate, mixture=mixture, **common)
            rows.append(_row(f"nash_md_pg(β={mixture})", problem, game, tau, result))

        if contexts == 1 or not config.quick:
            result = nash_md(game, tau, iterations, n_samples=100, seed=config.seed, **common)
            rows.append(_row("nash_md(theorem,n=100)", problem, game, tau, result))

        rows.append(_row("best_response_to_ref", problem, game, tau, best_response_to_reference(game, tau, reference=star)))
        if contexts == 1 and k <= 100:  # dense Newton fit per context: skipped for big games
            rows.append(_row("rlhf_bradley_terry", problem, game, tau, rlhf_bradley_terry(game, tau, reference=star)))
    return pd.DataFrame(rows)
