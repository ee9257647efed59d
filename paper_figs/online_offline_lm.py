"""Online vs offline alignment on a small LM: golden win rate against KL, and classification vs
generation (Tang et al. 2024, "Understanding the performance gap between online and offline
alignment algorithms", arXiv 2405.08448, §3–§5).

Setup (``fixpoint train online_offline``, ``deep.llm.online_offline_text``): a ``nano`` Llama
warm-started by SFT on 2-digit addition (operands < 50) and stopped early is π_SFT, the reference
and the initial policy. Golden reward −|answer − (a+b)| (non-digit output −100); labels are
Bradley–Terry draws with temperature 2 on it. IPO (GPO squared loss, β swept) is trained either
online (fresh on-policy pairs every step) or offline (a dataset of as many pairs, sampled once from
π_SFT and labelled once: one epoch), same steps, batch and optimiser.

Panel 1: golden win rate against π_SFT vs KL(π‖π_SFT) (sequence log-ratio estimator on held-out
prompts) at the last step, per β, online vs offline; the ablations of the paper at one β: coverage
(offline data from π_SFT at temperature 1.5), data quality (offline data sampled from the final
online policy of the same seed and β), offline on the online run's own samples, shuffled and in the
original order (the latter reproduces online bit for bit; tested). Panel 2: pairwise classification
accuracy of the implicit reward on held-out labelled π_SFT pairs vs golden win rate, one point per
run. Panel 3: golden reward vs KL.

``--quick``: two β, two seeds, 100 steps of 64 pairs, in this process (one core); ``--full``: five
β × three seeds, 300 steps, cells (seed, β) through ``deep.sweep.run_sweep`` on two worker processes.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import color, figure_main

BETAS_QUICK, BETAS_FULL = (0.05, 0.2), (0.02, 0.05, 0.1, 0.2, 0.5)
SEEDS_QUICK, SEEDS_FULL = 2, 3
ABLATION_BETA_QUICK, ABLATION_BETA_FULL = 0.2, 0.1
ARMS = ("online", "offline", "offline, coverage (T=1.5)", "offline, data from online policy",
        "offline on online samples, shuffled", "offline on online samples, in order")
METRICS = ("kl", "kl_se", "reward", "reward_se", "win_rate", "win_rate_se", "exact", "valid", "pair_accuracy",
           "pair_accuracy_se", "loss")

UNCERTAINTY = lambda quick: (
    f"Panels 1 and 3: last-step values, mean over {SEEDS_QUICK if quick else SEEDS_FULL} seeds (each seed its own SFT "
    "warm start, shared by all arms of the seed); error bars ± one standard error over seeds, on both axes. "
    "Panel 2: one point per (seed, β) run.\nEach run's metrics are sampled on held-out prompts "
    "(256 prompts; 256 held-out pairs for the accuracy); their own standard errors are in the CSV (*_se)."
)


def sizes(quick: bool) -> dict:
    common = dict(model="nano", n_train=2200, n_test=300, sft_steps=150, batch_size=64, lr=1e-3, eval_prompts=256,
                  heldout_pairs=256, label_temperature=2.0, kind="squared")
    if quick:
        return {**common, "steps": 100, "log_every": 25}
    return {**common, "steps": 300, "log_every": 50}


def _train(config, seed: int, out_dir: Path) -> tuple[list[dict], Path]:
    """Run one arm with the registered trainer; its CSV rows and its last checkpoint."""
    from fixpoint_rl.deep.checkpoint import Checkpointer
    from fixpoint_rl.deep.llm.online_offline_text import TRAINERS
    from fixpoint_rl.deep.runtime import run_trainer

    run_trainer(TRAINERS[0], config, seed=seed, out_dir=out_dir, device="cpu", threads=1, progress=False)
    table = pd.read_csv(out_dir / "train-online_offline.csv")
    return table.to_dict("records"), Checkpointer(out_dir / "checkpoints", 1).latest_path()


def run_cell(cell: dict) -> list[dict]:
    """One (seed, β): online, offline, and at the ablation β the four ablations (a sweep cell)."""
    import torch

    from fixpoint_rl.deep.llm.online_offline_text import OnlineOfflineConfig

    torch.set_num_threads(1)
    seed, beta, quick = cell["seed"], cell["beta"], cell["quick"]
    base = OnlineOfflineConfig(beta=beta, **sizes(quick))
    root = Path(cell["out_dir"])
    arms = {"online": dict(mode="online"), "offline": dict(mode="offline")}
    rows = []
    online_checkpoint = None
    for arm in ARMS:
        if arm not in arms:
            if not cell["ablations"]:
                continue
            arms[arm] = {
                "offline, coverage (T=1.5)": dict(mode="offline", data_temperature=1.5),
                "offline, data from online policy": dict(mode="offline", data_source="checkpoint",
                                                         data_checkpoint=str(online_checkpoint)),
                "offline on online samples, shuffled": dict(mode="offline", data_source="online_samples",
                                                            data_checkpoint=str(online_checkpoint)),
                "offline on online samples, in order": dict(mode="offline", data_source="online_samples",
                                                            data_order="original",
                                                            data_checkpoint=str(online_checkpoint)),
            }[arm]
        config = dataclasses.replace(base, **arms[arm])
        records, checkpoint = _train(config, seed, root / f"beta{beta}-seed{seed}-{len(rows)}-{arm.split(',')[0]}")
        if arm == "online":
            online_checkpoint = checkpoint
        for record in records:
            for metric in METRICS:
                value = record.get(metric)
                if value is not None and np.isfinite(value):
                    rows.append(dict(arm=arm, beta=beta, seed=seed, step=int(record["step"]), metric=metric,
                                     value=float(value)))
    return rows


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Per seed, β and arm: KL, golden reward, win rate vs π_SFT and pair accuracy along training."""
    import os

    import torch

    from fixpoint_rl.deep.sweep import run_sweep

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    betas = BETAS_QUICK if quick else BETAS_FULL
    ablation_beta = ABLATION_BETA_QUICK if quick else ABLATION_BETA_FULL
    seeds = range(seed, seed + (SEEDS_QUICK if quick else SEEDS_FULL))
    with tempfile.TemporaryDirectory() as tmp:
        cells = [dict(seed=s, beta=b, quick=quick, ablations=b == ablation_beta, out_dir=tmp)
                 for s in seeds for b in betas]
        # quick: one core, in this process (the SFT warm start of a seed is computed once and reused)
        results = run_sweep(run_cell, cells, workers=0 if quick else 2)
    return pd.DataFrame([row for rows in results for row in rows])


