"""GPO regularisation on a language model (Tang et al., ICML 2024, arXiv 2402.05749, §4 and §5).

Offline GPO losses f(β·ρ) — logistic (DPO), squared (IPO), hinge (SLiC), exponential, truncated
quadratic, Savage — trained on ONE fixed offline dataset per seed, over a β grid. The LM is the
``nano`` Llama (float64) on a two-token enumerable preference task: X = 2 prompts, responses are
the N = 9 strings of length 2 over ``abc``, the golden judge a random partly intransitive
preference game (``envs.preference.random_contextual_game``, kind ``mixture``). π_ref is the LM at
initialisation; the dataset is 192 pairs drawn from π_ref × π_ref and labelled by the golden P
(about 1.2 comparisons per ordered pair of a prompt: noisy labels). Every response is enumerated,
so KL(π‖π_ref) and the golden win rate P(π ≻ π_ref) are EXACT. Each LM is trained to convergence
(``deep.llm.gpo.fit_offline_gpo``: full-batch L-BFGS on the exact empirical loss).

Left: the regularisation frontier, golden win rate against KL, one point per β (LM).
Middle: KL(π‖π_ref) against β per loss (LM), with the tabular optimum of the same empirical loss
(``tabular.gpo.solve_gpo`` on the same pair weights and the same π_ref) as dashed reference curves.
Right: β_kind/β_squared at equal KL (``deep.llm.gpo.beta_ratio_at_equal_kl``: log-log
interpolation of each KL(β) curve), LM (solid) and tabular (dashed), against the second-order
Taylor prediction r_squared/r_kind with r = f″(0)/|f′(0)| (``taylor_beta_ratio``; dotted): 2 for
logistic and Savage, 1 for exponential and truncated quadratic, ∞ for the hinge.

Measured (``--seed 0``, 3 seeds × 9 β): the frontiers of the six losses coincide within the seed
spread, and the golden win rate still rises at the largest KL (no over-fitting turn at 192 pairs);
the β ratios at equal KL are nearly constant in KL, LM = tabular to 1e-12 in KL for every smooth
loss: logistic ≈ 2.4, Savage ≈ 2.9, exponential ≈ 1.2, truncated quadratic ≈ 1.0 (Taylor: 2, 2,
1, 1). The hinge's loss is piecewise linear with a β-free, non-unique minimiser that neither
L-BFGS nor the tabular solver reaches exactly, so its KL(β) (and ratio) is solver-dependent.

Why the prediction is only approximate here: substituting σ = βρ removes β from the empirical
loss, so the optimum is π ∝ π_ref·exp(v*/β) with β-free margins v* (for logistic, the
Bradley–Terry fit); the measured ratio is therefore close to constant in KL, and it equals the
Taylor value only when the fitted margins σ* are small (preferences near ½).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from _common import color, figure_main
from fixpoint_rl.tabular.core.preference_losses import GPO_KINDS

CONTEXTS, RESPONSE_CHARS, LENGTH, PAIRS = 2, "abc", 2, 192
KINDS_QUICK = ("squared", "logistic", "exponential")
BETAS_QUICK = tuple(np.geomspace(0.1, 10.0, 4))
BETAS_FULL = tuple(np.geomspace(0.1, 10.0, 9))
SEEDS_QUICK, SEEDS_FULL = 1, 3
KL_LEVELS = 5  # equal-KL levels per kind, log-spaced inside the range every curve covers

UNCERTAINTY = lambda quick: (
    f"KL and win rates are EXACT for each trained LM (responses enumerated). Spread is over "
    f"{SEEDS_QUICK if quick else SEEDS_FULL} seed(s) (each: LM initialisation = π_ref and the "
    f"{PAIRS}-pair dataset): lines = mean, bands / error bars = [min, max] over seeds."
)


def build_task(seed: int):
    """The two-token enumerable preference task of the figure (golden P seeded by ``seed``)."""
    from fixpoint_rl.deep.llm.tasks import enumerable_task
    from fixpoint_rl.envs.preference import random_contextual_game

    N = len(RESPONSE_CHARS) ** LENGTH
    game = random_contextual_game(CONTEXTS, N, seed=seed, kind="mixture")
    return enumerable_task([f"x{x}:" for x in range(CONTEXTS)], RESPONSE_CHARS, LENGTH, pref=game.pref,
                           name="gpo_lm_random_mixture")


def _seed_runs(task, run_seed: int, kinds, betas) -> list[dict]:
    """Every (kind, β) of one seed: the converged LM and the tabular optimum, same data."""
    import torch

    from fixpoint_rl.deep.llm.gpo import enumerate_policy, fit_offline_gpo
    from fixpoint_rl.deep.llm.models import build_lm
    from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer
    from fixpoint_rl.tabular.core.mirror import kl_divergence
    from fixpoint_rl.tabular.gpo import empirical_pair_weights, sample_preference_dataset, solve_gpo

    tokenizer = build_char_tokenizer()
    reference = build_lm("nano", len(tokenizer), run_seed, dtype="float64").requires_grad_(False)
    with torch.no_grad():
        ref = enumerate_policy(reference, task, tokenizer).exp().numpy()
    ref /= ref.sum(-1, keepdims=True)
    pref, nu = np.asarray(task.pref), task.context_weights
    dataset = sample_preference_dataset(pref, ref, PAIRS, np.random.default_rng([run_seed, 0xDA7A]))
    weights = empirical_pair_weights(*dataset, task.n_contexts, task.n_responses)

    def exact(policy):
        return (float(nu @ kl_divergence(policy, ref)),
                float(nu @ np.einsum("xi,xij,xj->x", policy, pref, ref)))

    rows = []
    for kind in kinds:
        for beta in betas:
            start = time.process_time()
            model = build_lm("nano", len(tokenizer), run_seed, dtype="float64")
            fit = fit_offline_gpo(model, reference, task, tokenizer, weights, beta=float(beta), kind=kind)
            cpu_s = time.process_time() - start
            tabular = solve_gpo(ref, weights, float(beta), kind, max_iterations=2000 if kind == "hinge" else 200)
            gap = float(nu @ kl_divergence(tabular.final, fit.policy))
            for source, policy, extra in (
                ("LM", fit.policy, dict(loss=fit.loss, converged=fit.converged, iterations=fit.iterations,
                                        gradient_norm=fit.gradient_norm, cpu_s=cpu_s, kl_tabular_to_lm=gap)),
                ("tabular", tabular.final, dict(loss=tabular.last("loss"), converged=tabular.extras["converged"],
                                                iterations=len(tabular.metric("loss")) - 1,
                                                gradient_norm=tabular.extras["gradient_norm"])),
            ):
                kl, win = exact(policy)
                rows.append({"panel": "run", "kind": kind, "beta": float(beta), "source": source, "kl": kl,
                             "win_rate": win, **extra})
    return rows


def _ratios(runs: pd.DataFrame) -> list[dict]:
    """β_kind/β_squared at KL_LEVELS equal-KL levels per kind, per seed and source, plus Taylor."""
    from fixpoint_rl.deep.llm.gpo import beta_ratio_at_equal_kl, taylor_beta_ratio

    rows = []
    for kind in runs.kind.unique():
        if kind == "squared":
            continue
        curves = runs[runs.kind.isin([kind, "squared"])]
        spans = curves.groupby(["seed", "source", "kind"]).kl.agg(["min", "max"])
        low, high = spans["min"].max(), spans["max"].min()
        if not low < high:
            continue  # the curves share no KL range: no ratio at equal KL
        levels = np.geomspace(low, high, KL_LEVELS + 2)[1:-1]
        for (seed, source), group in curves.groupby(["seed", "source"]):
            a = group[group.kind == kind].sort_values("beta")
            b = group[group.kind == "squared"].sort_values("beta")
            try:
                ratio = beta_ratio_at_equal_kl(a.beta, a.kl, b.beta, b.kl, levels)
            except ValueError:  # a curve not strictly decreasing (the hinge's optimum is not unique)
                ratio = np.full(levels.shape, np.nan)
            rows += [{"panel": "ratio", "kind": kind, "seed": seed, "source": source, "kl": level, "ratio": r}
                     for level, r in zip(levels, ratio)]
        rows += [{"panel": "ratio", "kind": kind, "seed": -1, "source": "Taylor", "kl": level,
                  "ratio": taylor_beta_ratio(kind)} for level in levels]
    return rows


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Converged offline GPO LMs over kinds × β × seeds; tabular optima; β ratios at equal KL."""
    import torch

    torch.set_num_threads(1)
    task = build_task(seed)
    kinds = KINDS_QUICK if quick else GPO_KINDS
    betas = BETAS_QUICK if quick else BETAS_FULL
    rows = []
    for s in range(SEEDS_QUICK if quick else SEEDS_FULL):
        rows += [{**row, "seed": s} for row in _seed_runs(task, 1000 * seed + s, kinds, betas)]
    runs = pd.DataFrame(rows)
    data = pd.concat([runs, pd.DataFrame(_ratios(runs))], ignore_index=True)
    _print_table(data)
    return data


