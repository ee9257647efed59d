"""Character-level tokenizer built in code (no hub, no files).

Every character of the alphabet is one token; three special tokens come first:
``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2. The vocabulary is a ``tokenizers`` ``WordLevel`` model
behind a pre-tokenizer that splits the text into single characters (regex ``.``, each match
isolated) and a ``Fuse`` decoder (characters are joined without spaces), wrapped in
``transformers.PreTrainedTokenizerFast`` so that the usual ``tokenizer(texts, padding=True)`` /
``batch_decode`` calls and TRL trainers work unchanged. Using the library instead of a hand-written
dict keeps batching, padding, special-token handling and saving identical to what researchers
know from hub tokenizers.

Padding side: **left**. Prompts are padded on the left so that every row of a batch ends at the
same column and generation appends on the right; completions are built by the sampler (right
padded, with a mask). ``fixpoint_rl.deep.llm.sampling`` derives position ids from the attention
mask, so a left-padded prompt gets the same logits as the unpadded one.
"""

from __future__ import annotations

import string
from typing import Any

__all__ = [
    "BOS",
    "DEFAULT_ALPHABET",
    "EOS",
    "PAD",
    "build_char_tokenizer",
    "decode_completions",
    "encode_prompts",
]

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, EOS)

#: digits, lower- and upper-case letters, arithmetic and separator symbols, space: enough for every
#: task in ``fixpoint_rl.deep.llm.tasks`` (vocabulary 3 + 80 = 83 tokens).
DEFAULT_ALPHABET = (
    string.digits + string.ascii_lowercase + string.ascii_uppercase + "+-*=,;:>|#?!()[]. "
)


def build_char_tokenizer(alphabet: str | None = None):
    """A character-level ``PreTrainedTokenizerFast`` over ``alphabet``.

    Args:
      alphabet: the characters of the vocabulary, each once (default :data:`DEFAULT_ALPHABET`).
        Token ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, then the characters in the given order.

    Returns:
      A tokenizer with ``padding_side == "left"``, ``pad/bos/eos`` tokens set, no automatic
      special tokens added by ``__call__`` (prompts are exactly their characters), and
      ``model_max_length`` 4096. Encoding a character outside the alphabet raises ``ValueError``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = DEFAULT_ALPHABET if alphabet is None else alphabet
    if not isinstance(alphabet, str) or not alphabet:
        raise ValueError(f"alphabet must be a non-empty string, got {alphabet!r:.80}")
    if len(set(alphabet)) != len(alphabet):
        repeated = sorted({c for c in alphabet if alphabet.count(c) > 1})
        raise ValueError(f"alphabet must list each character once, repeated: {repeated!r}")
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char in alphabet:
        vocab[char] = len(vocab)
    # unk_token is required by WordLevel; encode_prompts rejects characters outside the alphabet
    # before they could map to it (``<pad>`` plays that role only as a guard).
    core = Tokenizer(models.WordLevel(vocab, unk_token=PAD))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="left",
        truncation_side="left",
        model_max_length=4096,
    )
    tokenizer.alphabet = alphabet
    return tokenizer


def _check_text(name: str, texts: Any, alphabet: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError(f"{name} must be a non-empty list of strings, got {texts!r:.80}")
    allowed = set(alphabet)
    for text in texts:
        if not isinstance(text, str) or not text:
            raise ValueError(f"{name} must hold non-empty strings, got {text!r:.80}")
        outside = set(text) - allowed
        if outside:
            raise ValueError(f"{name} holds characters outside the alphabet: {sorted(outside)!r}")
    return list(texts)


def encode_prompts(tokenizer, prompts: list[str], *, bos: bool = False, device: Any = None):
    """Left-padded prompt batch: ``(input_ids [B, P], attention_mask [B, P])`` int64 tensors.

    Args:
      tokenizer: from :func:`build_char_tokenizer`.
      prompts: B non-empty strings over the tokenizer's alphabet (else ``ValueError``).
      bos: prepend ``<bos>`` to every prompt.
      device: torch device of the returned tensors.
    """
    texts = _check_text("prompts", prompts, getattr(tokenizer, "alphabet", DEFAULT_ALPHABET))
    if bos:
        texts = [BOS + text for text in texts]
    batch = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def decode_completions(tokenizer, tokens, mask) -> list[str]:
    """Decode sampled completions [B, T] (with their mask) into strings, dropping ``<eos>``/pad."""
    rows = []
    for row, keep in zip(tokens.tolist(), mask.tolist()):
        kept = [t for t, k in zip(row, keep) if k and t != tokenizer.eos_token_id]
        rows.append(tokenizer.decode(kept, skip_special_tokens=True))
    return rows
