"""Tabular MDPs and Markov reward processes (numpy only): frozen, validated specifications.

Shapes: S states, A actions, K reward outcomes.

``TabularMDP`` — rewards come in one of three representations (``reward_kind``):

* ``"state_action"``: ``reward`` [S, A], a deterministic reward r(s, a) received on taking a in s;
* ``"transition"``: ``reward`` [S, A, S], a deterministic reward r(s, a, s') on the transition;
* ``"distribution"``: a finite reward distribution per (s, a), drawn independently of the next
  state: ``reward`` [S, A, K] holds the reward values and ``reward_probs`` [S, A, K] their
  probabilities (rows of ``reward_probs`` sum to 1).

Every representation is available in the common *outcome form* (:meth:`TabularMDP.reward_outcomes`):
``values`` [S, A, S, K] and ``joint`` [S, A, S, K] with ``joint[s, a, s', k]`` =
P(s' | s, a) · Pr(reward = values[s, a, s', k] | s, a); for the deterministic kinds K = 1. This is
what the distributional operators consume: the one-step target of (s, a) is
Σ_{s', k} joint[s, a, s', k] · (z ↦ values[s, a, s', k] + γ z)_# η(s', ·).

Policies are [S, A] arrays of probabilities (rows sum to 1), validated by :func:`check_policy`.

``MarkovRewardProcess`` — ``P`` [S, S], deterministic ``reward`` [S, S] per transition, ``gamma``,
``initial`` [S]. :meth:`TabularMDP.markov_reward_process` builds the state MRP under π (exact for
the return distribution whenever the reward is a function of (s, s') under π) and
:meth:`TabularMDP.state_action_process` the always-exact state–action MRP over S·A states (index
s·A + a), whose return distribution at (s, a) is η^π(s, a).

Valid range: P row-stochastic, γ ∈ [0, 1), finite rewards with max|r|/(1 − γ) ≤ ``RETURN_LIMIT``
(1e300, so return ranges and atom grids stay finite), sizes whose dense arrays fit the memory
budget of ``fixpoint_rl.envs.checks.check_size_budget``. Outside it ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .checks import (
    as_float_array,
    as_generator,
    check_choice,
    check_distribution,
    check_int,
    check_scalar,
    check_size_budget,
    describe,
)

__all__ = [
    "MarkovRewardProcess",
    "TabularMDP",
    "chain_mdp",
    "check_policy",
    "epsilon_greedy_policy",
    "garnet",
    "greedy_policy",
    "random_policy",
    "two_state_mdp",
    "uniform_policy",
]

REWARD_KINDS = ("state_action", "transition", "distribution")


# Largest return magnitude max|r|/(1−γ) accepted: return ranges, their spans and the atom grids
# built on them (differences, midpoints, γ-scaled copies) stay finite in float64 below this.
RETURN_LIMIT = 1e300


def _check_return_span(reward: np.ndarray, gamma: float) -> None:
    bound = float(np.max(np.abs(reward), initial=0.0)) / (1.0 - gamma)
    if not bound <= RETURN_LIMIT:
        raise ValueError(
            f"reward must keep every return finite: max|reward|/(1 − gamma) = {bound:.3g} exceeds "
            f"{RETURN_LIMIT:.0e} (got max|reward| = {float(np.max(np.abs(reward))):.3g}, "
            f"gamma = {gamma!r})"
        )


def _freeze(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite discounted MDP (frozen; arrays are read-only float64 copies).

    Attributes:
      P: [S, A, S] transition probabilities, P[s, a, s'] = Pr(s' | s, a); rows sum to 1.
      reward: [S, A] (per state–action), [S, A, S] (per transition) or, with ``reward_probs``,
        [S, A, K] reward values of a finite reward distribution (see the module docstring).
      gamma: discount γ ∈ [0, 1).
      initial: [S] initial-state distribution (default uniform).
      reward_probs: None, or [S, A, K] probabilities of the reward values in ``reward``.

    Valid range: gamma in [0, 1); P [S, A, S] row-stochastic; reward [S, A] or [S, A, S] finite;
    initial [S] a distribution or None; reward_probs as the class docstring says.
    """

    P: Any
    reward: Any
    gamma: float
    initial: Any = None
    reward_probs: Any = None

    def __post_init__(self) -> None:
        P = check_distribution("P", self.P, ndim=3, copy=True)
        S, A, S2 = P.shape
        if S2 != S or S < 1 or A < 1:
            raise ValueError(f"P must have shape (S, A, S) with S, A ≥ 1, got shape {P.shape}")
        gamma = check_scalar("gamma", self.gamma, low=0.0, high=1.0, high_inclusive=False)
        if self.reward_probs is None:
            reward = as_float_array("reward", self.reward, ndim=(2, 3), copy=True)
            if reward.shape not in ((S, A), (S, A, S)):
                raise ValueError(
                    f"reward must have shape {(S, A)} or {(S, A, S)}, got shape {reward.shape}"
                )
            kind = "state_action" if reward.ndim == 2 else "transition"
            reward_probs = None
        else:
            reward = as_float_array("reward", self.reward, ndim=3, copy=True)
            if reward.shape[:2] != (S, A) or reward.shape[2] < 1:
                raise ValueError(
                    f"reward must have shape ({S}, {A}, K) with reward_probs, got shape {reward.shape}"
                )
            reward_probs = check_distribution(
                "reward_probs", self.reward_probs, shape=reward.shape, copy=True
            )
            kind = "distribution"
        _check_return_span(reward, gamma)
        if self.initial is None:
            initial = np.full(S, 1.0 / S)
        else:
            initial = check_distribution("initial", self.initial, shape=(S,), copy=True)
        object.__setattr__(self, "P", _freeze(P))
        object.__setattr__(self, "reward", _freeze(reward))
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "initial", _freeze(initial))
        object.__setattr__(
            self, "reward_probs", None if reward_probs is None else _freeze(reward_probs)
        )
        object.__setattr__(self, "_kind", kind)

    # --- sizes and derived quantities -------------------------------------------------------
    @property
    def n_states(self) -> int:
        return int(self.P.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.P.shape[1])

    @property
    def reward_kind(self) -> str:
        """One of "state_action", "transition", "distribution"."""
        return self._kind  # type: ignore[attr-defined]

    @property
    def expected_reward(self) -> np.ndarray:
        """R[s, a] = E[reward | s, a], shape [S, A]."""
        if self.reward_kind == "state_action":
            return self.reward.copy()
        if self.reward_kind == "transition":
            return np.einsum("ijk,ijk->ij", self.P, self.reward)
        return np.einsum("ijk,ijk->ij", self.reward_probs, self.reward)

    def reward_outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        """The common outcome form: ``values`` [S, A, S, K] and ``joint`` [S, A, S, K].

        joint[s, a, s', k] = P(s'|s, a) · Pr(k | s, a); Σ_{s', k} joint[s, a] = 1. K = 1 unless
        the reward is a distribution.
        """
        S, A = self.n_states, self.n_actions
        if self.reward_kind == "state_action":
            values = np.broadcast_to(self.reward[:, :, None, None], (S, A, S, 1)).copy()
            return values, self.P[..., None].copy()
        if self.reward_kind == "transition":
            return self.reward[..., None].copy(), self.P[..., None].copy()
        K = self.reward.shape[2]
        values = np.broadcast_to(self.reward[:, :, None, :], (S, A, S, K)).copy()
        joint = self.P[..., None] * self.reward_probs[:, :, None, :]
        return values, joint

    def reward_range(self) -> tuple[float, float]:
        """(smallest, largest) reward value that can occur (over all listed values)."""
        return float(self.reward.min()), float(self.reward.max())

    def return_range(self) -> tuple[float, float]:
        """Bounds [r_min/(1−γ), r_max/(1−γ)] (with r_min ≤ 0 ≤ r_max) containing every return."""
        lo, hi = self.reward_range()
        return min(lo, 0.0) / (1.0 - self.gamma), max(hi, 0.0) / (1.0 - self.gamma)

    def state_transition(self, pi) -> np.ndarray:
        """P^π[s, s'] = Σ_a π(a|s) P(s'|s, a), shape [S, S]."""
        pi = check_policy(self, pi)
        return np.einsum("ia,iaj->ij", pi, self.P)

    def state_action_transition(self, pi) -> np.ndarray:
        """P^π_sa[(s, a), (s', a')] = P(s'|s, a) π(a'|s'), shape [S·A, S·A] (index s·A + a)."""
        pi = check_policy(self, pi)
        S, A = self.n_states, self.n_actions
        return np.einsum("iaj,jb->iajb", self.P, pi).reshape(S * A, S * A)

    def markov_reward_process(self, pi) -> "MarkovRewardProcess":
        """The state MRP under π: P^π [S, S], reward r^π(s, s') [S, S], same γ and initial.

        The return distribution of the MRP equals V-level η^π(s) = Σ_a π(a|s) η^π(s, a) exactly
        when the reward is determined by (s, s') under π (always true for a deterministic policy
        or for rewards per transition that do not depend on a). Otherwise a ValueError is raised:
        use :meth:`state_action_process`, which is always exact for deterministic rewards.
        """
        pi = check_policy(self, pi)
        if self.reward_kind == "distribution" and self.reward.shape[2] > 1:
            raise ValueError(
                "reward must be deterministic to build a MarkovRewardProcess, got a reward "
                f"distribution with K={self.reward.shape[2]} outcomes"
            )
        values, joint = self.reward_outcomes()  # [S, A, S, 1]
        r_sas = values[..., 0]
        weights = pi[:, :, None] * self.P  # [S, A, S]: Pr(a, s' | s)
        P_pi = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r_pi = np.where(P_pi > 0, (weights * r_sas).sum(axis=1) / np.where(P_pi > 0, P_pi, 1), 0.0)
        spread = np.where(weights > 0, np.abs(r_sas - r_pi[:, None, :]), 0.0)
        if spread.max(initial=0.0) > 1e-12:
            raise ValueError(
                "pi makes the reward depend on the action given (s, s'); the state MRP would lose "
                "the return distribution. Use state_action_process(pi) instead "
                f"(max reward spread {spread.max():.3g})"
            )
        return MarkovRewardProcess(P=P_pi, reward=r_pi, gamma=self.gamma, initial=self.initial)

    def state_action_process(self, pi) -> "MarkovRewardProcess":
        """The state–action MRP under π over S·A states (index s·A + a).

        Transition (s, a) → (s', a') with probability P(s'|s, a) π(a'|s'), reward r(s, a, s').
        Its return distribution at (s, a) is η^π(s, a) exactly (deterministic rewards only);
        initial[(s, a)] = initial[s] π(a|s).
        """
        pi = check_policy(self, pi)
        if self.reward_kind == "distribution" and self.reward.shape[2] > 1:
            raise ValueError(
                "reward must be deterministic to build a MarkovRewardProcess, got a reward "
                f"distribution with K={self.reward.shape[2]} outcomes"
            )
        S, A = self.n_states, self.n_actions
        values, _ = self.reward_outcomes()
        r_sas = values[..., 0]  # [S, A, S]
        P_sa = self.state_action_transition(pi)
        reward = np.broadcast_to(r_sas[:, :, :, None], (S, A, S, A)).reshape(S * A, S * A)
        initial = (self.initial[:, None] * pi).reshape(S * A)
        return MarkovRewardProcess(P=P_sa, reward=reward, gamma=self.gamma, initial=initial)


