"""Straight vs curved probability path, and the number of ODE steps (TD-Flow, Farebrother et al.,
ICML 2025, arXiv 2503.09817, Tables 2 and 10) on the 2-D linear-Gaussian rotation system, whose
successor measure is known exactly. TD²-CFM and TD-CFM(C) are trained on the straight OT path
(α = t, β = 1 − t) and the curved path (α = sin(πt/2), β = cos(πt/2)) with 10 midpoint steps; each
trained model is then sampled and scored with 2, 5, 10 and 20 midpoint steps (evaluation only: the
paper's Table 10 varies the steps of the whole run). Lower is better in every panel; the dotted line
is the finite-sample EMD floor, and the exact NLL (true density) is marked on the NLL panel."""

from __future__ import annotations

import pandas as pd
from _common import color, figure_main

UNCERTAINTY = lambda quick: (
    f"Error bars: ± s.e. over {1 if quick else 3} training seed(s) (seeds derived from --seed); "
    f"{2 if quick else 8} source states × {64 if quick else 256} samples each.")

VARIANTS = {"td2_cfm": "TD²-CFM", "td_cfm_coupled": "TD-CFM(C)"}


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """EMD / NLL / value MSE by path and evaluation ODE steps for TD²-CFM and TD-CFM(C)."""
    from fixpoint_rl.deep.ghm.train import fit_cell
    from fixpoint_rl.deep.sweep import run_sweep

    base = dict(problem="rotation", gamma=0.8, steps=60 if quick else 800,
                hidden=(32, 32) if quick else (64, 64), time_dim=16,
                batch_size=64 if quick else 128, lr=2e-3 if quick else 1e-3,
                ema=0.9 if quick else 0.99, dataset_size=20000,
                eval_sources=2 if quick else 8, eval_samples=64 if quick else 256,
                nll_samples=8 if quick else 32, eval_every=10**9)
    steps = [2, 10] if quick else [2, 5, 10, 20]
    cells = [{"config": {**base, "variant": variant, "path": path}, "seed": seed * 100 + rep,
              "eval_ode_steps": steps}
             for variant in VARIANTS for path in ("straight", "curved")
             for rep in range(1 if quick else 3)]
    results = run_sweep(fit_cell, cells, workers=0 if quick else None)
    return pd.DataFrame([row for rows in results for row in rows])


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    metrics = [("emd", "EMD (squared Euclidean)"), ("nll", "NLL per dimension"),
               ("value_mse", "value MSE (r = −‖x‖²)")]
    figure, axes = plt.subplots(1, 3, figsize=(10.0, 3.0))
    for axis, (metric, label) in zip(axes, metrics):
        for index, (variant, name) in enumerate(VARIANTS.items()):
            for path, style in (("straight", "-"), ("curved", "--")):
                part = data[(data.variant == variant) & (data.path == path)]
                curve = part.groupby("eval_ode_steps")[metric].agg(["mean", "sem"])
                axis.errorbar(curve.index, curve["mean"], yerr=curve["sem"].fillna(0), ls=style,
                              marker="o", ms=3, capsize=2, color=color(index),
                              label=f"{name}, {path} path")
        if metric == "emd":
            axis.axhline(data.emd_floor.mean(), color="gray", ls=":", lw=1, label="finite-sample floor")
        if metric == "nll" and "true_nll" in data:
            axis.axhline(data.true_nll.mean(), color="black", ls=":", lw=1, label="exact density")
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xticks(sorted(data.eval_ode_steps.unique()))
        axis.set_xticklabels([str(s) for s in sorted(data.eval_ode_steps.unique())])
        axis.set_xlabel("midpoint steps at evaluation")
        axis.set_title(label)
        if metric == "value_mse":
            axis.set_yscale("log")
    handles, labels = [], []
    for axis in axes:
        for handle, text in zip(*axis.get_legend_handles_labels()):
            if text not in labels:
                handles.append(handle)
                labels.append(text)
    figure.suptitle(f"Straight vs curved path and ODE steps (rotation system, γ = {data.gamma.iloc[0]}, "
                    f"{int(data.steps.iloc[0])} training steps)", fontsize=10)
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    figure.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
