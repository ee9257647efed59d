"""pass@k, maj@k, RLOO and centred advantages inside Hugging Face TRL's ``GRPOTrainer``.

TRL 1.16 computes GRPO's group-normalised advantage inline in
``GRPOTrainer._generate_and_score_completions``; its maintainers point users who need another
advantage to subclassing the trainer and overriding that method (the loss accepts [B] or [B, T]
advantages). :class:`AdvantageGRPOTrainer` does exactly that: it records the rewards TRL computed
(``_calculate_rewards``, gathered over processes), lets TRL generate and score as usual, and then
replaces the ``advantages`` of the returned batch by ours from ``fixpoint_rl.tabular.core.advantages``:

  ``"pass_at_k"``      leave-one-out pass@k (Tang, Zheng, Synnaeve, Munos, ICML 2025, arXiv
                       2503.19595), or the unbiased k-subset estimator when k < num_generations
  ``"majority_vote"``  leave-one-out maj@k; answers come from ``answer_fn(completion)``
  ``"rloo"``           r_i − mean_{j≠i} r_j
  ``"grpo"``           TRL's own formula recomputed (a consistency check)
  ``centered=True``    subtract the group mean (biased, denser pass@k signal)

Advantages are multiplied by ``advantage_scale`` (default 1; TRL's losses average over tokens, so
only the direction matters up to the learning rate). Completions whose every reward function
returned ``None`` (NaN in TRL) get reward 0 here. Shapes: B = prompts × num_generations rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from trl import GRPOTrainer

from ...tabular.core.advantages import (
    group_normalized_advantages,
    leave_one_out_advantages,
    rloo_advantages,
    unbiased_pass_at_k_advantages,
)

__all__ = ["AdvantageGRPOTrainer", "TRL_ADVANTAGES", "grpo_trainer_step_seconds"]

TRL_ADVANTAGES = ("pass_at_k", "majority_vote", "rloo", "grpo")


class AdvantageGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` with the advantage replaced (see the module docstring).

    Args:
      *args, **kwargs: passed to ``GRPOTrainer``.
      advantage: one of :data:`TRL_ADVANTAGES`.
      k: k of pass@k (default: ``num_generations``).
      centered: centre the advantages within each group.
      answer_fn: completion -> hashable answer (required for ``"majority_vote"``).
      advantage_scale: factor applied to the advantages.
    """

    def __init__(
        self,
        *args: Any,
        advantage: str = "pass_at_k",
        k: int | None = None,
        centered: bool = False,
        answer_fn: Callable[[Any], Any] | None = None,
        advantage_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if advantage not in TRL_ADVANTAGES:
            raise ValueError(f"advantage must be one of {TRL_ADVANTAGES}, got {advantage!r}")
        if advantage == "majority_vote" and answer_fn is None:
            raise ValueError("answer_fn must be given for advantage='majority_vote', got None")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive int or None, got {k!r}")
        if isinstance(advantage_scale, bool) or not isinstance(advantage_scale, (int, float)) or not advantage_scale > 0:
            raise ValueError(f"advantage_scale must be a number > 0, got {advantage_scale!r}")
        super().__init__(*args, **kwargs)
        self.advantage = advantage
        self.k = k
        self.centered = bool(centered)
        self.answer_fn = answer_fn
        self.advantage_scale = float(advantage_scale)
        self._recorded: dict[str, Any] = {}

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._recorded = {"rewards_per_func": rewards_per_func, "completions": completions}
        return rewards_per_func

    def our_advantages(self, rewards: torch.Tensor, num_generations: int, completions: list | None = None) -> torch.Tensor:
        """Advantages [B] from rewards [B] (groups of ``num_generations`` consecutive rows)."""
        grouped = torch.nan_to_num(rewards.double(), nan=0.0).view(-1, num_generations)
        if self.advantage == "grpo":
            advantages = group_normalized_advantages(grouped, self.scale_rewards)
        elif self.advantage == "rloo":
            advantages = rloo_advantages(grouped)
        elif self.advantage == "pass_at_k":
            k = num_generations if self.k is None else min(self.k, num_generations)
            advantages = (leave_one_out_advantages(grouped, "pass_at_k") if k == num_generations
                          else unbiased_pass_at_k_advantages(grouped, k))
        else:
            labels = []
            for start in range(0, len(completions), num_generations):
                seen: dict[Any, int] = {}
                labels.append([seen.setdefault(_hashable(self.answer_fn(c)), len(seen))
                               for c in completions[start:start + num_generations]])
            answers = torch.tensor(labels, dtype=torch.long, device=grouped.device)
            # equal answers must carry equal rewards: use each answer's mean reward in the group
            same = (answers[:, :, None] == answers[:, None, :]).double()
            grouped = (same @ grouped[..., None]).squeeze(-1) / same.sum(-1)
            advantages = leave_one_out_advantages(grouped, "majority_vote", answers)
        if self.centered:
            advantages = advantages - advantages.mean(dim=1, keepdim=True)
        return (self.advantage_scale * advantages).reshape(-1)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        recorded = self._recorded
        rewards_per_func = recorded["rewards_per_func"]
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        rewards = torch.where(unscorable, torch.zeros_like(rewards), rewards)
        num_generations = self.num_generations if self.model.training else self.num_generations_eval
        completions = None
        if self.advantage == "majority_vote":
            from accelerate.utils import gather_object

            completions = gather_object(recorded["completions"])
        advantages = self.our_advantages(rewards, num_generations, completions)
        local = output["advantages"]
        rows = local.shape[0]
        start = self.accelerator.process_index * rows
        output["advantages"] = advantages[start:start + rows].to(device=local.device, dtype=local.dtype)
        return output


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def grpo_trainer_step_seconds(
    model,
    tokenizer,
    prompts: list[str],
    reward_fn: Callable[..., list[float]],
    *,
    prompts_per_step: int,
    group_size: int,
    max_completion_length: int,
    steps: int,
    learning_rate: float = 3e-4,
    seed: int = 0,
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each of ``steps`` ``trl.GRPOTrainer`` steps (generate + score + update).

    The peer of ``fixpoint perf llm``: one step = ``prompts_per_step`` prompts × ``group_size``
    generations (``steps_per_generation`` = 1, so generation happens inside the step), β = 0,
    AdamW, gradient clipping at 1, CPU. Timed by a ``TrainerCallback`` from ``on_step_begin`` to
    ``on_step_end``.
    """
    import tempfile
    import time

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[tuple[float, float]] = []
            self.start = (0.0, 0.0)

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = (time.perf_counter(), time.process_time())

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append((time.perf_counter() - self.start[0], time.process_time() - self.start[1]))

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, per_device_train_batch_size=prompts_per_step * group_size,
                          num_generations=group_size, max_completion_length=max_completion_length,
                          max_steps=steps, learning_rate=learning_rate, max_grad_norm=1.0, beta=0.0,
                          report_to=[], use_cpu=True, logging_steps=10_000, save_strategy="no",
                          dataloader_num_workers=0, seed=seed, disable_tqdm=True)
        trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args, processing_class=tokenizer,
                              train_dataset=Dataset.from_dict({"prompt": list(prompts)}), callbacks=[timer])
        trainer.train()
    return timer.times
