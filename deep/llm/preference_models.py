"""Golden preference functions and learned preference models for language-model responses.

* Golden preferences: the ``fixpoint_rl.envs.preference`` games lifted to token responses
  (``preference_game_task``: ``task.pref``), and :func:`length_quality_judge`, a judge on strings
  that mixes a Bradley–Terry quality term with a cyclic (intransitive) term on lengths, so that no
  reward model represents it (Munos et al. 2024, arXiv 2312.00886, §3 and App. A).
* :func:`length_quality_task` — that judge as the golden preference of an enumerable free-text
  task: every string of at most L characters over a small alphabet, written as L tokens ending at
  an end symbol, so the trainers can evaluate exactly on it (``fixpoint train … --set
  game=length_quality``).
* :class:`RewardModel` — a Bradley–Terry reward model r_φ(x, y): a causal-LM backbone and a scalar
  head on the last token, trained by −log σ(r(x, y_w) − r(x, y_l)) (Bradley & Terry 1952; the RLHF
  reward model of Stiennon et al. 2020, arXiv 2009.01325).
* :class:`PairwisePreferenceModel` — the paper's preference model (NLHF §8: both responses in one
  input): s_φ(x, y, y′) on "x y <sep> y′", and P_φ(y ≻ y′|x) = σ(s_φ(x, y, y′) − s_φ(x, y′, y)),
  antisymmetric by construction (P(y ≻ y) = ½), trained by binary cross-entropy.

Shapes: B rows, P prompt length, T completion length, S packed sequence length.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...envs.checks import check_int, check_scalar, describe
from .models import build_lm

__all__ = [
    "PairwisePreferenceModel",
    "RewardModel",
    "bradley_terry_loss",
    "length_quality_judge",
    "length_quality_task",
    "response_text",
    "pack_sequences",
    "preference_matrix",
]


def length_quality_judge(target_length: int = 3, *, cyclic_weight: float = 0.3, temperature: float = 1.0):
    """Golden judge P(y ≻ y′) on strings: (1 − λ)·σ((q(y) − q(y′))/t) + λ·(½ + ½·c(y, y′)).

    q(y) = −|len(y) − target_length| (a quality that prefers a length); c(y, y′) = +1 if
    (len(y) − len(y′)) mod 3 = 1, −1 if it is 2, 0 otherwise — a rock-paper-scissors cycle over
    lengths mod 3 that no Bradley–Terry reward represents. Antisymmetric: P(y ≻ y′) + P(y′ ≻ y) = 1.

    Returns:
      ``judge(a: Sequence[str], b: Sequence[str]) -> np.ndarray [B]`` probabilities.
    """
    target_length = check_int("target_length", target_length, low=0)
    lam = check_scalar("cyclic_weight", cyclic_weight, low=0.0, high=1.0)
    temperature = check_scalar("temperature", temperature, low=0.0, low_inclusive=False)

    def judge(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        if len(a) != len(b):
            raise ValueError(f"b must have the length of a ({len(a)}), got {len(b)}")
        la = np.array([len(s) for s in a], dtype=np.float64)
        lb = np.array([len(s) for s in b], dtype=np.float64)
        quality = (np.abs(lb - target_length) - np.abs(la - target_length)) / temperature
        bt = 0.5 * (1.0 + np.tanh(0.5 * quality))  # σ, exactly antisymmetric in rounding
        step = np.mod(la - lb, 3)
        cyclic = np.where(step == 1, 1.0, np.where(step == 2, -1.0, 0.0))
        return (1.0 - lam) * bt + lam * (0.5 + 0.5 * cyclic)

    return judge


def preference_matrix(judge, responses: Sequence[str]) -> np.ndarray:
    """[N, N] P(y_i ≻ y_j) of a string judge over N responses."""
    n = len(responses)
    a = [responses[i] for i in range(n) for _ in range(n)]
    b = [responses[j] for _ in range(n) for j in range(n)]
    return np.asarray(judge(a, b), dtype=np.float64).reshape(n, n)


def response_text(response: str, end: str = ".") -> str:
    """The free text a fixed-length response spells: its characters before the first ``end``."""
    if not isinstance(end, str) or len(end) != 1:
        raise ValueError(f"end must be one character, got {end!r}")
    cut = response.find(end)
    return response if cut < 0 else response[:cut]


def length_quality_task(max_length: int = 3, *, alphabet: str = "ab", end: str = ".", target_length: int = 2,
                        cyclic_weight: float = 0.6, temperature: float = 1.0, prompts: Sequence[str] = ("q:",)):
    """An enumerable free-text task judged by :func:`length_quality_judge` (intransitive).

    Responses are all N = (|alphabet| + 1)^L token sequences of L = ``max_length`` characters from
    ``alphabet + end``; the text of a response is what precedes its first ``end`` (so texts have
    every length 0…L and several sequences spell the same text). The golden preference is
    P(y ≻ y′) = judge(text(y), text(y′)) for every prompt: a valid preference matrix (P + Pᵀ = 1,
    diagonal ½) whose cyclic term on lengths mod 3 makes it intransitive when λ = ``cyclic_weight``
    outweighs the quality term (e.g. the defaults: lengths 1 ≻ 0, 2 ≻ 1 and 0 ≻ 2), the kind of
    preference no reward model represents (Munos et al. 2024, arXiv 2312.00886, §3).

    Returns:
      ``fixpoint_rl.deep.llm.tasks.EnumerableTask`` with ``pref`` [X, N, N] (X = len(prompts)).
    """
    from .tasks import enumerable_task

    max_length = check_int("max_length", max_length, low=1)
    if not isinstance(alphabet, str) or not alphabet or len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet must be a non-empty string of distinct characters, got {alphabet!r}")
    if not isinstance(end, str) or len(end) != 1 or end in alphabet:
        raise ValueError(f"end must be one character not in alphabet {alphabet!r}, got {end!r}")
    judge = length_quality_judge(target_length, cyclic_weight=cyclic_weight, temperature=temperature)
    chars = alphabet + end
    if len(chars) ** max_length > 4096:
        raise ValueError(f"max_length must keep (len(alphabet) + 1)**max_length ≤ 4096, "
                         f"got {len(chars)}**{max_length}")
    texts = [response_text("".join(r), end) for r in itertools.product(chars, repeat=max_length)]
    pref = preference_matrix(judge, texts)
    prompts = tuple(prompts) if isinstance(prompts, (list, tuple)) else prompts
    X = len(prompts) if isinstance(prompts, tuple) else 0
    return enumerable_task(prompts, chars, max_length, pref=np.broadcast_to(pref, (max(X, 1),) + pref.shape),
                           name=f"length_quality(L={max_length}, target={target_length}, λ={cyclic_weight})")


def pack_sequences(parts: Sequence[tuple[torch.Tensor, torch.Tensor]], pad_id: int = 0):
    """Concatenate the real tokens of several (ids [B, ·], mask [B, ·]) parts row by row, left padded.

    Returns ``(ids [B, S], mask [B, S])``: the last column holds each row's last real token.
    """
    B = parts[0][0].shape[0]
    rows = []
    for b in range(B):
        rows.append(torch.cat([ids[b][mask[b] == 1] for ids, mask in parts]))
    width = max(len(r) for r in rows)
    device = parts[0][0].device
    ids = torch.full((B, width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((B, width), dtype=torch.long, device=device)
    for b, row in enumerate(rows):
        ids[b, width - len(row):] = row
        mask[b, width - len(row):] = 1
    return ids, mask


class _Scorer(torch.nn.Module):
    """A Llama backbone (``build_lm(...).model``) and a linear head on the last (real) token."""

    def __init__(self, preset: Any, vocab_size: int, seed: int, dtype: str = "float32"):
        super().__init__()
        lm = build_lm(preset, vocab_size, seed, dtype=dtype)
        self.backbone = lm.model
        self.config = lm.config
        hidden = lm.config.hidden_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            self.head = torch.nn.Linear(hidden, 1).to(next(self.backbone.parameters()).dtype)
        torch.nn.init.zeros_(self.head.bias)

    def score(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B] head(h_last) of left-padded sequences."""
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        attention = mask if bool((mask == 0).any()) else None
        hidden = self.backbone(input_ids=ids, attention_mask=attention, position_ids=positions).last_hidden_state
        return self.head(hidden[:, -1]).squeeze(-1)


