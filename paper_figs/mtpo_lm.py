"""Deep MTPO on dialogue games played by a small transformer (Shani et al., NeurIPS 2024,
arXiv 2405.14655, Table 1 and the Car Dealer experiment of §5).

Left: win-rate matrix P(row ≻ column) on the tabular Education Dialogue (H = 2, one topic, 5
teacher actions, student reactions drawn by the belief MDP) under the game's TRUE (partly
intransitive) preference, for LM policies (``nano`` Llama, ``fixpoint_rl.deep.llm.mtpo``): the
distilled reference ("SFT"), single-turn RLHF, multi-turn RLHF (Bradley–Terry reward from
μ-sampled comparisons), MTPO and MTPO-τ, all trained with sampled rollouts, Bernoulli preference
feedback and GAE(λ = 0.95) for the same number of steps from the same distilled start.
Win rates are EXACT for the trained policies (every transcript enumerated).

Right: Car Dealer (H = 3, 4 prices, 2 customer segments): exact expected sale price of the SFT
policy, multi-turn RL on the game's reward (the reward-based baseline), and MTPO trained only on
preferences σ(r₁ − r₂) between two dialogues.

The CSV also holds (panel ``education_tabular``) the exact TABULAR policies of the same methods on
the same game (``fixpoint_rl.tabular.multiturn``), the ranking the LM runs are compared with. On
this small instance (H = 2, α = 0.05) the tabular answers rank ST-RLHF > MT-RLHF > MTPO = MTPO-τ
head to head (the paper's Table 1 ordering does not hold here); see the script's output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

EDU_METHODS = ("SFT", "ST-RLHF", "MT-RLHF", "MTPO", "MTPO-τ")
EDU_ARMS = {"ST-RLHF": "rlhf_single", "MT-RLHF": "rlhf_multi", "MTPO": "mtpo", "MTPO-τ": "mtpo_tau"}
CAR_METHODS = ("SFT", "MT-RL (reward)", "MTPO (preference)")
SEEDS_QUICK, SEEDS_FULL = 2, 5
STEPS_QUICK, STEPS_FULL = 60, 600

UNCERTAINTY = lambda quick: (
    f"Exact (enumerated) win rates / expected prices of each trained policy; {SEEDS_QUICK if quick else SEEDS_FULL} "
    f"training seeds × {STEPS_QUICK if quick else STEPS_FULL} steps. Cells and bars: mean over seeds with a 95 % "
    "percentile bootstrap interval over seeds (2000 resamples; with 2 seeds it is the range)."
)


def _train_arms(base_changes, arms, seed, steps):
    """Distil one LM towards μ, then train each arm from that same start; returns the states."""
    import torch

    from fixpoint_rl.deep.llm import mtpo as M

    torch.set_num_threads(1)
    base = M.MTPOConfig(**base_changes, steps=steps)
    start = M.prepare(base, seed)
    states = {"SFT": start}
    for label, changes in arms.items():
        config = M.MTPOConfig(**{**base_changes, **changes, "sft_steps": 0, "steps": steps})
        state = M.prepare(config, seed)
        state.policy.load_state_dict(start.policy.state_dict())
        for _ in range(steps):
            M.train_step(state)
        states[label] = state
    return states


def _tabular_rows(game, alpha, n_pairs, seed):
    """Exact tabular policies of the same methods (``fixpoint_rl.tabular.multiturn``: MTPO and
    MTPO-τ run to convergence, RLHF fits from the same number of μ-sampled comparisons)."""
    from fixpoint_rl.tabular.multiturn import (
        mtpo,
        mtpo_tau,
        multiturn_preference,
        multiturn_rlhf,
        single_turn_rlhf,
    )

    pols = {"SFT": np.asarray(game.reference),
            "ST-RLHF": single_turn_rlhf(game, alpha, n_pairs=max(n_pairs // game.num_decision_states, 1),
                                        seed=seed).final,
            "MT-RLHF": multiturn_rlhf(game, alpha, n_pairs=n_pairs, seed=seed).final,
            "MTPO": mtpo(game, alpha, 1000, checkpoints=2).final,
            "MTPO-τ": mtpo_tau(game, alpha, 1000, checkpoints=2).final}
    return [{"panel": "education_tabular", "seed": 0, "row": a, "column": b,
             "value": multiturn_preference(game, pols[a], pols[b], 0.0)} for a in EDU_METHODS for b in EDU_METHODS]


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Per seed: the exact Education Dialogue win-rate matrix and Car Dealer expected prices."""
    from fixpoint_rl.deep.llm import mtpo as M

    seeds = range(SEEDS_QUICK if quick else SEEDS_FULL)
    steps = STEPS_QUICK if quick else STEPS_FULL
    sft = 60 if quick else 300
    rows = []
    edu = dict(game="education", horizon=2, num_contexts=1, alpha=0.05, batch_contexts=8, lr=2e-3,
               sft_steps=sft, reward_pairs=2000, mixture_beta=0.125, normalize_advantages=True)
    car = dict(game="car_dealer", horizon=3, num_actions=4, num_contexts=2, alpha=0.05, batch_contexts=8,
               lr=2e-3, sft_steps=sft, normalize_advantages=True)
    for s in seeds:
        run_seed = 1000 * seed + s
        states = _train_arms(edu, {k: {"algorithm": v} for k, v in EDU_ARMS.items()}, run_seed, steps)
        any_state = states["SFT"]
        batch = M.enumerate_transcripts(any_state.policy, any_state.tokenizer, any_state.text)
        dists = {k: M.final_distribution(st.policy, batch, st.game) for k, st in states.items()}
        for a in EDU_METHODS:
            for b in EDU_METHODS:
                rows.append({"panel": "education", "seed": s, "row": a, "column": b,
                             "value": M.win_rate(any_state.game, dists[a], dists[b])})
        if s == 0:  # the exact tabular answers on the same game (reference ranking, not plotted as cells)
            rows += _tabular_rows(any_state.game, edu["alpha"], edu["reward_pairs"], run_seed)
        states = _train_arms(car, {"MT-RL (reward)": {"algorithm": "rlhf_multi", "reward_source": "game"},
                                   "MTPO (preference)": {"algorithm": "mtpo"}}, run_seed, steps)
        for label, st in states.items():
            rows.append({"panel": "car_dealer", "seed": s, "row": label, "column": "expected price",
                         "value": M.evaluate(st)["expected_reward"]})
    return pd.DataFrame(rows)