@dataclasses.dataclass(frozen=True, eq=False)
class MarkovRewardProcess:
    """A finite discounted Markov reward process (frozen; read-only float64 copies).

    Attributes:
      P: [S, S] transition probabilities; rows sum to 1.
      reward: [S, S] deterministic reward r(s, s') on each transition.
      gamma: discount γ ∈ [0, 1).
      initial: [S] initial distribution (default uniform).

    Valid range: gamma in [0, 1); P [S, S] row-stochastic; reward [S, S] finite; initial [S] a
    distribution or None.
    """

    P: Any
    reward: Any
    gamma: float
    initial: Any = None

    def __post_init__(self) -> None:
        P = check_distribution("P", self.P, ndim=2, copy=True)
        S = P.shape[0]
        if P.shape != (S, S) or S < 1:
            raise ValueError(f"P must be a square (S, S) matrix, got shape {P.shape}")
        reward = as_float_array("reward", self.reward, shape=(S, S), copy=True)
        gamma = check_scalar("gamma", self.gamma, low=0.0, high=1.0, high_inclusive=False)
        _check_return_span(reward, gamma)
        if self.initial is None:
            initial = np.full(S, 1.0 / S)
        else:
            initial = check_distribution("initial", self.initial, shape=(S,), copy=True)
        object.__setattr__(self, "P", _freeze(P))
        object.__setattr__(self, "reward", _freeze(reward))
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "initial", _freeze(initial))

    @property
    def n_states(self) -> int:
        return int(self.P.shape[0])

    @property
    def expected_reward(self) -> np.ndarray:
        """r̄[s] = Σ_{s'} P(s'|s) r(s, s'), shape [S]."""
        return np.einsum("ij,ij->i", self.P, self.reward)

    def values(self) -> np.ndarray:
        """V[s] = [(I − γP)^{-1} r̄][s] by a linear solve, shape [S]."""
        S = self.n_states
        return np.linalg.solve(np.eye(S) - self.gamma * self.P, self.expected_reward)

    def return_range(self) -> tuple[float, float]:
        """Bounds [r_min/(1−γ), r_max/(1−γ)] (with r_min ≤ 0 ≤ r_max) containing every return."""
        used = self.reward[self.P > 0]
        lo = min(float(used.min()), 0.0) if used.size else 0.0
        hi = max(float(used.max()), 0.0) if used.size else 0.0
        return lo / (1.0 - self.gamma), hi / (1.0 - self.gamma)