class RewardModel(_Scorer):
    """Bradley–Terry reward model r_φ(x, y) (scalar head on the last token of "x y")."""

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
        """[B] rewards."""
        ids, mask = pack_sequences([(prompt_ids, prompt_mask), (completion_ids, completion_mask)],
                                   pad_id=int(self.config.pad_token_id or 0))
        return self.score(ids, mask)


class PairwisePreferenceModel(_Scorer):
    """P_φ(y ≻ y′|x) = σ(s(x, y, y′) − s(x, y′, y)), s on "x y <sep> y′" (NLHF §8's comparator)."""

    def __init__(self, preset: Any, vocab_size: int, seed: int, dtype: str = "float32", *, sep_token_id: int = 2):
        super().__init__(preset, vocab_size, seed, dtype)
        self.sep_token_id = check_int("sep_token_id", sep_token_id, low=0, high=vocab_size - 1)

    def logits(self, prompt_ids, prompt_mask, first_ids, first_mask, second_ids, second_mask) -> torch.Tensor:
        """[B] s(x, y, y′) − s(x, y′, y): the logit of P(y ≻ y′|x)."""
        B = prompt_ids.shape[0]
        sep = torch.full((B, 1), self.sep_token_id, dtype=torch.long, device=prompt_ids.device)
        one = torch.ones_like(sep)
        pad = int(self.config.pad_token_id or 0)
        forward = pack_sequences([(prompt_ids, prompt_mask), (first_ids, first_mask), (sep, one),
                                  (second_ids, second_mask)], pad_id=pad)
        backward = pack_sequences([(prompt_ids, prompt_mask), (second_ids, second_mask), (sep, one),
                                   (first_ids, first_mask)], pad_id=pad)
        width = max(forward[0].shape[1], backward[0].shape[1])

        def widen(ids, mask):
            extra = width - ids.shape[1]
            return (torch.nn.functional.pad(ids, (extra, 0), value=pad), torch.nn.functional.pad(mask, (extra, 0)))

        ids, mask = (torch.cat(t) for t in zip(widen(*forward), widen(*backward)))
        scores = self.score(ids, mask)
        return scores[:B] - scores[B:]

    def forward(self, *args) -> torch.Tensor:
        """[B] P(y ≻ y′|x)."""
        return torch.sigmoid(self.logits(*args))


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of w·(−log σ(r_w − r_l)) (Bradley–Terry maximum likelihood)."""
    if not isinstance(chosen_rewards, torch.Tensor) or chosen_rewards.shape != getattr(rejected_rewards, "shape", None):
        raise ValueError(f"rejected_rewards must match chosen_rewards, got {describe(rejected_rewards)}")
    losses = torch.nn.functional.softplus(rejected_rewards - chosen_rewards)
    if weights is not None:
        losses = losses * weights
    return losses.mean()
