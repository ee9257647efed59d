"""The four Markov reward processes of the DCFP experimental study, and their atom supports.

Rowland, Wenliang, Munos, Lyle, Tang, Dabney, "Near-Minimax-Optimal Distributional Reinforcement
Learning with a Generative Model" (NeurIPS 2024) compares DCFP, QDP and CDP on environments named
Chain, Low random, High random and Two-state (arXiv 2402.07598, §7). The paper's exact state
counts and transition matrices are not available to us (not given in the text we had), so the specifications below
are OUR choices, made to have the qualitative features the names describe. Rewards are a function of
the source state, r(x, x') = r(x) ∈ [0, 1], so every return lies in [0, 1/(1−γ)] (the setting of Rowland et al. 2024).

* ``chain(n_states=5, gamma=0.9, forward=0.9)``: states 0 … S−1 on a line. From x < S−1 move to
  x+1 with probability ``forward`` and stay with probability 1 − ``forward``; S−1 is absorbing.
  Reward 1 in S−1, 0 elsewhere. Returns are γ^T/(1−γ) for a negative-binomial hitting time T:
  near-deterministic for ``forward`` near 1 (the regime where QDP does well).
* ``low_random(n_states=10, gamma=0.9, seed=0)``: each row of P is Dirichlet(0.1·1) (most mass on
  one or two successors: low transition randomness); rewards r(x) ~ U[0, 1]. Fixed by ``seed``.
* ``high_random(n_states=10, gamma=0.9, seed=0)``: each row of P is Dirichlet(1·1) (mass spread over
  all successors: high transition randomness); rewards r(x) ~ U[0, 1]. Fixed by ``seed``.
* ``two_state(gamma=0.9, stay=0.5)``: the paper's Fig. 2 process, γ = 0.9, r = (1, 0). Its
  transition matrix is unverified in our notes; we use P = [[stay, 1−stay], [1−stay, stay]] with
  stay = 0.5, which makes the return 1{x = x0} + Σ_{t≥1} γ^t B_t with i.i.d. fair bits B_t, a
  Cantor-like continuous distribution (the stochastic CDF identity holds for any P).

Supports (M atoms, evenly spaced):

* ``global_support(mrp, m)``: [0, r_max/(1−γ)] (generally [min(r_min, 0)/(1−γ), max(r_max, 0)/(1−γ)]),
  the range every return lies in.
* ``environment_support(mrp, m)``: [G_min, G_max], the exact range of returns of this process:
  G_max = max_x U(x) with U(x) = max_{x': P(x,x')>0} (r(x, x') + γ U(x')), G_min likewise with min
  (value iteration on the transition graph, to 1e-12). It covers every return, so the mean and the
  Δ/(2(1−γ)) bounds still hold, with a smaller Δ.

Both return ``(v_min, v_max, m)``-style evenly spaced atom arrays [M] (numpy only, so this module
stays at the bottom layer; wrap them in ``CategoricalSupport.from_atoms`` if wanted).

Valid range: γ ∈ [0, 1), probabilities in [0, 1], n_states and m within the memory budget of
``fixpoint_rl.envs.checks.check_size_budget``, tol > 0. Outside it ``ValueError``.
"""

from __future__ import annotations

import numpy as np

from .checks import check_int, check_scalar, check_size_budget, describe
from .mdp import MarkovRewardProcess

__all__ = [
    "chain",
    "low_random",
    "high_random",
    "two_state",
    "random_mrp",
    "global_support",
    "environment_support",
    "return_bounds",
    "DCFP_ENVIRONMENTS",
]


def _state_rewards(r: np.ndarray) -> np.ndarray:
    """Per-transition rewards [S, S] from per-state rewards r(x) [S]: R[x, x'] = r(x)."""
    S = r.shape[0]
    return np.repeat(r[:, None], S, axis=1)


def chain(n_states: int = 5, gamma: float = 0.9, forward: float = 0.9) -> MarkovRewardProcess:
    """Chain: move right w.p. ``forward`` (else stay); last state absorbing with reward 1.

    Args:
      n_states: S ≥ 2.
      gamma: discount in [0, 1).
      forward: probability of moving right, in (0, 1].

    Returns:
      MarkovRewardProcess with P [S, S], reward [S, S] (reward[x, :] = 1{x = S−1}).

    Valid range: n_states ≥ 2 (an int); gamma in [0, 1); forward in (0, 1].
    """
    S = check_int("n_states", n_states, low=2)
    check_size_budget("n_states", S, memory_bytes=3 * 8 * float(S) ** 2)  # dense P, reward
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    forward = check_scalar("forward", forward, low=0.0, high=1.0, low_inclusive=False)
    P = np.zeros((S, S))
    for x in range(S - 1):
        P[x, x + 1] = forward
        P[x, x] += 1.0 - forward
    P[S - 1, S - 1] = 1.0
    r = np.zeros(S)
    r[S - 1] = 1.0
    return MarkovRewardProcess(P=P, reward=_state_rewards(r), gamma=gamma)


