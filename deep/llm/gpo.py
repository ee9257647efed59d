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

**Regularisation (GPO §4).** :func:`fit_offline_gpo` minimises the exact empirical loss of a fixed
dataset on an enumerable task to convergence (the LM's optimum, comparable with the tabular
``solve_gpo``); :func:`beta_ratio_at_equal_kl` measures β_a/β_b at equal KL(π‖π_ref) from two
KL(β) curves; :func:`taylor_beta_ratio` is the second-order prediction r_b/r_a, r = f″(0)/|f′(0)|.

Shapes: B pairs, P prompt length (left padded), T completion length (right padded, EOS included
when the task has one), X prompts and N responses of an enumerable task.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ...envs.checks import as_float_array, check_choice, check_int, check_scalar, describe
from ...tabular.core.preference_losses import check_kind, gpo_loss, regularization_ratio
from .sampling import sequence_logprobs

__all__ = [
    "MARGINS",
    "TRL_LOSS_TYPES",
    "GPOLossSpec",
    "PreferenceBatch",
    "OfflineGPOResult",
    "gpo_lm_loss",
    "pair_logprobs",
    "population_gpo_loss",
    "ConvergedGPOResult",
    "beta_ratio_at_equal_kl",
    "enumerable_pair_batch",
    "enumerate_policy",
    "fit_offline_gpo",
    "preference_batch_from_trl",
    "preference_margins",
    "trl_loss_spec",
    "taylor_beta_ratio",
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


def _as_tensor(name: str, value: Any, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.tensor(value)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be an array, got {describe(value)}")
    return value.to(like.device, like.dtype)


def population_gpo_loss(log_policy: torch.Tensor, log_reference: torch.Tensor, pair_weights, beta: float,
                        kind: str) -> torch.Tensor:
    """Σ_{x,i,j} W[x,i,j]·f(β ρ(x,i,j)), ρ(x,i,j) = log π/π_ref(i|x) − log π/π_ref(j|x) (GPO §2).

    Args:
      log_policy: [X, N] log π_θ (differentiable; e.g. :func:`fixpoint_rl.deep.llm.gpo.enumerate_policy`).
      log_reference: [X, N] log π_ref.
      pair_weights: [X, N, N] W (:func:`fixpoint_rl.deep.llm.online_offline.offline_pair_weights` / ``online_pair_weights``).
      beta, kind: the GPO loss (``kind`` a GPO name or alias).
    """
    kind = check_kind(kind)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    weights = _as_tensor("pair_weights", pair_weights, log_policy)
    if weights.shape != (*log_policy.shape, log_policy.shape[-1]):
        raise ValueError(f"pair_weights must have shape {(*log_policy.shape, log_policy.shape[-1])}, "
                         f"got {tuple(weights.shape)}")
    log_ratio = log_policy - log_reference.to(log_policy.dtype)
    margins = log_ratio[:, :, None] - log_ratio[:, None, :]
    return (weights * gpo_loss(margins, beta, kind)).sum()


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


# ------------------------------------------------------------------------------------------
# Offline GPO trained to convergence, and the β ratio of two losses at equal KL (GPO §4)
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConvergedGPOResult:
    """Offline GPO minimised to convergence on an enumerable task (:func:`fit_offline_gpo`).

    Attributes:
      policy: [X, N] float64 π_θ(y|x) of the trained LM, exact by enumeration (rows sum to 1).
      reference: [X, N] float64 π_ref(y|x), likewise.
      loss: the final empirical loss Σ W f(β ρ).
      iterations: L-BFGS iterations taken.
      converged: L-BFGS stopped on a tolerance (gradient or loss change at float resolution)
        before ``max_iterations``. For ``hinge`` (not differentiable at βρ = 1) it only means the
        loss stopped decreasing.
      gradient_norm: max |∂L/∂θ| over the parameters at the end.
    """

    policy: np.ndarray
    reference: np.ndarray
    loss: float
    iterations: int
    converged: bool
    gradient_norm: float


def fit_offline_gpo(
    model,
    reference,
    task,
    tokenizer,
    pair_weights,
    *,
    beta: float,
    kind: str,
    margin: str = "sum",
    max_iterations: int = 400,
    gradient_tolerance: float = 1e-10,
    history_size: int = 50,
) -> ConvergedGPOResult:
    """Minimise the offline GPO loss of a fixed dataset to convergence; return the exact policy.

    The empirical loss of N labelled triples, (1/N) Σ_n f(β ρ_n) (GPO §2), equals
    Σ_{x,w,l} W[x,w,l]·f(β ρ(x,w,l)) with W = ``tabular.gpo.empirical_pair_weights`` of the triples;
    on an ``EnumerableTask`` it is computed exactly from the enumerated log π_θ [X, N]
    (:func:`population_gpo_loss`) and minimised over the LM's parameters by full-batch
    L-BFGS with a strong-Wolfe line search (deterministic; reaches the optimum to float64 rounding
    where the loss is smooth, which minibatch Adam approaches only slowly). ``margin="mean"``
    divides every log-ratio by the fixed response length L, i.e. uses β/L.

    Args:
      model: the policy LM (its parameters are trained in place).
      reference: the frozen π_ref LM.
      task: an ``EnumerableTask`` (X prompts, N = K^L responses); tokenizer: its tokenizer.
      pair_weights: [X, N, N] nonnegative W summing to 1 (the dataset's empirical weights).
      beta: β > 0 (inside f); kind: a GPO kind or alias; margin: ``"sum"`` or ``"mean"``.
      max_iterations: L-BFGS iteration cap; gradient_tolerance: stop when max |∂L/∂θ| is below it;
      history_size: L-BFGS memory.

    Returns:
      :class:`ConvergedGPOResult`.
    """
    kind = check_kind(kind)
    beta = check_scalar("beta", beta, low=0.0, low_inclusive=False)
    margin = _check_margin(margin)
    max_iterations = check_int("max_iterations", max_iterations, low=1)
    gradient_tolerance = check_scalar("gradient_tolerance", gradient_tolerance, low=0.0, low_inclusive=False)
    history_size = check_int("history_size", history_size, low=1)
    X, N = task.n_contexts, task.n_responses
    weights = as_float_array("pair_weights", pair_weights, shape=(X, N, N), nonnegative=True)
    total = float(weights.sum())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"pair_weights must sum to 1, got {total!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model must have trainable parameters, got none with requires_grad")
    effective_beta = beta / task.length if margin == "mean" else beta
    with torch.no_grad():
        log_reference = enumerate_policy(reference, task, tokenizer).to(params[0].dtype)
    W = torch.tensor(weights, dtype=params[0].dtype, device=params[0].device)
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iterations, max_eval=2 * max_iterations,
                                  history_size=history_size, tolerance_grad=gradient_tolerance,
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad(set_to_none=False)
        loss = population_gpo_loss(enumerate_policy(model, task, tokenizer), log_reference, W, effective_beta, kind)
        loss.backward()
        return loss

    model.train()
    optimizer.step(closure)
    iterations = int(optimizer.state[params[0]].get("n_iter", 0))
    loss = float(closure().detach())
    gradient_norm = max(float(p.grad.abs().max()) for p in params if p.grad is not None)
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        policy = enumerate_policy(model, task, tokenizer).double().exp().cpu().numpy()
        ref = log_reference.double().exp().cpu().numpy()
    return ConvergedGPOResult(policy / policy.sum(-1, keepdims=True), ref / ref.sum(-1, keepdims=True), loss,
                              iterations, iterations < max_iterations, gradient_norm)


def taylor_beta_ratio(kind: str, reference_kind: str = "squared") -> float:
    """β_kind / β_reference at equal regularisation, from the second-order Taylor model (GPO §4).

    Derivation. Write σ = β·ρ. The empirical loss Σ W f(σ) no longer involves β, and to second
    order Σ W f(σ) ≈ f(0) + f′(0)·E_W[σ] + ½f″(0)·E_W[σ²]. Minimising this quadratic over the
    (fully parametrised) log-ratios gives σ* = (|f′(0)|/f″(0))·s, with s = argmin −E_W[σ] + ½E_W[σ²]
    the same for every f; so the optimal log-ratios are ρ* = (|f′(0)|/f″(0))·s/β, and two losses
    give the same policy, hence the same KL(π‖π_ref), when

        β_a / β_b = [|f′(0)|/f″(0)]_a / [|f′(0)|/f″(0)]_b = r_b / r_a,   r = f″(0)/|f′(0)|

    (``regularization_ratio``): logistic and Savage 2, exponential and truncated quadratic 1,
    squared 1, hinge ∞ (f″(0) = 0: no quadratic term). The prediction does not depend on β; it is
    exact for ``squared`` (already quadratic) and, for the others, accurate when the optimal σ* are
    small, i.e. when the data's preferences are close to ½ (Bayes links x*(p) ≈ c·(2p − 1)).
    """
    ratio = regularization_ratio(reference_kind)
    own = regularization_ratio(kind)
    if ratio == 0.0:
        raise ValueError(f"reference_kind must have f″(0) > 0, got {reference_kind!r}")
    return float("inf") if own == 0.0 else ratio / own


def _kl_curve(name: str, betas: Any, kls: Any) -> tuple[np.ndarray, np.ndarray]:
    """(log KL increasing, log β) of a curve KL(β) strictly decreasing in β."""
    betas = as_float_array(f"betas_{name}", betas, ndim=1)
    kls = as_float_array(f"kl_{name}", kls, shape=betas.shape)
    if betas.size < 2:
        raise ValueError(f"betas_{name} must have at least 2 points, got {betas.size}")
    if np.any(betas <= 0) or np.any(kls <= 0):
        raise ValueError(f"betas_{name} and kl_{name} must be > 0, got minima {betas.min()!r}, {kls.min()!r}")
    order = np.argsort(betas)
    betas, kls = betas[order], kls[order]
    if np.any(np.diff(betas) <= 0) or np.any(np.diff(kls) >= 0):
        raise ValueError(f"kl_{name} must decrease strictly as betas_{name} increases, got {describe(kls)}")
    return np.log(kls[::-1]), np.log(betas[::-1])


def beta_ratio_at_equal_kl(betas_a, kl_a, betas_b, kl_b, kl_levels) -> np.ndarray:
    """β_a(k)/β_b(k): the ratio of the β's at which two losses reach the same KL level k.

    Each curve KL(β) (strictly decreasing in β) is inverted by piecewise-linear interpolation of
    log β against log KL; exact for power laws KL = c·β^(−p), and for any curve when the two β grids
    differ by the factor sought (then both interpolants are shifted copies).

    Args:
      betas_a, kl_a: [M_a] a curve; betas_b, kl_b: [M_b] another (M ≥ 2, all > 0).
      kl_levels: [J] KL levels inside both curves' ranges (else ``ValueError`` naming the range).

    Returns:
      [J] β_a/β_b.
    """
    log_kl_a, log_beta_a = _kl_curve("a", betas_a, kl_a)
    log_kl_b, log_beta_b = _kl_curve("b", betas_b, kl_b)
    levels = as_float_array("kl_levels", kl_levels, ndim=1)
    low = max(log_kl_a[0], log_kl_b[0])
    high = min(log_kl_a[-1], log_kl_b[-1])
    if levels.size == 0 or np.any(levels <= 0):
        raise ValueError(f"kl_levels must be a non-empty array of positive numbers, got {describe(levels)}")
    log_levels = np.log(levels)
    slack = 1e-12 * max(1.0, abs(low), abs(high))
    if np.any(log_levels < low - slack) or np.any(log_levels > high + slack):
        raise ValueError(f"kl_levels must lie in the common KL range [{np.exp(low):.6g}, {np.exp(high):.6g}] "
                         f"of both curves, got {describe(levels)}")
    return np.exp(np.interp(log_levels, log_kl_a, log_beta_a) - np.interp(log_levels, log_kl_b, log_beta_b))
