"""Two-state MRP (γ = 0.9, r = (1, 0)): the categorical fixed-point CDF F = T_P F (DCFP) with five
independent realisations of the stochastic categorical CDF Bellman equation around it (Rowland
et al. 2024, arXiv 2402.07598, Fig. 2 and Eq. 16). Their mean is F."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = lambda quick: f"No bands: five individual sampled CDFs; their mean over {500 if quick else 5000} samples is checked against F."


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Fixed-point CDF, five sampled CDFs, and the mean of many samples, per state."""
    from fixpoint_rl.envs.dcfp_envs import global_support, two_state
    from fixpoint_rl.tabular.model_based import categorical_fixed_point, sample_stochastic_cdf_bellman

    mrp = two_state()
    atoms = global_support(mrp, 51 if quick else 201)
    F = np.cumsum(categorical_fixed_point(mrp, atoms), axis=1)
    samples = sample_stochastic_cdf_bellman(mrp, atoms, 5, seed=seed)
    many = sample_stochastic_cdf_bellman(mrp, atoms, 500 if quick else 5000, seed=seed + 1).mean(axis=1)
    rows = []
    for x in range(2):
        for i, z in enumerate(atoms):
            rows.append(dict(state=x, curve="fixed point", z=z, cdf=F[x, i]))
            rows.append(dict(state=x, curve="sample mean", z=z, cdf=many[x, i]))
            for k in range(5):
                rows.append(dict(state=x, curve=f"sample {k}", z=z, cdf=samples[x, k, i]))
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(7.0, 2.8), sharey=True)
    for x, axis in enumerate(axes):
        part = data[data.state == x]
        for k in range(5):
            curve = part[part.curve == f"sample {k}"]
            axis.step(curve.z, curve.cdf, where="post", color=color(k + 1), alpha=0.6, lw=1,
                      label="sampled CDFs (Eq. 16)" if k == 0 else None)
        curve = part[part.curve == "fixed point"]
        axis.step(curve.z, curve.cdf, where="post", color="black", lw=2, label="fixed point F = T_P F")
        curve = part[part.curve == "sample mean"]
        axis.plot(curve.z, curve.cdf, ":", color=color(0), lw=1.5, label="mean of many samples")
        axis.set_title(f"state x{x} (r = {1 - x})")
        axis.set_xlabel("return z")
    axes[0].set_ylabel("CDF")
    axes[0].legend(loc="lower right")
    figure.suptitle("Stochastic categorical CDF Bellman equation, two-state MRP (γ = 0.9)", fontsize=10)
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
