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
"""

from __future__ import annotations

import os
import tempfile

import pandas as pd

from ._perf_common import load_1m, time_call
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
    return pd.DataFrame(rows)
