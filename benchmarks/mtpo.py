"""``fixpoint bench mtpo``: MTPO and MTPO-τ (Shani et al. 2024) on layered dialogue games.

For each game and algorithm: ``kl`` = KL_p(π*_α‖π_T) and ``exploitability`` at the last iterate
(theorem schedule η_t = 2/(α(t+2))), the fitted log–log ``slope`` of KL against t (t ≥ 10, points
above the 1e-13 floor; the theorem promises at least −1), and the theorem's ``bound`` at T
(Shani et al. 2024, arXiv 2405.14655: Theorem 4.2, 32HQ²/(α²(T+1)), for MTPO; Theorem B.2,
9HQ²/(α²(T+1)), for MTPO-τ's mixture π^α_t). ``holds`` checks KL ≤ bound at every checkpoint. The
bounds are far above the measured KL (10⁴–10⁶×): they hold but say little about these games.
Games: random layered games (H = 2 … 10), Education Dialogue and Car Dealer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._runner import BenchConfig

DISPLAY_COLUMNS = ("kl", "bound", "slope", "H", "alpha", "wall_s", "exploitability")


def run(config: BenchConfig) -> pd.DataFrame:
    from fixpoint_rl.envs.dialogue import car_dealer, education_dialogue, random_layered_game
    from fixpoint_rl.tabular.core.stats import loglog_slope
    from fixpoint_rl.tabular.multiturn import (
        mtpo,
        mtpo_tau,
        mtpo_theorem_bound,
        multiturn_regularized_nash,
    )

    horizons = config.pick([2, 4], [2, 4, 6, 8, 10], [2, 4, 6, 8, 10])
    iterations = config.pick(300, 2000, 20000)
    states = config.pick(4, 8, 30)
    alpha = 0.2
    games = [
        (f"random-layered H={H}",
         random_layered_game(horizon=H, states_per_layer=states, num_actions=4, seed=config.seed + H),
         alpha)
        for H in horizons
    ]
    games.append(("education-dialogue H=2", education_dialogue(horizon=2, seed=config.seed), 0.1))
    games.append(("car-dealer H=4", car_dealer(seed=config.seed), 0.1))
    rows = []
    for name, game, a in config.track(games, "mtpo"):
        star = multiturn_regularized_nash(game, a)
        for algorithm, solver in (("MTPO", mtpo), ("MTPO-τ", mtpo_tau)):
            result = solver(game, a, iterations, reference_solution=star, checkpoints=30)
            t = result.metrics["iteration"]
            kl = result.metrics["kl"]
            if algorithm == "MTPO":
                tracked, variant = kl, "mtpo"
            else:
                tracked, variant = result.metrics["kl_mixture"][:-1], "mtpo_tau"
                t = t[:-1]
            bound = mtpo_theorem_bound(game, a, t, variant)
            claim = ("KL_p(π*‖π_t) ≤ 32HQ²/(α²(t+1)) at every checkpoint (Theorem 4.2)"
                     if algorithm == "MTPO" else
                     "KL_p(π*‖π^α_t) ≤ 9HQ²/(α²(t+1)) at every checkpoint (Theorem B.2)")
            # fit from t ≥ 10 on, excluding points at the float64 floor (no rate information)
            late = t >= 10
            slope = loglog_slope(t[late] + 1.0, tracked[late], floor=1e-13, too_few="nan")
            rows.append({
                "algorithm": algorithm,
                "problem": name,
                "claim": claim,
                "holds": bool(np.all(tracked <= bound)),
                "H": game.horizon,
                "alpha": a,
                "iterations": iterations,
                "kl": float(kl[-1]),
                "exploitability": float(result.metrics["exploitability"][-1]),
                "slope": float(slope),
                "bound": float(bound[-1]),
                "rate_at_least_1_over_t": bool(np.isnan(slope) or slope <= -0.9),
                "wall_s": result.wall_time_s,
            })
    return pd.DataFrame(rows)
