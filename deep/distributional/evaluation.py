"""The deep learner in evaluation mode on an enumerable MDP: the bridge to the tabular operators.

A one-hot ("tabular") categorical network is trained by the deep pieces — ``window_targets``
(target network + ``tabular.core.multistep``), ``learner_update`` (loss + Adam) and target-network
copies — on *every* n-step window of a small MDP at once, each window's loss weighted by its
probability under (uniform (x_0, a_0), P, μ). Since the losses used are linear (cross-entropy) or
quadratic (Cramér) in the target, the weighted loss has the gradient of the loss against the
*expected* target, so one target-network period approximates one application of the expected
operator of Tang et al. (AISTATS 2026) — without sampling noise. With the per-step projection
its fixed point is the one-step categorical fixed point η_C
(``tabular.qlambda.categorical_evaluation_fixed_point``) for every λ and μ.

Shapes: S states, A actions, M atoms, n window length, B = number of enumerated windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fixpoint_rl.tabular.core.categorical import CategoricalSupport, cramer_distance

from .agent import C51Config, learner_update
from .networks import build_network
from .targets import window_targets

__all__ = ["enumerate_windows", "train_one_hot_evaluation"]


def enumerate_windows(mdp, mu: np.ndarray, n: int):
    """Every n-step window from every (x_0, a_0), with probability P·μ/(S·A).

    Returns (obs [B, n+1] long, actions [B, n+1] long (last entry 0), rewards [B, n] float64,
    probs [B] float64 summing to 1). Rewards are the expected rewards r(x, a) of the MDP.
    """
    S, A = mdp.n_states, mdp.n_actions
    P, R = mdp.P, mdp.expected_reward
    obs, acts, rews, probs = [], [], [], []

    def extend(states, actions, rewards, p):
        if len(rewards) == n:
            obs.append(states)
            acts.append(actions + [0])
            rews.append(rewards)
            probs.append(p)
            return
        x, a = states[-1], actions[-1]
        for x1 in np.flatnonzero(P[x, a] > 0):
            step_p = p * P[x, a, x1]
            if len(rewards) + 1 == n:
                extend(states + [int(x1)], actions, rewards + [R[x, a]], step_p)
            else:
                for a1 in np.flatnonzero(mu[x1] > 0):
                    extend(states + [int(x1)], actions + [int(a1)], rewards + [R[x, a]],
                           step_p * mu[x1, a1])

    for s0 in range(S):
        for a0 in range(A):
            extend([s0], [a0], [], 1.0 / (S * A))
    return (torch.tensor(obs), torch.tensor(acts), torch.tensor(rews, dtype=torch.float64),
            torch.tensor(probs, dtype=torch.float64))


def train_one_hot_evaluation(
    mdp,
    pi: np.ndarray,
    mu: np.ndarray,
    *,
    support: CategoricalSupport,
    reference: np.ndarray,
    trace: str,
    lam: float,
    loss: str = "cross_entropy",
    window: int = 2,
    projection: str = "per_step",
    target_updates: int = 14,
    steps_per_update: int = 100,
    lr: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the one-hot network on exact expectations; returns the error after each copy.

    Returns a dict with ``updates`` [T+1] (Adam steps done), ``sup_cramer`` [T+1]
    (max over (s, a) of the Cramér distance of the target network to ``reference``),
    ``eta`` [S, A, M] (final target-network probabilities) and ``negative_mass`` [T] (mean over
    windows of the negative mass of the targets at each copy).
    """
    torch.manual_seed(seed)
    S, A = mdp.n_states, mdp.n_actions
    obs, actions, rewards, weights = enumerate_windows(mdp, mu, window)
    B = obs.shape[0]
    batch = {"obs": obs, "actions": actions, "rewards": rewards,
             "terminals": torch.zeros(B, window, dtype=torch.bool),
             "behaviour": torch.tensor(mu)[obs]}
    target_policy = torch.tensor(pi)[obs[:, 1:]]
    config = C51Config(gamma=mdp.gamma, lam=lam, trace=trace, window=window, projection=projection,
                       loss=loss, v_min=support.v_min, v_max=support.v_max, n_atoms=support.m,
                       lr=lr, dtype="float64")
    atoms = torch.tensor(support.atoms)
    online = build_network("one_hot", (), A, atoms, n_states=S)
    target = build_network("one_hot", (), A, atoms, n_states=S)
    target.load_state_dict(online.state_dict())
    optimizer = torch.optim.Adam(online.parameters(), lr=lr)

    def error() -> tuple[float, np.ndarray]:
        with torch.no_grad():
            eta = torch.softmax(target(torch.arange(S)), -1).numpy()
        if not np.all(np.isfinite(eta)):  # a diverged loss (e.g. linear CE on signed targets)
            return float("nan"), eta
        return float(np.max(cramer_distance(eta, reference, support))), eta

    errors, negative = [], []
    for _ in range(target_updates):
        errors.append(error()[0])
        targets = window_targets(target, batch, support=support, gamma=mdp.gamma, lam=lam,
                                 trace=trace, projection=projection, target_policy=target_policy)
        negative.append(float(((-targets).clamp(min=0).sum(-1) * weights).sum()))
        for _ in range(steps_per_update):  # the target network is fixed: reuse its targets
            learner_update(config, support, online, target, optimizer, batch, weights=weights,
                           targets=targets)
        target.load_state_dict(online.state_dict())
    final, eta = error()
    errors.append(final)
    return {"updates": np.arange(target_updates + 1) * steps_per_update,
            "sup_cramer": np.array(errors), "eta": eta, "negative_mass": np.array(negative)}
