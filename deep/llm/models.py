"""Causal language models built from a ``transformers`` Llama config (no hub, no files).

Architecture: ``LlamaForCausalLM`` (Touvron et al. 2023, arXiv 2302.13971: pre-norm RMSNorm,
rotary position embeddings, SwiGLU MLP), untied input/output embeddings, ``sdpa`` attention.
The library implementation is used (not a hand-written transformer) so that KV caching, masks,
gradient checkpointing, ``safetensors`` saving and TRL trainers behave as researchers expect.

Presets (d model width, L layers, H heads, F MLP width; parameter counts with the 80-token
character vocabulary of ``fixpoint_rl.deep.llm.tokenizer``, V = 83):

  ``nano``   d 64,   L 2,  H 4,  F 256    ≈ 0.14M   CPU, tests (seconds)
  ``micro``  d 128,  L 2,  H 4,  F 512    ≈ 0.55M   CPU
  ``small``  d 256,  L 4,  H 8,  F 1024   ≈ 4.2M    CPU
  ``base``   d 768,  L 12, H 12, F 2048   ≈ 85M     GPU
  ``large``  d 1024, L 24, H 16, F 2816   ≈ 308M    GPU

Weights are initialised from ``seed`` inside ``torch.random.fork_rng`` (the global RNG is left
untouched): the same seed gives bitwise-identical weights on CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ...envs.checks import check_choice, check_int

__all__ = ["LMConfig", "LM_PRESETS", "build_lm", "count_parameters"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LMConfig:
    """Size of a Llama causal LM.

    Attributes:
      hidden_size: d, model width (divisible by ``num_heads``).
      num_layers: L, transformer blocks.
      num_heads: attention heads (head dimension d / H must be even for rotary embeddings).
      intermediate_size: F, SwiGLU MLP width.
      max_positions: longest prompt + completion the rotary table is set up for.
      name: label.
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 512
    name: str = "custom"

    def __post_init__(self) -> None:
        for field in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions"):
            check_int(field, getattr(self, field), low=1)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size must be divisible by num_heads={self.num_heads}, got {self.hidden_size}"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"num_heads must leave an even head dimension (rotary embeddings), got "
                f"hidden_size/num_heads = {self.hidden_size}/{self.num_heads}"
            )


LM_PRESETS: dict[str, LMConfig] = {
    "nano": LMConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, name="nano"),
    "micro": LMConfig(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, name="micro"),
    "small": LMConfig(hidden_size=256, num_layers=4, num_heads=8, intermediate_size=1024, name="small"),
    "base": LMConfig(
        hidden_size=768, num_layers=12, num_heads=12, intermediate_size=2048, max_positions=2048, name="base"
    ),
    "large": LMConfig(
        hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=2816, max_positions=2048, name="large"
    ),
}

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def build_lm(
    preset: str | LMConfig,
    vocab_size: int,
    seed: int,
    *,
    dtype: str | torch.dtype = "float32",
    device: Any = "cpu",
    pad_token_id: int = 0,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
):
    """A freshly initialised ``LlamaForCausalLM`` in eval mode.

    Args:
      preset: a name in :data:`LM_PRESETS` or an :class:`LMConfig`.
      vocab_size: V, the tokenizer's vocabulary size (``len(tokenizer)``).
      seed: weight-initialisation seed (≥ 0); the global torch RNG is not touched.
      dtype: ``"float32"`` (default), ``"float64"`` (exactness tests) or ``"bfloat16"`` (GPU).
      device: where the model lives.
      pad_token_id / bos_token_id / eos_token_id: written into the config (defaults match the
        character tokenizer). The generation config gets the same ids.

    Returns:
      The model (``.eval()``; call ``.train()`` to train). Invalid arguments raise ``ValueError``
      naming the argument.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if isinstance(preset, str):
        check_choice("preset", preset, LM_PRESETS)
        size = LM_PRESETS[preset]
    elif isinstance(preset, LMConfig):
        size = preset
    else:
        raise ValueError(f"preset must be a preset name or an LMConfig, got {preset!r:.80}")
    V = check_int("vocab_size", vocab_size, low=2)
    seed = check_int("seed", seed, low=0)
    for name, value in (("pad_token_id", pad_token_id), ("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)):
        check_int(name, value, low=0, high=V - 1)
    if isinstance(dtype, str):
        check_choice("dtype", dtype, _DTYPES)
        dtype = _DTYPES[dtype]
    elif dtype not in _DTYPES.values():
        raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}")
    config = LlamaConfig(
        vocab_size=V,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_heads,
        max_position_embeddings=size.max_positions,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model = model.to(device=device, dtype=dtype).eval()
    model.generation_config.pad_token_id = pad_token_id
    model.generation_config.bos_token_id = bos_token_id
    model.generation_config.eos_token_id = eos_token_id
    return model


def count_parameters(model) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