def _print_table(data: pd.DataFrame) -> None:
    runs = data[(data.panel == "run") & (data.source == "LM")]
    print(f"LM runs: {len(runs)}, not converged: {int((~runs.converged.astype(bool)).sum())}, "
          f"max KL(tabular‖LM) = {runs.kl_tabular_to_lm.max():.3g} ({runs[runs.kind != 'hinge'].kl_tabular_to_lm.max():.3g} "
          f"without hinge), CPU {runs.cpu_s.sum():.0f} s")
    tabular = data[(data.panel == "run") & (data.source == "tabular")].set_index(["seed", "kind", "beta"])
    lm = runs.set_index(["seed", "kind", "beta"])
    excess = (lm.loss - tabular.loss).groupby("kind").max()
    print("max (LM loss − tabular loss) per kind: " + ", ".join(f"{k} {v:.2g}" for k, v in excess.items()))
    for kind, group in runs.groupby("kind", sort=False):
        mean = group.groupby("beta")[["kl", "win_rate"]].mean()
        best = mean.win_rate.idxmax()
        print(f"  {kind:20s} best mean win rate {mean.win_rate.max():.4f} at β = {best:.3g} (KL {mean.kl[best]:.3g}); "
              f"at the smallest β {mean.win_rate.iloc[0]:.4f} (KL {mean.kl.iloc[0]:.3g})")
    ratios = data[data.panel == "ratio"]
    print("β_kind/β_squared at equal KL: mean over KL levels, per seed [min, max over seeds]")
    for kind, group in ratios.groupby("kind", sort=False):
        cells = []
        for source in ("LM", "tabular"):
            per_seed = group[group.source == source].groupby("seed").ratio.mean()
            cells.append(f"{source} {per_seed.mean():.3f} [{per_seed.min():.3f}, {per_seed.max():.3f}]")
        taylor = group[group.source == "Taylor"].ratio.iloc[0]
        print(f"  {kind:20s} " + "  ".join(cells) + f"  Taylor {taylor:g}  (KL {group.kl.min():.3g}–{group.kl.max():.3g})")


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    runs = data[data.panel == "run"]
    kinds = [k for k in GPO_KINDS if k in set(runs.kind)]
    for index, kind in enumerate(kinds):
        lm = runs[(runs.kind == kind) & (runs.source == "LM")].groupby("beta")
        stats = lm.agg(kl=("kl", "mean"), kl_min=("kl", "min"), kl_max=("kl", "max"), win=("win_rate", "mean"),
                       win_min=("win_rate", "min"), win_max=("win_rate", "max")).reset_index()
        axes[0].errorbar(stats.kl, stats.win, xerr=[stats.kl - stats.kl_min, stats.kl_max - stats.kl],
                         yerr=[stats.win - stats.win_min, stats.win_max - stats.win], marker="o", markersize=3,
                         color=color(GPO_KINDS.index(kind)), label=kind, capsize=2, linewidth=1)
        axes[1].plot(stats.beta, stats.kl, marker="o", markersize=3, color=color(GPO_KINDS.index(kind)), label=f"{kind} (LM)")
        axes[1].fill_between(stats.beta, stats.kl_min, stats.kl_max, color=color(GPO_KINDS.index(kind)), alpha=0.2)
        tabular = runs[(runs.kind == kind) & (runs.source == "tabular")].groupby("beta").kl.mean()
        axes[1].plot(tabular.index, tabular.values, "--", color=color(GPO_KINDS.index(kind)), linewidth=1)
    axes[0].set(xscale="log", xlabel="KL(π‖π_ref) (exact)", ylabel="golden win rate vs π_ref (exact)",
                title="Regularisation frontier per loss (LM)")
    axes[0].legend()
    axes[1].plot([], [], "k--", linewidth=1, label="tabular optimum (dashed)")
    axes[1].set(xscale="log", yscale="log", xlabel="β", ylabel="KL(π‖π_ref)", title="KL vs β: LM and tabular")
    axes[1].legend(ncol=2)
    ratios = data[data.panel == "ratio"]
    for index, kind in enumerate(kinds):
        group = ratios[ratios.kind == kind]
        if group.empty:
            continue
        for source, style in (("LM", "-"), ("tabular", "--")):
            by_level = group[group.source == source].groupby("kl").ratio.agg(["mean", "min", "max"])
            axes[2].plot(by_level.index, by_level["mean"], style, marker="o" if source == "LM" else None,
                         markersize=3, color=color(GPO_KINDS.index(kind)), label=f"{kind} ({source})")
            if source == "LM":
                axes[2].fill_between(by_level.index, by_level["min"], by_level["max"], color=color(GPO_KINDS.index(kind)), alpha=0.2)
        taylor = group[group.source == "Taylor"].ratio.iloc[0]
        if np.isfinite(taylor):
            axes[2].axhline(taylor, color=color(GPO_KINDS.index(kind)), linestyle=":", linewidth=1)
    axes[2].plot([], [], "k:", linewidth=1, label="Taylor r_squared/r_kind")
    axes[2].set(xscale="log", xlabel="KL(π‖π_ref) level",
                ylabel="β_kind / β_squared at equal KL", title="β ratio to squared at equal KL")
    axes[2].legend(ncol=2)
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
