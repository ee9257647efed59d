"""Supervised warm start: teacher-forced cross-entropy on a task's targets, stoppable at an accuracy.

RL fine-tuning papers start from a model that already produces the output format (e.g. the
SFT stage before RLHF, Ouyang et al. 2022, arXiv 2203.02155 §3.5). Here the warm start trains a
from-scratch model on a :class:`~fixpoint_rl.deep.llm.tasks.TextTask`'s train split and can stop
as soon as the greedy test accuracy reaches ``stop_at_accuracy``, so that a later RL stage still
has room to improve.

Loss: the mean over completion tokens (target then ``<eos>``) of −log π_θ(token | prefix), the
log-probs coming from :func:`fixpoint_rl.deep.llm.sampling.sequence_logprobs` (the same positions
and masks as the sampler). Batches are drawn with replacement from the train split by a
``torch.Generator`` seeded from ``SFTConfig.seed``; optimiser AdamW. Accuracy: greedy decoding
(temperature 0, EOS mode) of up to ``eval_examples`` test prompts, verified by the task.

Checkpointing: pass a :class:`fixpoint_rl.deep.checkpoint.Checkpointer`; the model, optimiser,
data generator, history and step are saved every ``checkpointer.every_steps`` steps and at the
end, and a call with the same arguments continues from the newest checkpoint (bitwise on CPU).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ...envs.checks import check_int, check_scalar, describe
from .sampling import sample, sequence_logprobs
from .tasks import Example, TextTask
from .tokenizer import decode_completions, encode_prompts

__all__ = ["SFTConfig", "SFTResult", "evaluate_accuracy", "supervised_warm_start", "text_batch"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SFTConfig:
    """Settings of :func:`supervised_warm_start` (validated; ``ValueError`` names the field).

    Attributes:
      steps: most optimiser steps.
      batch_size: B examples per step.
      lr: AdamW learning rate; weight_decay: AdamW weight decay.
      grad_clip: max global gradient norm (None: no clipping).
      eval_every: steps between greedy test-accuracy evaluations (also evaluated at the end).
      eval_examples: test examples per evaluation (the first ones of the test split).
      stop_at_accuracy: stop at the first evaluation whose accuracy is ≥ this (None: never).
      seed: seed of the batch-sampling generator.
      bos: prepend ``<bos>`` to prompts.
    """

    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int = 100
    eval_examples: int = 200
    stop_at_accuracy: float | None = None
    seed: int = 0
    bos: bool = False

    def __post_init__(self) -> None:
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_scalar("lr", self.lr, low=0.0, low_inclusive=False)
        check_scalar("weight_decay", self.weight_decay, low=0.0)
        if self.grad_clip is not None:
            check_scalar("grad_clip", self.grad_clip, low=0.0, low_inclusive=False)
        check_int("eval_every", self.eval_every, low=1)
        check_int("eval_examples", self.eval_examples, low=1)
        if self.stop_at_accuracy is not None:
            check_scalar("stop_at_accuracy", self.stop_at_accuracy, low=0.0, high=1.0)
        check_int("seed", self.seed, low=0)
        if not isinstance(self.bos, bool):
            raise ValueError(f"bos must be a bool, got {self.bos!r}")


@dataclasses.dataclass(frozen=True)
class SFTResult:
    """Outcome of a warm start.

    Attributes:
      steps: optimiser steps taken in total (including steps before a resume).
      accuracy: greedy test accuracy at the last evaluation.
      stopped_early: True when ``stop_at_accuracy`` was reached before ``steps``.
      history: one dict per evaluation: ``step``, ``loss`` (mean of the training losses since the
        previous evaluation), ``accuracy``.
    """

    steps: int
    accuracy: float
    stopped_early: bool
    history: tuple[dict, ...]


def text_batch(tokenizer, examples: list[Example], *, bos: bool = False, device: Any = None):
    """Tensors for teacher forcing: ``(prompt_ids, prompt_mask, completion_ids, completion_mask)``.

    Prompts [B, P] left padded; completions [B, T] = target characters then ``<eos>``, right padded
    with ``<pad>`` (mask 0).
    """
    if not isinstance(examples, (list, tuple)) or not examples or not all(isinstance(e, Example) for e in examples):
        raise ValueError(f"examples must be a non-empty list of Example, got {describe(examples)}")
    prompt_ids, prompt_mask = encode_prompts(tokenizer, [e.prompt for e in examples], bos=bos, device=device)
    rows = [tokenizer.convert_tokens_to_ids(list(e.target)) + [tokenizer.eos_token_id] for e in examples]
    T = max(len(r) for r in rows)
    completion = torch.full((len(rows), T), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, row in enumerate(rows):
        completion[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    if device is not None:
        completion, mask = completion.to(device), mask.to(device)
    return prompt_ids, prompt_mask, completion, mask


def evaluate_accuracy(
    model,
    tokenizer,
    task: TextTask,
    *,
    split: str = "test",
    max_examples: int | None = None,
    batch_size: int = 256,
    bos: bool = False,
) -> float:
    """Fraction of the split's examples (the first ``max_examples``) solved by greedy decoding."""
    if not isinstance(task, TextTask):
        raise ValueError(f"task must be a TextTask, got {describe(task)}")
    examples = list(task.split(split))
    if max_examples is not None:
        examples = examples[: check_int("max_examples", max_examples, low=1)]
    batch_size = check_int("batch_size", batch_size, low=1)
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        ids, mask = encode_prompts(tokenizer, [e.prompt for e in chunk], bos=bos, device=device)
        out = sample(model, ids, mask, task.max_new_tokens, temperature=0.0, stop_at_eos=True, generator=0)
        texts = decode_completions(tokenizer, out.tokens, out.mask)
        correct += sum(task.verify(e, t) for e, t in zip(chunk, texts))
    return correct / len(examples)


