"""Per-sample gradient variance of TD-CFM, TD-CFM(C) and TD²-CFM against γ (TD-Flow,
Farebrother et al., ICML 2025, arXiv 2503.09817, Theorems 2–3), by Monte Carlo on fixed random
networks. Left and middle: a Garnet MDP (S = 4) embedded in ℝ⁴ with the exact smoothed successor
measure as the target field (Theorem 2's assumption holds exactly), straight and curved paths;
TD-CFM exceeds TD²-CFM by γ²C (dashed: γ²C fitted at γ = 0.99). Right: a 2-D target whose flow
moves along non-crossing straight interpolants (Theorem 3's equality case), where TD-CFM(C) and
TD²-CFM coincide."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

VARIANTS = ("td_cfm", "td_cfm_coupled", "td2_cfm")
LABELS = {"td_cfm": "TD-CFM", "td_cfm_coupled": "TD-CFM(C)", "td2_cfm": "TD²-CFM"}
UNCERTAINTY = lambda quick: (
    f"Error bars: ± s.e. over {1 if quick else 3} random network(s); each point is the Monte-Carlo "
    f"Tr Cov over {300 if quick else 2000} items (one data seed, common random numbers across γ).")


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Tr Cov of per-item gradients vs γ for the three TD variants, three settings."""
    import torch

    from fixpoint_rl.deep.ghm.analytic import AnalyticField, StraightGaussianField
    from fixpoint_rl.deep.ghm.paths import AffinePath
    from fixpoint_rl.deep.ghm.variance import per_sample_gradient_variance
    from fixpoint_rl.deep.ghm.vector_field import VectorField
    from fixpoint_rl.envs.ghm_tasks import garnet_embedding, rotation_system

    torch.set_num_threads(1)
    gammas = [0.8, 0.99] if quick else [0.5, 0.8, 0.9, 0.95, 0.98, 0.99]
    networks = 1 if quick else 3
    n = 300 if quick else 2000
    tensor = lambda a: torch.tensor(np.array(a), dtype=torch.float64)
    tabular = garnet_embedding(4, 2, gamma=0.9, seed=0, noise_std=0.1)
    system = rotation_system(2, gamma=0.9)
    F = torch.tensor(system.F)
    settings = {
        "straight path, exact target": (tabular, AnalyticField(tabular, "straight"), "straight", "midpoint"),
        "curved path, exact target": (tabular, AnalyticField(tabular, "curved"), "curved", "midpoint"),
        "straight non-crossing target": (system, StraightGaussianField(
            lambda c: c[:, :2] @ F.T, [[0.6, 0.2], [0.2, 0.4]]), "straight", "rk4"),
    }
    rows = []
    for setting, (problem, field, kind, method) in settings.items():
        data = problem.offline_dataset(n, seed=seed + 1)
        for net in range(networks):
            torch.manual_seed(seed * 1000 + net)
            model = VectorField(problem.dim, problem.cond_dim, (32, 32), 16).double()
            for gamma in gammas:
                for variant in VARIANTS:
                    result = per_sample_gradient_variance(
                        model, variant, cond=tensor(data.cond), next_state=tensor(data.next_state),
                        next_cond=tensor(data.next_cond), target_field=field, gamma=gamma,
                        path=AffinePath(kind), generator=torch.Generator().manual_seed(seed + 5),
                        ode_method=method)
                    rows.append(dict(setting=setting, network=net, gamma=gamma, variant=variant,
                                     trace_cov=result["trace_cov"], mean_norm=result["mean_norm"],
                                     items=n))
    return pd.DataFrame(rows)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(data.setting))
    figure, axes = plt.subplots(1, len(settings), figsize=(3.3 * len(settings), 2.9))
    for axis, setting in zip(np.atleast_1d(axes), settings):
        part = data[data.setting == setting]
        for index, variant in enumerate(VARIANTS):
            curve = part[part.variant == variant].groupby("gamma").trace_cov.agg(["mean", "sem"])
            axis.errorbar(curve.index, curve["mean"], yerr=curve["sem"].fillna(0), marker="o", ms=3,
                          capsize=2, color=color(index), label=LABELS[variant],
                          ls="--" if variant == "td_cfm_coupled" else "-")
        td = part[part.variant == "td_cfm"].groupby("gamma").trace_cov.mean()
        td2 = part[part.variant == "td2_cfm"].groupby("gamma").trace_cov.mean()
        gammas = np.array(td.index)
        C = (td - td2).iloc[-1] / gammas[-1] ** 2
        axis.plot(gammas, td2.values + C * gammas**2, color="gray", ls=":", lw=1,
                  label="TD²-CFM + γ²C (Thm 2)")
        axis.set_title(setting)
        axis.set_xlabel("γ")
    np.atleast_1d(axes)[0].set_ylabel("per-sample gradient variance Tr Cov(g)")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    networks = int(data.network.max()) + 1
    figure.suptitle(f"Gradient variance vs γ ({int(data['items'].iloc[0])} items per point; error bars: "
                    f"± s.e. over {networks} random network(s))", fontsize=10)
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    figure.legend(handles, labels, loc="lower center", ncol=4, frameon=False)
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
