"""Performance of the deep substrate: LM sampling and training on CPU, and the MinAtar wrapper.

Language models (``fixpoint_rl.deep.llm``), for each CPU preset (``nano``, ``micro``, ``small``;
``--quick``: ``nano`` and ``micro``), B = 64 prompts of 8 random tokens, 16 new tokens each:

  sampler   ``sample(..., stop_at_eos=False)`` (our KV-cache loop: ``model(...)`` calls with a
            ``DynamicCache`` under ``inference_mode``, per-token log-probs returned) against
            ``model.generate(do_sample=True, max_new_tokens=16)`` with the library's default
            generation settings (top-k 50, temperature 1, its own ``DynamicCache``) on the same
            model, in the same run. EOS is disabled in the baseline's generation config so both
            produce exactly 16 tokens per row (checked). ``speedup_x`` = HF seconds / our seconds
            (> 1: ours is faster). Goal (issue 9): ≥ 1× at B = 64 — a ``holds`` row per preset.
  grouped   the same with n = 8 samples for each of 8 prompts of 32 tokens (B = 64 rows, as in
            GRPO / RLOO / pass@k batches): ours encodes each prompt once and repeats its KV cache;
            the baseline is ``generate(num_return_sequences=8)``, which encodes each prompt 8 times.
            Same goal, a ``holds`` row per preset.
  train     one optimiser step (AdamW) on 64 sequences of 8 prompt + 16 completion tokens: ours
            computes the completion-masked cross-entropy through ``sequence_logprobs`` (the loss
            path of the warm start and the RL objectives); the baseline is the plain loop
            ``model(input_ids, labels=input_ids).loss.backward(); optimizer.step()``.
            ``speedup_x`` = plain seconds / our seconds. Reported, no claim.

Timing: one warm-up call per side, then ``reps`` (≥ 5) rounds in which ours and the baseline are
timed back to back, alternating which goes first; medians are reported. Torch runs one thread and
both sides run in this process, so the process CPU time of a call is the work it did, unaffected
by other processes time-slicing the cores of a shared machine. ``speedup_x`` is the median over
rounds of (baseline CPU seconds / our CPU seconds) in the same round (``speedup_round_min`` /
``speedup_round_max``: the extreme rounds); ``tokens_per_s`` and ``steps_per_s`` use median CPU
seconds (on a quiet machine CPU ≈ wall). Wall-clock medians are reported beside them
(``wall_s``, ``baseline_wall_s``; ``wall_speedup`` = baseline / ours, median of rounds);
``cpu_over_wall`` (≈ 1 quiet, ≪ 1 on a shared machine) and ``spread`` (slowest / fastest wall
sample of our side) show how loaded the machine was.

Expectation: the sampler's gain is per-step overhead (no logits processors, stopping criteria or
generation bookkeeping), so it is largest on ``nano`` and shrinks towards parity on ``small``,
where the model's matrix products dominate both sides.

MinAtar: rows from ``fixpoint_rl.benchmarks._perf_minatar.minatar_throughput_rows`` (the wrapper
against the raw ``minatar.Environment``; goal: ≤ 10 % overhead), when that module is present in
the package; otherwise one row says it is missing (``holds`` None) rather than dropping it.
"""

from __future__ import annotations

import copy
import os
import time
from importlib import import_module
from pathlib import Path

import numpy as np
import pandas as pd

from ._runner import BenchConfig

__all__ = ["run"]

BATCH = 64
PROMPT_TOKENS = 8
NEW_TOKENS = 16
GROUP = 8
GROUP_PROMPT_TOKENS = 32
GOAL_SPEEDUP = 1.0
SAMPLER_CLAIM = f"our sampler ≥ {GOAL_SPEEDUP:g}× HF generate tokens/s at B = {BATCH}"


