"""Nash-MD-PG for language models: per-token geometric-mixture opponents and token-level KL.

Munos et al., "Nash Learning from Human Feedback", ICML 2024 (arXiv 2312.00886), §7 and App. F.
For a prompt x, a response y ~ π_θ(·|x) and an opponent y′ ~ π′(·|x) (gradient stopped through π′),

    ĝ = Σ_n ∇_θ log π_θ(y_n | x, y_<n) · [ P(y ≻ y′|x) − ½ − τ·Σ_{m≥n} log(π_θ(y_m|x, y_<m)/μ(y_m|x, y_<m)) ],

an unbiased estimate of ∇_θ [P(π_θ ≻ π′) − τ·KL(π_θ‖μ)] (the ½ is the baseline P(y ≻ y); the
KL enters as a token-level reward-to-go: token n's score multiplies only the KL terms of tokens
≥ n, the earlier ones being constants given its prefix). Opponents (App. F.1/F.3):

* ``mixture`` β ∈ [0, 1]: y′ from the per-token geometric mixture softmax((1−β)·logits_π + β·logits_μ)
  (``fixpoint_rl.deep.llm.sampling.sample_geometric_mixture``); β = 0 is self-play, β = 1 the best
  response to μ. For single-token responses it is the sequence-level mixture π^β ∝ π^(1−β)μ^β of
  the theory; for longer ones the product of per-token mixtures differs from it —
  :func:`per_token_mixture_logprobs` and :func:`sequence_mixture_logprobs` measure the gap exactly.
* ``ema``: y′ from a model whose parameters are an exponential moving average of θ
  (:func:`ema_update`, θ̄ ← d·θ̄ + (1 − d)·θ), the paper's Nash-EMA.

With expected gradients and a fixed β the stationary point solves π ∝ μ·exp(P(y ≻ π^β)/τ) (for
one-token responses), equal to the regularised Nash equilibrium π*_τ only at β = 0 (derived from
the stationarity of the expected update; the tabular ``fixpoint_rl.tabular.nlhf.nash_md_pg``).

The RLHF baseline (NLHF §8) uses the same estimator with the score r(y) − b (a reward model, e.g.
``fixpoint_rl.deep.llm.preference_models``) in place of P(y ≻ y′) − ½.

Shapes: B responses, T tokens, K allowed tokens, N enumerated responses, X prompts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from ...envs.checks import check_scalar, describe
from ...tabular.core.mirror import geometric_mixture_log
from .sampling import Samples, completion_logits, sample, sample_geometric_mixture, sequence_logprobs

__all__ = [
    "all_sequences",
    "ema_update",
    "kl_reward_to_go",
    "kl_regularized_pg_loss",
    "nash_md_pg_loss",
    "per_token_mixture_logprobs",
    "per_token_mixture_of_sequences",
    "SampledLoss",
    "sampled_nash_md_pg_loss",
    "sampled_rlhf_pg_loss",
    "sequence_mixture_logprobs",
]

KL_FORMS = ("reward_to_go", "token")
BASELINES = ("leave_one_out", "batch_mean", "none")


def _check_tokens(name: str, value: Any, shape=None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim != 2:
        raise ValueError(f"{name} must be a [B, T] tensor, got {describe(value)}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(value.shape)}")
    return value


def kl_reward_to_go(policy_logprobs: torch.Tensor, reference_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T] Σ_{m ≥ n} (log π(y_m|·) − log μ(y_m|·)) over masked tokens (0 after the end)."""
    policy_logprobs = _check_tokens("policy_logprobs", policy_logprobs)
    reference_logprobs = _check_tokens("reference_logprobs", reference_logprobs, policy_logprobs.shape)
    mask = _check_tokens("mask", mask, policy_logprobs.shape).to(policy_logprobs.dtype)
    terms = (policy_logprobs - reference_logprobs) * mask
    return terms.flip(-1).cumsum(-1).flip(-1) * mask


