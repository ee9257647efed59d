"""``fixpoint perf gpo``: GPO loss forward + backward vs TRL 1.16 ``DPOTrainer``'s loss on the same batch.

Same from-config Llama policy and reference (same weights), same collated batch (TRL's own
``DataCollatorForPreference`` output, converted to our layout by
``fixpoint_rl.deep.llm.gpo.preference_batch_from_trl``), same loss type, one torch thread, float32,
``bf16=False`` (DPOConfig's default bf16 would put the reference under bf16 autocast).

  * ours: ``trl_dpo_loss`` (GPO loss of ``tabular.core.preference_losses`` on margins from one
    policy forward of the 2B sequences and one reference forward under ``no_grad``) + ``backward``;
  * TRL: ``DPOTrainer.compute_loss`` (``_compute_loss``: policy and reference forwards with TRL's
    fused chunked log-prob head, the loss, and its logging metrics) + ``backward``.

Both are timed with ``_perf_common.time_call`` (one warm-up call, median of ≥ 5 samples). Goal
row: ``time_ratio`` = our CPU seconds per call / TRL's (< 1: ours faster), goal ≤ 1.05;
``speedup_x`` = TRL / ours; ``wall_ratio`` the same with wall-clock medians (on a shared machine
CPU time is the fairer measure; ``load_1m`` is recorded).

Nash-MD-PG step (Munos et al. 2024, arXiv 2312.00886, §7), split as ``fixpoint train nash_md_pg``
runs it (``deep.llm.nash_md.sampled_nash_md_pg_loss``) on B prompts, T-token responses over the
whole character vocabulary, one torch thread, float32:

  * generation — y ~ π_θ (``sample``: one forward pass per token with a KV cache) and y′ from the
    per-token geometric mixture (``sample_geometric_mixture``: a forward pass of π_θ AND of μ per
    token); ``mixture_vs_single_x`` = mixture CPU time / single-model CPU time of the same batch
    (≈ 2 expected: two models per token);
  * update — per-token log-probs of π_θ (with graph) and μ (no grad) of y, the loss, ``backward``
    and one Adam step;
  * the whole step; ``share_of_step`` = component / step (CPU time).

Baseline for single-model sampling: ``transformers``' ``model.generate(do_sample=True)`` on the same
batch and length (``speedup_x`` = generate / ours, > 1: ours faster); it cannot sample the two-model
mixture. TRL has no Nash-MD trainer any more (TRL 1.16 has no ``NashMDTrainer`` and no
``GeometricMixtureWrapper``, neither in ``trl`` nor in ``trl.experimental``), so there is no library
baseline for the mixture or the step: those rows make no claim (``holds`` None); the GPO rows above
compare against TRL's ``DPOTrainer``.
"""

from __future__ import annotations

import os
import tempfile

import pandas as pd

from ._perf_common import load_1m, time_call, with_machine_header
from ._runner import BenchConfig

GOAL_RATIO = 1.05


def _batch_texts(pairs: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    prompts, chosen, rejected = [], [], []
    for _ in range(pairs):
        a, b = rng.integers(0, 100, size=2)
        prompts.append(f"{a}+{b}=")
        chosen.append(str(a + b))
        rejected.append(str(int(rng.integers(0, 200))) + "9" * int(rng.integers(0, 3)))
    return {"prompt": prompts, "chosen": chosen, "rejected": rejected}


def _setup(preset: str, loss_type: str, pairs: int, seed: int, out_dir: str):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from fixpoint_rl.deep.llm.gpo import preference_batch_from_trl
    from fixpoint_rl.deep.llm.models import build_lm
    from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    policy = build_lm(preset, len(tokenizer), seed)
    reference = build_lm(preset, len(tokenizer), seed + 1)
    args = DPOConfig(output_dir=out_dir, per_device_train_batch_size=pairs, loss_type=[loss_type], beta=0.1,
                     report_to=[], use_cpu=True, save_strategy="no", dataloader_num_workers=0, seed=seed,
                     max_length=None, precompute_ref_log_probs=False, bf16=False)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args,
                         train_dataset=Dataset.from_dict(_batch_texts(pairs, seed)), processing_class=tokenizer)
    inputs = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    return trainer, inputs, preference_batch_from_trl(inputs)