def _interleaved(ours, baseline, reps: int) -> dict:
    """Median CPU and wall seconds of each side over ``reps`` back-to-back rounds (after one
    warm-up call each)."""
    ours()
    baseline()
    samples = {"ours": ([], []), "base": ([], [])}  # (cpu seconds, wall seconds)
    for rep in range(reps):
        order = (("ours", ours), ("base", baseline)) if rep % 2 == 0 else (("base", baseline), ("ours", ours))
        for side, fn in order:
            cpu0, start = time.process_time(), time.perf_counter()
            fn()
            samples[side][1].append(time.perf_counter() - start)
            samples[side][0].append(time.process_time() - cpu0)
    ours_cpu, ours_wall = (float(np.median(x)) for x in samples["ours"])
    base_cpu, base_wall = (float(np.median(x)) for x in samples["base"])
    # paired per-round ratios: a load change between rounds affects both sides of a round alike
    paired = np.array(samples["base"][0]) / np.array(samples["ours"][0])
    paired_wall = np.array(samples["base"][1]) / np.array(samples["ours"][1])
    return {
        "cpu_s": ours_cpu,
        "baseline_cpu_s": base_cpu,
        "speedup_x": float(np.median(paired)),
        "speedup_round_min": float(paired.min()),
        "speedup_round_max": float(paired.max()),
        "wall_s": ours_wall,
        "baseline_wall_s": base_wall,
        "wall_speedup": float(np.median(paired_wall)),
        "spread": max(samples["ours"][1]) / min(samples["ours"][1]),
        "cpu_over_wall": ours_cpu / ours_wall,
        "reps": reps,
    }


