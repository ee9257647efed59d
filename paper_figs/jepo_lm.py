"""JEPO on multi-operand sums with a scratchpad (Tang, Wang, Madaan & Munos, "Learning to
chain-of-thought with Jensen's evidence lower bound", arXiv 2503.19618).

Prompts ``3+5+7=``; a completion is a scratchpad of running sums (the chain of thought c, through
the last ``>``) and the final answer. A Llama LM (``micro``; ``nano`` in ``--quick``) is
warm-started by SFT on the full targets and stopped early, then trained with n = 4 samples per
prompt by:
  * JEPO, multi-sample bound L⁽⁴⁾ (eq. 6–7) and single-sample Jensen bound L⁽¹⁾ (eq. 3–5): only
    the ground-truth answer a* is used (teacher-forced after each sampled scratchpad), no verifier;
  * RL with the verifier (RLOO on exact match of the final answer);
  * SFT on the answer: the likelihood term of JEPO alone (the CoT is sampled but not trained).
All arms of a seed share the warm start, the prompts and the sampler seeds. Plotted on held-out
prompts (16 samples each): the bound estimates L⁽¹⁾ and L⁽¹⁶⁾ of log π(a*|x) and pass@1.
"""

from __future__ import annotations

import pandas as pd

from _common import color, figure_main, sweep_seeds

ARMS = {
    "JEPO, multi-sample": dict(algorithm="jepo", jepo_bound="multi"),
    "JEPO, single-sample": dict(algorithm="jepo", jepo_bound="single"),
    "RL with verifier (RLOO)": dict(algorithm="rloo"),
    "SFT on the answer": dict(algorithm="jepo", jepo_cot_coef=0.0),
}
SEEDS_QUICK, SEEDS_FULL = 2, 5
UNCERTAINTY = lambda quick: (
    f"Lines: mean over {SEEDS_QUICK if quick else SEEDS_FULL} seeds (shared warm start per seed); "
    "bands ± one standard error over seeds. Claim: per-seed difference at the last step, 95 % Student-t interval."
)


def base_config(quick: bool):
    from fixpoint_rl.deep.llm.train_rl import RLConfig

    if quick:
        return RLConfig(algorithm="jepo", task="multi_operand_sum", n_operands=3, n_digits=1, n_train=600, n_test=32,
                        model="nano", sft_steps=60, sft_batch_size=64, steps=10, prompts_per_step=8, group_size=4,
                        lr=3e-4, eval_every=5, eval_prompts=32, eval_samples=4, eval_ks=(1, 4))
    return RLConfig(algorithm="jepo", task="multi_operand_sum", n_operands=3, n_digits=1, n_train=700, n_test=200,
                    model="micro", sft_steps=60, sft_batch_size=128, steps=150, prompts_per_step=16, group_size=4,
                    lr=3e-4, eval_every=25, eval_prompts=200, eval_samples=16, eval_ks=(1, 4, 16))


def run_seed(cell: dict) -> list[dict]:
    import torch

    from fixpoint_rl.deep.llm.train_rl import compare_arms

    torch.set_num_threads(1)
    return compare_arms(base_config(cell["quick"]), ARMS, cell["seed"])


def compute(quick: bool, seed: int) -> pd.DataFrame:
    """Held-out bounds and pass@1 along training, per arm and seed (long format)."""
    return sweep_seeds(run_seed, range(seed, seed + (SEEDS_QUICK if quick else SEEDS_FULL)), quick)


def plot(data: pd.DataFrame):
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy import stats as scipy_stats

    bound_n = sorted((m for m in set(data.metric) if m.startswith("test_bound_") and m != "test_bound_1"),
                     key=lambda m: int(m.rsplit("_", 1)[1]))[-1]
    metrics = ["test_bound_1", bound_n, "test_pass_at_1"]
    titles = ["held-out L⁽¹⁾ (Jensen)", f"held-out L⁽{bound_n.rsplit('_', 1)[1]}⁾", "held-out pass@1"]
    figure, axes = plt.subplots(1, 3, figsize=(10.0, 2.9))
    for axis, metric, title in zip(axes, metrics, titles):
        for index, arm in enumerate(ARMS):
            stats = data[(data.metric == metric) & (data.arm == arm)].groupby("step").value.agg(["mean", "sem"])
            axis.plot(stats.index, stats["mean"], color=color(index), label=arm)
            axis.fill_between(stats.index, stats["mean"] - stats["sem"].fillna(0), stats["mean"] + stats["sem"].fillna(0),
                              color=color(index), alpha=0.15, lw=0)
        axis.set_title(title)
        axis.set_xlabel("RL step")
    last = data[(data.metric == bound_n) & (data.step == data.step.max())].pivot_table(index="seed", columns="arm",
                                                                                       values="value")
    difference = (last["JEPO, multi-sample"] - last["RL with verifier (RLOO)"]).to_numpy()
    n = difference.size
    half = scipy_stats.t.ppf(0.975, n - 1) * difference.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    figure.suptitle(f"held-out {titles[1].split()[1]}: JEPO-multi − RL = {difference.mean():+.3f} ± {half:.3f} "
                    f"({n} seeds, 95 % t)", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.tight_layout()
    figure.legend(handles, labels, loc="upper center", ncol=4, bbox_to_anchor=(0.5, 0.02))
    return figure


if __name__ == "__main__":
    import sys

    # default mode is the full study (seeds through the sweep runner); --full is accepted as its name
    figure_main(__file__, compute, plot, argv=[a for a in sys.argv[1:] if a != "--full"])
