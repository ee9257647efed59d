"""Win-rate matrix of LM policies on an intransitive preference game, like NLHF Table 1
(Munos et al., ICML 2024, arXiv 2312.00886, §8 Table 1).

The golden judge is the three-type cycle of NLHF §3.2 (ε = 0.1, ``envs.preference.three_type_cycle``)
lifted to token responses (``deep.llm.tasks.preference_game_task``). Policies, all ``nano`` LMs
trained by ``fixpoint train rlhf|nash_md_pg`` (``deep.llm.train_preference``) from the same seeded
initialisation, which is the reference μ ("SFT"): RLHF (Bradley–Terry reward model fitted to
μ-sampled pairs, KL-regularised policy gradient), self-play SP (Nash-MD-PG mixture β = 0), mixtures
MD β ∈ {0.125, 0.25, 0.5, 0.75}, best response BR (β = 1) and Nash-EMA; τ = 0.2 for all.

Every response is enumerable, so each entry P(π_row ≻ π_col) = Σ_x ν(x) π_row(·|x)ᵀ P_x π_col(·|x)
is EXACT for the trained policies (no sampled evaluation, hence no Clopper–Pearson interval); the
only spread is over training seeds.

``--game length_quality`` swaps the judge for the free-text length/quality judge with a cyclic
term on lengths (``deep.llm.preference_models.length_quality_task``: texts of ≤ 3 characters as
3 tokens, 27 responses); outputs are then named ``nlhf_lm_length_quality.*``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import figure_main

ARMS = {
    "RLHF": dict(algorithm="rlhf"),
    "SP": dict(algorithm="nash_md_pg", mixture=0.0),
    "MD β=.125": dict(algorithm="nash_md_pg", mixture=0.125),
    "MD β=.25": dict(algorithm="nash_md_pg", mixture=0.25),
    "MD β=.5": dict(algorithm="nash_md_pg", mixture=0.5),
    "MD β=.75": dict(algorithm="nash_md_pg", mixture=0.75),
    "BR": dict(algorithm="nash_md_pg", mixture=1.0),
    "EMA": dict(algorithm="nash_md_pg", ema_decay=0.95),
}
POLICIES = ("SFT", *ARMS)
SEEDS_QUICK, SEEDS_FULL = 2, 5
STEPS_QUICK, STEPS_FULL = 40, 300
COMMON = dict(game="three_type_cycle", eps=0.1, model="nano", beta=0.2)
JUDGES = {"three_type_cycle": "three-type cycle ε = 0.1", "length_quality": "length/quality judge, cyclic λ = 0.6"}

UNCERTAINTY = lambda quick: (
    f"Each entry is EXACT for the trained policies (responses enumerated, golden preference matrix; "
    f"no sampled evaluation, so no Clopper–Pearson interval is needed).\nSpread is over "
    f"{SEEDS_QUICK if quick else SEEDS_FULL} training seeds × {STEPS_QUICK if quick else STEPS_FULL} steps: "
    "cell = mean over seeds, [min, max] over seeds below it."
)


def _final_policy(config, seed, out_dir):
    """Train one arm with the registered trainer; returns the enumerated final policy [X, N]."""
    import torch

    from fixpoint_rl.deep.checkpoint import Checkpointer, load_checkpoint
    from fixpoint_rl.deep.llm.gpo import enumerate_policy
    from fixpoint_rl.deep.llm.models import build_lm
    from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer
    from fixpoint_rl.deep.llm.train_preference import TRAINERS, build_game_task
    from fixpoint_rl.deep.runtime import run_trainer

    spec = {t.name: t for t in TRAINERS}[config.algorithm]
    tokenizer = build_char_tokenizer()
    task = build_game_task(config, seed)
    model = build_lm(config.model, len(tokenizer), seed, dtype=config.dtype)
    if out_dir is not None:  # a trained arm: its final checkpoint holds the policy parameters
        run_trainer(spec, config, seed=seed, out_dir=out_dir, device="cpu", threads=1, progress=False)
        path = Checkpointer(Path(out_dir) / "checkpoints", 1).latest_path()
        model.load_state_dict(load_checkpoint(path)["state"]["model"])
    with torch.no_grad():
        policy = enumerate_policy(model.eval(), task, tokenizer).double().exp().cpu().numpy()
    return policy / policy.sum(-1, keepdims=True), task


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Per training seed: the exact matrix P(π_row ≻ π_col) over SFT, RLHF, SP, MD β, BR and EMA."""
    import torch

    from fixpoint_rl.deep.llm.train_preference import PreferenceConfig

    torch.set_num_threads(1)
    steps = STEPS_QUICK if quick else STEPS_FULL
    sizes = dict(steps=steps, batch_size=16 if quick else 32, n_pairs=128 if quick else 512,
                 rm_steps=30 if quick else 150, log_every=steps,
                 lr=1e-2 if quick else 3e-3)  # few quick steps: a larger Adam step so the arms separate
    rows = []
    n_seeds = SEEDS_QUICK if quick else SEEDS_FULL
    for s in range(n_seeds):
        run_seed = 1000 * seed + s
        with tempfile.TemporaryDirectory() as tmp:
            base = PreferenceConfig(algorithm="rlhf", **COMMON, **sizes)
            policies = {}
            policies["SFT"], task = _final_policy(base, run_seed, None)
            for label, changes in ARMS.items():
                config = PreferenceConfig(**{**COMMON, **sizes, **changes})
                started = time.perf_counter()
                policies[label], _ = _final_policy(config, run_seed, Path(tmp) / label.replace(" ", "_"))
                print(f"  seed {s + 1}/{n_seeds}, {label}: {steps} steps in {time.perf_counter() - started:.0f} s",
                      file=sys.stderr, flush=True)  # progress: a full run trains 5 × 8 arms
        nu, pref = task.context_weights, np.asarray(task.pref)
        for a in POLICIES:
            for b in POLICIES:
                value = float(nu @ np.einsum("xi,xij,xj->x", policies[a], pref, policies[b]))
                rows.append({"seed": s, "row": a, "column": b, "win_rate": value})
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    k = len(POLICIES)
    stats = data.groupby(["row", "column"]).win_rate.agg(["mean", "min", "max"])
    fig, ax = plt.subplots(figsize=(11, 8.5))
    mean = np.array([[stats.loc[(a, b), "mean"] for b in POLICIES] for a in POLICIES])
    for i, a in enumerate(POLICIES):
        for j, b in enumerate(POLICIES):
            lo, hi = stats.loc[(a, b), "min"], stats.loc[(a, b), "max"]
            ax.text(j, i, f"{mean[i, j]:.3f}\n[{lo:.3f}, {hi:.3f}]", ha="center", va="center", fontsize=6.5)
    image = ax.imshow(mean, cmap="RdBu", vmin=0.45, vmax=0.55)
    ax.set_xticks(range(k))
    ax.set_xticklabels(POLICIES, rotation=30, ha="right")
    ax.set_yticks(range(k))
    ax.set_yticklabels(POLICIES)
    ax.grid(False)
    ax.set_title(f"NLHF Table 1 analogue (nano LMs, {JUDGES[COMMON['game']]}, τ = 0.2): exact P(row ≻ column)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def _pop_game(argv: list[str]) -> str:
    """Remove ``--game NAME`` from ``argv`` (the shared figure CLI has no such flag); default the cycle."""
    if "--game" not in argv:
        return "three_type_cycle"
    i = argv.index("--game")
    if i + 1 >= len(argv) or argv[i + 1] not in JUDGES:
        raise SystemExit(f"--game must be one of {sorted(JUDGES)}")
    game = argv[i + 1]
    del argv[i:i + 2]
    return game


if __name__ == "__main__":
    argv = sys.argv[1:]
    COMMON["game"] = _pop_game(argv)
    suffix = "" if COMMON["game"] == "three_type_cycle" else f"_{COMMON['game']}"
    figure_main(str(Path(__file__).with_name(f"nlhf_lm{suffix}.py")), compute, plot, argv)