def run(config: BenchConfig) -> pd.DataFrame:
    import torch

    from fixpoint_rl.deep.llm.gpo import trl_dpo_loss

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    presets = config.pick(("nano",), ("nano", "micro"), ("nano", "micro", "small"))
    loss_types = config.pick(("sigmoid",), ("sigmoid", "ipo"), ("sigmoid", "hinge", "ipo"))
    pairs = config.pick(8, 16, 32)
    rows = []
    with tempfile.TemporaryDirectory() as out_dir:
        for preset in presets:
            for loss_type in loss_types:
                trainer, inputs, batch = _setup(preset, loss_type, pairs, config.seed, out_dir)
                model = trainer.model

                def ours():
                    model.zero_grad(set_to_none=True)
                    trl_dpo_loss(model, trainer.ref_model, batch, 0.1, loss_type).backward()

                def theirs():
                    model.zero_grad(set_to_none=True)
                    trainer.compute_loss(model, inputs).backward()

                our_time = time_call(ours, repeats=7)
                trl_time = time_call(theirs, repeats=7)
                ratio = our_time.cpu_s / trl_time.cpu_s
                problem = f"{preset} LM, {pairs} pairs, loss_type={loss_type}"
                common = dict(problem=problem, load_1m=load_1m())
                rows.append(dict(algorithm="ours: trl_dpo_loss (GPO) fwd+bwd", claim=f"our loss+backward ≤ "
                                 f"{GOAL_RATIO}× TRL DPOTrainer.compute_loss+backward (CPU time)",
                                 holds=bool(ratio <= GOAL_RATIO), seconds_per_call=our_time.wall_s,
                                 cpu_s=our_time.cpu_s, spread=our_time.spread, repeats=our_time.repeats,
                                 time_ratio=ratio, speedup_x=1.0 / ratio,
                                 wall_ratio=our_time.wall_s / trl_time.wall_s, **common))
                rows.append(dict(algorithm="trl.DPOTrainer.compute_loss fwd+bwd", claim=None, holds=None,
                                 seconds_per_call=trl_time.wall_s, cpu_s=trl_time.cpu_s, spread=trl_time.spread,
                                 repeats=trl_time.repeats, time_ratio=1.0, speedup_x=1.0, wall_ratio=1.0, **common))
    for preset in presets:
        rows.extend(_nash_md_rows(preset, config.pick(8, 32, 64), config.pick(8, 16, 32), config.seed))
    return with_machine_header(pd.DataFrame(rows))


def _nash_md_rows(preset: str, batch: int, length: int, seed: int) -> list[dict]:
    """Nash-MD-PG step split into generation and update (see the module docstring)."""
    import torch

    from fixpoint_rl.deep.llm.models import build_lm
    from fixpoint_rl.deep.llm.nash_md import nash_md_pg_loss, sampled_nash_md_pg_loss
    from fixpoint_rl.deep.llm.sampling import sample, sample_geometric_mixture, sequence_logprobs
    from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer, encode_prompts

    tokenizer = build_char_tokenizer()
    policy = build_lm(preset, len(tokenizer), seed).train()
    reference = build_lm(preset, len(tokenizer), seed + 1).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-4)
    ids, mask = encode_prompts(tokenizer, [f"x{i % 10}:" for i in range(batch)])
    generator = torch.Generator().manual_seed(seed)
    wins = torch.rand(batch, generator=generator)  # stands in for the judge (not timed)
    fixed = sample(policy, ids, mask, length, stop_at_eos=False, generator=generator)
    tau, mixture = 0.1, 0.125

    def single():
        sample(policy, ids, mask, length, stop_at_eos=False, generator=generator)

    def mixed():
        sample_geometric_mixture(policy, reference, mixture, ids, mask, length, stop_at_eos=False, generator=generator)

    def hf_generate():
        with torch.no_grad():
            policy.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=length,
                            min_new_tokens=length, top_k=0, top_p=1.0, pad_token_id=0)

    def update():
        policy_tokens = sequence_logprobs(policy, ids, mask, fixed.tokens, fixed.mask, per_token=True)
        with torch.no_grad():
            reference_tokens = sequence_logprobs(reference, ids, mask, fixed.tokens, fixed.mask, per_token=True)
        optimizer.zero_grad(set_to_none=True)
        nash_md_pg_loss(policy_tokens, reference_tokens, fixed.mask, wins, tau).backward()
        optimizer.step()

    def step():
        result = sampled_nash_md_pg_loss(policy, reference, ids, mask, length, lambda a, b: wins, tau,
                                         mixture=mixture, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizer.step()

    timings = {name: time_call(fn, repeats=7) for name, fn in [
        ("step", step), ("single", single), ("mixture", mixed), ("update", update), ("generate", hf_generate)]}
    problem = f"{preset} LM, Nash-MD-PG, B={batch} prompts, T={length} tokens, V={len(tokenizer)}"
    rows = []
    labels = {
        "step": "Nash-MD-PG step: sampled_nash_md_pg_loss + backward + Adam",
        "single": "generation: y ~ π_θ, ours (1 model/token, KV cache)",
        "mixture": "generation: y′ ~ per-token mixture, ours (2 models/token)",
        "update": "update: log-probs π, μ + loss + backward + Adam",
        "generate": "transformers generate(do_sample) of the same batch (1 model)",
    }
    step_cpu = timings["step"].cpu_s
    for name, timing in timings.items():
        row = dict(algorithm=labels[name], problem=problem, claim=None, holds=None, seconds_per_call=timing.wall_s,
                   cpu_s=timing.cpu_s, spread=timing.spread, repeats=timing.repeats, load_1m=load_1m(),
                   share_of_step=timing.cpu_s / step_cpu)
        if name == "mixture":
            row["mixture_vs_single_x"] = timing.cpu_s / timings["single"].cpu_s
        if name == "single":
            row["speedup_x"] = timings["generate"].cpu_s / timing.cpu_s
            row["wall_ratio"] = timing.wall_s / timings["generate"].wall_s
        rows.append(row)
    return rows