def kl_regularized_pg_loss(
    policy_logprobs: torch.Tensor,
    reference_logprobs: torch.Tensor,
    mask: torch.Tensor,
    scores: torch.Tensor,
    tau: float,
    *,
    weights: torch.Tensor | None = None,
    kl_form: str = "reward_to_go",
) -> torch.Tensor:
    """Surrogate whose gradient is −(1/B)Σ_b w_b ĝ_b, ĝ the NLHF §7 estimator with score s_b.

    loss = −(1/B) Σ_b w_b Σ_n log π_θ(y_bn|·) · sg[s_b − τ·KL-to-go_bn]   (sg: stop gradient).

    ``kl_form="token"`` replaces the reward-to-go by each token's own log-ratio (the KL loss of
    TRL's former ``NashMDTrainer``): for responses of more than one token its expectation is NOT
    ∇KL(π_θ‖μ) (the cross terms E[∇log π(y_n)·log(π/μ)(y_m)], m > n, are dropped); it is kept only
    so that tests can show the bias (``tests/test_llm_nash_md_sampled.py``).

    Args:
      policy_logprobs: [B, T] per-token log π_θ (differentiable).
      reference_logprobs: [B, T] per-token log μ (constants).
      mask: [B, T] 1 on response tokens.
      scores: [B] P(y ≻ y′) − ½ (Nash-MD-PG) or r(y) − baseline (RLHF).
      tau: τ ≥ 0, KL coefficient.
      weights: optional [B] sample weights (exact expectations: probabilities).
      kl_form: ``"reward_to_go"`` (unbiased) or ``"token"`` (biased for T > 1, see above).

    Returns:
      Scalar loss.
    """
    tau = check_scalar("tau", tau, low=0.0)
    if kl_form not in KL_FORMS:
        raise ValueError(f"kl_form must be one of {KL_FORMS}, got {kl_form!r}")
    if kl_form == "reward_to_go":
        to_go = kl_reward_to_go(policy_logprobs.detach(), reference_logprobs.detach(), mask)
    else:
        reference_logprobs = _check_tokens("reference_logprobs", reference_logprobs, policy_logprobs.shape)
        token_mask = _check_tokens("mask", mask, policy_logprobs.shape).to(policy_logprobs.dtype)
        to_go = (policy_logprobs.detach() - reference_logprobs.detach()) * token_mask
    if not isinstance(scores, torch.Tensor) or scores.shape != policy_logprobs.shape[:1]:
        raise ValueError(f"scores must be a [B] = [{policy_logprobs.shape[0]}] tensor, got {describe(scores)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite")
    advantage = (scores.detach().to(to_go.dtype)[:, None] - tau * to_go) * mask.to(to_go.dtype)
    per_row = (policy_logprobs * advantage).sum(-1)
    if weights is not None:
        per_row = per_row * weights.detach().to(per_row.dtype)
    return -per_row.mean()


def nash_md_pg_loss(
    policy_logprobs: torch.Tensor,
    reference_logprobs: torch.Tensor,
    mask: torch.Tensor,
    preferences: torch.Tensor,
    tau: float,
    *,
    weights: torch.Tensor | None = None,
    kl_form: str = "reward_to_go",
) -> torch.Tensor:
    """Nash-MD-PG surrogate (NLHF §7): :func:`kl_regularized_pg_loss` with scores P(y ≻ y′|x) − ½.

    ``preferences`` [B] are P(y_b ≻ y′_b | x_b) ∈ [0, 1] (probabilities, or 0/1 sampled outcomes).
    """
    if not isinstance(preferences, torch.Tensor) or bool(((preferences < 0) | (preferences > 1)).any()):
        raise ValueError(f"preferences must be a tensor of probabilities in [0, 1], got {describe(preferences)}")
    return kl_regularized_pg_loss(policy_logprobs, reference_logprobs, mask, preferences - 0.5, tau, weights=weights,
                                  kl_form=kl_form)


class SampledLoss(NamedTuple):
    """One sampled minibatch: the surrogate ``loss``, the policy's ``samples`` y [B, T], the
    opponent's ``opponent_samples`` y′ (None for RLHF) and the per-row ``scores`` [B]."""

    loss: torch.Tensor
    samples: Samples
    opponent_samples: Samples | None
    scores: torch.Tensor


def _on_policy_samples(policy, reference, prompt_ids, prompt_mask, length, generator, allowed_tokens):
    """y ~ π_θ(·|x) and the per-token log-probs of π_θ (differentiable) and of μ (no grad): [B, T] each."""
    samples = sample(policy, prompt_ids, prompt_mask, length, stop_at_eos=False, generator=generator,
                     allowed_tokens=allowed_tokens)
    policy_tokens = sequence_logprobs(policy, prompt_ids, prompt_mask, samples.tokens, samples.mask, per_token=True,
                                      allowed_tokens=allowed_tokens)
    with torch.no_grad():
        reference_tokens = sequence_logprobs(reference, prompt_ids, prompt_mask, samples.tokens, samples.mask,
                                             per_token=True, allowed_tokens=allowed_tokens)
    return samples, policy_tokens, reference_tokens


