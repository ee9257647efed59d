"""pass@1 and pass@k of a small transformer trained by RL on 2-digit addition (Tang, Zheng,
Synnaeve & Munos, "Optimizing language models for inference-time objectives using reinforcement
learning", ICML 2025, arXiv 2503.19595).

A Llama LM built from config (``micro``: d 128, 2 layers; ``nano`` in ``--quick``) is warm-started
by SFT on ``a+b=`` → ``a+b`` (operands < 50) and stopped early (held-out pass@1 ≈ 0.1), then
trained by RL with the verifier's 0/1 reward, n = 8 samples per prompt, for the same number of
steps with five advantages: mean-PG (RLOO), GRPO (TRL's group-normalised advantage),
pass@8 leave-one-out, the centred pass@8 variant and maj@8 leave-one-out. All arms of a seed start
from the same warm start and share the prompts and sampler seeds. Held-out pass@1 / pass@8 / maj@8:
unbiased estimators from 16 samples per held-out prompt.

Claims (judged per seed at the last step, reported with the mean difference and a 95 % Student-t
interval over seeds): pass@8-LOO training ends with a higher pass@8 than mean-PG; mean-PG ends with
a higher pass@1 than pass@8-LOO (the paper's trade-off).
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from _common import color, figure_main, sweep_seeds

ARMS = {
    "mean-PG (RLOO)": dict(algorithm="rloo"),
    "GRPO": dict(algorithm="grpo"),
    "pass@8 LOO": dict(algorithm="passk"),
    "pass@8 LOO, centred": dict(algorithm="passk", centered=True),
    "maj@8 LOO": dict(algorithm="majk"),
}
SEEDS_QUICK, SEEDS_FULL = 2, 5

UNCERTAINTY = lambda quick: (
    f"Lines: mean over {SEEDS_QUICK if quick else SEEDS_FULL} seeds (each seed: its own warm start, shared by "
    "the five arms); bands ± one standard error over seeds. Claims: mean per-seed difference with a "
    "95 % Student-t interval."
)


def base_config(quick: bool):
    from fixpoint_rl.deep.llm.train_rl import RLConfig

    if quick:
        # a smoke-size run (nano LM, 16 RL steps): it checks the pipeline, not the claim
        return RLConfig(algorithm="rloo", task="addition", n_digits=2, max_operand=50, n_train=2000, n_test=64,
                        model="nano", sft_steps=100, sft_batch_size=64, steps=16, prompts_per_step=8,
                        group_size=8, lr=3e-4, eval_every=8, eval_prompts=64, eval_samples=8, eval_ks=(1, 8))
    return RLConfig(algorithm="rloo", task="addition", n_digits=2, max_operand=50, n_train=2200, n_test=300,
                    model="micro", sft_steps=150, sft_batch_size=128, sft_lr=2e-3, steps=150,
                    prompts_per_step=16, group_size=8, lr=3e-4, eval_every=25, eval_prompts=300,
                    eval_samples=16, eval_ks=(1, 8))


def run_seed(cell: dict) -> list[dict]:
    """All arms for one seed (a sweep cell)."""
    import torch

    from fixpoint_rl.deep.llm.train_rl import compare_arms

    torch.set_num_threads(1)
    return compare_arms(base_config(cell["quick"]), ARMS, cell["seed"])


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Held-out pass@1 / pass@8 / maj@8 along RL for each arm and seed (long format)."""
    return sweep_seeds(run_seed, range(seed, seed + (SEEDS_QUICK if quick else SEEDS_FULL)), quick)


def paired_difference(data: pd.DataFrame, metric: str, first: str, second: str):
    """Per-seed last-step difference first − second: (mean, 95 % t half-width, n seeds)."""
    from scipy import stats

    last = data[(data.metric == metric) & (data.step == data.step.max())]
    table = last.pivot_table(index="seed", columns="arm", values="value")
    differences = (table[first] - table[second]).to_numpy()
    n = differences.size
    half = stats.t.ppf(0.975, n - 1) * differences.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    return float(differences.mean()), float(half), n


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt

    metrics = [m for m in ("test_pass_at_1", "test_pass_at_8", "test_maj_at_8") if m in set(data.metric)]
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 2.9))
    for axis, metric in zip(axes, metrics):
        for index, arm in enumerate(ARMS):
            part = data[(data.metric == metric) & (data.arm == arm)]
            stats = part.groupby("step").value.agg(["mean", "sem"])
            axis.plot(stats.index, stats["mean"], color=color(index), label=arm)
            axis.fill_between(stats.index, stats["mean"] - stats["sem"].fillna(0), stats["mean"] + stats["sem"].fillna(0),
                              color=color(index), alpha=0.15, lw=0)
        axis.set_title(metric.replace("test_", "held-out ").replace("_at_", "@"))
        axis.set_xlabel("RL step")
    gain, gain_half, n = paired_difference(data, "test_pass_at_8", "pass@8 LOO", "mean-PG (RLOO)")
    loss, loss_half, _ = paired_difference(data, "test_pass_at_1", "mean-PG (RLOO)", "pass@8 LOO")
    figure.suptitle(
        f"pass@8 (pass@8-LOO − mean-PG) = {gain:+.3f} ± {gain_half:.3f};  "
        f"pass@1 (mean-PG − pass@8-LOO) = {loss:+.3f} ± {loss_half:.3f}  ({n} seeds, 95 % t)", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.tight_layout()
    figure.legend(handles, labels, loc="upper center", ncol=5, bbox_to_anchor=(0.5, 0.02))
    return figure


if __name__ == "__main__":
    import sys

    # default mode is the full study (seeds through the sweep runner); --full is accepted as its name
    figure_main(__file__, compute, plot, argv=[a for a in sys.argv[1:] if a != "--full"])
