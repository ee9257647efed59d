"""The verifiable-reward RL loop (deep/llm/train_rl.py): every algorithm trains one step on a `nano`
LM, the trainers are registered with their presets, configs validate, a run is reproducible from
its seed, and (slow) a run killed while checkpointing resumes to the same numbers bitwise."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fixpoint_rl.deep.llm.train_rl import (
    ALGORITHMS,
    RLConfig,
    evaluate,
    fork,
    prepare,
    rl_step,
    split_cot,
)
from fixpoint_rl.deep.registry import get_trainer
from fixpoint_rl.deep.runtime import run_trainer

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

TINY = dict(model="nano", n_train=200, n_test=16, sft_steps=3, sft_batch_size=16, steps=2, prompts_per_step=2,
            group_size=4, eval_every=1, eval_prompts=8, eval_samples=4, eval_ks=(1, 4), log_every=1)


def test_every_algorithm_is_registered_with_cpu_and_gpu_presets():
    for name in ALGORITHMS:
        spec = get_trainer(name)
        assert {"default", "quick", "scratchpad", "gpu"} <= set(spec.presets)
        for preset in spec.presets:
            assert spec.config(preset).algorithm == name
        assert spec.config("default").model == ("micro")
        assert spec.config("gpu").model == "base"
    assert {"reference", "replay", "mixed"} <= set(get_trainer("agro").presets)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="task"):
        RLConfig(algorithm="jepo", task="addition")
    with pytest.raises(ValueError, match="group_size"):
        RLConfig(group_size=1)
    with pytest.raises(ValueError, match="k"):
        RLConfig(group_size=4, k=5)
    with pytest.raises(ValueError, match="eval_ks"):
        RLConfig(eval_samples=4, eval_ks=(8,))
    with pytest.raises(ValueError, match="kl_coef"):
        RLConfig(algorithm="majk", kl_coef=0.1)


class HashedRewards:
    """The task, with a reward that varies within groups (a hash of the completion's answer, so equal
    answers get equal rewards): after a 3-step warm start the exact-match reward is almost always 0,
    which would leave every advantage 0."""

    def __init__(self, task):
        self._task = task

    def __getattr__(self, name):
        return getattr(self._task, name)

    def rewards(self, examples, completions):
        return np.array([float(sum(map(ord, self._task.extract_answer(c))) % 5) / 4 for c in completions])


@pytest.fixture(scope="module")
def addition_state():
    config = RLConfig(algorithm="rloo", task="addition", max_operand=50, **TINY)
    state = prepare(config, seed=0)
    state.task = HashedRewards(state.task)
    return config, state


@pytest.mark.parametrize("overrides", [
    dict(algorithm="passk"), dict(algorithm="passk", k=2), dict(algorithm="passk", centered=True),
    dict(algorithm="majk"), dict(algorithm="rloo", kl_coef=0.1), dict(algorithm="grpo", scale_rewards="batch"),
    dict(algorithm="agro"), dict(algorithm="agro", agro_data="reference"), dict(algorithm="agro", agro_data="replay"),
    dict(algorithm="agro", agro_data="mixed", agro_estimator="naive"),
], ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_each_algorithm_takes_finite_steps_and_moves_the_policy(addition_state, overrides):
    base, shared = addition_state
    config = dataclasses.replace(base, **overrides)
    state = fork(config, shared, seed=1)
    before = [p.detach().clone() for p in state.model.parameters()]
    for _ in range(2):
        metrics = rl_step(config, state)
        assert np.isfinite(metrics["loss"]) and 0.0 <= metrics["reward"] <= 1.0
    moved = sum(float((p.detach() - q).abs().sum()) for p, q in zip(state.model.parameters(), before))
    assert moved > 0.0
    metrics = evaluate(config, state, 0)
    assert 0.0 <= metrics["test_pass_at_1"] <= metrics["test_pass_at_4"] <= 1.0


def test_jepo_variants_step_on_the_scratchpad_task():
    config = RLConfig(algorithm="jepo", task="multi_operand_sum", **TINY)
    shared = prepare(config, seed=0)
    for overrides in (dict(), dict(jepo_bound="single"), dict(jepo_combined_rl=True),
                      dict(jepo_advantage_normalization="std_clip", jepo_length_normalization="cot",
                           jepo_format_penalty=10.0), dict(jepo_cot_coef=0.0)):
        variant = dataclasses.replace(config, **overrides)
        state = fork(variant, shared, seed=1)
        metrics = rl_step(variant, state)
        assert np.isfinite(metrics["loss"]) and metrics["bound"] < 0
    metrics = evaluate(config, state, 0)
    assert metrics["test_bound_1"] <= metrics["test_bound_4"] + 1e-9  # L⁽¹⁾ ≤ L⁽ⁿ⁾ per prompt on average


def test_split_cot_cuts_at_the_last_separator():
    from fixpoint_rl.deep.llm.sampling import Samples
    from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    ids = lambda text: tokenizer.convert_tokens_to_ids(list(text))
    eos = tokenizer.eos_token_id
    rows = [ids("1+2=3>3") + [eos], ids("1+2") + [eos, 0, 0, 0, 0]]
    tokens = torch.tensor(rows)
    mask = torch.tensor([[1] * 8, [1] * 4 + [0] * 4])
    prompt = torch.tensor([ids("1+2="), ids("1+2=")])
    samples = Samples(tokens=tokens, mask=mask, logprobs=torch.zeros(2, 8), prompt_ids=prompt,
                      prompt_mask=torch.ones_like(prompt))
    cot, cot_mask, lengths, prefix, prefix_mask, gold, gold_mask, ok = split_cot(tokenizer, samples, ["3", "3"])
    assert ok.tolist() == [True, False]
    assert cot[0, : int(cot_mask[0].sum())].tolist() == ids("1+2=3>")
    assert lengths.tolist() == [6, 3]
    assert gold[0].tolist() == ids("3") + [eos]
    assert prefix[0, -10:].tolist() == ids("1+2=") + ids("1+2=3>")


def _tiny_config():
    return RLConfig(algorithm="passk", task="addition", max_operand=50, **{**TINY, "steps": 4, "eval_every": 2})


def test_same_seed_same_numbers(tmp_path):
    first = run_trainer("passk", _tiny_config(), seed=3, out_dir=tmp_path / "a", checkpoint_every=2, progress=False)
    second = run_trainer("passk", _tiny_config(), seed=3, out_dir=tmp_path / "b", checkpoint_every=2, progress=False)
    assert first == second
    csv_a = next((tmp_path / "a").glob("*.csv")).read_text()
    assert csv_a == next((tmp_path / "b").glob("*.csv")).read_text()
    assert len(pd.read_csv(next((tmp_path / "a").glob("*.csv")))) >= 4


@pytest.mark.slow
def test_run_killed_while_checkpointing_resumes_bitwise(tmp_path):
    """SIGKILL during the step-4 checkpoint (runtime test hook), rerun: same CSV and weights."""
    command = [sys.executable, "-m", "fixpoint_rl.benchmarks", "train", "passk", "--preset", "quick", "--seed", "1",
               "--set", "steps=6", "--set", "eval_every=2", "--checkpoint-every", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command + ["--out", str(tmp_path / "whole")], check=True, env=env, cwd=REPO, timeout=600,
                   capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(command + ["--out", str(killed)], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**env, "FIXPOINT_CHECKPOINT_PAUSE_S": "120@4"})
    deadline = time.time() + 600
    while time.time() < deadline and not list((killed / "checkpoints").glob("*step-0000000004*")):
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    subprocess.run(command + ["--out", str(killed)], check=True, env=env, cwd=REPO, timeout=600, capture_output=True)
    csv_whole = next((tmp_path / "whole").glob("*.csv")).read_text()
    assert csv_whole == next(killed.glob("*.csv")).read_text()
    weights = [torch.load(sorted((d / "checkpoints").glob("step-*.pt"))[-1], weights_only=False)["state"]["model"]
               for d in (tmp_path / "whole", killed)]
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_fast_decode_equals_the_tokenizer():
    from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer, decode_completions
    from fixpoint_rl.deep.llm.train_rl import _decode

    tokenizer = build_char_tokenizer()
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(len(tokenizer), (64, 7), generator=generator)
    lengths = torch.randint(0, 8, (64,), generator=generator)
    mask = (torch.arange(7)[None, :] < lengths[:, None]).long()
    assert _decode(tokenizer, tokens, mask) == decode_completions(tokenizer, tokens, mask)
