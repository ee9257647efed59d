"""Car Dealer sale prices (the comparison of Shani et al. 2024, Table 3): reward RL, MTPO on
true-reward preferences σ(r₁ − r₂), and multi-turn RLHF / MTPO from models learned on a finite
number of μ-sampled comparisons (several seeds, mean ± standard error)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = lambda quick: f"Error bars: ± one standard error over {3 if quick else 10} seeds of the learned models; methods on the true model are exact (no bars)."


def _price(game, policy):
    from fixpoint_rl.tabular.multiturn import final_state_distribution

    reach = final_state_distribution(game, policy)
    weights = game.context_probs[game.state_context[game.num_decision_states:]]
    return float(np.sum(weights * reach * game.final_reward))


def _mtpo_policy(game, alpha, iterations):
    """Run MTPO itself (theorem schedule) and return (π_T, KL_p(π*_α‖π_T)); the exact oracle is
    only the yardstick, so the figure shows what the algorithm reaches, not the equilibrium."""
    from fixpoint_rl.tabular.multiturn import mtpo, multiturn_regularized_nash

    star = multiturn_regularized_nash(game, alpha)
    result = mtpo(game, alpha, iterations, reference_solution=star, checkpoints=2)
    return result.final, result.last("kl")


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Expected sale price per method and seed."""
    from fixpoint_rl.envs.dialogue import car_dealer
    from fixpoint_rl.tabular.multiturn import learned_preference_game, multiturn_rlhf, reward_rl

    game = car_dealer(seed=seed)
    alpha = 0.005
    seeds = range(3) if quick else range(10)
    n_pairs = 300 if quick else 2000
    iterations = 200 if quick else 2000
    true_policy, true_kl = _mtpo_policy(game, alpha, iterations)
    rows = [{"method": "μ (SFT)", "seed": -1, "price": _price(game, game.reference)},
            {"method": "reward RL", "seed": -1, "price": _price(game, reward_rl(game, alpha).final)},
            {"method": "MTPO (true σ(r₁−r₂))", "seed": -1, "price": _price(game, true_policy),
             "kl_to_equilibrium": true_kl}]
    for s in seeds:
        rlhf = multiturn_rlhf(game, alpha, n_pairs=n_pairs, seed=seed * 1000 + s).final
        learned = learned_preference_game(game, n_pairs=n_pairs, seed=seed * 1000 + s)
        rows.append({"method": "multi-turn RLHF (learned RM)", "seed": s, "price": _price(game, rlhf)})
        learned_policy, learned_kl = _mtpo_policy(learned, alpha, iterations)
        rows.append({"method": "MTPO (learned PM)", "seed": s, "price": _price(game, learned_policy),
                     "kl_to_equilibrium": learned_kl})
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    summary = data.groupby("method", sort=False)["price"].agg(["mean", "std", "count"])
    sem = (summary["std"].fillna(0.0) / np.sqrt(summary["count"])).to_numpy()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.bar(range(len(summary)), summary["mean"], yerr=sem,
           color=[color(i) for i in range(len(summary))], capsize=3)
    ax.set_xticks(range(len(summary)))
    ax.set_xticklabels(summary.index, rotation=20, ha="right")
    ax.set_ylabel("expected sale price ($10k)")
    ax.set_title("Car Dealer, α = 0.005 (mean ± s.e. over seeds)")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
