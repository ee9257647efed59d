"""Small causal language models built from a ``transformers`` config, generated tasks with
verifiable answers, sampling with per-token log-probabilities, and the language-model versions of
the preference and verifiable-reward algorithms. The only package under ``fixpoint_rl`` that
imports ``transformers``.

Modules (names are exported lazily, so ``import fixpoint_rl.deep.llm`` does not import
``transformers``; the first use of a name imports its module):

- ``tokenizer`` — :func:`build_char_tokenizer` (character-level ``PreTrainedTokenizerFast``,
  ``<pad> <bos> <eos>``, left padding), :func:`encode_prompts`, :func:`decode_completions`.
- ``models`` — :data:`LM_PRESETS` (``nano``, ``micro``, ``small`` on CPU; ``base`` ≈ 85M and
  ``large`` on GPU), :class:`LMConfig`, :func:`build_lm` (Llama, seeded init, no hub).
- ``tasks`` — :class:`TextTask` generators (:func:`addition`, :func:`multi_operand_sum` with a
  scratchpad, :func:`copy_task`, :func:`reverse_task`) and :class:`EnumerableTask` (K^L ≤ 4096
  responses: :func:`enumerable_addition`, :func:`preference_game_task`,
  :func:`dialogue_game_task`); :class:`DialogueTextGame` plays any dialogue game turn by turn as
  text (action token, then an observation token for the drawn successor).
- ``sampling`` — :func:`sample` (KV cache, fixed-length or EOS mode, temperature, seeded
  ``torch.Generator``), :func:`sequence_logprobs`, :func:`enumerate_logprobs`,
  :func:`sample_geometric_mixture` (NLHF App. F.1 per-token mixture of two models).
- ``sft`` — :func:`supervised_warm_start` (teacher-forced cross-entropy on a task, stoppable at a
  target accuracy, checkpointable).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "tokenizer": ("BOS", "EOS", "PAD", "DEFAULT_ALPHABET", "build_char_tokenizer", "decode_completions", "encode_prompts"),
    "models": ("LMConfig", "LM_PRESETS", "build_lm", "count_parameters"),
    "tasks": (
        "EnumerableTask",
        "Example",
        "TextTask",
        "addition",
        "copy_task",
        "DialogueTextGame",
        "dialogue_game_task",
        "dialogue_text_game",
        "enumerable_addition",
        "enumerable_task",
        "multi_operand_sum",
        "preference_game_task",
        "reverse_task",
    ),
    "sampling": (
        "Samples",
        "completion_logits",
        "enumerate_logprobs",
        "make_generator",
        "sample",
        "sample_geometric_mixture",
        "sequence_logprobs",
    ),
    "sft": ("SFTConfig", "SFTResult", "evaluate_accuracy", "supervised_warm_start", "text_batch"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
