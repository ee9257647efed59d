"""Peer checks against Hugging Face TRL 1.16 (a test dependency: these always run).

TRL computes GRPO's and RLOO's advantages inline in ``_generate_and_score_completions`` (no
function to call), so the trainers themselves run here, offline: a from-config ``nano`` Llama, our
character tokenizer, an in-memory ``datasets.Dataset`` and a Python reward function. A subclass
records the rewards TRL computed and the advantages it put into the batch; ours, from
``fixpoint_rl.tabular.core.advantages`` on the same rewards, must be equal. Then our
``AdvantageGRPOTrainer`` (pass@k / maj@k / RLOO inside TRL) must hand TRL's loss exactly our
advantages and must learn a trivial task.

Tolerance: TRL works in float32 (rewards and advantages); ours are float64 on the same float32
rewards, so they agree to float32 round-off amplified by 1/(std + 1e-4): 1e-5 absolute.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from fixpoint_rl.deep.llm.models import build_lm
from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer
from fixpoint_rl.deep.llm.trl_adapter import AdvantageGRPOTrainer
from fixpoint_rl.tabular.core.advantages import (
    group_normalized_advantages,
    leave_one_out_advantages,
    rloo_advantages,
)

torch.set_num_threads(1)
GENERATIONS = 4
PROMPTS = ["1+2=", "3+4=", "5+5=", "2+2=", "9+1=", "4+4="]


def _reward(prompts, completions, **kwargs):
    # deterministic, varied, with ties and constant groups: a hash of the completion in {0, .5, 1}
    return [float(sum(map(ord, c)) % 3) / 2.0 for c in completions]


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer("0123456789+=ab")


def _common(tmp_path, **changes):
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=12, num_generations=GENERATIONS,
                    max_completion_length=4, max_steps=2, report_to=[], use_cpu=True, logging_steps=1,
                    save_strategy="no", beta=0.0, dataloader_num_workers=0, seed=0)
    settings.update(changes)
    return settings


def _recording(base):
    class Recording(base):
        records: list = []

        def _calculate_rewards(self, *args):
            rewards = super()._calculate_rewards(*args)
            self.records.append({"rewards": rewards.clone(), "completions": list(args[2])})
            return rewards

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            self.records[-1]["advantages"] = output["advantages"].clone()
            return output

    Recording.records = []
    return Recording


def _dataset():
    return Dataset.from_dict({"prompt": PROMPTS * 4})


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_grpo_advantages_equal_trl(tmp_path, tokenizer, scale_rewards):
    trainer_class = _recording(GRPOTrainer)
    trainer = trainer_class(
        model=build_lm("nano", len(tokenizer), seed=0), reward_funcs=_reward, processing_class=tokenizer,
        args=GRPOConfig(**_common(tmp_path, scale_rewards=scale_rewards)), train_dataset=_dataset(),
    )
    trainer.train()
    assert len(trainer.records) == 2
    for record in trainer.records:
        rewards = record["rewards"].sum(dim=1).double().view(-1, GENERATIONS)
        ours = group_normalized_advantages(rewards, scale_rewards).reshape(-1)
        assert float(rewards.std(dim=1).max()) > 0  # non-trivial groups were scored
        torch.testing.assert_close(ours, record["advantages"].double(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_equal_trl(tmp_path, tokenizer, normalize):
    trainer_class = _recording(RLOOTrainer)
    trainer = trainer_class(
        model=build_lm("nano", len(tokenizer), seed=0), reward_funcs=_reward, processing_class=tokenizer,
        args=RLOOConfig(**_common(tmp_path, normalize_advantages=normalize)), train_dataset=_dataset(),
    )
    trainer.train()
    assert len(trainer.records) == 2
    for record in trainer.records:
        rewards = record["rewards"].sum(dim=1).double().view(-1, GENERATIONS)
        ours = rloo_advantages(rewards, normalize=normalize).reshape(-1)
        torch.testing.assert_close(ours, record["advantages"].double(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("advantage", ["pass_at_k", "majority_vote", "grpo"])
def test_adapter_hands_trl_our_advantages(tmp_path, tokenizer, advantage):
    trainer_class = _recording(AdvantageGRPOTrainer)
    answer_fn = (lambda completion: completion[:1]) if advantage == "majority_vote" else None

    def reward(prompts, completions, **kwargs):  # equal answers (first character), equal rewards
        return [float(ord(c[:1] or " ") % 3) / 2.0 for c in completions]

    trainer = trainer_class(
        model=build_lm("nano", len(tokenizer), seed=0), reward_funcs=reward, processing_class=tokenizer,
        args=GRPOConfig(**_common(tmp_path)), train_dataset=_dataset(), advantage=advantage, answer_fn=answer_fn,
    )
    trainer.train()
    for record in trainer.records:
        rewards = record["rewards"].sum(dim=1).double().view(-1, GENERATIONS)
        if advantage == "pass_at_k":
            expected = leave_one_out_advantages(rewards, "pass_at_k")
        elif advantage == "grpo":  # recomputing TRL's formula reproduces TRL
            expected = group_normalized_advantages(rewards, "group")
        else:  # answer labels by first character, numbered within each group
            labels = []
            for start in range(0, len(record["completions"]), GENERATIONS):
                seen: dict = {}
                labels.append([seen.setdefault(c[:1], len(seen)) for c in record["completions"][start:start + GENERATIONS]])
            expected = leave_one_out_advantages(rewards, "majority_vote", torch.tensor(labels))
        torch.testing.assert_close(record["advantages"].double(), expected.reshape(-1), rtol=0, atol=1e-6)


def test_adapter_trains_pass_at_k_on_a_trivial_task(tmp_path, tokenizer):
    """Reward 1 iff the completion starts with 'a': pass@4 training raises the solve rate."""
    def reward(prompts, completions, **kwargs):
        return [1.0 if c.startswith("a") else 0.0 for c in completions]

    trainer_class = _recording(AdvantageGRPOTrainer)
    trainer = trainer_class(
        model=build_lm("nano", len(tokenizer), seed=1), reward_funcs=reward, processing_class=tokenizer,
        args=GRPOConfig(**_common(tmp_path, max_steps=25, learning_rate=3e-3, max_completion_length=2)),
        train_dataset=Dataset.from_dict({"prompt": PROMPTS * 50}), advantage="pass_at_k", k=2,
    )
    trainer.train()
    solve = np.array([float(r["rewards"].mean()) for r in trainer.records])
    print("solve rate per step", solve.round(2).tolist())
    assert solve[-5:].mean() > solve[:5].mean() + 0.2, solve