def random_mrp(
    n_states: int, concentration: float, gamma: float = 0.9, seed: int = 0
) -> MarkovRewardProcess:
    """Random MRP: rows of P ~ Dirichlet(concentration·1), rewards r(x) ~ U[0, 1] (seeded).

    Small ``concentration`` gives near-deterministic transitions, large gives diffuse ones.

    Valid range: n_states ≥ 1 (an int, S² within memory); concentration > 0 (finite); gamma in [0,
    1).
    """
    S = check_int("n_states", n_states, low=1)
    check_size_budget("n_states", S, memory_bytes=3 * 8 * float(S) ** 2)  # dense P, reward
    concentration = check_scalar("concentration", concentration, low=0.0, low_inclusive=False)
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    seed = check_int("seed", seed, low=0)
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(S, concentration), size=S)
    # Dirichlet draws with tiny concentration can underflow to an all-zero row's rounding; renormalise.
    P = P / P.sum(axis=1, keepdims=True)
    r = rng.random(S)
    return MarkovRewardProcess(P=P, reward=_state_rewards(r), gamma=gamma)


def low_random(n_states: int = 10, gamma: float = 0.9, seed: int = 0) -> MarkovRewardProcess:
    """Low random: rows of P ~ Dirichlet(0.1·1) (low transition randomness), r(x) ~ U[0, 1].

    Valid range: n_states ≥ 1 (an int, S² within memory); gamma in [0, 1).
    """
    return random_mrp(n_states, 0.1, gamma=gamma, seed=seed)


def high_random(n_states: int = 10, gamma: float = 0.9, seed: int = 0) -> MarkovRewardProcess:
    """High random: rows of P ~ Dirichlet(1·1) (high transition randomness), r(x) ~ U[0, 1].

    Valid range: n_states ≥ 1 (an int, S² within memory); gamma in [0, 1).
    """
    return random_mrp(n_states, 1.0, gamma=gamma, seed=seed)


def two_state(gamma: float = 0.9, stay: float = 0.5) -> MarkovRewardProcess:
    """Two-state MRP of the paper's Fig. 2: r = (1, 0), P = [[stay, 1−stay], [1−stay, stay]].

    Valid range: gamma in [0, 1); stay in [0, 1].
    """
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    stay = check_scalar("stay", stay, low=0.0, high=1.0)
    P = np.array([[stay, 1.0 - stay], [1.0 - stay, stay]])
    return MarkovRewardProcess(P=P, reward=_state_rewards(np.array([1.0, 0.0])), gamma=gamma)


DCFP_ENVIRONMENTS = {
    "chain": chain,
    "low_random": low_random,
    "high_random": high_random,
    "two_state": two_state,
}


def _check_mrp(mrp) -> MarkovRewardProcess:
    if not isinstance(mrp, MarkovRewardProcess):
        raise ValueError(f"mrp must be a MarkovRewardProcess, got {describe(mrp)}")
    return mrp


def _grid(lo: float, hi: float, m: int) -> np.ndarray:
    if not hi > lo:  # every return equal: widen so the grid is strictly increasing and covers it
        pad = max(1.0, abs(lo)) * 0.5
        lo, hi = lo - pad, hi + pad
    return np.linspace(lo, hi, m)


def global_support(mrp, m: int) -> np.ndarray:
    """Atoms [M] evenly spaced on [min(r_min, 0)/(1−γ), max(r_max, 0)/(1−γ)] ([0, 1/(1−γ)] for
    rewards in [0, 1] with some reward 1): the global return range of Rowland et al. 2024.

    Valid range: m ≥ 2 (an int, within memory); the MRP's returns must have a finite span (max|r|/(1
    − γ) ≤ 1e300).
    """
    mrp = _check_mrp(mrp)
    m = check_int("m", m, low=2)
    check_size_budget("m", m, memory_bytes=8.0 * m)
    lo, hi = mrp.return_range()
    return _grid(lo, hi, m)


def return_bounds(mrp, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-state return range [L(x), U(x)] (value iteration over the transition graph).

    U(x) = max_{x': P(x,x')>0} (r(x, x') + γ U(x')), L likewise with min; iterated from the global
    bounds until the change is ≤ tol (a γ-contraction, so ≤ log(tol)/log(γ) sweeps; at most 10⁵).

    Valid range: tol > 0 (absolute, in return units); every MRP (its returns are bounded by
    ``RETURN_LIMIT`` at construction, so the bounds are finite).
    """
    mrp = _check_mrp(mrp)
    tol = check_scalar("tol", tol, low=0.0, low_inclusive=False)
    P, R, gamma = mrp.P, mrp.reward, mrp.gamma
    lo_glob, hi_glob = mrp.return_range()
    edge = P > 0
    upper = np.full(P.shape[0], hi_glob)
    lower = np.full(P.shape[0], lo_glob)
    for _ in range(100_000):
        new_upper = np.where(edge, R + gamma * upper[None, :], -np.inf).max(axis=1)
        new_lower = np.where(edge, R + gamma * lower[None, :], np.inf).min(axis=1)
        change = max(np.max(np.abs(new_upper - upper)), np.max(np.abs(new_lower - lower)))
        upper, lower = new_upper, new_lower
        if change <= tol:
            break
    # widen by the residual error bound so the range provably covers every return
    slack = tol / (1.0 - gamma) if gamma > 0 else 0.0
    return lower - slack, upper + slack


def environment_support(mrp, m: int) -> np.ndarray:
    """Atoms [M] evenly spaced on [min_x L(x), max_x U(x)], the exact return range of ``mrp``.

    Valid range: m ≥ 2 (an int, within memory); the MRP's returns must have a finite span (max|r|/(1
    − γ) ≤ 1e300).
    """
    mrp = _check_mrp(mrp)
    m = check_int("m", m, low=2)
    check_size_budget("m", m, memory_bytes=8.0 * m)
    lower, upper = return_bounds(mrp)
    return _grid(float(lower.min()), float(upper.max()), m)