# --- policies -------------------------------------------------------------------------------


def check_policy(mdp: TabularMDP, pi, name: str = "pi") -> np.ndarray:
    """Validate a policy [S, A] for ``mdp`` (rows are probability vectors); returns float64.

    Valid range: no numeric arguments; pi must be [S, A] row-stochastic for the MDP (name labels the
    error message).
    """
    if not isinstance(mdp, TabularMDP):
        raise ValueError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    return check_distribution(name, pi, shape=(mdp.n_states, mdp.n_actions))


def _check_mdp(mdp: Any) -> TabularMDP:
    if not isinstance(mdp, TabularMDP):
        raise ValueError(f"mdp must be a TabularMDP, got {describe(mdp)}")
    return mdp


def uniform_policy(mdp: TabularMDP) -> np.ndarray:
    """π(a|s) = 1/A, shape [S, A].

    Valid range: no numeric arguments; mdp a TabularMDP.
    """
    mdp = _check_mdp(mdp)
    return np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)


def random_policy(mdp: TabularMDP, seed, concentration: float = 1.0) -> np.ndarray:
    """A Dirichlet(concentration) random policy [S, A]; concentration > 0 (any finite value).

    Valid range: concentration > 0 (finite; the Dirichlet parameter).
    """
    mdp = _check_mdp(mdp)
    rng = as_generator("seed", seed)
    concentration = check_scalar("concentration", concentration, low=0.0, low_inclusive=False)
    return rng.dirichlet(np.full(mdp.n_actions, concentration), size=mdp.n_states)


