"""Generalized Preference Optimization (GPO) losses on language-model log-ratio margins.

Tang et al., "Generalized Preference Optimization: A Unified Approach to Offline Alignment",
ICML 2024 (arXiv 2402.05749), §2: for a labelled triple (x, y_w, y_l) the loss is f(β·ρ) with the
log-ratio margin

    ρ = [log π_θ(y_w|x) − log π_ref(y_w|x)] − [log π_θ(y_l|x) − log π_ref(y_l|x)],

and f one of the convex surrogates of GPO Table 1 (logistic = DPO, hinge = SLiC, squared = IPO,
exponential, truncated quadratic, Savage). The formula f lives once, in
``fixpoint_rl.tabular.core.preference_losses.gpo_loss`` (array API: the numpy tabular solvers and
this torch code call the same function, autograd flows through it).

**Margins.** ``margin="sum"`` uses sequence log-probabilities log π(y|x) = Σ_t log π(y_t|x, y_<t)
(the papers' ρ); ``margin="mean"`` divides each side's log-ratio by its number of completion tokens
(the per-token average TRL's ``DPOTrainer`` uses for ``ipo``). The choice is always explicit.

**Names and scales.** ``kind`` takes GPO's names and the papers' aliases (β keeps GPO's meaning,
it multiplies the margin inside f): ``"dpo"`` = logistic, ``"ipo"`` = squared with β = 2τ for IPO's
regulariser τ (Azar et al. 2023, arXiv 2310.12036), ``"slic"`` = hinge with SLiC's margin δ = 1/β
(Zhao et al. 2023, arXiv 2305.10425). TRL 1.16's ``DPOTrainer(loss_type=..., beta=β_T)`` names map
through :func:`trl_loss_spec` (Δ = TRL's chosen-minus-rejected log-ratio = our ρ):

=========  ============================  =========  ==========  =========  =================
TRL name   TRL loss                      GPO kind   β_GPO       margin     scale
=========  ============================  =========  ==========  =========  =================
sigmoid    −log σ(β_T·Δ)                 logistic   β_T         sum        1
hinge      relu(1 − β_T·Δ)               hinge      β_T         sum        1
ipo        (Δ̄ − 1/(2β_T))²               squared    2·β_T       mean       1/(4β_T²)
=========  ============================  =========  ==========  =========  =================

(For ipo: (2β_T·Δ̄ − 1)² / (4β_T²) = (Δ̄ − 1/(2β_T))², with Δ̄ the per-token-averaged margin.)

Shapes: B pairs, P prompt length (left padded), T completion length (right padded, EOS included
when the task has one).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ...envs.checks import check_choice, check_int, check_scalar, describe
from ...tabular.core.preference_losses import check_kind, gpo_loss
from .sampling import sequence_logprobs

__all__ = [
    "MARGINS",
    "TRL_LOSS_TYPES",
    "GPOLossSpec",
    "PreferenceBatch",
    "OfflineGPOResult",
    "gpo_lm_loss",
    "pair_logprobs",
    "enumerable_pair_batch",
    "enumerate_policy",
    "preference_batch_from_trl",
    "preference_margins",
    "trl_loss_spec",
    "trl_dpo_loss",
    "train_offline_gpo",
]

MARGINS = ("sum", "mean")
#: TRL ``DPOTrainer`` loss types reproduced exactly (see the module docstring for the mapping).
TRL_LOSS_TYPES = ("sigmoid", "hinge", "ipo")


@dataclasses.dataclass(frozen=True, eq=False)
class PreferenceBatch:
    """B labelled pairs: prompts, chosen (winning) and rejected (losing) completions.

    Attributes:
      prompt_ids, prompt_mask: [B, P] left padded.
      chosen_ids, chosen_mask: [B, T_w] right padded (mask 1 on completion tokens).
      rejected_ids, rejected_mask: [B, T_l] right padded.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    chosen_ids: torch.Tensor
    chosen_mask: torch.Tensor
    rejected_ids: torch.Tensor
    rejected_mask: torch.Tensor

    def __post_init__(self) -> None:
        B = None
        for name in ("prompt_ids", "prompt_mask", "chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"{name} must be a 2-D integer tensor, got {describe(value)}")
            if B is None:
                B = value.shape[0]
            elif value.shape[0] != B:
                raise ValueError(f"{name} must have batch size {B}, got {value.shape[0]}")
        for ids, mask in (("prompt_ids", "prompt_mask"), ("chosen_ids", "chosen_mask"),
                          ("rejected_ids", "rejected_mask")):
            if getattr(self, ids).shape != getattr(self, mask).shape:
                raise ValueError(f"{mask} must have the shape of {ids} {tuple(getattr(self, ids).shape)}, "
                                 f"got {tuple(getattr(self, mask).shape)}")
        for mask in ("chosen_mask", "rejected_mask"):
            if bool((getattr(self, mask).sum(-1) < 1).any()):
                raise ValueError(f"{mask} must mark at least one completion token per row")

    @property
    def size(self) -> int:
        """B."""
        return int(self.prompt_ids.shape[0])

    def to(self, device: Any) -> PreferenceBatch:
        """The batch on ``device``."""
        return PreferenceBatch(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


def preference_batch_from_trl(inputs: dict) -> PreferenceBatch:
    """Our :class:`PreferenceBatch` from a TRL 1.16 ``DataCollatorForPreference`` batch.

    TRL stacks [chosen rows; rejected rows], each "prompt + completion" right padded, with a
    ``completion_mask``; ours has left-padded prompts and right-padded completions. The token
    positions of every real token are the same in both layouts, so the models see the same inputs.
    """
    ids, attention, completion = inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
    if ids.ndim != 2 or ids.shape[0] % 2:
        raise ValueError(f"inputs['input_ids'] must be [2B, S], got {tuple(ids.shape)}")
    B = ids.shape[0] // 2
    prompts, chosen, rejected = [], [], []
    for row in range(2 * B):
        real = attention[row] == 1
        tokens, is_completion = ids[row][real], completion[row][real] == 1
        (chosen if row < B else rejected).append(tokens[is_completion])
        if row < B:
            prompts.append(tokens[~is_completion])
        elif not torch.equal(tokens[~is_completion], prompts[row - B]):
            raise ValueError(f"rejected row {row - B} must repeat its chosen row's prompt")

    def layout(rows, left):
        width = max(len(r) for r in rows)
        out = torch.zeros((len(rows), width), dtype=torch.long, device=ids.device)
        mask = torch.zeros_like(out)
        for i, r in enumerate(rows):
            span = slice(width - len(r), width) if left else slice(0, len(r))
            out[i, span], mask[i, span] = r, 1
        return out, mask

    return PreferenceBatch(*layout(prompts, True), *layout(chosen, False), *layout(rejected, False))


@dataclasses.dataclass(frozen=True)
class GPOLossSpec:
    """A GPO loss with TRL's scale: ``scale · gpo_loss(ρ, beta, kind)`` on ``margin`` margins."""

    kind: str
    beta: float
    margin: str
    scale: float


def trl_loss_spec(loss_type: str, beta: float) -> GPOLossSpec:
    """The GPO loss equal to TRL 1.16 ``DPOTrainer(loss_type=loss_type, beta=beta)``.

    ``sigmoid`` → logistic (β, summed margins); ``hinge`` → hinge (β, summed margins); ``ipo`` →
    squared with β_GPO = 2β and per-token-averaged margins, times 1/(4β²). Raises ``ValueError``
    for other names or β ≤ 0.
    """
    check_choice("loss_type", loss_type, TRL_LOSS_TYPES)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    if loss_type == "sigmoid":
        return GPOLossSpec("logistic", beta, "sum", 1.0)
    if loss_type == "hinge":
        return GPOLossSpec("hinge", beta, "sum", 1.0)
    return GPOLossSpec("squared", 2.0 * beta, "mean", 1.0 / (4.0 * beta * beta))


def _check_margin(margin: Any) -> str:
    return check_choice("margin", margin, MARGINS)


def _stack_completions(batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """[2B, P] prompts and [2B, T] completions: chosen rows first, then rejected (padded to T)."""
    T = max(batch.chosen_ids.shape[1], batch.rejected_ids.shape[1])

    def pad(ids, mask):
        extra = T - ids.shape[1]
        if extra == 0:
            return ids, mask
        return (torch.nn.functional.pad(ids, (0, extra), value=0),
                torch.nn.functional.pad(mask, (0, extra), value=0))

    chosen, chosen_mask = pad(batch.chosen_ids, batch.chosen_mask)
    rejected, rejected_mask = pad(batch.rejected_ids, batch.rejected_mask)
    prompts = torch.cat([batch.prompt_ids, batch.prompt_ids])
    prompt_mask = torch.cat([batch.prompt_mask, batch.prompt_mask])
    return prompts, prompt_mask, torch.cat([chosen, rejected]), torch.cat([chosen_mask, rejected_mask])


def pair_logprobs(model, batch: PreferenceBatch, *, allowed_tokens: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y_w|x) [B], log π(y_l|x) [B]) in one forward pass of the 2B sequences.

    Differentiable; call under ``torch.no_grad()`` for a frozen reference.
    """
    if not isinstance(batch, PreferenceBatch):
        raise ValueError(f"batch must be a PreferenceBatch, got {describe(batch)}")
    prompts, prompt_mask, completions, completion_mask = _stack_completions(batch)
    logp = sequence_logprobs(model, prompts, prompt_mask, completions, completion_mask, allowed_tokens=allowed_tokens)
    return logp[: batch.size], logp[batch.size:]


def preference_margins(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    margin: str,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-ratio margins ρ [B] from sequence log-probabilities (GPO §2).

    Args:
      policy_chosen, policy_rejected, ref_chosen, ref_rejected: [B] summed log-probabilities.
      margin: ``"sum"`` (ρ as in the papers) or ``"mean"`` (each side's log-ratio divided by its
        completion length, TRL's ``ipo``); ``"mean"`` needs ``chosen_lengths`` / ``rejected_lengths``
        [B] (numbers of completion tokens, ≥ 1).
    """
    margin = _check_margin(margin)
    chosen = policy_chosen - ref_chosen
    rejected = policy_rejected - ref_rejected
    if margin == "mean":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("chosen_lengths and rejected_lengths must be given for margin='mean', got None")
        if bool((chosen_lengths < 1).any()) or bool((rejected_lengths < 1).any()):
            raise ValueError("chosen_lengths and rejected_lengths must be ≥ 1")
        chosen = chosen / chosen_lengths.to(chosen.dtype)
        rejected = rejected / rejected_lengths.to(rejected.dtype)
    return chosen - rejected


def gpo_lm_loss(
    policy,
    reference,
    batch: PreferenceBatch,
    beta: float,
    kind: str,
    *,
    margin: str,
    allowed_tokens: Any = None,
    reference_logprobs: tuple[torch.Tensor, torch.Tensor] | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean GPO loss (1/B) Σ_b w_b f(β ρ_b) of a batch of pairs, and the margins ρ [B] (detached).

    Args:
      policy: π_θ (gradients flow); reference: π_ref (frozen; ignored when ``reference_logprobs``
        gives precomputed (log π_ref(y_w|x), log π_ref(y_l|x)) [B] each).
      batch: :class:`PreferenceBatch`; beta: β > 0 (GPO's: inside f); kind: a GPO kind or alias
        (``dpo``, ``ipo``, ``slic``); margin: ``"sum"`` or ``"mean"`` (explicit, see module doc).
      allowed_tokens: restrict every softmax to these token ids (enumerable tasks).
      weights: optional [B] nonnegative per-pair weights (default 1).

    Returns:
      (scalar loss, [B] margins).
    """
    kind = check_kind(kind)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    margin = _check_margin(margin)
    policy_chosen, policy_rejected = pair_logprobs(policy, batch, allowed_tokens=allowed_tokens)
    if reference_logprobs is None:
        with torch.no_grad():
            ref_chosen, ref_rejected = pair_logprobs(reference, batch, allowed_tokens=allowed_tokens)
    else:
        ref_chosen, ref_rejected = (r.to(policy_chosen.device, policy_chosen.dtype) for r in reference_logprobs)
    rho = preference_margins(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, margin=margin,
        chosen_lengths=batch.chosen_mask.sum(-1).to(policy_chosen.device),
        rejected_lengths=batch.rejected_mask.sum(-1).to(policy_chosen.device),
    )
    losses = gpo_loss(rho, beta, kind)
    if weights is not None:
        losses = losses * weights.to(losses.device, losses.dtype)
    return losses.mean(), rho.detach()


def trl_dpo_loss(policy, reference, batch: PreferenceBatch, beta: float, loss_type: str, *,
                 allowed_tokens: Any = None) -> torch.Tensor:
    """TRL 1.16 ``DPOTrainer``'s loss for ``loss_type`` ∈ {sigmoid, hinge, ipo}, computed by GPO.

    ``scale · gpo_lm_loss(..., β_GPO, kind, margin=...)`` with the mapping of :func:`trl_loss_spec`.
    """
    spec = trl_loss_spec(loss_type, beta)
    loss, _ = gpo_lm_loss(policy, reference, batch, spec.beta, spec.kind, margin=spec.margin,
                          allowed_tokens=allowed_tokens)
    return spec.scale * loss


# ------------------------------------------------------------------------------------------
# Offline GPO on a fixed dataset of labelled pairs (enumerable-response tasks)
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OfflineGPOResult:
    """Losses per step [steps] and the final policy over responses [X, N] (exact enumeration)."""

    losses: np.ndarray
    policy: np.ndarray
    reference: np.ndarray


def enumerable_pair_batch(task, tokenizer, context, winner, loser, device: Any = None) -> PreferenceBatch:
    """:class:`PreferenceBatch` of triples (x, y_w, y_l) given as indices into an ``EnumerableTask``."""
    prompt_ids, prompt_mask = task.prompt_batch(tokenizer, device=device)
    responses = task.all_response_ids(tokenizer).to(prompt_ids.device)
    context = torch.as_tensor(np.asarray(context), dtype=torch.long, device=prompt_ids.device)
    winner = torch.as_tensor(np.asarray(winner), dtype=torch.long, device=prompt_ids.device)
    loser = torch.as_tensor(np.asarray(loser), dtype=torch.long, device=prompt_ids.device)
    chosen, rejected = responses[winner], responses[loser]
    return PreferenceBatch(prompt_ids[context], prompt_mask[context], chosen, torch.ones_like(chosen),
                           rejected, torch.ones_like(rejected))


def enumerate_policy(model, task, tokenizer) -> torch.Tensor:
    """[X, N] log π(y|x) of every response of an ``EnumerableTask`` (differentiable)."""
    from .sampling import enumerate_logprobs

    device = next(model.parameters()).device
    prompt_ids, prompt_mask = task.prompt_batch(tokenizer, device=device)
    return enumerate_logprobs(model, prompt_ids, prompt_mask, task.all_response_ids(tokenizer).to(device),
                              allowed_tokens=task.response_token_ids(tokenizer).to(device))


def train_offline_gpo(
    model,
    reference,
    task,
    tokenizer,
    dataset: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    beta: float,
    kind: str,
    margin: str = "sum",
    steps: int,
    batch_size: int | None = None,
    lr: float = 1e-2,
    seed: int = 0,
) -> OfflineGPOResult:
    """Offline GPO (GPO §2) on a fixed dataset of labelled triples of an ``EnumerableTask``.

    Adam on (1/B) Σ f(β ρ_b) over minibatches drawn uniformly (``torch.Generator`` seeded by
    ``seed``) from ``dataset`` = (context, winner, loser) [N] index arrays; ``batch_size=None``
    uses the full dataset each step (deterministic full-batch optimisation; each distinct triple
    is one row weighted by its count, the same loss as N rows). Returns the losses
    and the final π(y|x) [X, N] by enumeration. The trainer for ``fixpoint train gpo`` wraps this
    loop with checkpoints (``fixpoint_rl.deep.llm.online_offline``).
    """
    steps = check_int("steps", steps, low=1)
    lr = check_scalar("lr", lr, low=0.0, low_inclusive=False)
    context, winner, loser = (np.asarray(a, dtype=np.int64) for a in dataset)
    if not (context.ndim == winner.ndim == loser.ndim == 1) or not (len(context) == len(winner) == len(loser) > 0):
        raise ValueError(f"dataset must be three equal-length non-empty 1-D index arrays, got {describe(dataset)}")
    n_pairs = len(context)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, low=1, high=n_pairs)
    device = next(model.parameters()).device
    allowed = task.response_token_ids(tokenizer).to(device)
    weights = None
    if batch_size is None:
        # full batch: each distinct triple once, weighted by its count (the same loss, fewer rows)
        triples, counts = np.unique(np.stack([context, winner, loser], axis=1), axis=0, return_counts=True)
        context, winner, loser = triples.T
        weights = torch.as_tensor(counts * len(counts) / n_pairs, device=device)
        n_pairs = len(counts)
    full = enumerable_pair_batch(task, tokenizer, context, winner, loser, device=device)
    with torch.no_grad():
        ref_chosen, ref_rejected = pair_logprobs(reference, full, allowed_tokens=allowed)
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = np.empty(steps)
    model.train()
    for step in range(steps):
        if batch_size is None:
            index = torch.arange(n_pairs)
        else:
            index = torch.randint(n_pairs, (batch_size,), generator=generator)
        index = index.to(device)
        batch = PreferenceBatch(full.prompt_ids[index], full.prompt_mask[index], full.chosen_ids[index],
                                full.chosen_mask[index], full.rejected_ids[index], full.rejected_mask[index])
        loss, _ = gpo_lm_loss(model, reference, batch, beta, kind, margin=margin, allowed_tokens=allowed,
                              reference_logprobs=(ref_chosen[index], ref_rejected[index]), weights=weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = float(loss.detach())
    with torch.no_grad():
        policy = enumerate_policy(model, task, tokenizer).exp().double().cpu().numpy()
        ref = enumerate_policy(reference, task, tokenizer).exp().double().cpu().numpy()
    return OfflineGPOResult(losses, policy, ref)
