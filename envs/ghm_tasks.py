"""Problems for geometric horizon models whose successor measure is known exactly (numpy only).

The object learned by Temporal Difference Flows (Farebrother et al., ICML 2025, arXiv
2503.09817, background section) is the normalised successor measure

    m^π(X | s, a) = (1−γ) Σ_{k≥0} γ^k Pr(S_{k+1} ∈ X | S_0 = s, A_0 = a, π),

a distribution over *next-and-later* states (the first term is S_1, never S_0). Equivalently
X = S_k with k ~ Geometric(1−γ) on {1, 2, …} (:func:`geometric_horizons`). This module gives
three problems, each with a seeded offline dataset of (s, a, s′) from a behaviour policy that
differs from the evaluated policy π, plus the answers a learned model is checked against:

* :class:`LinearGaussianSystem` — s′ = A s + B a + w, w ~ N(0, σ²I), evaluated policy a = K s
  (closed loop F = A + BK). m^π(·|s, a) = Σ_{k≥1} (1−γ)γ^{k−1} N(F^{k−1} y, Σ_k) with
  y = A s + B a and Σ_k = σ² Σ_{j<k} F^j F^{jᵀ}: exact samples, exact density (series truncated
  with a stated error), exact mean (1−γ)(I − γF)^{-1} y (= (1−γ)(I−γF)^{-1}F s when a = K s) and
  exact values of quadratic rewards through a Stein equation.
* :class:`TabularEmbedding` — a finite MDP whose state i is observed as e_i + N(0, σ²I) in ℝ^d:
  m^π is the Gaussian mixture Σ_j M[(s,a), j] N(e_j, σ²I) with M = (1−γ)P_sa(I − γP^π)^{-1},
  so the analytic marginal velocity of the TD-Flow fixed point is known at every t
  (``fixpoint_rl.tabular.core.successor.gaussian_mixture_path``).
* :class:`PointMassLoop` — a 2-D point mass driven around a circle by a fixed feedback policy
  (the stand-in for the paper's Pointmass-maze "loop" task used in its horizon sweep, Figure 2);
  no closed form, ground truth by exact Monte-Carlo rollouts.

Shapes: B batch, d state dimension, m action dimension, S states, A actions, K mixture components,
N dataset size. Every conditioning input of a model ("cond") is the concatenation (s, a).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .checks import as_float_array, as_generator, check_distribution, check_int, check_scalar

__all__ = [
    "GHMDataset",
    "LinearGaussianSystem",
    "PointMassLoop",
    "TabularEmbedding",
    "garnet_embedding",
    "geometric_horizons",
    "rotation_system",
]

# Default truncation of the geometric series: the omitted mass is γ^K ≤ 1e-12, far below any
# Monte-Carlo error the tests can resolve (≥ 1e-4 with 10^8 samples).
SERIES_TOLERANCE = 1e-12


def _freeze(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _check_gamma(gamma: Any) -> float:
    return check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)


def geometric_horizons(gamma: float, size: int, seed: Any) -> np.ndarray:
    """k ~ Geometric(1−γ) on {1, 2, …}: Pr(k) = (1−γ)γ^{k−1} (TD-Flow's Monte-Carlo target).

    The support starts at 1: X = S_k is a sample of m^π only with S_1 as the first term; starting
    at 0 (returning S_0 with probability 1−γ) is the off-by-one trap the tests rule out.
    Returns an int64 array of shape [size].
    """
    gamma = _check_gamma(gamma)
    size = check_int("size", size, low=0)
    rng = as_generator("seed", seed)
    if gamma == 0.0:
        return np.ones(size, dtype=np.int64)
    return rng.geometric(1.0 - gamma, size=size).astype(np.int64)


@dataclasses.dataclass(frozen=True, eq=False)
class GHMDataset:
    """Offline transitions for training a geometric horizon model (arrays are read-only).

    Attributes:
      cond: [N, c] conditioning inputs (s, a) of the behaviour transitions.
      next_state: [N, d] observed next states s′ (the regression target of the (1−γ) term).
      next_cond: [N, c] conditioning inputs (s′, π(s′)) with π the *evaluated* policy, used to
        query the bootstrap (target) model.
    """

    cond: np.ndarray
    next_state: np.ndarray
    next_cond: np.ndarray

    def __post_init__(self) -> None:
        cond = as_float_array("cond", self.cond, ndim=2, copy=True)
        nxt = as_float_array("next_state", self.next_state, ndim=2, copy=True)
        next_cond = as_float_array("next_cond", self.next_cond, shape=cond.shape, copy=True)
        if nxt.shape[0] != cond.shape[0] or cond.shape[0] < 1:
            raise ValueError(
                f"next_state must have {cond.shape[0]} ≥ 1 rows like cond, got shape {nxt.shape}"
            )
        for name, value in (("cond", cond), ("next_state", nxt), ("next_cond", next_cond)):
            object.__setattr__(self, name, _freeze(value))

    def __len__(self) -> int:
        return int(self.cond.shape[0])


# ----------------------------------------------------------------------------- linear-Gaussian


def _spectral_radius(F: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(F)))) if F.size else 0.0


@dataclasses.dataclass(frozen=True, eq=False)
class LinearGaussianSystem:
    """s′ = A s + B a + w, w ~ N(0, σ²I); evaluated policy a = K s; closed loop F = A + B K.

    Attributes:
      A: [d, d] drift.
      B: [d, m] control matrix (m ≥ 1; use a zero column for an uncontrolled system).
      gain: [m, d] feedback gain K of the evaluated policy.
      noise_std: σ > 0.
      gamma: discount γ ∈ [0, 1).
      state_std: scale of the offline state distribution N(0, state_std² I).
      behaviour_std: the behaviour policy draws a ~ N(0, behaviour_std² I), independent of s
        (so it differs from the evaluated a = K s).

    ``ValueError`` when F is not stable (spectral radius ≥ 1: the successor measure's covariance
    series and the value of a quadratic reward would diverge as γ → 1), γ ∉ [0, 1), σ ≤ 0 or the
    shapes disagree.
    """

    A: Any
    B: Any
    gain: Any
    noise_std: float
    gamma: float
    state_std: float = 2.0
    behaviour_std: float = 1.0

    def __post_init__(self) -> None:
        A = as_float_array("A", self.A, ndim=2, copy=True)
        d = A.shape[0]
        if A.shape != (d, d) or d < 1:
            raise ValueError(f"A must be a square (d, d) matrix with d ≥ 1, got shape {A.shape}")
        B = as_float_array("B", self.B, ndim=2, copy=True)
        if B.shape[0] != d or B.shape[1] < 1:
            raise ValueError(f"B must have shape ({d}, m) with m ≥ 1, got shape {B.shape}")
        gain = as_float_array("gain", self.gain, shape=(B.shape[1], d), copy=True)
        F = A + B @ gain
        radius = _spectral_radius(F)
        if radius >= 1.0:
            raise ValueError(
                f"the closed loop F = A + B·gain must be stable (spectral radius < 1), got {radius:.6g}"
            )
        for name in ("noise_std", "state_std", "behaviour_std"):
            value = check_scalar(name, getattr(self, name), low=0.0, low_inclusive=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "gamma", _check_gamma(self.gamma))
        object.__setattr__(self, "A", _freeze(A))
        object.__setattr__(self, "B", _freeze(B))
        object.__setattr__(self, "gain", _freeze(gain))
        object.__setattr__(self, "F", _freeze(F))

    # --- sizes
    @property
    def dim(self) -> int:
        return int(self.A.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.B.shape[1])

    @property
    def cond_dim(self) -> int:
        return self.dim + self.action_dim

    def _states(self, name: str, value: Any) -> np.ndarray:
        return as_float_array(name, value, shape=(None, self.dim))

    def _actions(self, states: np.ndarray, actions: Any) -> np.ndarray:
        if actions is None:
            return self.policy(states)
        return as_float_array("actions", actions, shape=(states.shape[0], self.action_dim))

    # --- dynamics and policies
    def policy(self, states: Any) -> np.ndarray:
        """Evaluated policy a = K s: [B, d] → [B, m]."""
        return self._states("states", states) @ self.gain.T

    def condition(self, states: Any, actions: Any = None) -> np.ndarray:
        """Conditioning input (s, a) → [B, d + m]; ``actions=None`` uses the evaluated policy."""
        states = self._states("states", states)
        return np.concatenate([states, self._actions(states, actions)], axis=1)

    def step(self, states: Any, actions: Any, seed: Any) -> np.ndarray:
        """One transition s′ = A s + B a + σ w for each row: [B, d], [B, m] → [B, d]."""
        states = self._states("states", states)
        actions = self._actions(states, actions)
        rng = as_generator("seed", seed)
        noise = rng.standard_normal(states.shape)
        return states @ self.A.T + actions @ self.B.T + self.noise_std * noise

    def first_mean(self, states: Any, actions: Any = None) -> np.ndarray:
        """y = A s + B a, the mean of S_1: [B, d]."""
        states = self._states("states", states)
        return states @ self.A.T + self._actions(states, actions) @ self.B.T

    # --- exact answers
    def sample_successor(self, states: Any, actions: Any = None, *, seed: Any) -> np.ndarray:
        """Exact samples X ~ m^π(·|s, a): one per row, by rolling out k ~ Geom(1−γ) ≥ 1 steps.

        The first step uses the given action (default π(s)), later steps the evaluated policy.
        Returns [B, d].
        """
        states = self._states("states", states)
        actions = self._actions(states, actions)
        rng = as_generator("seed", seed)
        horizons = geometric_horizons(self.gamma, states.shape[0], rng)
        x = self.step(states, actions, rng)
        for k in range(2, int(horizons.max(initial=1)) + 1):
            active = horizons >= k
            if not np.any(active):
                break
            x[active] = x[active] @ self.F.T + self.noise_std * rng.standard_normal(
                (int(active.sum()), self.dim)
            )
        return x

    def series_length(self, tol: float = SERIES_TOLERANCE) -> int:
        """Number K of mixture components kept so that the omitted mass γ^K ≤ tol."""
        tol = check_scalar("tol", tol, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        if self.gamma == 0.0:
            return 1
        return max(1, int(math.ceil(math.log(tol) / math.log(self.gamma))))

    def successor_mixture(
        self, states: Any, actions: Any = None, *, tol: float = SERIES_TOLERANCE
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Gaussian-mixture form of m^π(·|s, a), truncated after K = series_length(tol) terms.

        Returns:
          weights [K] = (1−γ)γ^{k−1} (sum 1 − γ^K), means [B, K, d] = F^{k−1} y, covs [K, d, d] =
          Σ_k = σ² Σ_{j<k} F^j F^{jᵀ}. Truncation error of the density: every Σ_k ⪰ σ²I, so each
          omitted component's density is ≤ (2πσ²)^{-d/2}, and the truncated density is below the
          exact one by at most γ^K (2πσ²)^{-d/2} everywhere.
        """
        y = self.first_mean(states, actions)
        K = self.series_length(tol)
        d = self.dim
        weights = (1.0 - self.gamma) * self.gamma ** np.arange(K, dtype=np.float64)
        means = np.empty((y.shape[0], K, d))
        covs = np.empty((K, d, d))
        mean = y.copy()
        power = np.eye(d)
        cov = np.zeros((d, d))
        for k in range(K):
            cov = cov + self.noise_std**2 * power @ power.T
            means[:, k] = mean
            covs[k] = cov
            mean = mean @ self.F.T
            power = self.F @ power
        return weights, means, covs

    def density_truncation_error(self, tol: float = SERIES_TOLERANCE) -> float:
        """Bound γ^K (2πσ²)^{-d/2} on |exact − truncated| density (see :meth:`successor_mixture`)."""
        K = self.series_length(tol)
        return self.gamma**K * (2.0 * math.pi * self.noise_std**2) ** (-0.5 * self.dim)

    def successor_mean(self, states: Any, actions: Any = None) -> np.ndarray:
        """E_{m^π(·|s,a)}[X] = (1−γ)(I − γF)^{-1} y, y = A s + B a (= F s under π): [B, d]."""
        y = self.first_mean(states, actions)
        system = np.eye(self.dim) - self.gamma * self.F
        return (1.0 - self.gamma) * np.linalg.solve(system, y.T).T

    def _stein(self, S: np.ndarray) -> np.ndarray:
        """L(S) = (1−γ) Σ_{k≥0} γ^k F^k S F^{kᵀ}, the solution of L = (1−γ)S + γ F L Fᵀ."""
        d = self.dim
        system = np.eye(d * d) - self.gamma * np.kron(self.F, self.F)
        return np.linalg.solve(system, (1.0 - self.gamma) * S.reshape(-1)).reshape(d, d)

    def successor_second_moment(self, states: Any, actions: Any = None) -> np.ndarray:
        """E_{m^π(·|s,a)}[X Xᵀ] = L(y yᵀ) + σ²/(1−γ)·L(I): [B, d, d] (exact, no truncation).

        Σ_k (1−γ)γ^{k−1} Σ_k = σ² Σ_{j≥0} γ^j F^j F^{jᵀ} = σ²/(1−γ) L(I) after exchanging sums.
        """
        y = self.first_mean(states, actions)
        noise = self.noise_std**2 / (1.0 - self.gamma) * self._stein(np.eye(self.dim))
        return np.stack([self._stein(np.outer(row, row)) + noise for row in y])

    def quadratic_value(
        self, states: Any, actions: Any = None, *, Q: Any, b: Any = None, c: float = 0.0
    ) -> np.ndarray:
        """Exact Q^π(s, a) = (1−γ)^{-1} E_{m^π}[r(X)] for r(x) = xᵀQx + bᵀx + c (TD-Flow's value identity).

        This equals E[Σ_{k≥1} γ^{k−1} r(S_k)] (reward on arrival). Returns [B].
        """
        d = self.dim
        Q = as_float_array("Q", Q, shape=(d, d))
        b = np.zeros(d) if b is None else as_float_array("b", b, shape=(d,))
        c = check_scalar("c", c)
        second = self.successor_second_moment(states, actions)
        mean = self.successor_mean(states, actions)
        expected = np.einsum("ij,bji->b", Q, second) + mean @ b + c
        return expected / (1.0 - self.gamma)

    # --- data
    def offline_dataset(self, size: int, seed: Any) -> GHMDataset:
        """N transitions: s ~ N(0, state_std² I), a ~ N(0, behaviour_std² I), s′ from the dynamics;
        ``next_cond`` = (s′, K s′) for the evaluated policy."""
        size = check_int("size", size, low=1)
        rng = as_generator("seed", seed)
        states = self.state_std * rng.standard_normal((size, self.dim))
        actions = self.behaviour_std * rng.standard_normal((size, self.action_dim))
        nxt = self.step(states, actions, rng)
        return GHMDataset(
            cond=np.concatenate([states, actions], axis=1),
            next_state=nxt,
            next_cond=self.condition(nxt),
        )

    def successor_dataset(self, size: int, seed: Any) -> tuple[np.ndarray, np.ndarray]:
        """On-policy Monte-Carlo pairs for the MC-CFM oracle: (s, a) drawn as in
        :meth:`offline_dataset` and one X ~ m^π(·|s, a) each. Returns (cond [N, c], X [N, d])."""
        size = check_int("size", size, low=1)
        rng = as_generator("seed", seed)
        states = self.state_std * rng.standard_normal((size, self.dim))
        actions = self.behaviour_std * rng.standard_normal((size, self.action_dim))
        x = self.sample_successor(states, actions, seed=rng)
        return np.concatenate([states, actions], axis=1), x

    def source_states(self, count: int, seed: Any) -> np.ndarray:
        """Evaluation sources s ~ N(0, (state_std/2)² I) (inside the data's support): [count, d]."""
        count = check_int("count", count, low=1)
        rng = as_generator("seed", seed)
        return 0.5 * self.state_std * rng.standard_normal((count, self.dim))


def rotation_system(
    dim: int = 2,
    *,
    gamma: float,
    contraction: float = 0.95,
    angle: float = 0.3,
    noise_std: float = 0.1,
    state_std: float = 2.0,
) -> LinearGaussianSystem:
    """The linear-Gaussian toy: F = contraction · (block) rotation(angle), A = F, B = I, K = 0.

    The evaluated policy applies no control (a = 0), the behaviour policy random controls, so the
    dataset is off-policy. ``dim`` ≥ 1 (odd dimensions keep one unrotated coordinate).
    """
    dim = check_int("dim", dim, low=1)
    contraction = check_scalar("contraction", contraction, low=0.0, high=1.0, high_inclusive=False)
    angle = check_scalar("angle", angle)
    c, s = math.cos(angle), math.sin(angle)
    F = np.eye(dim)
    for i in range(0, dim - 1, 2):
        F[i : i + 2, i : i + 2] = [[c, -s], [s, c]]
    F *= contraction
    return LinearGaussianSystem(
        A=F, B=np.eye(dim), gain=np.zeros((dim, dim)), noise_std=noise_std, gamma=gamma,
        state_std=state_std, behaviour_std=0.5,
    )


# ----------------------------------------------------------------------------- tabular embedding


@dataclasses.dataclass(frozen=True, eq=False)
class TabularEmbedding:
    """A finite MDP observed in ℝ^d: state j ↦ embedding[j] + N(0, σ²I).

    Attributes:
      P: [S, A, S] transition probabilities.
      policy: [S, A] evaluated policy π.
      behaviour: [S, A] behaviour policy of the offline data (must differ from π somewhere).
      gamma: discount γ ∈ [0, 1).
      noise_std: σ ≥ 0 of the observation noise.
      embedding: [S, d] state embedding (default the one-hot e_j, d = S).

    The model's conditioning input is (embedding[s], one-hot a) with the clean embedding (the
    successor measure depends on the hidden state only); samples live in observation space.
    """

    P: Any
    policy: Any
    behaviour: Any
    gamma: float
    noise_std: float = 0.1
    embedding: Any = None

    def __post_init__(self) -> None:
        P = check_distribution("P", self.P, ndim=3, copy=True)
        S, A, S2 = P.shape
        if S2 != S or S < 1 or A < 1:
            raise ValueError(f"P must have shape (S, A, S) with S, A ≥ 1, got shape {P.shape}")
        policy = check_distribution("policy", self.policy, shape=(S, A), copy=True)
        behaviour = check_distribution("behaviour", self.behaviour, shape=(S, A), copy=True)
        if np.allclose(policy, behaviour):
            raise ValueError("behaviour must differ from policy (the data are off-policy)")
        embedding = np.eye(S) if self.embedding is None else as_float_array(
            "embedding", self.embedding, ndim=2, copy=True
        )
        if embedding.shape[0] != S or embedding.shape[1] < 1:
            raise ValueError(f"embedding must have shape ({S}, d), got shape {embedding.shape}")
        object.__setattr__(self, "gamma", _check_gamma(self.gamma))
        object.__setattr__(self, "noise_std", check_scalar("noise_std", self.noise_std, low=0.0))
        for name, value in (("P", P), ("policy", policy), ("behaviour", behaviour),
                            ("embedding", embedding)):
            object.__setattr__(self, name, _freeze(value))

    @property
    def num_states(self) -> int:
        return int(self.P.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.P.shape[1])

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[1])

    @property
    def cond_dim(self) -> int:
        return self.dim + self.num_actions

    def _indices(self, name: str, value: Any, upper: int) -> np.ndarray:
        array = np.asarray(value)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer) or array.size == 0 or (
            array.min() < 0 or array.max() >= upper
        ):
            raise ValueError(
                f"{name} must be a non-empty 1-D integer array in [0, {upper - 1}], got {array!r}"
            )
        return array.astype(np.int64)

    def state_transition(self) -> np.ndarray:
        """P^π[s, s′] = Σ_a π(a|s) P(s′|s, a): [S, S]."""
        return np.einsum("sa,sat->st", self.policy, self.P)

    def successor_measure(self) -> np.ndarray:
        """M[s, a, j] = (1−γ) Σ_k γ^k Pr(S_{k+1} = j | s, a, π) = [(1−γ)P_sa(I − γP^π)^{-1}]: [S, A, S]."""
        from fixpoint_rl.tabular.core.successor import successor_measure

        S, A = self.num_states, self.num_actions
        rows = successor_measure(self.P.reshape(S * A, S), self.state_transition(), self.gamma)
        return rows.reshape(S, A, S)

    def state_values(self, reward: Any) -> np.ndarray:
        """Q^π(s, a) = E[Σ_{k≥1} γ^{k−1} r(S_k)] = P_sa (I − γP^π)^{-1} r for a state reward r [S]:
        [S, A] (the independent linear-solve oracle of the value identity)."""
        reward = as_float_array("reward", reward, shape=(self.num_states,))
        v = np.linalg.solve(np.eye(self.num_states) - self.gamma * self.state_transition(), reward)
        return self.P @ v

    def condition(self, states: Any, actions: Any) -> np.ndarray:
        """(embedding[s], one-hot a): [B, d + A]."""
        states = self._indices("states", states, self.num_states)
        actions = self._indices("actions", actions, self.num_actions)
        if actions.shape != states.shape:
            raise ValueError(f"actions must have shape {states.shape}, got {actions.shape}")
        return np.concatenate([self.embedding[states], np.eye(self.num_actions)[actions]], axis=1)

    def observe(self, states: Any, seed: Any) -> np.ndarray:
        """Noisy observations embedding[s] + σ ξ: [B, d]."""
        states = self._indices("states", states, self.num_states)
        rng = as_generator("seed", seed)
        return self.embedding[states] + self.noise_std * rng.standard_normal((states.size, self.dim))

    def _draw(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cdf = np.cumsum(probs, axis=-1)
        u = rng.random(probs.shape[:-1] + (1,))
        return np.minimum((u > cdf).sum(axis=-1), probs.shape[-1] - 1).astype(np.int64)

    def act(self, states: Any, seed: Any, *, policy: Any = None) -> np.ndarray:
        """Actions a ~ policy(·|s) (default the evaluated π): [B] int64."""
        states = self._indices("states", states, self.num_states)
        pi = self.policy if policy is None else check_distribution(
            "policy", policy, shape=self.policy.shape
        )
        return self._draw(pi[states], as_generator("seed", seed))

    def sample_successor_states(self, states: Any, actions: Any, seed: Any) -> np.ndarray:
        """Monte-Carlo sampler: k ~ Geom(1−γ) ≥ 1, roll π and return the state index S_k: [B]."""
        states = self._indices("states", states, self.num_states)
        actions = self._indices("actions", actions, self.num_actions)
        rng = as_generator("seed", seed)
        horizons = geometric_horizons(self.gamma, states.size, rng)
        current = self._draw(self.P[states, actions], rng)
        P_pi = self.state_transition()
        for k in range(2, int(horizons.max(initial=1)) + 1):
            active = horizons >= k
            current[active] = self._draw(P_pi[current[active]], rng)
        return current

    def sample_successor(self, states: Any, actions: Any, *, seed: Any) -> np.ndarray:
        """Exact samples X ~ m^π(·|s, a) in observation space: [B, d]."""
        rng = as_generator("seed", seed)
        return self.observe(self.sample_successor_states(states, actions, rng), rng)

    def successor_mixture(
        self, states: Any, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """m^π(·|s, a) = Σ_j M[s, a, j] N(embedding[j], σ²I): weights [B, S], means [S, d],
        covs [S, d, d] (σ = 0 gives singular covariances: use t < 1 in the path velocity)."""
        states = self._indices("states", states, self.num_states)
        actions = self._indices("actions", actions, self.num_actions)
        weights = self.successor_measure()[states, actions]
        covs = np.broadcast_to(self.noise_std**2 * np.eye(self.dim), (self.num_states, self.dim, self.dim))
        return weights, self.embedding.copy(), covs.copy()

    def offline_dataset(self, size: int, seed: Any) -> GHMDataset:
        """N transitions: s uniform, a ~ behaviour(·|s), s′ ~ P, observed s′, a′ ~ π(·|s′)."""
        size = check_int("size", size, low=1)
        rng = as_generator("seed", seed)
        states = rng.integers(0, self.num_states, size=size)
        actions = self._draw(self.behaviour[states], rng)
        nxt = self._draw(self.P[states, actions], rng)
        next_actions = self._draw(self.policy[nxt], rng)
        return GHMDataset(
            cond=self.condition(states, actions),
            next_state=self.observe(nxt, rng),
            next_cond=self.condition(nxt, next_actions),
        )

    def successor_dataset(self, size: int, seed: Any) -> tuple[np.ndarray, np.ndarray]:
        """MC-CFM oracle pairs: s uniform, a ~ behaviour, X ~ m^π(·|s, a). (cond [N, c], X [N, d])."""
        size = check_int("size", size, low=1)
        rng = as_generator("seed", seed)
        states = rng.integers(0, self.num_states, size=size)
        actions = self._draw(self.behaviour[states], rng)
        return self.condition(states, actions), self.sample_successor(states, actions, seed=rng)


def garnet_embedding(
    num_states: int = 5,
    num_actions: int = 2,
    *,
    gamma: float,
    seed: Any = 0,
    branching: int = 2,
    noise_std: float = 0.1,
) -> TabularEmbedding:
    """A Garnet MDP (``fixpoint_rl.envs.garnet``) with one-hot embedding, a Dirichlet(1) random
    evaluated policy and the uniform behaviour policy, all drawn from ``seed``."""
    from .mdp import garnet, random_policy, uniform_policy

    rng = as_generator("seed", seed)
    mdp = garnet(num_states, num_actions, branching, rng, gamma=gamma)
    return TabularEmbedding(P=mdp.P, policy=random_policy(mdp, rng), behaviour=uniform_policy(mdp),
                            gamma=gamma, noise_std=noise_std)


# ----------------------------------------------------------------------------- point mass on a loop


@dataclasses.dataclass(frozen=True, eq=False)
class PointMassLoop:
    """A 2-D point mass (state (x, y, vx, vy)) in the box [−2, 2]² driven around the unit circle.

    Dynamics (step dt): v′ = (1 − damping·dt) v + dt·clip(a, −1, 1) + noise_std·√dt·ξ,
    p′ = clip(p + dt·v′, −2, 2). The evaluated policy tracks a point ``lead`` radians ahead on the
    circle of radius ``radius`` with a PD law (gains ``kp``, ``kd``): the mass circulates, as in
    the paper's Pointmass "loop" task (TD-Flow Figure 2). The behaviour policy is uniform on
    [−1, 1]² from states spread over the box, so the data are off-policy.
    Reward for values: r(x) = exp(−‖p − goal‖²/(2·0.25²)), goal on the circle's top-left.
    """

    gamma: float
    dt: float = 0.1
    damping: float = 0.5
    noise_std: float = 0.2
    radius: float = 1.0
    lead: float = 0.6
    kp: float = 2.0
    kd: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", _check_gamma(self.gamma))
        for name in ("dt", "radius", "kp", "kd"):
            object.__setattr__(self, name, check_scalar(name, getattr(self, name), low=0.0,
                                                        low_inclusive=False))
        for name in ("damping", "noise_std"):
            object.__setattr__(self, name, check_scalar(name, getattr(self, name), low=0.0))
        object.__setattr__(self, "lead", check_scalar("lead", self.lead))

    dim = 4
    action_dim = 2
    box = 2.0

    @property
    def cond_dim(self) -> int:
        return self.dim + self.action_dim

    def _states(self, value: Any) -> np.ndarray:
        return as_float_array("states", value, shape=(None, self.dim))

    def policy(self, states: Any) -> np.ndarray:
        states = self._states(states)
        angle = np.arctan2(states[:, 1], states[:, 0]) + self.lead
        target = self.radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return np.clip(self.kp * (target - states[:, :2]) - self.kd * states[:, 2:], -1.0, 1.0)

    def condition(self, states: Any, actions: Any = None) -> np.ndarray:
        states = self._states(states)
        actions = self.policy(states) if actions is None else as_float_array(
            "actions", actions, shape=(states.shape[0], self.action_dim)
        )
        return np.concatenate([states, actions], axis=1)

    def step(self, states: Any, actions: Any, seed: Any) -> np.ndarray:
        states = self._states(states)
        actions = np.clip(as_float_array("actions", actions, shape=(states.shape[0], 2)), -1, 1)
        rng = as_generator("seed", seed)
        v = (1.0 - self.damping * self.dt) * states[:, 2:] + self.dt * actions
        v = v + self.noise_std * math.sqrt(self.dt) * rng.standard_normal(v.shape)
        p = np.clip(states[:, :2] + self.dt * v, -self.box, self.box)
        return np.concatenate([p, v], axis=1)

    def reward(self, x: Any) -> np.ndarray:
        x = as_float_array("x", x, ndim=(2, 3))
        goal = self.radius * np.array([-math.sqrt(0.5), math.sqrt(0.5)])
        return np.exp(-np.sum((x[..., :2] - goal) ** 2, axis=-1) / (2 * 0.25**2))

    def sample_successor(self, states: Any, actions: Any = None, *, seed: Any) -> np.ndarray:
        """Exact Monte-Carlo samples of m^π(·|s, a): k ~ Geom(1−γ) ≥ 1 steps: [B, 4]."""
        states = self._states(states)
        actions = self.policy(states) if actions is None else actions
        rng = as_generator("seed", seed)
        horizons = geometric_horizons(self.gamma, states.shape[0], rng)
        x = self.step(states, actions, rng)
        for k in range(2, int(horizons.max(initial=1)) + 1):
            active = horizons >= k
            x[active] = self.step(x[active], self.policy(x[active]), rng)
        return x

    def discounted_value(self, states: Any, *, rollouts: int, seed: Any, tol: float = 1e-6) -> tuple[
        np.ndarray, np.ndarray
    ]:
        """Monte-Carlo V^π(s) = E Σ_{k≥1} γ^{k−1} r(S_k), truncated where γ^H ≤ tol.

        Returns (mean [B], standard error [B]) over ``rollouts`` rollouts per state.
        """
        states = self._states(states)
        rollouts = check_int("rollouts", rollouts, low=2)
        rng = as_generator("seed", seed)
        horizon = 1 if self.gamma == 0 else int(math.ceil(math.log(tol) / math.log(self.gamma)))
        x = np.repeat(states, rollouts, axis=0)
        total = np.zeros(x.shape[0])
        for k in range(horizon):
            x = self.step(x, self.policy(x), rng)
            total += self.gamma**k * self.reward(x)
        total = total.reshape(states.shape[0], rollouts)
        return total.mean(axis=1), total.std(axis=1, ddof=1) / math.sqrt(rollouts)

    def offline_dataset(self, size: int, seed: Any, *, segment: int = 10) -> GHMDataset:
        """N transitions from the uniform random behaviour policy, in segments of ``segment``
        steps starting from states uniform on the box (positions) and N(0, 0.5²) velocities."""
        size = check_int("size", size, low=1)
        segment = check_int("segment", segment, low=1)
        rng = as_generator("seed", seed)
        starts = -(-size // segment)
        x = np.concatenate([rng.uniform(-1.6, 1.6, (starts, 2)),
                            0.5 * rng.standard_normal((starts, 2))], axis=1)
        conds, nexts = [], []
        for _ in range(segment):
            a = rng.uniform(-1.0, 1.0, (starts, 2))
            nxt = self.step(x, a, rng)
            conds.append(np.concatenate([x, a], axis=1))
            nexts.append(nxt)
            x = nxt
        cond = np.concatenate(conds)[:size]
        nxt = np.concatenate(nexts)[:size]
        return GHMDataset(cond=cond, next_state=nxt, next_cond=self.condition(nxt))

    def successor_dataset(self, size: int, seed: Any, *, segment: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """MC-CFM oracle pairs: (s, a) from the behaviour data, X ~ m^π(·|s, a) by rollouts."""
        data = self.offline_dataset(size, seed, segment=segment)
        rng = as_generator("seed", seed).spawn(1)[0] if isinstance(seed, np.random.Generator) else \
            np.random.default_rng([check_int("seed", seed, low=0), 1])
        cond = np.array(data.cond)
        return cond, self.sample_successor(cond[:, :4], cond[:, 4:], seed=rng)

    def source_states(self, count: int, seed: Any) -> np.ndarray:
        """Evaluation sources on the loop: angle uniform, radius 1 ± 0.1, small velocities."""
        count = check_int("count", count, low=1)
        rng = as_generator("seed", seed)
        angle = rng.uniform(0, 2 * math.pi, count)
        r = self.radius * (1 + 0.1 * rng.standard_normal(count))
        v = 0.2 * rng.standard_normal((count, 2))
        return np.concatenate([np.stack([r * np.cos(angle), r * np.sin(angle)], 1), v], axis=1)