def _bootstrap(values, rng, n=2000):
    values = np.asarray(values)
    means = values[rng.integers(0, values.size, size=(n, values.size))].mean(axis=1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2), gridspec_kw={"width_ratios": [1.5, 1]})
    edu = data[data.panel == "education"]
    k = len(EDU_METHODS)
    mean = np.zeros((k, k))
    for i, a in enumerate(EDU_METHODS):
        for j, b in enumerate(EDU_METHODS):
            m, lo, hi = _bootstrap(edu[(edu.row == a) & (edu.column == b)].value, rng)
            mean[i, j] = m
            left.text(j, i, f"{m:.3f}\n[{lo:.3f}, {hi:.3f}]", ha="center", va="center", fontsize=7)
    image = left.imshow(mean, cmap="RdBu", vmin=0.3, vmax=0.7)
    left.set_xticks(range(k))
    left.set_xticklabels(EDU_METHODS, rotation=30, ha="right")
    left.set_yticks(range(k))
    left.set_yticklabels(EDU_METHODS)
    left.grid(False)
    left.set_title("Education Dialogue (LM): P(row ≻ column), true preference")
    tab = data[data.panel == "education_tabular"].set_index(["row", "column"]).value
    if len(tab):
        left.set_xlabel("tabular exact policies, same game: " + ", ".join(
            f"P({a} ≻ {b}) = {tab[(a, b)]:.3f}" for a, b in (("MTPO", "MT-RLHF"), ("MT-RLHF", "ST-RLHF"),
                                                               ("MTPO", "SFT"))), fontsize=7)
    fig.colorbar(image, ax=left, shrink=0.8)
    car = data[data.panel == "car_dealer"]
    for i, label in enumerate(CAR_METHODS):
        m, lo, hi = _bootstrap(car[car.row == label].value, rng)
        right.bar(i, m, color=color(i), yerr=[[m - lo], [hi - m]], capsize=4)
        right.text(i, hi, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    right.set_xticks(range(len(CAR_METHODS)))
    right.set_xticklabels(CAR_METHODS, rotation=15)
    right.set_ylabel("expected sale price (exact)")
    right.set_title("Car Dealer (LM): reward vs preference training")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
