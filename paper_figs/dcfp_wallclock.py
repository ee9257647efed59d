"""Error against wall-clock time (Rowland et al. 2024, §7): DCFP (one solve per m), CDP and QDP
(error after k iterations, timed) on the exact model of two study environments at γ = 0.95.
Error: sup_x W1 to a high-resolution reference. Times exclude Numba compilation."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from _common import color, figure_main

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = "No bands: exact models, one timing per point (wall-clock depends on the machine; Numba compilation excluded)."

ALGORITHMS = ("DCFP", "CDP", "QDP")


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """(time, error) points: DCFP over m; CDP / QDP over iteration budgets at fixed m."""
    from fixpoint_rl.envs.dcfp_envs import environment_support, high_random, two_state
    from fixpoint_rl.tabular.model_based import (
        categorical_dp,
        categorical_fixed_point,
        high_resolution_reference,
        quantile_dp,
        sup_wasserstein1,
    )

    gamma = 0.95
    envs = {"two_state": two_state(gamma=gamma), "high_random": high_random(gamma=gamma, seed=seed)}
    ms = [11, 21, 51, 101] if quick else [11, 21, 51, 101, 201, 401]
    m_iter = 51 if quick else 101
    budgets = [5, 20, 50, 100, 200] if quick else [5, 10, 20, 50, 100, 200, 400]
    rows = []
    for name, mrp in envs.items():
        ref = high_resolution_reference(mrp, 1001 if quick else 4001)
        atoms_warm = environment_support(mrp, 5)  # warm-up: compile kernels before timing
        categorical_fixed_point(mrp, atoms_warm)
        categorical_dp(mrp, atoms_warm, iterations=1)
        quantile_dp(mrp, 5, iterations=1)
        for m in ms:
            atoms = environment_support(mrp, m)
            walls = []
            for _ in range(3):  # best of 3: the machine is shared, the minimum is the cost
                start = time.perf_counter()
                probs = categorical_fixed_point(mrp, atoms)
                walls.append(time.perf_counter() - start)
            wall = min(walls)
            rows.append(dict(environment=name, algorithm="DCFP", m=m, iterations=1, time_s=wall,
                             error=sup_wasserstein1(atoms, probs, ref.atoms, ref.probs)))
        atoms = environment_support(mrp, m_iter)
        for k in budgets:
            runs = [categorical_dp(mrp, atoms, iterations=k) for _ in range(3)]
            res = runs[0]
            rows.append(dict(environment=name, algorithm="CDP", m=m_iter, iterations=k,
                             time_s=min(r.wall_time_s for r in runs),
                             error=sup_wasserstein1(atoms, res.final, ref.atoms, ref.probs)))
            runs = [quantile_dp(mrp, m_iter, iterations=k) for _ in range(3)]
            res = runs[0]
            rows.append(dict(environment=name, algorithm="QDP", m=m_iter, iterations=k,
                             time_s=min(r.wall_time_s for r in runs),
                             error=sup_wasserstein1(res.final, None, ref.atoms, ref.probs)))
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(data.environment))
    figure, axes = plt.subplots(1, len(envs), figsize=(3.4 * len(envs), 2.8), sharey=True)
    for axis, env in zip(np.atleast_1d(axes), envs):
        for index, algorithm in enumerate(ALGORITHMS):
            part = data[(data.environment == env) & (data.algorithm == algorithm)].sort_values(["m", "iterations"])
            label = "DCFP (over m)" if algorithm == "DCFP" else f"{algorithm} (m={part.m.iloc[0]}, over iterations)"
            axis.plot(part.time_s, part.error, marker="o", ms=3, color=color(index), label=label)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("wall-clock seconds")
        axis.set_title(env)
    np.atleast_1d(axes)[0].set_ylabel("sup_x W1 to reference")
    np.atleast_1d(axes)[0].legend(loc="lower left")
    figure.suptitle("Error vs wall-clock time (exact model, γ = 0.95)", fontsize=10)
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
