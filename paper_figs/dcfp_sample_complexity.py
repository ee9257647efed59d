"""DCFP, QDP and CDP on an empirical model from N samples per state: sup-W1 error to a
high-resolution reference against N, one panel per study environment (Rowland et al. 2024,
arXiv 2402.07598, §7). The dotted line is DCFP's approximation floor (true model); the dashed
line is a reference slope ∝ N^(−1/2) through DCFP's first point. CDP runs a fixed budget of 30
iterations: its error is dominated by the truncation (≈ γ³⁰ of the initial error), not by N, so
its curve is flat — the budget, not the sample size, limits it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = lambda quick: f"Error bars: ± one standard error over {2 if quick else 5} independent empirical models per N (seeds derived from --seed)."

ALGORITHMS = ("DCFP", "QDP", "CDP (30 it)")


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Error vs N for DCFP / QDP / CDP on the four study environments."""
    from fixpoint_rl.envs.dcfp_envs import DCFP_ENVIRONMENTS, environment_support
    from fixpoint_rl.tabular.model_based import (
        categorical_dp,
        categorical_fixed_point,
        high_resolution_reference,
        quantile_dp,
        sample_empirical_model,
        sup_wasserstein1,
    )

    ns = [10, 30, 100, 300, 1000] if quick else [10, 30, 100, 300, 1000, 3000, 10000]
    reps = 2 if quick else 5
    m = 51 if quick else 101
    rows = []
    for env_name, make in DCFP_ENVIRONMENTS.items():
        mrp = make()
        ref = high_resolution_reference(mrp, 1001 if quick else 2001)
        atoms = environment_support(mrp, m)
        floor = sup_wasserstein1(atoms, categorical_fixed_point(mrp, atoms), ref.atoms, ref.probs)
        for n in ns:
            for rep in range(reps):
                hat = sample_empirical_model(mrp, n, seed=seed * 100_003 + rep * 101 + n)
                estimates = {
                    "DCFP": (atoms, categorical_fixed_point(hat, atoms)),
                    "QDP": (quantile_dp(hat, m, tol=1e-8).final, None),
                    "CDP (30 it)": (atoms, categorical_dp(hat, atoms, iterations=30).final),
                }
                for algorithm, (a, p) in estimates.items():
                    rows.append(dict(environment=env_name, algorithm=algorithm, N=n, rep=rep,
                                     error=sup_wasserstein1(a, p, ref.atoms, ref.probs), floor=floor))
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(data.environment))
    figure, axes = plt.subplots(1, len(envs), figsize=(3.0 * len(envs), 2.7), sharey=True)
    for axis, env in zip(np.atleast_1d(axes), envs):
        part = data[data.environment == env]
        for index, algorithm in enumerate(ALGORITHMS):
            curve = part[part.algorithm == algorithm].groupby("N").error.agg(["mean", "sem"])
            label = ("CDP, 30 iterations (flat: truncation error, not N)"
                     if algorithm.startswith("CDP") else algorithm)
            axis.errorbar(curve.index, curve["mean"], yerr=curve["sem"].fillna(0), color=color(index),
                          marker="o", ms=3, capsize=2, label=label)
        axis.axhline(part.floor.iloc[0], color="gray", ls=":", lw=1, label="DCFP floor (true P)")
        ns = np.array(sorted(part.N.unique()), dtype=float)
        anchor = part[(part.algorithm == "DCFP") & (part.N == ns[0])].error.mean()
        axis.plot(ns, anchor * np.sqrt(ns[0] / ns), color="black", lw=0.8, ls="--",
                  label=r"reference slope $\propto N^{-1/2}$")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(env)
        axis.set_xlabel("samples per state N")
    np.atleast_1d(axes)[0].set_ylabel(r"$\sup_x W_1$ to the reference")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    reps = int(data.rep.max()) + 1
    figure.suptitle("Error vs samples per state (environment-specific support, γ = 0.9); "
                    f"error bars: ± s.e. over {reps} empirical models", fontsize=10)
    figure.tight_layout(rect=(0, 0.16, 1, 1))
    figure.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