def sampled_nash_md_pg_loss(
    policy,
    reference,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    length: int,
    preference: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    tau: float,
    *,
    mixture: float = 0.0,
    opponent=None,
    generator: torch.Generator | int,
    allowed_tokens: Any = None,
    kl_form: str = "reward_to_go",
) -> SampledLoss:
    """One Nash-MD-PG minibatch exactly as ``fixpoint train nash_md_pg`` runs it (NLHF §7).

    Per prompt row b: y_b ~ π_θ(·|x_b) (``sample``, fixed length T = ``length``), then y′_b from the
    per-token geometric mixture of π_θ and μ with weight ``mixture`` (``sample_geometric_mixture``:
    two forward passes per token) or, with ``opponent`` given, from that model (Nash-EMA);
    P(y_b ≻ y′_b) = ``preference(y_tokens [B, T], y′_tokens [B, T])`` [B]; the loss is
    :func:`nash_md_pg_loss` on the per-token log-probs of π_θ (differentiable) and μ. Its gradient
    is −(1/B)·Σ_b ĝ_b, an unbiased estimate of −∇_θ[P(π_θ ≻ π̃) − τ·KL(π_θ‖μ)] with π̃ the
    opponent's (per-token mixture) distribution held fixed (tested against enumeration).

    Shapes: prompt_ids/prompt_mask [B, P] left padded.
    """
    if kl_form not in KL_FORMS:
        raise ValueError(f"kl_form must be one of {KL_FORMS}, got {kl_form!r}")
    tau = check_scalar("tau", tau, low=0.0)
    samples, policy_tokens, reference_tokens = _on_policy_samples(policy, reference, prompt_ids, prompt_mask, length,
                                                                 generator, allowed_tokens)
    if opponent is None:
        other = sample_geometric_mixture(policy, reference, mixture, prompt_ids, prompt_mask, length, stop_at_eos=False,
                                         generator=generator, allowed_tokens=allowed_tokens)
    else:
        other = sample(opponent, prompt_ids, prompt_mask, length, stop_at_eos=False, generator=generator,
                       allowed_tokens=allowed_tokens)
    wins = preference(samples.tokens, other.tokens)
    loss = nash_md_pg_loss(policy_tokens, reference_tokens, samples.mask, wins, tau, kl_form=kl_form)
    return SampledLoss(loss, samples, other, wins - 0.5)


def sampled_rlhf_pg_loss(
    policy,
    reference,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    length: int,
    reward: Callable[[torch.Tensor], torch.Tensor],
    tau: float,
    *,
    generator: torch.Generator | int,
    allowed_tokens: Any = None,
    baseline: str = "leave_one_out",
) -> SampledLoss:
    """One KL-regularised policy-gradient minibatch on a reward (NLHF §8's RLHF baseline), as
    ``fixpoint train rlhf`` runs it: y_b ~ π_θ(·|x_b), score r(y_b) − b_b, token-level KL to go.

    ``baseline``: ``"leave_one_out"`` b_b = mean of the other B − 1 rewards (independent of y_b, so
    the estimate stays unbiased: Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for
    free!"; RLOO, Ahmadian et al. 2024, arXiv 2402.14740, §3); ``"batch_mean"`` b = mean of all B
    rewards, which includes r(y_b) itself and scales the reward part of the expected gradient by
    (B − 1)/B — equivalently τ by B/(B − 1) (kept to show that bias in tests); ``"none"`` b = 0.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    B = prompt_ids.shape[0]
    if baseline == "leave_one_out" and B < 2:
        raise ValueError(f"prompt_ids must hold ≥ 2 rows for a leave-one-out baseline, got {B}")
    samples, policy_tokens, reference_tokens = _on_policy_samples(policy, reference, prompt_ids, prompt_mask, length,
                                                                 generator, allowed_tokens)
    r = reward(samples.tokens)
    if baseline == "leave_one_out":
        scores = r - (r.sum() - r) / (B - 1)
    elif baseline == "batch_mean":
        scores = r - r.mean()
    else:
        scores = r
    loss = kl_regularized_pg_loss(policy_tokens, reference_tokens, samples.mask, scores, tau)
    return SampledLoss(loss, samples, None, scores)


@torch.no_grad()
def ema_update(ema_model, model, decay: float) -> None:
    """Nash-EMA opponent: θ̄ ← decay·θ̄ + (1 − decay)·θ, in place (buffers copied)."""
    decay = check_scalar("decay", decay, low=0.0, high=1.0)
    for target, source in zip(ema_model.parameters(), model.parameters()):
        target.mul_(decay).add_(source.detach(), alpha=1.0 - decay)
    for target, source in zip(ema_model.buffers(), model.buffers()):
        target.copy_(source)


# ------------------------------------------------------------------------------------------
# Exact mixture probabilities of enumerable responses (the per-token approximation's bias)
# ------------------------------------------------------------------------------------------
def _allowed_log_softmax(model, prompt_ids, prompt_mask, responses, allowed) -> torch.Tensor:
    """[X, N, L, K] next-token log-probs over the K allowed tokens at every prefix of every response."""
    X, N = prompt_ids.shape[0], responses.shape[0]
    rows_prompt = prompt_ids.repeat_interleave(N, 0)
    rows_mask = prompt_mask.repeat_interleave(N, 0)
    rows_y = responses.repeat(X, 1)
    logits = completion_logits(model, rows_prompt, rows_mask, rows_y, torch.ones_like(rows_y))
    logits = logits[..., allowed.to(logits.device)]
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    return torch.log_softmax(logits, -1).view(X, N, responses.shape[1], -1)


def per_token_mixture_logprobs(policy, reference, beta: float, prompt_ids, prompt_mask, responses, allowed_tokens):
    """[X, N] log-probability of each response under the per-token geometric mixture (NLHF App. F.1).

    log π̃^β(y|x) = Σ_t log softmax((1−β)·log π(·|x, y_<t) + β·log μ(·|x, y_<t))[y_t] over the K
    allowed tokens — the distribution ``sample_geometric_mixture`` draws from. Exact (enumeration).
    """
    beta = check_scalar("beta", beta, low=0.0, high=1.0)
    allowed = torch.as_tensor(allowed_tokens, dtype=torch.long)
    policy_steps = _allowed_log_softmax(policy, prompt_ids, prompt_mask, responses, allowed)
    reference_steps = _allowed_log_softmax(reference, prompt_ids, prompt_mask, responses, allowed)
    mixture = geometric_mixture_log(policy_steps, reference_steps.to(policy_steps.dtype), beta)
    lookup = torch.full((int(allowed.max()) + 1,), -1, dtype=torch.long)
    lookup[allowed] = torch.arange(allowed.numel())
    digits = lookup[responses.cpu()].to(mixture.device)  # [N, L]
    index = digits[None, :, :, None].expand(mixture.shape[0], -1, -1, 1)
    return mixture.gather(-1, index).squeeze(-1).sum(-1)


def sequence_mixture_logprobs(policy_logprobs: torch.Tensor, reference_logprobs: torch.Tensor, beta: float):
    """[X, N] log π^β(y|x) = log softmax_y((1−β)·log π(y|x) + β·log μ(y|x)): the sequence-level
    mixture Nash-MD's theory uses (NLHF §4, App. F.3), from [X, N] sequence log-probabilities."""
    beta = check_scalar("beta", beta, low=0.0, high=1.0)
    return geometric_mixture_log(policy_logprobs, reference_logprobs, beta)