def supervised_warm_start(
    model,
    tokenizer,
    task: TextTask,
    config: SFTConfig | None = None,
    *,
    checkpointer: Any = None,
    log: Any = None,
) -> SFTResult:
    """Train ``model`` in place on ``task``'s train targets until ``steps`` or the target accuracy.

    Args:
      model: a causal LM (e.g. ``build_lm("nano", len(tokenizer), seed)``).
      tokenizer: the task's tokenizer (``build_char_tokenizer``).
      task: a :class:`TextTask`.
      config: :class:`SFTConfig` (defaults when None).
      checkpointer: optional ``fixpoint_rl.deep.checkpoint.Checkpointer`` (or any object with
        ``latest() -> dict | None``, ``due(step) -> bool`` and ``save(step, state)``): resumes from
        its newest checkpoint and saves the model/optimiser/generator/history/step.
      log: optional object with ``log(step, **metrics)`` (a ``RunLog``), called at evaluations.

    Returns:
      :class:`SFTResult`. The model is left in eval mode.
    """
    config = SFTConfig() if config is None else config
    if not isinstance(config, SFTConfig):
        raise ValueError(f"config must be an SFTConfig, got {describe(config)}")
    if not isinstance(task, TextTask):
        raise ValueError(f"task must be a TextTask, got {describe(task)}")
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(config.seed)
    history: list[dict] = []
    step = 0
    accuracy = float("nan")
    stopped = False
    losses: list[float] = []  # training losses since the last evaluation
    if checkpointer is not None:
        state = checkpointer.latest()
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            history = list(state["history"])
            step = int(state["step"])
            accuracy = float(state["accuracy"])
            stopped = bool(state["stopped"])
            losses = list(state["losses"])

    def checkpoint() -> None:
        if checkpointer is not None:
            checkpointer.save(
                step,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "history": list(history),
                    "step": step,
                    "accuracy": accuracy,
                    "stopped": stopped,
                    "losses": list(losses),
                },
            )

    train = list(task.train)
    while step < config.steps and not stopped:
        model.train()
        index = torch.randint(len(train), (config.batch_size,), generator=generator)
        batch = [train[i] for i in index.tolist()]
        prompt_ids, prompt_mask, completion, mask = text_batch(tokenizer, batch, bos=config.bos, device=device)
        logp = sequence_logprobs(model, prompt_ids, prompt_mask, completion, mask, per_token=True)
        loss = -(logp.sum() / mask.sum())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        if step % config.eval_every == 0 or step == config.steps:
            model.eval()
            accuracy = evaluate_accuracy(
                model, tokenizer, task, max_examples=config.eval_examples, bos=config.bos
            )
            record = {"step": step, "loss": sum(losses) / len(losses), "accuracy": accuracy}
            history.append(record)
            losses = []
            if log is not None:
                log.log(step, loss=record["loss"], accuracy=accuracy)
            stopped = config.stop_at_accuracy is not None and accuracy >= config.stop_at_accuracy
            if stopped or step == config.steps:
                checkpoint()
                break
        if checkpointer is not None and checkpointer.due(step):
            checkpoint()
    model.eval()
    return SFTResult(
        steps=step,
        accuracy=accuracy,
        stopped_early=stopped and step < config.steps,
        history=tuple(history),
    )
