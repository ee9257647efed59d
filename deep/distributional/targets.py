"""Batched targets of the C51 family from replayed windows (torch adapter over ``tabular.core``).

The algebra lives once, in ``fixpoint_rl.tabular.core.multistep.sampled_multistep_target``
(array API; the tabular oracle ``tabular.qlambda.sampled_distributional_target`` calls the same
function). This module only evaluates the target network and forms the target policy:

* π greedy w.r.t. the target network's means (Dopamine's C51 choice), or
* π_α = α·greedy + (1 − α)·μ (Tang et al., AISTATS 2026: "trust-region" mixing of the target
  policy towards the behaviour policy; α = 1 is greedy), with μ(·|x) the stored behaviour row.

Algorithms (``trace`` of the core function; n = window length):

=====================  =====================  ==============================================
algorithm              trace, n               target
=====================  =====================  ==============================================
C51                    any, n = 1             Π_C (r + γz)_# η̄(x_1, π), π greedy
expected-SARSA C51     any, n = 1, α < 1      same with π_α
n-step C51             "n_step", n            Π_C (G_{n−1} + γ^n z)_# η̄(x_n, π) (uncorrected)
tree-backup C51        "tree_backup", n       c = λ π(a|x)
Retrace-C51            "retrace", n           c = λ min(1, π/μ) (needs μ)
Q(λ)-C51               "q_lambda", n          c = λ (no μ; signed targets)
=====================  =====================  ==============================================
"""

from __future__ import annotations

import torch

from fixpoint_rl.tabular.core.categorical import CategoricalSupport
from fixpoint_rl.tabular.core.multistep import sampled_multistep_target

__all__ = ["greedy_policy", "mixed_target_policy", "window_targets"]


def greedy_policy(q_values: torch.Tensor) -> torch.Tensor:
    """One-hot of argmax_a q [..., A] (first maximiser on ties), same dtype as ``q_values``."""
    return torch.nn.functional.one_hot(q_values.argmax(dim=-1), q_values.shape[-1]).to(q_values.dtype)


def mixed_target_policy(greedy: torch.Tensor, behaviour: torch.Tensor, alpha: float) -> torch.Tensor:
    """π_α = α·π + (1 − α)·μ (rows stay probability vectors for α ∈ [0, 1])."""
    if alpha == 1.0:
        return greedy
    return alpha * greedy + (1.0 - alpha) * behaviour


@torch.no_grad()
def window_targets(
    target_net: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    *,
    support: CategoricalSupport,
    gamma: float,
    lam: float,
    trace: str,
    alpha: float = 1.0,
    projection: str = "per_branch",
    target_policy: torch.Tensor | None = None,
) -> torch.Tensor:
    """Targets [B, M] for the first pair (x_0, a_0) of each window (stop-gradient).

    Args:
      target_net: maps observations [N, ...] to logits [N, A, M].
      batch: ``obs`` [B, n+1, ...], ``actions`` [B, n+1] (long), ``rewards`` [B, n],
        ``terminals`` [B, n] (bool), ``behaviour`` [B, n+1, A] (μ(·|x_t) rows).
      support, gamma, lam, trace, projection: as in ``sampled_multistep_target``.
      alpha: target-policy mixing π_α (1 = greedy).
      target_policy: [B, n, A] π(·|x_{t+1}) to use instead of the greedy/mixed one (evaluation
        of a fixed policy).
    """
    obs = batch["obs"]
    B, n1 = obs.shape[:2]
    n = n1 - 1
    next_obs = obs[:, 1:].reshape(B * n, *obs.shape[2:])
    logits = target_net(next_obs)  # [B·n, A, M]
    probs = torch.softmax(logits, dim=-1)
    dtype = probs.dtype
    A, M = probs.shape[-2:]
    probs = probs.view(B, n, A, M)
    behaviour = batch["behaviour"][:, 1:].to(dtype)  # μ(·|x_{t+1}) [B, n, A]
    if target_policy is None:
        greedy = greedy_policy(probs @ support.atoms_like(probs))  # [B, n, A]
        target_policy = mixed_target_policy(greedy, behaviour, alpha)
    next_actions = batch["actions"][:, 1:]
    mu_taken = behaviour.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)
    return sampled_multistep_target(
        probs,
        target_policy.to(dtype),
        next_actions,
        batch["rewards"].to(dtype),
        support=support,
        gamma=gamma,
        lam=lam,
        trace=trace,
        behaviour_probs=mu_taken,
        terminals=batch["terminals"],
        projection=projection,
        validate=False,  # network outputs and replayed data; shapes are still checked
    )