def per_token_mixture_of_sequences(policy: np.ndarray, reference: np.ndarray, n_tokens: int, length: int,
                                   beta: float) -> np.ndarray:
    """[N] the per-token geometric mixture (NLHF App. F.1) of two distributions over N = K^L sequences.

    Tabular form of what ``sample_geometric_mixture`` draws from an LM: each distribution's
    next-token conditionals p(a | y_<t) are its prefix marginals' ratios, and
    π̃(y) = Π_t softmax_a((1−β)·log π(a|y_<t) + β·log μ(a|y_<t))[y_t]. Sequences are indexed in base
    K, first token most significant (``all_sequences`` order). Lets the per-token bias be studied
    for any sequence policy, e.g. at Nash-MD-PG's fixed points (``tests/test_llm_length_quality.py``).
    """
    K = int(n_tokens)
    L = int(length)
    beta = check_scalar("beta", beta, low=0.0, high=1.0)
    policy, reference = np.asarray(policy, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if policy.shape != (K**L,) or reference.shape != (K**L,):
        raise ValueError(f"policy and reference must have shape ({K**L},), got {policy.shape} and {reference.shape}")
    index = np.arange(K**L)
    log_mix = np.zeros(K**L)
    for t in range(L):
        prefix, digit = index // K ** (L - t), (index // K ** (L - t - 1)) % K
        conditionals = []
        for p in (policy, reference):
            marginal = p.reshape((K**t, K, K ** (L - t - 1))).sum(-1)  # [K^t prefixes, K next tokens]
            conditionals.append(np.log(marginal) - np.log(marginal.sum(-1, keepdims=True)))
        log_mix += geometric_mixture_log(conditionals[0], conditionals[1], beta)[prefix, digit]
    return np.exp(log_mix)


def all_sequences(allowed_tokens, length: int) -> torch.Tensor:
    """[K^L, L] every sequence of ``length`` allowed tokens (``itertools.product`` order)."""
    allowed = torch.as_tensor(allowed_tokens, dtype=torch.long).tolist()
    return torch.tensor(list(itertools.product(allowed, repeat=length)), dtype=torch.long)
