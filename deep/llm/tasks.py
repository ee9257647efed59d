"""Generated language tasks with verifiable answers, and enumerable-response tasks.

Two kinds of task, both seeded (the same seed gives the same examples) and built in code:

**Text tasks** (:class:`TextTask`): prompts with a target completion and a verifier, split into
disjoint train and test sets (no prompt appears in both).

* :func:`addition` — ``"47+38="`` → ``"85"`` (n-digit operands, uniform).
* :func:`multi_operand_sum` — ``"3+5+7="`` → ``"3+5=8,8+7=15>15"``: a scratchpad (chain of thought)
  of running sums, then ``>`` and the final answer; the verifier reads only the text after the
  last ``>`` (Nye et al. 2021, arXiv 2112.00114, scratchpads for multi-step arithmetic).
* :func:`copy_task` / :func:`reverse_task` — ``"C:abca="`` → ``"abca"``, ``"R:abca="`` → ``"acba"``.

Completions end with ``<eos>``; ``TextTask.max_new_tokens`` is the longest target + 1 (for EOS).

**Enumerable-response tasks** (:class:`EnumerableTask`): X prompts, responses are all strings of
length L over K response characters, N = K^L ≤ 4096 (≈10³), so π_θ(y|x) of *every* response is one
batched forward pass (``fixpoint_rl.deep.llm.sampling.enumerate_logprobs`` with the K response
tokens as ``allowed_tokens``) — the bridge to the exact tabular answers (softmax policies over N
arms, preference games over N responses). Response index i ↔ the base-K digits of i, most
significant first (``itertools.product`` order).

* :func:`enumerable_addition` — ``"a+b="`` → two digits, reward 1 iff they spell a + b (K 10, L 2).
* :func:`preference_game_task` — a response is one action token of an
  ``fixpoint_rl.envs.preference`` game (L 1, N = K); carries ``pref`` [X, K, K] and μ.
* :func:`dialogue_game_task` — a response is the sequence of H action tokens of a
  deterministic ``fixpoint_rl.envs.dialogue`` game (e.g. ``tree_game``, MTPO Remark 3.3:
  token-level single-turn RL); carries the preference between the final states reached and the
  sequence-level reference μ(y|x) = Π_h μ(y_h | x_h).

**Multi-turn text games** (:class:`DialogueTextGame`, :func:`dialogue_text_game`): any
``envs.dialogue`` game (stochastic transitions included) played turn by turn: the model writes an
action token, the environment appends an observation token naming the drawn successor.

This module imports numpy only; the tokenizer-facing helpers import torch lazily.
"""

from __future__ import annotations

import dataclasses
import itertools
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...envs.checks import as_generator, check_distribution, check_indices, check_int, describe

__all__ = [
    "DialogueTextGame",
    "EnumerableTask",
    "Example",
    "TextTask",
    "addition",
    "copy_task",
    "dialogue_game_task",
    "dialogue_text_game",
    "enumerable_addition",
    "enumerable_task",
    "multi_operand_sum",
    "preference_game_task",
    "reverse_task",
]

#: Most responses an enumerable task may have (one forward pass of X·N sequences).
MAX_RESPONSES = 4096
#: Response characters used when a game's actions become tokens (K ≤ 52).
ACTION_CHARS = string.ascii_lowercase + string.ascii_uppercase


@dataclasses.dataclass(frozen=True)
class Example:
    """One prompt with its target completion (imitated by SFT) and its final answer (verified)."""

    prompt: str
    target: str
    answer: str


