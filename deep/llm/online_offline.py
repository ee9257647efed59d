"""Online and offline GPO/IPO on language models (Tang et al. 2024, arXiv 2405.08448).

Tang, Guo, Zheng, Calandriello, Cao, Tarassov, Munos, Ávila Pires, Valko, Cheng, Dabney,
"Understanding the performance gap between online and offline alignment algorithms" (2024,
arXiv 2405.08448): the same GPO loss (IPO = squared, Tang et al. 2024, arXiv 2402.05749) is applied
either to a fixed dataset of pairs from a behaviour policy μ (offline) or to fresh pairs sampled
from the current policy and labelled by a preference model (online).

On an enumerable-response task (``EnumerableTask``: N responses per prompt, π_θ(y|x) by one
forward pass) both have an exact *population* loss: with pair weights W[x, i, j] = 2ν(x)q(i|x)q(j|x)
P(y_i ≻ y_j|x) (pairs from q × q, the first wins with probability P; GPO §2),

    L(θ) = Σ_{x,i,j} W[x, i, j] · f(β·ρ_θ(x, i, j)),

with q = μ fixed for offline IPO and q = sg(π_θ) (held fixed within the step) for online IPO.
Stationary points (derived; tabular ``fixpoint_rl.tabular.gpo.ipo_optimum`` and
``fixpoint_rl.tabular.online_offline.regularized_nash_ipo``):

* offline IPO: π ∝ π_ref·exp(2P(y ≻ μ)/β) on the support of μ;
* online IPO:  π ∝ π_ref·exp(2P(y ≻ π)/β), the regularised Nash equilibrium with τ = β/2.

:func:`online_gpo_loss` is the sampled version (pairs y, y′ ~ π_θ from the KV-cache sampler,
labelled by Bernoulli draws of a golden or proxy preference).

Shapes: X prompts, N responses, B pairs.
"""

from __future__ import annotations

import numpy as np
import torch

from ...envs.checks import check_int
from .gpo import PreferenceBatch, _as_tensor, enumerate_policy, gpo_lm_loss, population_gpo_loss
from .sampling import sample

__all__ = [
    "exact_policy",
    "population_gpo_loss",
    "online_pair_weights",
    "offline_pair_weights",
    "sample_online_pairs",
    "online_gpo_loss",
]


def offline_pair_weights(pref, coverage, context_weights=None) -> np.ndarray:
    """[X, N, N] W = 2ν(x)μ(i|x)μ(j|x)P(i ≻ j|x): labelled pairs of an offline dataset from μ."""
    pref = np.asarray(pref, dtype=np.float64)
    coverage = np.asarray(coverage, dtype=np.float64)
    if pref.ndim != 3 or coverage.shape != pref.shape[:2]:
        raise ValueError(f"pref must be [X, N, N] and coverage [X, N], got {pref.shape} and {coverage.shape}")
    X = pref.shape[0]
    nu = np.full(X, 1.0 / X) if context_weights is None else np.asarray(context_weights, dtype=np.float64)
    return 2.0 * nu[:, None, None] * coverage[:, :, None] * coverage[:, None, :] * pref


def online_pair_weights(policy: torch.Tensor, pref, context_weights=None) -> torch.Tensor:
    """[X, N, N] W = 2ν(x)π(i|x)π(j|x)P(i ≻ j|x) with π held fixed (detached): on-policy pairs."""
    policy = policy.detach()
    pref = _as_tensor("pref", pref, policy)
    X = policy.shape[0]
    nu = torch.full((X,), 1.0 / X, dtype=policy.dtype) if context_weights is None else _as_tensor(
        "context_weights", context_weights, policy)
    return 2.0 * nu[:, None, None] * policy[:, :, None] * policy[:, None, :] * pref


def sample_online_pairs(model, task, tokenizer, n_prompts: int, *, generator: torch.Generator, label_pref,
                        label_generator: np.random.Generator) -> tuple[PreferenceBatch, np.ndarray]:
    """B = ``n_prompts`` on-policy pairs of an ``EnumerableTask``, labelled by Bernoulli(P̂).

    Prompts x ~ ν (from ``label_generator``), y, y′ ~ π_θ(·|x) i.i.d. (KV-cache sampler with the
    task's allowed tokens, ``generator``), the first wins with probability ``label_pref[x, y, y′]``
    (golden or proxy [X, N, N]). Returns the :class:`PreferenceBatch` (winner as ``chosen``) and the
    [B, 3] int64 (context, winner, loser) indices.
    """
    n_prompts = check_int("n_prompts", n_prompts, low=1)
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = task.prompt_batch(tokenizer, device=device)
    allowed = task.response_token_ids(tokenizer).to(device)
    contexts = label_generator.choice(task.n_contexts, size=n_prompts, p=task.context_weights)
    index = torch.as_tensor(contexts, dtype=torch.long, device=device)
    drawn = sample(model, prompt_ids[index], prompt_mask[index], task.length, n=2, stop_at_eos=False,
                   generator=generator, allowed_tokens=allowed)
    responses = task.indices_of(drawn.tokens, tokenizer).reshape(n_prompts, 2)
    first_wins = label_generator.random(n_prompts) < np.asarray(label_pref)[contexts, responses[:, 0], responses[:, 1]]
    winner = np.where(first_wins, responses[:, 0], responses[:, 1])
    loser = np.where(first_wins, responses[:, 1], responses[:, 0])
    tokens = drawn.tokens.view(n_prompts, 2, -1)
    pick = torch.as_tensor(first_wins, device=device)
    chosen = torch.where(pick[:, None], tokens[:, 0], tokens[:, 1])
    rejected = torch.where(pick[:, None], tokens[:, 1], tokens[:, 0])
    batch = PreferenceBatch(prompt_ids[index], prompt_mask[index], chosen, torch.ones_like(chosen), rejected,
                            torch.ones_like(rejected))
    return batch, np.stack([contexts, winner, loser], axis=1).astype(np.int64)


def online_gpo_loss(model, reference, task, tokenizer, n_prompts: int, *, beta: float, kind: str, margin: str,
                    generator: torch.Generator, label_pref, label_generator: np.random.Generator):
    """One online GPO minibatch: sample on-policy pairs, label them, return (loss, margins, triples)."""
    batch, triples = sample_online_pairs(model, task, tokenizer, n_prompts, generator=generator,
                                         label_pref=label_pref, label_generator=label_generator)
    allowed = task.response_token_ids(tokenizer).to(next(model.parameters()).device)
    loss, margins = gpo_lm_loss(model, reference, batch, beta, kind, margin=margin, allowed_tokens=allowed)
    return loss, margins, triples


def exact_policy(model, task, tokenizer) -> np.ndarray:
    """[X, N] π_θ(y|x) by enumeration (float64 numpy)."""
    with torch.no_grad():
        return enumerate_policy(model, task, tokenizer).exp().double().cpu().numpy()