def _llm_rows(config: BenchConfig) -> list[dict]:
    import torch

    from fixpoint_rl.deep.llm.models import build_lm, count_parameters
    from fixpoint_rl.deep.llm.sampling import make_generator, sample, sequence_logprobs
    from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer

    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    vocab = len(tokenizer)
    presets = config.pick(quick=("nano", "micro"), default=("nano", "micro", "small"), full=("nano", "micro", "small"))
    reps = config.pick(quick=5, default=9, full=15)
    data = torch.Generator().manual_seed(config.seed)
    prompt = torch.randint(3, vocab, (BATCH, PROMPT_TOKENS), generator=data)
    prompt_mask = torch.ones_like(prompt)
    completion = torch.randint(3, vocab, (BATCH, NEW_TOKENS), generator=data)
    completion_mask = torch.ones_like(completion)
    full = torch.cat([prompt, completion], dim=1)
    rows = []
    for preset in config.track(presets, "LM presets"):
        model = build_lm(preset, vocab, seed=config.seed)
        problem = f"{preset} ({count_parameters(model) / 1e6:.2f}M), B={BATCH}, {PROMPT_TOKENS}+{NEW_TOKENS} tokens"
        generator = make_generator(config.seed)

        def ours() -> None:
            sample(model, prompt, prompt_mask, NEW_TOKENS, stop_at_eos=False, generator=generator)

        hf_model = copy.deepcopy(model)
        hf_model.generation_config.eos_token_id = None  # same length as ours: exactly 16 tokens

        def hf_generate() -> torch.Tensor:
            with torch.inference_mode():
                return hf_model.generate(
                    input_ids=prompt, attention_mask=prompt_mask, do_sample=True, max_new_tokens=NEW_TOKENS
                )

        produced = hf_generate().shape[1] - PROMPT_TOKENS
        if produced != NEW_TOKENS:
            raise RuntimeError(f"HF generate produced {produced} tokens, expected {NEW_TOKENS}")
        timing = _interleaved(ours, hf_generate, reps)
        tokens = BATCH * NEW_TOKENS
        rows.append(
            {
                "algorithm": "sampler (KV cache, ours)",
                "problem": problem,
                "baseline": "HF generate(do_sample=True)",
                "claim": SAMPLER_CLAIM,
                "holds": bool(timing["speedup_x"] >= GOAL_SPEEDUP),
                "tokens_per_s": tokens / timing["cpu_s"],
                "baseline_tokens_per_s": tokens / timing["baseline_cpu_s"],
                **timing,
            }
        )

        # Groups of n samples per prompt (GRPO / RLOO / pass@k batches): 8 prompts of 32 tokens × 8.
        group_prompt = torch.randint(3, vocab, (BATCH // GROUP, GROUP_PROMPT_TOKENS), generator=data)
        group_mask = torch.ones_like(group_prompt)

        def ours_grouped() -> None:
            sample(model, group_prompt, group_mask, NEW_TOKENS, n=GROUP, stop_at_eos=False, generator=generator)

        def hf_grouped() -> torch.Tensor:
            with torch.inference_mode():
                return hf_model.generate(
                    input_ids=group_prompt,
                    attention_mask=group_mask,
                    do_sample=True,
                    max_new_tokens=NEW_TOKENS,
                    num_return_sequences=GROUP,
                )

        if tuple(hf_grouped().shape) != (BATCH, GROUP_PROMPT_TOKENS + NEW_TOKENS):
            raise RuntimeError("HF generate(num_return_sequences) returned an unexpected shape")
        timing = _interleaved(ours_grouped, hf_grouped, reps)
        rows.append(
            {
                "algorithm": f"sampler, n={GROUP} per prompt (ours)",
                "problem": f"{preset}, B={BATCH // GROUP}×{GROUP}, {GROUP_PROMPT_TOKENS}+{NEW_TOKENS} tokens",
                "baseline": f"HF generate(do_sample=True, num_return_sequences={GROUP})",
                "claim": SAMPLER_CLAIM,
                "holds": bool(timing["speedup_x"] >= GOAL_SPEEDUP),
                "tokens_per_s": tokens / timing["cpu_s"],
                "baseline_tokens_per_s": tokens / timing["baseline_cpu_s"],
                **timing,
            }
        )

        ours_model = copy.deepcopy(model).train()
        plain_model = copy.deepcopy(model).train()
        ours_opt = torch.optim.AdamW(ours_model.parameters(), lr=1e-3)
        plain_opt = torch.optim.AdamW(plain_model.parameters(), lr=1e-3)

        def ours_step() -> None:
            logp = sequence_logprobs(ours_model, prompt, prompt_mask, completion, completion_mask, per_token=True)
            loss = -logp.sum() / completion_mask.sum()
            ours_opt.zero_grad(set_to_none=True)
            loss.backward()
            ours_opt.step()

        def plain_step() -> None:
            loss = plain_model(input_ids=full, labels=full).loss
            plain_opt.zero_grad(set_to_none=True)
            loss.backward()
            plain_opt.step()

        timing = _interleaved(ours_step, plain_step, reps)
        rows.append(
            {
                "algorithm": "train step (sequence_logprobs CE, ours)",
                "problem": problem,
                "baseline": "plain loop model(labels=...).loss",
                "claim": None,
                "holds": None,
                "steps_per_s": 1.0 / timing["cpu_s"],
                "baseline_steps_per_s": 1.0 / timing["baseline_cpu_s"],
                **timing,
            }
        )
    return rows


def _minatar_rows(config: BenchConfig) -> list[dict]:
    # Written by another work package; called when present, reported as missing otherwise.
    if not (Path(__file__).with_name("_perf_minatar.py")).is_file():
        return [
            {
                "algorithm": "MinAtar wrapper",
                "problem": "not measured: benchmarks/_perf_minatar.py is missing",
                "claim": None,
                "holds": None,
            }
        ]
    module = import_module("._perf_minatar", __package__)
    return list(module.minatar_throughput_rows(config))


def run(config: BenchConfig) -> pd.DataFrame:
    """Rows: one sampler and one training row per LM preset, then the MinAtar rows."""
    rows = _llm_rows(config) + _minatar_rows(config)
    frame = pd.DataFrame(rows)
    frame["load_1m"] = os.getloadavg()[0]
    return frame