@dataclasses.dataclass(frozen=True, eq=False)
class TextTask:
    """A generated task: disjoint train/test examples and a verifier on the final answer.

    Attributes:
      name: label, e.g. ``"addition(n_digits=2)"``.
      train, test: the examples (tuples; disjoint prompts).
      max_new_tokens: longest target + 1 (room for ``<eos>``).
      answer_separator: the final answer is the completion's text after the last occurrence of
        this string (scratchpad tasks), or the whole completion when ``None``.
    """

    name: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    max_new_tokens: int
    answer_separator: str | None = None

    def split(self, split: str) -> tuple[Example, ...]:
        """The examples of ``"train"`` or ``"test"``."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return self.train if split == "train" else self.test

    @property
    def alphabet(self) -> str:
        """Every character used by prompts and targets (sorted)."""
        chars = set()
        for example in self.train + self.test:
            chars.update(example.prompt, example.target)
        return "".join(sorted(chars))

    def extract_answer(self, completion: str) -> str:
        """The final answer written in a completion (after the last separator; '' if none)."""
        if not isinstance(completion, str):
            raise ValueError(f"completion must be a string, got {describe(completion)}")
        if self.answer_separator is None:
            return completion
        head, separator, tail = completion.rpartition(self.answer_separator)
        return tail if separator else ""

    def verify(self, example: Example, completion: str) -> bool:
        """True iff the completion's final answer equals the example's answer exactly."""
        if not isinstance(example, Example):
            raise ValueError(f"example must be an Example, got {describe(example)}")
        return self.extract_answer(completion) == example.answer

    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> np.ndarray:
        """[B] float64 verifiable rewards (1.0 correct, 0.0 otherwise)."""
        if len(examples) != len(completions):
            raise ValueError(
                f"completions must match examples in length ({len(examples)}), got {len(completions)}"
            )
        return np.array([float(self.verify(e, c)) for e, c in zip(examples, completions)])


def _split(examples: list[Example], n_train: int, n_test: int, rng: np.random.Generator, name: str) -> tuple:
    """Shuffle distinct-prompt examples and cut them into train/test."""
    if len(examples) < n_train + n_test:
        raise ValueError(
            f"n_train + n_test must be ≤ {len(examples)} distinct prompts for {name}, got {n_train + n_test}"
        )
    order = rng.permutation(len(examples))
    chosen = [examples[i] for i in order[: n_train + n_test]]
    return tuple(chosen[:n_train]), tuple(chosen[n_train:])


def _distinct_tuples(rng: np.random.Generator, base: int, width: int, count: int) -> np.ndarray:
    """``count`` distinct tuples of ``width`` integers in [0, base), or all of them if fewer."""
    total = base**width
    if total <= max(count, 1) * 4 or total <= 100_000:
        codes = np.arange(total, dtype=np.int64)
        codes = rng.permutation(codes)[: min(count, total)]
    else:
        codes = rng.choice(total, size=count, replace=False)
    digits = np.empty((codes.size, width), dtype=np.int64)
    rest = codes.copy()
    for j in range(width - 1, -1, -1):
        digits[:, j] = rest % base
        rest //= base
    return digits


def _sizes(n_train: Any, n_test: Any) -> tuple[int, int]:
    return check_int("n_train", n_train, low=1), check_int("n_test", n_test, low=1)


def addition(n_digits: int = 2, *, n_train: int = 2000, n_test: int = 200, seed: int = 0) -> TextTask:
    """n-digit addition: prompt ``"a+b="``, target and answer ``str(a + b)``.

    Operands are uniform in [0, 10^n) (no leading zeros); the (a, b) pairs are distinct and the
    train/test prompts disjoint. ``n_digits`` ∈ [1, 9].
    """
    n = check_int("n_digits", n_digits, low=1, high=9)
    n_train, n_test = _sizes(n_train, n_test)
    rng = as_generator("seed", seed)
    base = 10**n
    if n_train + n_test > base * base:
        raise ValueError(f"n_train + n_test must be ≤ {base * base} distinct pairs, got {n_train + n_test}")
    pairs = _distinct_tuples(rng, base, 2, n_train + n_test)
    examples = [Example(f"{a}+{b}=", str(a + b), str(a + b)) for a, b in pairs.tolist()]
    train, test = _split(examples, n_train, n_test, rng, "addition")
    return TextTask(f"addition(n_digits={n})", train, test, max_new_tokens=n + 2)


def multi_operand_sum(
    n_operands: int = 3,
    n_digits: int = 1,
    *,
    scratchpad: bool = True,
    n_train: int = 2000,
    n_test: int = 200,
    seed: int = 0,
) -> TextTask:
    """Sums of several operands, with a scratchpad of running sums before the final answer.

    Prompt ``"3+5+7="``; target with ``scratchpad=True``: ``"3+5=8,8+7=15>15"`` (each step adds
    the next operand to the running sum; ``>`` introduces the final answer, which alone is
    verified); without the scratchpad: ``"15"``.

    Args:
      n_operands: ≥ 2 operands; n_digits: each operand in [0, 10^n_digits), n_digits ∈ [1, 6].
    """
    m = check_int("n_operands", n_operands, low=2, high=12)
    n = check_int("n_digits", n_digits, low=1, high=6)
    if not isinstance(scratchpad, bool):
        raise ValueError(f"scratchpad must be a bool, got {scratchpad!r}")
    n_train, n_test = _sizes(n_train, n_test)
    rng = as_generator("seed", seed)
    base = 10**n
    if n_train + n_test > base**m:
        raise ValueError(f"n_train + n_test must be ≤ {base ** m} distinct prompts, got {n_train + n_test}")
    operands = _distinct_tuples(rng, base, m, n_train + n_test)
    examples = []
    for row in operands.tolist():
        total = sum(row)
        if scratchpad:
            steps, running = [], row[0]
            for x in row[1:]:
                steps.append(f"{running}+{x}={running + x}")
                running += x
            target = ",".join(steps) + f">{total}"
        else:
            target = str(total)
        examples.append(Example("+".join(map(str, row)) + "=", target, str(total)))
    train, test = _split(examples, n_train, n_test, rng, "multi_operand_sum")
    longest = max(len(e.target) for e in examples)
    return TextTask(
        f"multi_operand_sum(n_operands={m},n_digits={n},scratchpad={scratchpad})",
        train,
        test,
        max_new_tokens=longest + 1,
        answer_separator=">" if scratchpad else None,
    )


def _sequence_task(kind: str, length: int, symbols: str, n_train: int, n_test: int, seed: int) -> TextTask:
    L = check_int("length", length, low=1, high=64)
    if not isinstance(symbols, str) or len(set(symbols)) != len(symbols) or len(symbols) < 2:
        raise ValueError(f"symbols must be a string of ≥ 2 distinct characters, got {symbols!r:.80}")
    if set(symbols) & set("CR:="):
        raise ValueError(f"symbols must not contain the prompt markers 'C', 'R', ':', '=', got {symbols!r}")
    n_train, n_test = _sizes(n_train, n_test)
    rng = as_generator("seed", seed)
    K = len(symbols)
    if n_train + n_test > K**L:
        raise ValueError(f"n_train + n_test must be ≤ {K ** L} distinct strings, got {n_train + n_test}")
    codes = _distinct_tuples(rng, K, L, n_train + n_test)
    marker = "C" if kind == "copy" else "R"
    examples = []
    for row in codes.tolist():
        text = "".join(symbols[i] for i in row)
        target = text if kind == "copy" else text[::-1]
        examples.append(Example(f"{marker}:{text}=", target, target))
    train, test = _split(examples, n_train, n_test, rng, kind)
    return TextTask(f"{kind}(length={L},K={K})", train, test, max_new_tokens=L + 1)


def copy_task(
    length: int = 4, *, symbols: str = "abcdefgh", n_train: int = 2000, n_test: int = 200, seed: int = 0
) -> TextTask:
    """Copy: prompt ``"C:abca="``, target ``"abca"`` (strings of ``length`` over ``symbols``)."""
    return _sequence_task("copy", length, symbols, n_train, n_test, seed)


def reverse_task(
    length: int = 4, *, symbols: str = "abcdefgh", n_train: int = 2000, n_test: int = 200, seed: int = 0
) -> TextTask:
    """Reverse: prompt ``"R:abca="``, target ``"acba"``."""
    return _sequence_task("reverse", length, symbols, n_train, n_test, seed)


# ------------------------------------------------------------------------------------------
# Enumerable-response tasks
# ------------------------------------------------------------------------------------------
def _readonly(array: Any, dtype=np.float64) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True, order="C")
    out.setflags(write=False)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class EnumerableTask:
    """X prompts whose responses are all N = K^L strings of length L over K characters.

    Attributes:
      name: label.
      prompts: X prompt strings.
      response_chars: the K response characters (distinct).
      length: L.
      rewards: [X, N] verifiable reward of each response, or None.
      pref: [X, N, N] preference P(y_i ≻ y_j | x), or None.
      ref: [X, N] a reference policy μ(y|x) over responses, or None.
      context_weights: ρ [X], a distribution (uniform by default).
      source: the game the task was built from (or None).
    """

    name: str
    prompts: tuple[str, ...]
    response_chars: str
    length: int
    rewards: np.ndarray | None = None
    pref: np.ndarray | None = None
    ref: np.ndarray | None = None
    context_weights: np.ndarray | None = None
    source: Any = None

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        prompts = tuple(self.prompts) if isinstance(self.prompts, (list, tuple)) else None
        if not prompts or any(not isinstance(p, str) or not p for p in prompts):
            raise ValueError(f"prompts must be a non-empty sequence of non-empty strings, got {describe(self.prompts)}")
        setattr_(self, "prompts", prompts)
        chars = self.response_chars
        if not isinstance(chars, str) or not chars or len(set(chars)) != len(chars):
            raise ValueError(f"response_chars must be a non-empty string of distinct characters, got {chars!r:.80}")
        L = check_int("length", self.length, low=1)
        setattr_(self, "length", L)
        N = len(chars) ** L
        if N > MAX_RESPONSES:
            raise ValueError(f"len(response_chars)**length must be ≤ {MAX_RESPONSES}, got {len(chars)}**{L} = {N}")
        X = len(prompts)
        if self.rewards is not None:
            rewards = np.asarray(self.rewards, dtype=np.float64)
            if rewards.shape != (X, N) or not np.all(np.isfinite(rewards)):
                raise ValueError(f"rewards must be a finite [X, N] = [{X}, {N}] array, got {describe(self.rewards)}")
            setattr_(self, "rewards", _readonly(rewards))
        if self.pref is not None:
            pref = np.asarray(self.pref, dtype=np.float64)
            if pref.shape != (X, N, N) or np.any(~np.isfinite(pref)) or np.any(pref < 0) or np.any(pref > 1):
                raise ValueError(
                    f"pref must be [X, N, N] = [{X}, {N}, {N}] with entries in [0, 1], got {describe(self.pref)}"
                )
            worst = float(np.max(np.abs(pref + np.swapaxes(pref, -1, -2) - 1.0)))
            if worst > 1e-9:  # same antisymmetry tolerance as the preference games
                raise ValueError(f"pref must satisfy P + Pᵀ = 1, off by {worst:.3g}")
            setattr_(self, "pref", _readonly(pref))
        if self.ref is not None:
            setattr_(self, "ref", _readonly(check_distribution("ref", self.ref, shape=(X, N), full_support=True)))
        weights = np.full(X, 1.0 / X) if self.context_weights is None else self.context_weights
        setattr_(self, "context_weights", _readonly(check_distribution("context_weights", weights, shape=(X,))))
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")

    # --- sizes ---------------------------------------------------------------------------
    @property
    def n_contexts(self) -> int:
        """X."""
        return len(self.prompts)

    @property
    def n_tokens(self) -> int:
        """K."""
        return len(self.response_chars)

    @property
    def n_responses(self) -> int:
        """N = K^L."""
        return self.n_tokens**self.length

    # --- responses -------------------------------------------------------------------------
    def all_responses(self) -> list[str]:
        """The N response strings in index order (base-K digits, most significant first)."""
        return ["".join(chars) for chars in itertools.product(self.response_chars, repeat=self.length)]

    def response_digits(self) -> np.ndarray:
        """[N, L] int64: digit l of response i (an index into ``response_chars``)."""
        return np.array(list(itertools.product(range(self.n_tokens), repeat=self.length)), dtype=np.int64).reshape(
            self.n_responses, self.length
        )

    def response_index(self, response: str) -> int:
        """Index of a response string (``ValueError`` if it is not a response)."""
        if not isinstance(response, str) or len(response) != self.length or set(response) - set(self.response_chars):
            raise ValueError(
                f"response must be {self.length} characters from {self.response_chars!r}, got {response!r:.80}"
            )
        index = 0
        for char in response:
            index = index * self.n_tokens + self.response_chars.index(char)
        return index

    # --- tokenizer-facing helpers (torch) ---------------------------------------------------
    def response_token_ids(self, tokenizer):
        """[K] int64 token ids of the response characters (pass as ``allowed_tokens``)."""
        import torch

        ids = tokenizer.convert_tokens_to_ids(list(self.response_chars))
        if any(i is None or i == tokenizer.unk_token_id for i in ids) or len(set(ids)) != len(ids):
            raise ValueError(f"tokenizer must have every response character {self.response_chars!r} in its vocabulary")
        return torch.tensor(ids, dtype=torch.long)

    def all_response_ids(self, tokenizer):
        """[N, L] int64 token ids of all responses, in index order."""
        import torch

        token_ids = self.response_token_ids(tokenizer)
        return token_ids[torch.from_numpy(self.response_digits())]

    def prompt_batch(self, tokenizer, device: Any = None):
        """``(prompt_ids [X, P], prompt_mask [X, P])`` of the X prompts, left padded."""
        from .tokenizer import encode_prompts

        return encode_prompts(tokenizer, list(self.prompts), device=device)

    def indices_of(self, tokens, tokenizer) -> np.ndarray:
        """[B] response indices of sampled responses ``tokens`` [B, L] (token ids)."""
        import torch

        token_ids = self.response_token_ids(tokenizer).to(tokens.device)
        size = int(max(token_ids.max().item(), tokens.max().item())) + 1
        lookup = torch.full((size,), -1, dtype=torch.long, device=tokens.device)
        lookup[token_ids] = torch.arange(self.n_tokens, device=tokens.device)
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"tokens must have shape [B, {self.length}], got {tuple(tokens.shape)}")
        digits = lookup[tokens.long()]
        if bool((digits < 0).any()):
            raise ValueError("tokens must only hold response-character token ids")
        weights = self.n_tokens ** torch.arange(self.length - 1, -1, -1, device=tokens.device)
        return (digits * weights).sum(-1).cpu().numpy()


def enumerable_task(
    prompts: Sequence[str],
    response_chars: str,
    length: int,
    *,
    rewards: Any = None,
    pref: Any = None,
    ref: Any = None,
    context_weights: Any = None,
    name: str = "enumerable",
) -> EnumerableTask:
    """An :class:`EnumerableTask` from its parts (validated; ``ValueError`` names the field)."""
    return EnumerableTask(
        name=name,
        prompts=tuple(prompts) if isinstance(prompts, (list, tuple)) else prompts,
        response_chars=response_chars,
        length=length,
        rewards=rewards,
        pref=pref,
        ref=ref,
        context_weights=context_weights,
    )


def enumerable_addition(n_contexts: int = 8, *, seed: int = 0) -> EnumerableTask:
    """One-digit sums with a two-digit answer: prompt ``"a+b="``, responses ``"00"`` … ``"99"``.

    K = 10 digit tokens, L = 2, N = 100; reward 1 for the response spelling a + b with a leading
    zero (e.g. ``"07"``), 0 otherwise. ``n_contexts`` distinct (a, b) pairs, at most 100.
    """
    X = check_int("n_contexts", n_contexts, low=1, high=100)
    rng = as_generator("seed", seed)
    pairs = _distinct_tuples(rng, 10, 2, X)
    rewards = np.zeros((X, 100))
    for x, (a, b) in enumerate(pairs.tolist()):
        rewards[x, a + b] = 1.0
    prompts = tuple(f"{a}+{b}=" for a, b in pairs.tolist())
    return EnumerableTask("enumerable_addition", prompts, string.digits, 2, rewards=rewards)


def preference_game_task(game, *, response_chars: str | None = None, prompt_prefix: str = "x") -> EnumerableTask:
    """A preference game as a one-token task: response k is action k of ``game``.

    Args:
      game: a ``fixpoint_rl.envs.preference.PreferenceGame`` (single-context: X = 1; contextual:
        one prompt per context).
      response_chars: K characters for the K actions (default the first K letters ``a…zA…Z``).
      prompt_prefix: prompt of context x is ``f"{prompt_prefix}{x}:"``.

    Returns:
      An :class:`EnumerableTask` with L = 1, ``pref`` [X, K, K] = the game's preference matrix,
      ``ref`` [X, K] = μ and ``context_weights`` = ρ (``source`` is the game).
    """
    from ...envs.preference import PreferenceGame

    if not isinstance(game, PreferenceGame):
        raise ValueError(f"game must be a PreferenceGame, got {describe(game)}")
    K = game.n_actions
    if response_chars is None:
        if K > len(ACTION_CHARS):
            raise ValueError(f"game must have ≤ {len(ACTION_CHARS)} actions without response_chars, got {K}")
        response_chars = ACTION_CHARS[:K]
    if not isinstance(response_chars, str) or len(response_chars) != K:
        raise ValueError(f"response_chars must have one character per action ({K}), got {response_chars!r:.80}")
    if not isinstance(prompt_prefix, str) or not prompt_prefix:
        raise ValueError(f"prompt_prefix must be a non-empty string, got {prompt_prefix!r}")
    pref = game.pref if game.is_contextual else game.pref[None]
    ref = game.ref if game.is_contextual else game.ref[None]
    X = pref.shape[0]
    return EnumerableTask(
        name=f"preference[{game.name}]",
        prompts=tuple(f"{prompt_prefix}{x}:" for x in range(X)),
        response_chars=response_chars,
        length=1,
        pref=pref,
        ref=ref,
        context_weights=game.context_weights if game.is_contextual else None,
        source=game,
    )


def dialogue_game_task(game, *, response_chars: str | None = None, prompt_prefix: str = "c") -> EnumerableTask:
    """A deterministic dialogue game as an enumerable task: a response is the H actions of a play.

    Every state–action pair of ``game`` must have exactly one successor (e.g.
    ``fixpoint_rl.envs.dialogue.tree_game``: token-level single-turn RL, Shani et al. 2024,
    MTPO Remark 3.3), so an action sequence y = (y_1 … y_H) determines the final state x_{H+1}(y).

    Returns:
      An :class:`EnumerableTask` with K = A, L = H, ``pref[c, i, j] = P(x(y_i) ≻ x(y_j) | c)``,
      ``ref[c, i] = Π_h μ(y_h | x_h)`` (the sequence-level reference of the game),
      ``rewards[c, i] = r(x(y_i))`` when the game has a final reward, ρ as ``context_weights``,
      and ``source`` the game. Requires A^H ≤ 4096.
    """
    from ...envs.dialogue import DialogueGame

    if not isinstance(game, DialogueGame):
        raise ValueError(f"game must be a DialogueGame, got {describe(game)}")
    A, H, X = game.num_actions, game.horizon, game.num_contexts
    if A**H > MAX_RESPONSES:
        raise ValueError(f"game must have num_actions**horizon ≤ {MAX_RESPONSES}, got {A}**{H} = {A ** H}")
    if np.any(np.diff(game.transition_starts) != 1):
        raise ValueError("game must be deterministic (one successor per state-action pair)")
    if response_chars is None:
        if A > len(ACTION_CHARS):
            raise ValueError(f"game must have ≤ {len(ACTION_CHARS)} actions without response_chars, got {A}")
        response_chars = ACTION_CHARS[:A]
    if not isinstance(response_chars, str) or len(response_chars) != A:
        raise ValueError(f"response_chars must have one character per action ({A}), got {response_chars!r:.80}")
    if not isinstance(prompt_prefix, str) or not prompt_prefix:
        raise ValueError(f"prompt_prefix must be a non-empty string, got {prompt_prefix!r}")
    N = A**H
    sequences = np.array(list(itertools.product(range(A), repeat=H)), dtype=np.int64).reshape(N, H)
    n_dec = game.num_decision_states
    pref = np.empty((X, N, N))
    ref = np.ones((X, N))
    rewards = None if game.final_reward is None else np.empty((X, N))
    for c in range(X):
        state = np.full(N, c, dtype=np.int64)
        for h in range(H):
            ref[c] *= game.reference[state, sequences[:, h]]
            state = game.transition_next[game.transition_starts[state * A + sequences[:, h]]]
        local = state - n_dec - game.final_starts[c]
        pref[c] = game.preference_matrix(c)[np.ix_(local, local)]
        if rewards is not None:
            rewards[c] = game.final_reward[state - n_dec]
    return EnumerableTask(
        name=f"dialogue[{game.name}]",
        prompts=tuple(f"{prompt_prefix}{c}:" for c in range(X)),
        response_chars=response_chars,
        length=H,
        rewards=rewards,
        pref=pref,
        ref=ref,
        context_weights=game.context_probs,
        source=game,
    )


# ------------------------------------------------------------------------------------------
# Multi-turn dialogue games as text
# ------------------------------------------------------------------------------------------
#: Characters naming the environment's answer (the successor's position in the CSR slice).
OBSERVATION_CHARS = string.digits + "!?#|;"


@dataclasses.dataclass(frozen=True, eq=False)
class DialogueTextGame:
    """A ``fixpoint_rl.envs.dialogue.DialogueGame`` played as text by a language model (MTPO §3).

    Turn h: the policy writes one action token ``action_chars[y_h]``; the environment draws the
    next state x_{h+1} ~ p(· | x_h, y_h) and appends one observation token naming which of the
    pair's listed successors was drawn (``OBSERVATION_CHARS[j]`` for the j-th entry of its CSR
    slice). The prompt of turn h is the transcript so far,
    ``f"{prompt_prefix}{c}:" + y_1 o_1 … y_{h−1} o_{h−1}``; after H turns the final states of two
    plays of the same context are compared with the game's preference. The transcript determines
    the state (:meth:`state_of`), so an LM policy over transcripts contains every policy over
    states.

    Shapes: B plays, A actions, H turns, X contexts.

    Attributes:
      game: the dialogue game.
      action_chars: A characters (default ``a…``).
      prompt_prefix: the context marker.
    """

    game: Any
    action_chars: str
    prompt_prefix: str = "c"

    def __post_init__(self) -> None:
        from ...envs.dialogue import DialogueGame

        if not isinstance(self.game, DialogueGame):
            raise ValueError(f"game must be a DialogueGame, got {describe(self.game)}")
        A = self.game.num_actions
        if not isinstance(self.action_chars, str) or len(self.action_chars) != A or len(set(self.action_chars)) != A:
            raise ValueError(f"action_chars must be {A} distinct characters, got {self.action_chars!r:.80}")
        most = int(np.max(np.diff(self.game.transition_starts)))
        if most > len(OBSERVATION_CHARS):
            raise ValueError(f"game must list ≤ {len(OBSERVATION_CHARS)} successors per pair, got {most}")
        if set(self.action_chars) & set(OBSERVATION_CHARS[:most]):
            raise ValueError(f"action_chars must not reuse observation characters {OBSERVATION_CHARS[:most]!r}")
        if not isinstance(self.prompt_prefix, str) or not self.prompt_prefix:
            raise ValueError(f"prompt_prefix must be a non-empty string, got {self.prompt_prefix!r}")

    @property
    def horizon(self) -> int:
        return self.game.horizon

    def prompt(self, context: int) -> str:
        """The opening prompt of a context."""
        c = check_int("context", context, low=0, high=self.game.num_contexts - 1)
        return f"{self.prompt_prefix}{c}:"

    def start(self, contexts: Any) -> np.ndarray:
        """[B] initial states of the given contexts (state c is context c's x_1)."""
        return check_indices("contexts", contexts, upper=self.game.num_contexts)

    def step(self, states: Any, actions: Any, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """One turn for B plays: ``(next_states [B], observation indices [B])``.

        Args:
          states: [B] decision states; actions: [B] in [0, A); rng: seed or numpy Generator.
        """
        game = self.game
        A = game.num_actions
        states = check_indices("states", states, upper=game.num_decision_states)
        actions = check_indices("actions", actions, upper=A, shape=states.shape)
        generator = as_generator("rng", rng)
        pair = states * A + actions
        lo = game.transition_starts[pair]
        hi = game.transition_starts[pair + 1]
        cumulative = np.cumsum(game.transition_probs)
        below = np.where(lo > 0, cumulative[np.maximum(lo - 1, 0)], 0.0)
        # inverse-CDF draw inside each pair's CSR slice (clipped against rounding at the ends)
        target = below + generator.random(states.shape) * (cumulative[hi - 1] - below)
        entry = np.clip(np.searchsorted(cumulative, target, side="right"), lo, hi - 1)
        return game.transition_next[entry], entry - lo

    def turn_text(self, actions: Any, observations: Any) -> list[str]:
        """[B] strings ``action_char + observation_char`` of one turn."""
        pairs = zip(np.asarray(actions).tolist(), np.asarray(observations).tolist())
        return [self.action_chars[a] + OBSERVATION_CHARS[o] for a, o in pairs]

    def state_of(self, transcript: str) -> int:
        """The state reached by a transcript (``ValueError`` if it is not a valid play prefix)."""
        game = self.game
        if not isinstance(transcript, str) or not transcript.startswith(self.prompt_prefix) or ":" not in transcript:
            raise ValueError(f"transcript must start with {self.prompt_prefix!r}<context>:, got {transcript!r:.80}")
        head, _, turns = transcript.partition(":")
        try:
            state = self.start([int(head[len(self.prompt_prefix) :])])[0]
        except ValueError as error:
            raise ValueError(f"transcript has no valid context: {transcript!r:.80}") from error
        if len(turns) % 2 or len(turns) // 2 > game.horizon:
            raise ValueError(f"transcript must hold ≤ H={game.horizon} (action, observation) pairs, got {turns!r}")
        for a_char, o_char in zip(turns[::2], turns[1::2]):
            if a_char not in self.action_chars or o_char not in OBSERVATION_CHARS:
                raise ValueError(f"transcript has an invalid turn {a_char + o_char!r}")
            k = int(state) * game.num_actions + self.action_chars.index(a_char)
            lo, hi = game.transition_starts[k], game.transition_starts[k + 1]
            j = OBSERVATION_CHARS.index(o_char)
            if j >= hi - lo:
                raise ValueError(f"transcript's observation {o_char!r} names no successor of that turn")
            state = game.transition_next[lo + j]
        return int(state)

    def preference(self, finals_a: Any, finals_b: Any) -> np.ndarray:
        """[B] P(x_a ≻ x_b | c) for pairs of final states (global ids) of the same contexts."""
        a, b = np.asarray(finals_a), np.asarray(finals_b)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"finals_b must match finals_a's 1-D shape {a.shape}, got {b.shape}")
        return np.array([self.game.preference(int(x), int(y)) for x, y in zip(a.tolist(), b.tolist())])


def dialogue_text_game(game, *, action_chars: str | None = None, prompt_prefix: str = "c") -> DialogueTextGame:
    """A :class:`DialogueTextGame` (default action characters ``a, b, …``)."""
    from ...envs.dialogue import DialogueGame

    if not isinstance(game, DialogueGame):
        raise ValueError(f"game must be a DialogueGame, got {describe(game)}")
    if action_chars is None:
        if game.num_actions > len(ACTION_CHARS):
            raise ValueError(
                f"game must have ≤ {len(ACTION_CHARS)} actions without action_chars, got {game.num_actions}"
            )
        action_chars = ACTION_CHARS[: game.num_actions]
    return DialogueTextGame(game=game, action_chars=action_chars, prompt_prefix=prompt_prefix)