def greedy_policy(q) -> np.ndarray:
    """Deterministic greedy policy [S, A] from action values q [S, A] (ties → lowest index).

    Valid range: no numeric arguments; q [S, A] finite.
    """
    q = as_float_array("q", q, ndim=2)
    pi = np.zeros_like(q)
    pi[np.arange(q.shape[0]), np.argmax(q, axis=1)] = 1.0
    return pi


def epsilon_greedy_policy(pi, epsilon: float) -> np.ndarray:
    """(1 − ε) π + ε · uniform, shape [S, A].

    Valid range: epsilon in [0, 1]; pi [S, A] row-stochastic.
    """
    pi = check_distribution("pi", pi, ndim=2)
    epsilon = check_scalar("epsilon", epsilon, low=0.0, high=1.0)
    return (1.0 - epsilon) * pi + epsilon / pi.shape[1]


# --- generators -----------------------------------------------------------------------------


def garnet(
    n_states: int,
    n_actions: int,
    branching: int,
    seed,
    *,
    gamma: float = 0.9,
    reward_kind: str = "state_action",
    reward_scale: float = 1.0,
) -> TabularMDP:
    """A random Garnet MDP (Archibald et al. 1995).

    Each (s, a) moves to ``branching`` distinct next states chosen uniformly without replacement,
    with probabilities given by the gaps of ``branching − 1`` sorted uniforms. Rewards are
    Uniform[0, reward_scale): per (s, a) ([S, A]) or per transition ([S, A, S]).

    Valid range: n_states ≥ 1, n_actions ≥ 1 and 1 ≤ branching ≤ n_states (ints) with S²·A within
    the memory budget; gamma in [0, 1); reward_scale ≥ 0 (finite); reward_kind one of the listed
    kinds.
    """
    S = check_int("n_states", n_states, low=1)
    A = check_int("n_actions", n_actions, low=1)
    b = check_int("branching", branching, low=1)
    if b > S:
        raise ValueError(f"branching must be ≤ n_states = {S}, got branching={b}")
    # dense P [S, A, S] (and a transition reward of the same size); a Python loop over (s, a)
    check_size_budget("n_states" if S >= A else "n_actions", S if S >= A else A,
                      memory_bytes=2 * 8 * float(S) ** 2 * A, work=1e3 * float(S) * A)
    check_choice("reward_kind", reward_kind, ("state_action", "transition"))
    scale = check_scalar("reward_scale", reward_scale, low=0.0)
    rng = as_generator("seed", seed)
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            nxt = rng.choice(S, size=b, replace=False)
            cuts = np.sort(rng.random(b - 1))
            probs = np.diff(np.concatenate(([0.0], cuts, [1.0])))
            P[s, a, nxt] = probs
    P /= P.sum(axis=2, keepdims=True)
    shape = (S, A) if reward_kind == "state_action" else (S, A, S)
    reward = scale * rng.random(shape)
    return TabularMDP(P=P, reward=reward, gamma=gamma)


