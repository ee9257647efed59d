"""NLHF Theorem 1 in pictures: KL(π*_τ‖π_t) and exploitability against t for every algorithm.

Games: intransitive dice (μ = (.5, .3, .2)) and a random K = 100 game (random μ), τ = 0.1.
Top row: KL(π*_τ‖π_t) on log–log axes with Theorem 1's bound 8/(τ²(t+1)) for Nash-MD's
η_t = 2/(τ(t+2)) schedule. Bottom row: the τ-regularised exploitability. One-shot baselines (best
response to μ, RLHF with a Bradley–Terry reward) are horizontal lines. KL values below 1e-16
(round-off) are drawn at 1e-16.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import color, figure_main

# What the bands / error bars are, over how many seeds (printed under the figure).
UNCERTAINTY = "No bands: exact payoffs, deterministic runs; 'Nash-MD sampled (n = 100)' is one seeded run (seed --seed)."

TAU = 0.1
FLOOR = 1e-16


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """KL and exploitability per checkpoint for every NLHF algorithm on dice and a random K=100 game."""
    from fixpoint_rl.envs import dice, random_game
    from fixpoint_rl.tabular import (
        best_response_to_reference,
        fictitious_play,
        nash_md,
        nash_md_pg,
        nash_mirror_prox,
        online_mirror_descent,
        regularized_nash_equilibrium,
        rlhf_bradley_terry,
        self_play_md,
    )

    tau, eta = TAU, 0.5 / TAU
    games = [("dice", dice(ref=[0.5, 0.3, 0.2])), ("random K=100", random_game(100, seed=seed, ref="dirichlet"))]
    frames = []
    for problem, game in games:
        iterations = (300 if quick else 20_000) if game.n_actions <= 10 else (200 if quick else 5_000)
        star = regularized_nash_equilibrium(game, tau)
        common = dict(reference=star, checkpoints=25 if quick else 60)
        k = game.n_actions
        runs = {
            "Nash-MD (η_t = 2/(τ(t+2)))": nash_md(game, tau, iterations, **common),
            "Nash-MD (ητ = ½)": nash_md(game, tau, iterations, eta=eta, schedule="constant", **common),
            "Nash-MD sampled (n = 100)": nash_md(game, tau, iterations, n_samples=100, seed=seed, **common),
            "self-play MD (ητ = ½)": self_play_md(game, tau, iterations, eta=eta, **common),
            "Nash-MP (η = 1)": nash_mirror_prox(game, tau, min(iterations, 400), eta=1.0, **common),
            "OMD (ητ = ½)": online_mirror_descent(game, tau, iterations, eta=eta, **common),
            "Nash-MD-PG (β = 0)": nash_md_pg(game, tau, iterations, learning_rate=0.5 * k, **common),
            "Nash-MD-PG (β = ½)": nash_md_pg(game, tau, iterations, learning_rate=0.5 * k, mixture=0.5, **common),
        }
        fp = fictitious_play(game, tau, iterations, **common)
        for name, result in runs.items():
            frames.append(_long(problem, name, result.metric("iteration"), result.metric("kl"),
                                result.metric("exploitability")))
        frames.append(_long(problem, "fictitious play (last)", fp.metric("iteration"), fp.metric("kl"),
                            fp.metric("exploitability")))
        frames.append(_long(problem, "fictitious play (average)", fp.metric("iteration"),
                            fp.metric("kl_average"), fp.metric("exploitability_average")))
        for name, result in (("best response to μ", best_response_to_reference(game, tau, reference=star)),
                             ("RLHF-BT", rlhf_bradley_terry(game, tau, reference=star))):
            t = np.array([1, iterations])
            frames.append(_long(problem, name, t, np.repeat(result.last("kl"), 2),
                                np.repeat(result.last("exploitability"), 2)))
        t = np.unique(np.geomspace(1, iterations, 50).round())
        frames.append(_long(problem, "bound 8/(τ²(t+1))", t, 8 / (tau**2 * (t + 1)), np.full(t.shape, np.nan)))
    return pd.concat(frames, ignore_index=True)


def _long(problem, algorithm, iteration, kl, gap):
    return pd.DataFrame({"problem": problem, "algorithm": algorithm, "iteration": np.asarray(iteration, float),
                         "kl": np.asarray(kl, float), "exploitability": np.asarray(gap, float)})


# One distinct (colour, line style, marker) per algorithm: the Nash-MD family in blue, the
# self-play / mirror-descent family in green and vermillion, policy gradient in sky blue, fictitious
# play in wine, one-shot baselines in black / grey. Self-play MD and OMD coincide on these games, so
# self-play is drawn with markers on top of OMD's dashed line.
STYLES = {
    "Nash-MD (η_t = 2/(τ(t+2)))": ("#0072B2", "-", None, 2.4),
    "Nash-MD (ητ = ½)": ("#0072B2", "--", None, 1.2),
    "Nash-MD sampled (n = 100)": ("#0072B2", ":", None, 1.4),
    "self-play MD (ητ = ½)": ("#009E73", "-", "o", 1.2),
    "OMD (ητ = ½)": ("#D55E00", "--", None, 1.6),
    "Nash-MP (η = 1)": ("#CC79A7", "-", "s", 1.2),
    "Nash-MD-PG (β = 0)": ("#56B4E9", "-", None, 1.2),
    "Nash-MD-PG (β = ½)": ("#56B4E9", "--", None, 1.2),
    "fictitious play (last)": ("#882255", "-", None, 1.2),
    "fictitious play (average)": ("#882255", "--", None, 1.2),
    "best response to μ": ("#000000", "-.", None, 1.0),
    "RLHF-BT": ("#888888", "-.", None, 1.0),
}
KL_LABEL = r"KL($\pi^*_\tau \,\|\, \pi_t$)"


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(data["problem"]))
    algorithms = [a for a in dict.fromkeys(data["algorithm"]) if not a.startswith("bound")]
    fig, axes = plt.subplots(2, len(problems), figsize=(5.2 * len(problems), 7.0), sharex="col")
    for col, problem in enumerate(problems):
        sub = data[(data["problem"] == problem) & (data["iteration"] > 0)]
        for row, metric in enumerate(("kl", "exploitability")):
            ax = axes[row, col]
            for index, algorithm in enumerate(algorithms):
                line = sub[sub["algorithm"] == algorithm]
                colour, style, marker, width = STYLES.get(algorithm, (color(index), "-", None, 1.2))
                label = algorithm.replace("η_t", r"$\eta_t$")  # no raw underscores
                if algorithm.startswith("self-play") and "OMD (ητ = ½)" in algorithms:
                    label += ", coincides with OMD"
                ax.plot(line["iteration"], np.maximum(line[metric], FLOOR), ls=style, color=colour,
                        marker=marker, ms=3.5, markevery=0.08, label=label, lw=width,
                        zorder=5 if index == 0 else 2)
            if metric == "kl":
                bound = sub[sub["algorithm"].str.startswith("bound")]
                ax.plot(bound["iteration"], bound["kl"], ":", color="black", lw=1.5,
                        label=r"Theorem 1 bound $8/(\tau^2(t+1))$")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(FLOOR / 2, None)
            ax.set_title(rf"{problem}, $\tau$ = {TAU}")
            ax.set_ylabel(KL_LABEL if metric == "kl" else r"exploitability ($\tau$-regularised)")
            if row == 1:
                ax.set_xlabel("iteration t")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, -0.1))
    fig.suptitle(r"NLHF algorithms: distance to $\pi^*_\tau$; Theorem 1 bounds Nash-MD's last "
                 r"iterate by $8/(\tau^2(t+1))$ (values below 1e-16 drawn at 1e-16)")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure_main(__file__, compute, plot)
