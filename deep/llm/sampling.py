"""Batched sampling with a KV cache, per-token log-probabilities, and the NLHF geometric mixture.

Shapes: B prompts (B·n rows after repeating each prompt n times), P prompt length (left padded),
T completion length, V vocabulary, K allowed response tokens, N enumerated responses of length L.

Conventions shared by every function here:

* Prompts are **left padded** (``prompt_mask`` is 0 then 1 along each row); completions are
  **right padded** (``mask`` is 1 then 0). Position ids are ``cumsum(attention_mask) − 1``, so a
  padded row gets exactly the logits of the unpadded one, and the sampler and
  :func:`sequence_logprobs` see identical positions.
* A completion ends with ``<eos>`` included (mask 1, its log-probability counts) in EOS mode;
  tokens after it are ``pad`` with mask 0 and log-prob 0.
* ``allowed_tokens`` (K token ids) restricts every next-token distribution to those tokens
  (softmax over their logits only). With it, an enumerable task's K^L responses carry a proper
  distribution π_θ(y|x) (:func:`enumerate_logprobs` sums to 1), and sampling, log-probs and
  enumeration agree.
* Randomness comes only from the ``generator`` argument (a ``torch.Generator`` on the model's
  device, or an int seed for a fresh one): the global RNG is never used, so the same generator
  state gives bitwise the same samples on CPU.

The decoding loop is our own (``model(...)`` calls with a ``transformers.DynamicCache`` under
``torch.inference_mode``) rather than ``model.generate``: it returns the sampling policy's
per-token log-probs without a second pass, supports the two-model geometric mixture, and stops
EOS-terminated rows without ``generate``'s ``min_new_tokens`` pitfall (that option suppresses
EOS for the first N tokens, so a fixed-length answer ending in EOS can never be sampled).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ...envs.checks import check_int, check_scalar
from ...tabular.core.mirror import geometric_mixture_log

__all__ = [
    "Samples",
    "enumerate_logprobs",
    "make_generator",
    "sample",
    "sample_geometric_mixture",
    "sequence_logprobs",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Samples:
    """Sampled completions.

    Attributes:
      tokens: [B·n, T] int64 completion tokens (``pad`` after the end). T ≤ ``max_new_tokens``:
        in EOS mode the loop stops once every row has ended, so T is the longest completion.
      mask: [B·n, T] int64, 1 on completion tokens (the final ``<eos>`` included), 0 after.
      logprobs: [B·n, T] per-token log-probabilities of the *sampling* distribution (at the
        sampling temperature, restricted to ``allowed_tokens`` when given, the mixture for
        :func:`sample_geometric_mixture`); 0 where ``mask`` is 0. With ``temperature=0``
        (greedy) they are the model's temperature-1 log-probs of the chosen tokens.
      prompt_ids: [B·n, P] the prompts, each repeated n times consecutively (row i·n + j is the
        j-th sample of prompt i).
      prompt_mask: [B·n, P] their attention mask.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """[B·n] number of completion tokens per row."""
        return self.mask.sum(-1)

    def sequence_logprobs(self) -> torch.Tensor:
        """[B·n] Σ_t log-prob of each completion under the sampling distribution."""
        return self.logprobs.sum(-1)