def _final(data: pd.DataFrame) -> pd.DataFrame:
    last = data[data.step == data.groupby(["arm", "beta", "seed"]).step.transform("max")]
    return last.pivot_table(index=["arm", "beta", "seed"], columns="metric", values="value").reset_index()


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    final = _final(data)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    markers = {"online": "o", "offline": "s", "offline, coverage (T=1.5)": "^",
               "offline, data from online policy": "D", "offline on online samples, shuffled": "v",
               "offline on online samples, in order": "x"}
    for i, arm in enumerate(ARMS):
        rows = final[final.arm == arm]
        if rows.empty:
            continue
        stats = rows.groupby("beta")[["kl", "win_rate", "reward"]].agg(["mean", "sem"])
        for ax, y in ((axes[0], "win_rate"), (axes[2], "reward")):
            x_err = stats["kl"]["sem"].fillna(0.0)
            y_err = stats[y]["sem"].fillna(0.0)
            ax.errorbar(stats["kl"]["mean"], stats[y]["mean"], xerr=x_err, yerr=y_err, marker=markers[arm],
                        color=color(i), linestyle="-" if arm in ("online", "offline") else "none", capsize=2,
                        label=arm, markersize=6, mfc="none" if arm.endswith("in order") else None)
            if arm in ("online", "offline"):
                for beta, mean_x, mean_y in zip(stats.index, stats["kl"]["mean"], stats[y]["mean"]):
                    ax.annotate(f"β={beta:g}", (mean_x, mean_y), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
        hollow = arm.endswith("in order")  # equal to online (same updates): drawn hollow over its points
        axes[1].scatter(rows.pair_accuracy, rows.win_rate, marker="o" if hollow else markers[arm], label=arm,
                        s=70 if hollow else 25, facecolors="none" if hollow else color(i), edgecolors=color(i))
    axes[0].axhline(0.5, color="0.5", lw=0.8, ls=":")
    axes[0].set(xlabel="KL(π‖π_SFT) (nats, sampled)", ylabel="golden win rate vs π_SFT",
                title="Golden win rate vs KL (last step)")
    correlation = float(np.corrcoef(final.pair_accuracy, final.win_rate)[0, 1]) if len(final) > 2 else float("nan")
    axes[1].set(xlabel="pairwise accuracy of the implicit reward (held-out π_SFT pairs)",
                ylabel="golden win rate vs π_SFT",
                title=f"Classification vs generation (one point per run; Pearson r = {correlation:.2f})")
    axes[2].set(xlabel="KL(π‖π_SFT) (nats, sampled)", ylabel="golden reward −|answer − (a+b)|",
                title="Golden reward vs KL (last step)")
    axes[0].legend(loc="best", fontsize=6)
    fig.suptitle("Online vs offline IPO on 2-digit addition (nano Llama, BT golden judge)", fontsize=10)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
