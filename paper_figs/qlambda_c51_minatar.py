"""Q(λ)-C51 against C51, n-step C51 and Retrace-C51 on MinAtar (Tang et al., AISTATS 2026).

Training returns (mean undiscounted return of the episodes finished in each 1000-step interval,
with the training ε and MinAtar's sticky actions 0.1; ``fixpoint train`` runs, preset
``minatar``) against environment frames. Agents: ``c51`` (n = 1), ``nstep_c51`` (n = 3,
uncorrected), ``retrace_c51`` (n = 3, λ = 1), ``qlambda_c51`` (n = 3, λ = 0.8, Cramér loss)
with target policy π_α = α·greedy + (1 − α)·μ for α ∈ {0.6, 0.8, 1}, and a λ sweep of Q(λ)-C51
(λ ∈ {0.5, 0.8, 0.95} at α = 0.8) on the first game.

``--quick`` (the test): Breakout, 4 agents (C51, n-step, Retrace, Q(λ) α = 0.8) × 12.5k frames
(≈ 50k frames in all), 1 seed, ε decayed over 5k steps — a smoke test of the whole pipeline, far
too short to separate the agents. Default (full): Breakout, Asterix and SpaceInvaders × 1M frames
× 3 seeds for every agent (≈ 10 CPU-hours), run through the sweep runner
``fixpoint_rl.deep.sweep.run_sweep`` on a local process pool, or on a Ray cluster when the
environment variable ``FIXPOINT_RAY_ADDRESS`` is set; every cell writes its own run folder under
``paper_figs/out/qlambda_c51_minatar_runs`` (or ``$FIXPOINT_FIGURE_RUNS``) and an interrupted
sweep resumes from the checkpoints.
Mean over seeds and a 95 % t-interval (bands) per curve.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from _common import color, figure_main

from fixpoint_rl.deep.sweep import run_sweep, train_cell


def _uncertainty(quick: bool) -> str:
    if quick:
        return ("Quick mode: 1 seed, no bands; 12.5k frames per agent is a pipeline smoke test, "
                "not a comparison.")
    return "Bands: 95 % t-interval of the mean over 3 seeds (training returns, 1000-frame bins)."


UNCERTAINTY = _uncertainty


def _agents(quick: bool):
    agents = [("C51", "c51", {}), ("n-step C51", "nstep_c51", {}),
              ("Retrace-C51", "retrace_c51", {}), ("Q(λ)-C51 α=0.8", "qlambda_c51", {})]
    if not quick:
        agents += [("Q(λ)-C51 α=0.6", "qlambda_c51", {"alpha": 0.6}),
                   ("Q(λ)-C51 α=1", "qlambda_c51", {"alpha": 1.0})]
    return agents


def _cells(quick: bool, seed: int, folder: Path) -> list[dict]:
    games = ["Breakout"] if quick else ["Breakout", "Asterix", "SpaceInvaders"]
    seeds = [seed] if quick else [seed, seed + 1, seed + 2]
    steps = 12_500 if quick else 1_000_000
    overrides = [f"steps={steps}", "log_every=1000"]
    if quick:
        overrides += ["eps_decay_steps=5000", "learning_starts=1000", "buffer_size=20000"]
    cells = []
    for game in games:
        agents = [(label, alg, dict(s), "agents") for label, alg, s in _agents(quick)]
        if not quick and game == games[0]:
            agents += [(f"Q(λ)-C51 λ={lam}", "qlambda_c51", {"lam": lam, "alpha": 0.8}, "lambda")
                       for lam in (0.5, 0.95)]
        for label, alg, settings, panel in agents:
            for s in seeds:
                name = f"{game}-{label}-seed{s}".replace(" ", "_").replace("(", "").replace(")", "")
                cells.append({"algorithm": alg, "preset": "minatar", "seed": s,
                              "overrides": overrides + [f"game={game}"], "settings": settings,
                              "out_dir": str(folder / name), "label": label, "game": game,
                              "panel": panel})
    return cells


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Training-return curves from a sweep of ``fixpoint train`` runs."""
    # full runs go to a persistent folder (an interrupted sweep resumes from it); quick runs to a
    # fresh temporary one, so a quick run always trains (never reuses finished runs)
    default = Path(__file__).resolve().parent / "out" / "qlambda_c51_minatar_runs"
    folder = Path(os.environ.get("FIXPOINT_FIGURE_RUNS", default))
    if quick:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="qlambda_c51_minatar_quick_"))
    cells = _cells(quick, seed, folder)
    address = os.environ.get("FIXPOINT_RAY_ADDRESS")
    results = run_sweep(train_cell, cells, workers=0 if quick else None, ray_address=address)
    rows = []
    for cell, summary in zip(cells, results):
        log = pd.read_csv(Path(summary["out_dir"]) / f"train-{cell['algorithm']}.csv")
        for _, r in log.iterrows():
            rows.append(dict(game=cell["game"], agent=cell["label"], panel=cell["panel"],
                             seed=cell["seed"], frames=int(r["frames"]),
                             train_return=r["train_return"], loss=r["loss"],
                             target_negative_mass=r["target_negative_mass"]))
    return pd.DataFrame(rows)


def _mean_band(sub: pd.DataFrame):
    from scipy import stats

    grouped = sub.groupby("frames").train_return
    mean = grouped.mean()
    n = grouped.count()
    sem = grouped.std(ddof=1) / np.sqrt(n)
    half = sem * stats.t.ppf(0.975, np.maximum(n - 1, 1))
    return mean.index.values, mean.values, np.where(n > 1, half.values, np.nan)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    games = list(dict.fromkeys(data.game))
    has_lambda = (data.panel == "lambda").any()
    ncols = len(games) + int(has_lambda)
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.4), squeeze=False)
    axes = axes[0]
    for ax, game in zip(axes, games):
        sub = data[(data.game == game) & (data.panel == "agents")]
        for i, (agent, curve) in enumerate(sub.groupby("agent", sort=False)):
            x, mean, half = _mean_band(curve)
            ax.plot(x, mean, color=color(i), label=agent)
            if np.any(np.isfinite(half)):
                ax.fill_between(x, mean - half, mean + half, color=color(i), alpha=0.2)
        ax.set_title(f"MinAtar {game}")
        ax.set_xlabel("environment frames")
        ax.set_ylabel("training return")
        ax.legend()
    if has_lambda:
        ax = axes[-1]
        sub = data[(data.game == games[0]) & data.agent.str.startswith("Q(λ)-C51")
                   & ((data.panel == "lambda") | (data.agent == "Q(λ)-C51 α=0.8"))]
        for i, (agent, curve) in enumerate(sub.groupby("agent", sort=False)):
            x, mean, half = _mean_band(curve)
            ax.plot(x, mean, color=color(i + 4), label=agent.replace("α=0.8", "λ=0.8"))
            if np.any(np.isfinite(half)):
                ax.fill_between(x, mean - half, mean + half, color=color(i + 4), alpha=0.2)
        ax.set_title(f"λ sweep (α = 0.8), {games[0]}")
        ax.set_xlabel("environment frames")
        ax.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
