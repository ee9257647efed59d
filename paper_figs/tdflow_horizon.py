"""Accuracy of geometric horizon models against the effective horizon (1−γ)^{-1} ∈ {5, 10, 20, 50,
100} (TD-Flow, Farebrother et al., ICML 2025, arXiv 2503.09817, Figure 2) on the point mass driven
around a loop: EMD (squared Euclidean) and NLL per dimension of the model against Monte-Carlo
samples of the true successor measure, and the MSE of values (1−γ)^{-1} E r(X) against Monte-Carlo
returns, for TD-CFM, TD-CFM(C), TD²-CFM and the on-policy Monte-Carlo CFM oracle (MC-CFM), all with
the same network, steps and optimiser. ``--quick``: one horizon (10), a few dozen steps;
default: every horizon, one seed, 800 steps; ``--full``: three seeds and 3000 steps, run through the sweep
runner (``fixpoint_rl.deep.sweep.run_sweep``: local processes, or a Ray cluster with
``--ray ADDRESS``)."""

from __future__ import annotations

import sys

import pandas as pd
from _common import color, figure_main

MODE = {"full": False, "ray": None}
VARIANTS = {"td_cfm": "TD-CFM", "td_cfm_coupled": "TD-CFM(C)", "td2_cfm": "TD²-CFM",
            "mc_cfm": "MC-CFM (oracle)"}
UNCERTAINTY = lambda quick: (
    "Error bars: ± s.e. over 3 training seeds (seeds derived from --seed)" if MODE["full"]
    else "One training seed (no bands)") + (
    "; ground truth: Monte-Carlo rollouts (values: 200 rollouts per source).")


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """EMD / NLL / value MSE against the effective horizon for the four flow-matching learners."""
    from fixpoint_rl.deep.ghm.train import fit_cell
    from fixpoint_rl.deep.sweep import run_sweep

    full = MODE["full"] and not quick
    horizons = [10] if quick else [5, 10, 20, 50, 100]
    seeds = 3 if full else 1
    base = dict(problem="point_mass", steps=40 if quick else (3000 if full else 800),
                hidden=(32, 32) if quick else ((128, 128, 128) if full else (64, 64)),
                time_dim=16 if quick else 32, batch_size=64 if quick else (256 if full else 128),
                lr=2e-3 if quick else (5e-4 if full else 1e-3),
                ema=0.9 if quick else 0.99, dataset_size=2000 if quick else 50_000,
                eval_sources=2 if quick else 16, eval_samples=64 if quick else 256,
                nll_samples=8 if quick else 64, eval_every=10**9)
    cells = [{"config": {**base, "gamma": 1.0 - 1.0 / h, "variant": variant},
              "seed": seed * 100 + rep, "horizon": h}
             for h in horizons for variant in VARIANTS for rep in range(seeds)]
    results = run_sweep(fit_cell, cells, workers=0 if quick else None, ray_address=MODE["ray"])
    rows = []
    for cell, result in zip(cells, results):
        for row in result:
            rows.append({**row, "horizon": cell["horizon"]})
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    metrics = [("emd", "EMD (squared Euclidean)"), ("nll", "NLL per dimension"),
               ("value_mse", "MSE(V)")]
    figure, axes = plt.subplots(1, 3, figsize=(10.0, 3.0))
    for axis, (metric, label) in zip(axes, metrics):
        for index, (variant, name) in enumerate(VARIANTS.items()):
            curve = data[data.variant == variant].groupby("horizon")[metric].agg(["mean", "sem"])
            axis.errorbar(curve.index, curve["mean"], yerr=curve["sem"].fillna(0), marker="o", ms=3,
                          capsize=2, color=color(index), label=name,
                          ls=":" if variant == "mc_cfm" else "-")
        if metric == "emd":
            floor = data.groupby("horizon").emd_floor.mean()
            axis.plot(floor.index, floor.values, color="gray", ls=":", lw=1, marker="_",
                      label="finite-sample floor")
        axis.set_xscale("log")
        if metric != "nll":
            axis.set_yscale("log")
        axis.set_xlabel("effective horizon (1−γ)⁻¹")
        axis.set_title(label)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.suptitle(f"Point mass on a loop: accuracy vs horizon ({int(data.steps.iloc[0])} steps, "
                    f"{int(data.eval_sources.iloc[0])} sources)", fontsize=10)
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    figure.legend(handles, labels, loc="lower center", ncol=5, frameon=False)
    return figure


if __name__ == "__main__":
    argv = list(sys.argv[1:])
    if "--full" in argv:
        argv.remove("--full")
        MODE["full"] = True
    if "--ray" in argv:
        at = argv.index("--ray")
        MODE["ray"] = argv[at + 1]
        del argv[at : at + 2]
    figure_main(__file__, compute, plot, argv=argv)
