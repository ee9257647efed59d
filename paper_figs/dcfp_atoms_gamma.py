"""Exact-model errors of DCFP, CDP (fixed 30-iteration budget) and QDP against the number of atoms
m and the discount γ, under the global support [0, 1/(1−γ)] and the environment-specific support
(Rowland et al. 2024, arXiv 2402.07598, §7). Error: sup_x W1 to a high-resolution reference."""

from __future__ import annotations

import pandas as pd
from _common import color, figure_main

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = "No bands: exact models, deterministic solvers (one environment instance per panel; the random environments are drawn with --seed)."

ALGORITHMS = ("DCFP", "QDP", "CDP (30 it)")
ENVIRONMENTS = ("high_random", "low_random")


def _errors(mrp, m, support_kind, ref):
    from fixpoint_rl.envs.dcfp_envs import environment_support, global_support
    from fixpoint_rl.tabular.model_based import (
        categorical_dp,
        categorical_fixed_point,
        quantile_dp,
        sup_wasserstein1,
    )

    atoms = (global_support if support_kind == "global" else environment_support)(mrp, m)
    out = {
        "DCFP": sup_wasserstein1(atoms, categorical_fixed_point(mrp, atoms), ref.atoms, ref.probs),
        "CDP (30 it)": sup_wasserstein1(
            atoms, categorical_dp(mrp, atoms, iterations=30).final, ref.atoms, ref.probs
        ),
    }
    if support_kind == "global":  # QDP has no support; report it once per (m, γ)
        out["QDP"] = sup_wasserstein1(quantile_dp(mrp, m, tol=1e-8).final, None, ref.atoms, ref.probs)
    return out


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Errors vs m (γ = 0.9) and vs γ (m = 51), both supports, two environments."""
    from fixpoint_rl.envs.dcfp_envs import DCFP_ENVIRONMENTS
    from fixpoint_rl.tabular.model_based import high_resolution_reference

    ms = [5, 11, 21, 51] if quick else [5, 11, 21, 51, 101, 201]
    gammas = [0.5, 0.8, 0.9] if quick else [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
    m_fine = 501 if quick else 2001
    rows = []
    for env_name in ENVIRONMENTS:
        make = DCFP_ENVIRONMENTS[env_name]
        kwargs = {"seed": seed} if env_name in ("high_random", "low_random") else {}
        mrp = make(gamma=0.9, **kwargs)
        ref = high_resolution_reference(mrp, m_fine)
        for m in ms:
            for kind in ("global", "environment"):
                for algorithm, error in _errors(mrp, m, kind, ref).items():
                    rows.append(dict(environment=env_name, sweep="m", m=m, gamma=0.9, support=kind,
                                     algorithm=algorithm, error=error))
        for gamma in gammas:
            mrp = make(gamma=gamma, **kwargs)
            ref = high_resolution_reference(mrp, m_fine)
            for kind in ("global", "environment"):
                for algorithm, error in _errors(mrp, 51, kind, ref).items():
                    rows.append(dict(environment=env_name, sweep="gamma", m=51, gamma=gamma,
                                     support=kind, algorithm=algorithm, error=error))
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(7.2, 5.2))
    styles = {"high_random": "-", "low_random": "--"}
    for col, kind in enumerate(("global", "environment")):
        for row, (sweep, xcol) in enumerate((("m", "m"), ("gamma", "gamma"))):
            axis = axes[row, col]
            for index, algorithm in enumerate(ALGORITHMS):
                for env, style in styles.items():
                    support = "global" if algorithm == "QDP" else kind  # QDP needs no support
                    part = data[(data.sweep == sweep) & (data.algorithm == algorithm)
                                & (data.environment == env) & (data.support == support)]
                    axis.plot(part[xcol], part.error, style, marker="o", ms=3, color=color(index),
                              label=f"{algorithm}, {env}")
            axis.set_yscale("log")
            if sweep == "m":
                axis.set_xscale("log")
                axis.set_xticks(sorted(data[data.sweep == "m"].m.unique()))
                axis.set_xticklabels([str(v) for v in sorted(data[data.sweep == "m"].m.unique())])
                axis.minorticks_off()
                axis.set_xlabel("atoms m (γ = 0.9)")
            else:
                axis.set_xlabel("discount γ (m = 51)")
            axis.set_title(f"{kind} support")
        axes[0, 0].set_ylabel("sup_x W1 to reference")
        axes[1, 0].set_ylabel("sup_x W1 to reference")
    axes[0, 1].legend(fontsize=6, loc="upper right")
    figure.suptitle("Exact model: error vs atoms and vs γ (QDP needs no support)", fontsize=10)
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