# ------------------------------------------------------------------------------------------
# Validation helpers
# ------------------------------------------------------------------------------------------
def make_generator(seed: int, device: Any = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (≥ 0)."""
    seed = check_int("seed", seed, low=0)
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(seed)
    return generator


def _as_generator(generator: Any, device: torch.device) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        if generator.device.type != device.type:
            raise ValueError(
                f"generator must live on the model's device ({device.type}), got {generator.device}"
            )
        return generator
    if isinstance(generator, bool) or not isinstance(generator, numbers.Integral):
        raise ValueError(f"generator must be a torch.Generator or an int seed, got {generator!r:.80}")
    return make_generator(int(generator), device)


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _check_ids(name: str, ids: Any, vocab_size: int, ndim: int = 2) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.ndim != ndim or ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be a {ndim}-D int64 tensor, got {_describe(ids)}")
    if ids.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(ids.shape)}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} must hold token ids in [0, {vocab_size - 1}], got {low}..{high}")
    return ids.long()


def _check_mask(name: str, mask: Any, shape: torch.Size, *, side: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must be a tensor of shape {tuple(shape)}, got {_describe(mask)}")
    mask = mask.long()
    if bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError(f"{name} must hold only 0 and 1")
    steps = mask[:, 1:] - mask[:, :-1]
    if side == "left":
        if bool((steps < 0).any()):
            raise ValueError(f"{name} must be left padded (0s then 1s along each row)")
        if bool((mask[:, -1] == 0).any()):
            raise ValueError(f"{name} must have at least one real token per row")
    elif bool((steps > 0).any()):
        raise ValueError(f"{name} must be right padded (1s then 0s along each row)")
    return mask


def _check_allowed(allowed_tokens: Any, vocab_size: int, device: torch.device) -> torch.Tensor | None:
    if allowed_tokens is None:
        return None
    allowed = torch.as_tensor(allowed_tokens)
    if allowed.ndim != 1 or allowed.numel() < 1 or allowed.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"allowed_tokens must be a non-empty 1-D sequence of token ids, got {_describe(allowed_tokens)}"
        )
    if int(allowed.min()) < 0 or int(allowed.max()) >= vocab_size:
        raise ValueError(f"allowed_tokens must lie in [0, {vocab_size - 1}], got {allowed.tolist()}")
    if torch.unique(allowed).numel() != allowed.numel():
        raise ValueError(f"allowed_tokens must not repeat ids, got {allowed.tolist()}")
    return allowed.long().to(device)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    return repr(value)[:80]


def _check_temperature(temperature: Any) -> float:
    return check_scalar("temperature", temperature, low=0.0)


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log_softmax(logits / τ) in at least float32 (bfloat16 models are upcast)."""
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    if temperature not in (0.0, 1.0):
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


# ------------------------------------------------------------------------------------------
# Decoding loop
# ------------------------------------------------------------------------------------------
def _decode(
    models: Sequence[Any],
    combine: Callable[[list[torch.Tensor]], torch.Tensor],
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    *,
    n: int,
    temperature: float,
    stop_at_eos: bool,
    generator: Any,
    allowed_tokens: Any,
) -> Samples:
    """Shared KV-cache loop: ``combine(list of [B, V'] logits) -> [B, V']`` log-probs at τ = 1."""
    first = models[0]
    device = _model_device(first)
    vocab = int(first.config.vocab_size)
    for other in models[1:]:
        if int(other.config.vocab_size) != vocab:
            raise ValueError(f"reference must share the policy's vocabulary ({vocab}), got {other.config.vocab_size}")
    ids = _check_ids("prompt_ids", prompt_ids, vocab)
    mask = _check_mask("prompt_mask", prompt_mask, ids.shape, side="left")
    T = check_int("max_new_tokens", max_new_tokens, low=1)
    n = check_int("n", n, low=1)
    temperature = _check_temperature(temperature)
    if not isinstance(stop_at_eos, bool):
        raise ValueError(f"stop_at_eos must be a bool, got {stop_at_eos!r}")
    generator = _as_generator(generator, device)
    allowed = _check_allowed(allowed_tokens, vocab, device)
    eos_id = first.config.eos_token_id
    pad_id = first.config.pad_token_id if first.config.pad_token_id is not None else 0
    if stop_at_eos and eos_id is None:
        raise ValueError("stop_at_eos=True needs model.config.eos_token_id, got None")

    from transformers import DynamicCache

    ids, mask = ids.to(device), mask.to(device)
    with torch.inference_mode():
        padded = bool((mask == 0).any())
        positions = _positions(mask)
        caches = [DynamicCache(config=m.config) for m in models]
        # The prompt is encoded once per prompt; its KV cache and last logits are then repeated
        # for the n samples (generate(num_return_sequences=n) encodes each prompt n times).
        logits = [
            m(
                input_ids=ids,
                attention_mask=mask if padded else None,  # no padding: the plain causal path
                position_ids=positions,
                cache=c,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
            for m, c in zip(models, caches)
        ]
        if n > 1:
            for cache in caches:
                cache.batch_repeat_interleave(n)
            logits = [step.repeat_interleave(n, 0) for step in logits]
            ids, mask, positions = (x.repeat_interleave(n, 0) for x in (ids, mask, positions))
        B = ids.shape[0]
        attention = mask if padded else None
        next_position = positions[:, -1:] + 1
        tokens = torch.full((B, T), pad_id, dtype=torch.long, device=device)
        token_mask = torch.full((B, T), 0 if stop_at_eos else 1, dtype=torch.long, device=device)
        logprobs = None
        alive = torch.ones(B, dtype=torch.bool, device=device)
        steps = T
        for t in range(T):
            if allowed is not None:
                logits = [step[:, allowed] for step in logits]
            base = combine(logits)  # [B, V'] log-probs at temperature 1
            if temperature == 0.0:
                choice = base.argmax(-1)
                logp = base
            else:
                logp = base if temperature == 1.0 else torch.log_softmax(base / temperature, dim=-1)
                choice = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
            chosen_logp = logp.gather(-1, choice[:, None]).squeeze(-1)
            token = allowed[choice] if allowed is not None else choice
            if logprobs is None:
                logprobs = torch.zeros((B, T), dtype=logp.dtype, device=device)
            if stop_at_eos:  # rows that ended get pad, mask 0, log-prob 0
                tokens[:, t] = torch.where(alive, token, torch.full_like(token, pad_id))
                token_mask[:, t] = alive.long()
                logprobs[:, t] = torch.where(alive, chosen_logp, torch.zeros_like(chosen_logp))
                alive = alive & (token != eos_id)
                if not bool(alive.any()):
                    steps = t + 1
                    break
            else:  # fixed length: every row is alive at every step
                tokens[:, t] = token
                logprobs[:, t] = chosen_logp
            if t == T - 1:
                break
            if attention is not None:
                attention = torch.cat([attention, attention.new_ones((B, 1))], dim=1)
            step_input = tokens[:, t : t + 1]
            logits = [
                m(
                    input_ids=step_input, attention_mask=attention, position_ids=next_position, cache=c, use_cache=True
                ).logits[:, -1]
                for m, c in zip(models, caches)
            ]
            next_position = next_position + 1
    # Clone outside inference mode so callers can feed the results into autograd.
    return Samples(
        tokens=tokens[:, :steps].clone(),
        mask=token_mask[:, :steps].clone(),
        logprobs=logprobs[:, :steps].clone(),
        prompt_ids=ids.clone(),
        prompt_mask=mask.clone(),
    )


def sample(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    *,
    n: int = 1,
    temperature: float = 1.0,
    stop_at_eos: bool = True,
    generator: torch.Generator | int,
    allowed_tokens: Sequence[int] | torch.Tensor | None = None,
) -> Samples:
    """Sample n completions per prompt from a causal LM with a KV cache.

    Args:
      model: a ``transformers`` causal LM (e.g. from :func:`fixpoint_rl.deep.llm.models.build_lm`).
      prompt_ids: [B, P] int64, left padded.
      prompt_mask: [B, P] 0/1 attention mask (0s then 1s; every row has a real token).
      max_new_tokens: T ≥ 1, the completion length (fixed-length mode) or its cap (EOS mode).
      n: completions per prompt (rows i·n … i·n + n − 1 belong to prompt i).
      temperature: τ ≥ 0; tokens are drawn from softmax(logits / τ); τ = 0 is greedy.
      stop_at_eos: True — a row ends at its first ``<eos>`` (which may be the first token) and the
        loop stops once every row has ended; False — exactly ``max_new_tokens`` tokens per row,
        ``<eos>`` being an ordinary token.
      generator: a ``torch.Generator`` on the model's device, or an int seed.
      allowed_tokens: optional K token ids; every step samples among them only.

    Returns:
      :class:`Samples` (tokens, mask, per-token log-probs of the sampling distribution, prompts).
    """
    return _decode(
        [model],
        lambda logits: _log_probs(logits[0], 1.0),
        prompt_ids,
        prompt_mask,
        max_new_tokens,
        n=n,
        temperature=temperature,
        stop_at_eos=stop_at_eos,
        generator=generator,
        allowed_tokens=allowed_tokens,
    )


def sample_geometric_mixture(
    policy,
    reference,
    beta: float,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    *,
    n: int = 1,
    temperature: float = 1.0,
    stop_at_eos: bool = True,
    generator: torch.Generator | int,
    allowed_tokens: Sequence[int] | torch.Tensor | None = None,
) -> Samples:
    """Sample from the per-token geometric mixture of two models (NLHF App. F.1).

    Munos et al. 2024 (arXiv 2312.00886), Nash-MD's alternative policy π^β ∝ π^(1−β) μ^β is
    intractable at the sequence level (the normaliser c(x)); App. F.1 approximates it token by
    token: at each prefix the next token is drawn from softmax((1 − β)·logits_π + β·logits_μ),
    the normalised per-token geometric mixture — the distribution TRL's former
    ``GeometricMixtureWrapper`` used with ``mixture_coef`` = β. The per-token log-probs are
    computed by ``fixpoint_rl.tabular.core.mirror.geometric_mixture_log`` on the two models'
    log-softmaxes (one formula, shared with the tabular solvers). The product of per-token
    mixtures is not the sequence-level mixture; this bias is the paper's approximation.

    Args:
      policy: π_θ; reference: μ (same vocabulary); beta: β ∈ [0, 1] (0 → π, 1 → μ).
      Other arguments as in :func:`sample`; ``temperature`` applies to the mixture's logits.

    Returns:
      :class:`Samples` whose ``logprobs`` are the mixture's per-token log-probs (at τ).
    """
    beta = check_scalar("beta", beta, low=0.0, high=1.0)

    def combine(logits: list[torch.Tensor]) -> torch.Tensor:
        return geometric_mixture_log(_log_probs(logits[0], 1.0), _log_probs(logits[1], 1.0), beta)

    return _decode(
        [policy, reference],
        combine,
        prompt_ids,
        prompt_mask,
        max_new_tokens,
        n=n,
        temperature=temperature,
        stop_at_eos=stop_at_eos,
        generator=generator,
        allowed_tokens=allowed_tokens,
    )


# ------------------------------------------------------------------------------------------
# Log-probabilities of given completions
# ------------------------------------------------------------------------------------------
def completion_logits(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
) -> torch.Tensor:
    """[B, T, V] next-token logits at each completion position (one forward pass, no cache).

    Position t's logits predict ``completion_ids[:, t]`` given the prompt and the completion's
    first t tokens. Gradients flow (call under ``torch.no_grad`` when not training).
    """
    device = _model_device(model)
    vocab = int(model.config.vocab_size)
    prompt = _check_ids("prompt_ids", prompt_ids, vocab)
    p_mask = _check_mask("prompt_mask", prompt_mask, prompt.shape, side="left")
    completion = _check_ids("completion_ids", completion_ids, vocab)
    if completion.shape[0] != prompt.shape[0]:
        raise ValueError(
            f"completion_ids must have the prompts' batch size {prompt.shape[0]}, got {completion.shape[0]}"
        )
    c_mask = _check_mask("completion_mask", completion_mask, completion.shape, side="right")
    ids = torch.cat([prompt, completion], dim=1).to(device)
    mask = torch.cat([p_mask, c_mask], dim=1).to(device)
    T = completion.shape[1]
    attention = mask if bool((mask == 0).any()) else None
    out = model(input_ids=ids, attention_mask=attention, position_ids=_positions(mask), logits_to_keep=T + 1)
    return out.logits[:, :-1]


def sequence_logprobs(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    per_token: bool = False,
    temperature: float = 1.0,
    allowed_tokens: Sequence[int] | torch.Tensor | None = None,
) -> torch.Tensor:
    """log π(y|x) of given completions: Σ_t log softmax(logits_t / τ)[y_t] over masked tokens.

    Args:
      model: a causal LM.
      prompt_ids, prompt_mask: [B, P] left padded.
      completion_ids, completion_mask: [B, T] right padded (e.g. ``Samples.tokens`` / ``.mask``).
      per_token: return [B, T] per-token log-probs (0 where the mask is 0) instead of [B] sums.
      temperature: τ > 0 (the sampler's temperature, to score its own samples).
      allowed_tokens: K ids; the softmax runs over them only (as in :func:`sample`); masked
        completion tokens must be among them.

    Returns:
      [B] (or [B, T]) log-probabilities, differentiable with respect to the model's parameters,
      in float32 (float64 for a float64 model).
    """
    temperature = check_scalar("temperature", temperature, low=0.0, low_inclusive=False)
    if not isinstance(per_token, bool):
        raise ValueError(f"per_token must be a bool, got {per_token!r}")
    device = _model_device(model)
    allowed = _check_allowed(allowed_tokens, int(model.config.vocab_size), device)
    logits = completion_logits(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    targets = completion_ids.to(device).long()
    mask = completion_mask.to(device).long()
    if allowed is not None:
        lookup = torch.full((int(model.config.vocab_size),), -1, dtype=torch.long, device=device)
        lookup[allowed] = torch.arange(allowed.numel(), device=device)
        targets = lookup[targets]
        if bool(((targets < 0) & (mask == 1)).any()):
            raise ValueError("completion_ids must use only allowed_tokens where completion_mask is 1")
        targets = targets.clamp(min=0)
        logits = logits[..., allowed]
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    # log softmax(logits)[y] = −cross_entropy(logits, y): the fused kernel (one pass, no [B, T, V]
    # log-prob tensor kept for backward) computes exactly the log-softmax gather.
    logp = -torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), reduction="none"
    ).view(targets.shape)
    logp = torch.where(mask == 1, logp, torch.zeros_like(logp))
    return logp if per_token else logp.sum(-1)


def enumerate_logprobs(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    responses: torch.Tensor,
    *,
    allowed_tokens: Sequence[int] | torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """log π_θ(y|x) for every prompt x and every response y, in one batched forward pass.

    The bridge to exact tabular answers: with ``allowed_tokens`` the task's K response tokens and
    ``responses`` all K^L sequences (``EnumerableTask.all_response_ids``), ``exp`` of each row is
    a distribution over the N = K^L responses (sums to 1), to be compared with the tabular
    closed forms (softmax policies over N arms).

    Args:
      prompt_ids, prompt_mask: [B, P] left padded.
      responses: [N, L] int64 token ids (fixed length, no padding).
      allowed_tokens, temperature: as in :func:`sequence_logprobs`.

    Returns:
      [B, N] log-probabilities (differentiable).
    """
    vocab = int(model.config.vocab_size)
    prompt = _check_ids("prompt_ids", prompt_ids, vocab)
    p_mask = _check_mask("prompt_mask", prompt_mask, prompt.shape, side="left")
    ys = _check_ids("responses", responses, vocab)
    B, N = prompt.shape[0], ys.shape[0]
    rows_prompt = prompt.repeat_interleave(N, 0)
    rows_mask = p_mask.repeat_interleave(N, 0)
    rows_y = ys.repeat(B, 1)
    logp = sequence_logprobs(
        model,
        rows_prompt,
        rows_mask,
        rows_y,
        torch.ones_like(rows_y),
        allowed_tokens=allowed_tokens,
        temperature=temperature,
    )
    return logp.view(B, N)