def chain_mdp(
    n_states: int = 5, *, gamma: float = 0.9, slip: float = 0.1, reward: float = 1.0
) -> TabularMDP:
    """A chain of ``n_states`` states with actions 0 = left, 1 = right.

    The intended move happens with probability 1 − slip, the opposite move with probability slip
    (moves are clipped at both ends). Reward ``reward`` for any action taken in the rightmost
    state, 0 elsewhere (per state–action). Initial state: the leftmost.

    Valid range: n_states ≥ 2 (an int); gamma in [0, 1); slip in [0, 1]; reward any finite real.
    """
    S = check_int("n_states", n_states, low=2)
    check_size_budget("n_states", S, memory_bytes=2 * 8 * 2 * float(S) ** 2)
    slip = check_scalar("slip", slip, low=0.0, high=1.0)
    reward = check_scalar("reward", reward)
    P = np.zeros((S, 2, S))
    for s in range(S):
        left, right = max(s - 1, 0), min(s + 1, S - 1)
        P[s, 0, left] += 1.0 - slip
        P[s, 0, right] += slip
        P[s, 1, right] += 1.0 - slip
        P[s, 1, left] += slip
    R = np.zeros((S, 2))
    R[S - 1, :] = reward
    initial = np.zeros(S)
    initial[0] = 1.0
    return TabularMDP(P=P, reward=R, gamma=gamma, initial=initial)


def two_state_mdp(
    *, gamma: float = 0.9, stay: float = 0.9, rewards=(1.0, 0.0)
) -> TabularMDP:
    """Two states, two actions: action 0 stays with probability ``stay`` (else switches), action 1
    switches with probability ``stay`` (else stays). Reward rewards[s] for any action in state s
    (per state–action). Initial state: 0.

    Valid range: gamma in [0, 1); stay in [0, 1]; rewards two finite reals.
    """
    stay = check_scalar("stay", stay, low=0.0, high=1.0)
    r = as_float_array("rewards", rewards, shape=(2,))
    P = np.zeros((2, 2, 2))
    for s in range(2):
        P[s, 0, s] = stay
        P[s, 0, 1 - s] = 1.0 - stay
        P[s, 1, 1 - s] = stay
        P[s, 1, s] = 1.0 - stay
    R = np.repeat(r[:, None], 2, axis=1)
    return TabularMDP(P=P, reward=R, gamma=gamma, initial=np.array([1.0, 0.0]))

