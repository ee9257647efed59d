"""DeepMind Control Suite data for geometric horizon models (GPU-machine scale; optional extra).

TD-Flow (Farebrother et al. 2025, arXiv 2503.09817, experiments) trains on DMC domains (Pointmass maze,
Walker, Cheetah, Quadruped) from ExORL data; those downloads are not reachable here, so this loader
generates the data itself: offline (s, a, s′) from a uniform random behaviour policy, the evaluated
policy's next action π(s′), and Monte-Carlo successor samples (k ~ Geometric(1−γ) ≥ 1 steps of π
from a saved physics state) as ground truth for EMD / NLL / MSE(V).

Install with ``pip install -e ".[dmc]"`` (``dm-control`` with ``mujoco==3.17.0``: dm-control
1.0.50 with mujoco 4.0.0 fails at ``suite.load`` on ``flex_vertedge``). Not installed in CI and not
exercised by the test suite; nothing else in the package imports this module's dependencies.

Shapes: N transitions, d observation dimension (flattened), m action dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fixpoint_rl.envs.checks import as_generator, check_int, check_scalar

__all__ = ["collect_dataset", "load_environment", "point_mass_policy", "successor_samples"]

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def load_environment(domain: str, task: str, seed: int, *, time_limit: float | None = None):
    """``dm_control.suite.load(domain, task)`` with its task RNG seeded (and, if given, the
    episode time limit in seconds replaced); ImportError with the install hint when the ``dmc``
    extra is missing."""
    try:
        from dm_control import suite
    except ImportError as error:  # pragma: no cover - depends on the optional extra
        raise ImportError(
            'dm_control is not installed: pip install -e ".[dmc]" (dm-control + mujoco==3.17.0)'
        ) from error
    kwargs = {} if time_limit is None else {"environment_kwargs": {"time_limit": time_limit}}
    return suite.load(domain, task, task_kwargs={"random": check_int("seed", seed, low=0)}, **kwargs)


def _flat(observation) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in observation.values()])


def point_mass_policy(observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fixed PD controller for ``point_mass``: a = clip(−2·position − 1·velocity, −1, 1)."""
    del rng
    return np.clip(-2.0 * observation[:2] - 1.0 * observation[2:4], -1.0, 1.0)


def _uniform(env) -> Policy:
    spec = env.action_spec()

    def act(observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(spec.minimum, spec.maximum, spec.shape)

    return act


def collect_dataset(
    domain: str, task: str, policy: Policy, size: int, seed: Any, *, episode_length: int = 1000
) -> dict[str, np.ndarray]:
    """N behaviour transitions (uniform random actions) with the evaluated policy's π(s′).

    Returns ``cond`` [N, d + m] (s, a), ``next_state`` [N, d], ``next_cond`` [N, d + m]
    (s′, π(s′)) — the fields of ``fixpoint_rl.envs.ghm_tasks.GHMDataset`` — and ``physics``
    [N, p] the physics states of s (sources for :func:`successor_samples`).
    """
    size = check_int("size", size, low=1)
    episode_length = check_int("episode_length", episode_length, low=1)
    rng = as_generator("seed", seed)
    env = load_environment(domain, task, int(rng.integers(2**31)))
    behaviour = _uniform(env)
    cond, nxt, next_cond, physics = [], [], [], []
    step = episode_length
    while len(cond) < size:
        if step >= episode_length:
            observation, step = _flat(env.reset().observation), 0
        state = env.physics.get_state().copy()
        action = behaviour(observation, rng)
        next_observation = _flat(env.step(action).observation)
        cond.append(np.concatenate([observation, action]))
        nxt.append(next_observation)
        next_cond.append(np.concatenate([next_observation, policy(next_observation, rng)]))
        physics.append(state)
        observation, step = next_observation, step + 1
    return {"cond": np.stack(cond), "next_state": np.stack(nxt), "next_cond": np.stack(next_cond),
            "physics": np.stack(physics)}


def successor_samples(
    domain: str, task: str, policy: Policy, physics_state: np.ndarray, first_action: np.ndarray,
    *, gamma: float, samples: int, seed: Any,
) -> np.ndarray:
    """Monte-Carlo X ~ m^π(·|s, a): from the physics state of s take a, then π, for k ~ Geom(1−γ)
    ≥ 1 steps in total, and return the observation. [samples, d]."""
    from fixpoint_rl.envs.ghm_tasks import geometric_horizons

    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    rng = as_generator("seed", seed)
    # no time limit: a rollout of k steps must not hit an episode end (dm_control resets there)
    env = load_environment(domain, task, int(rng.integers(2**31)), time_limit=float("inf"))
    env.reset()
    out = []
    for k in geometric_horizons(gamma, check_int("samples", samples, low=1), rng):
        with env.physics.reset_context():
            env.physics.set_state(physics_state)
        observation = _flat(env.step(first_action).observation)
        for _ in range(int(k) - 1):
            observation = _flat(env.step(policy(observation, rng)).observation)
        out.append(observation)
    return np.stack(out)
