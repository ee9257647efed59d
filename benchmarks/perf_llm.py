"""``fixpoint perf llm``: one verifiable-reward RL step of our loop vs ``trl.GRPOTrainer``.

Same model (a from-config Llama preset, same initial weights), same prompts (2-digit addition),
same group size n, same completion cap, same reward (the task's verifier), GRPO advantages on both
sides, AdamW, no KL term, one thread. One step = sample n completions for each of G prompts +
score + advantages + one optimiser update.

  * ours: ``fixpoint_rl.deep.llm.train_rl.rl_step`` (our KV-cache sampler, one forward/backward
    of the sampled sequences), timed with ``_perf_common.time_call`` (median of ≥ 5 steps after a
    warm-up step);
  * TRL: ``GRPOTrainer.train`` for warm-up + ≥ 5 steps; each step's wall time is taken by a
    ``TrainerCallback`` (``on_step_begin`` → ``on_step_end``; generation happens inside the step
    because ``steps_per_generation`` = 1), median over the steps after the first.

Goal row: ``time_ratio`` = our CPU seconds per step / TRL's (< 1: ours faster), goal ≤ 0.5;
``speedup_x`` = TRL / ours; ``wall_ratio`` the same with wall-clock medians. The goal is judged on
process CPU time: both sides run one torch thread, so on an idle machine CPU time per step is the
wall time, while on a shared machine the wall time mostly measures the other processes
(``load_1m`` is recorded). TRL's step also computes entropies and logs metrics: that trainer
overhead is what the goal measures at these model sizes.
"""

from __future__ import annotations

import os
import statistics

import pandas as pd

from ._perf_common import load_1m, time_call
from ._runner import BenchConfig

GOAL_RATIO = 0.5


def _setup(model_preset: str, prompts: int, n: int, seed: int):
    import torch

    from fixpoint_rl.deep.llm.models import build_lm
    from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer
    from fixpoint_rl.deep.llm.train_rl import RLConfig, RLState, build_task

    config = RLConfig(algorithm="grpo", model=model_preset, prompts_per_step=prompts, group_size=n,
                      n_train=2200, n_test=300, max_operand=50, lr=3e-4, grad_clip=1.0)
    task = build_task(config, seed)
    tokenizer = build_char_tokenizer()
    model = build_lm(model_preset, len(tokenizer), seed)
    model.train()
    state = RLState(model=model, reference=model, tokenizer=tokenizer, task=task,
                    optimizer=torch.optim.AdamW(model.parameters(), lr=config.lr),
                    data_generator=torch.Generator().manual_seed(seed),
                    sample_generator=torch.Generator().manual_seed(seed + 1))
    return config, state


def _time_ours(model_preset, prompts, n, seed, repeats):
    from fixpoint_rl.deep.llm.train_rl import rl_step

    config, state = _setup(model_preset, prompts, n, seed)
    return time_call(lambda: rl_step(config, state), repeats=repeats)


def _time_trl(model_preset, prompts, n, seed, repeats):
    from fixpoint_rl.deep.llm.models import build_lm
    from fixpoint_rl.deep.llm.trl_adapter import grpo_trainer_step_seconds

    config, state = _setup(model_preset, prompts, n, seed)
    task = state.task
    answers = {e.prompt: e for e in task.train}

    def reward(prompts, completions, **kwargs):
        return [float(task.verify(answers[p], c)) for p, c in zip(prompts, completions)]

    model = build_lm(model_preset, len(state.tokenizer), seed)
    times = grpo_trainer_step_seconds(model, state.tokenizer, [e.prompt for e in task.train], reward,
                                      prompts_per_step=prompts, group_size=n,
                                      max_completion_length=task.max_new_tokens, steps=repeats + 1,
                                      learning_rate=config.lr, seed=seed)
    walls = [wall for wall, _ in times[1:]]  # the first step is the warm-up
    cpus = [cpu for _, cpu in times[1:]]
    return statistics.median(walls), statistics.median(cpus), min(walls), max(walls), len(walls)


def run(config: BenchConfig) -> pd.DataFrame:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    model_presets = config.pick(("nano",), ("nano", "micro"), ("nano", "micro", "small"))
    prompts, n = config.pick((4, 4), (16, 8), (16, 8))
    repeats = 5
    rows = []
    for preset in model_presets:
        ours = _time_ours(preset, prompts, n, config.seed, repeats)
        trl_median, trl_cpu, trl_min, trl_max, trl_steps = _time_trl(preset, prompts, n, config.seed, repeats)
        ratio = ours.cpu_s / trl_cpu
        wall_ratio = ours.wall_s / trl_median
        problem = f"{preset} LM, addition 2-digit, G={prompts} prompts × n={n}"
        rows.append(dict(algorithm="ours: rl_step (GRPO advantages)", problem=problem,
                         claim=f"our step ≤ {GOAL_RATIO}× TRL GRPOTrainer's step", holds=bool(ratio <= GOAL_RATIO),
                         seconds_per_step=ours.wall_s, cpu_s=ours.cpu_s, spread=ours.spread, repeats=ours.repeats,
                         time_ratio=ratio, speedup_x=1.0 / ratio, wall_ratio=wall_ratio, load_1m=load_1m()))
        rows.append(dict(algorithm="trl.GRPOTrainer", problem=problem, claim=None, holds=None,
                         seconds_per_step=trl_median, cpu_s=trl_cpu, spread=trl_max / trl_min,
                         repeats=trl_steps, time_ratio=1.0, speedup_x=1.0, wall_ratio=1.0, load_1m=load_1m()))
    return pd.DataFrame(rows)
