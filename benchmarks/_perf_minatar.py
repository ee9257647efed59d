"""MinAtar environment steps/s: the gymnasium wrapper against the raw ``minatar.Environment``.

Called by ``fixpoint perf deep`` (``perf_deep.py``). For each game (``--quick``: Breakout and
Seaquest), the same seeded random action sequence of ``steps`` steps is played by

  raw       ``minatar.Environment(game)``: ``reward, done = env.act(a); obs = env.state()``
            (bool [10, 10, C]) and ``env.reset()`` at the end of an episode — the cheapest way to
            get an observation out of the engine;
  raw+conv  the same plus the conversion to what the wrapper returns
            (``obs.transpose(2, 0, 1).astype(np.uint8)``, channels-first uint8): equal outputs;
  wrapper   ``MinAtarEnv(game).step(a)`` (our class, no gymnasium checker wrappers), with the
            same sticky actions (0.1) and the full 6-action set so the action streams agree;
  make      ``gymnasium.make("fixpoint/MinAtar-<Game>-v1")`` (adds gymnasium's passive checker
            and order-enforcing wrappers) — reported, no claim.

Timing: one warm-up round, then ≥ 5 rounds in which every variant is timed back to back (order
rotated per round); medians of process CPU seconds (torch is not involved; one thread), so other
processes time-slicing a shared machine do not bias the ratio. Goal (issue 9): the wrapper costs
≤ 10 % over raw: ``overhead`` = wrapper seconds / raw seconds − 1, ``holds`` = overhead ≤ 0.10.
The wrapper has the engine write its observation as uint8 directly and returns the channels-first
transposed view (no conversion per step; see ``envs/gym_minatar.py``); what remains is one Python
call frame, the action checks and the return tuple — about 1 µs, i.e. 10–30 % of the fastest
games' 3–5 µs steps.
"""

from __future__ import annotations

import time

import numpy as np

GOAL_OVERHEAD = 0.10
GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")


def _play_raw(env, actions, convert: bool) -> None:
    act, state, reset = env.act, env.state, env.reset
    for a in actions:
        _, done = act(a)
        obs = state()
        if convert:
            obs = obs.transpose(2, 0, 1).astype(np.uint8)
        if done:
            reset()


def _play_env(env, actions) -> None:
    step, reset = env.step, env.reset
    for a in actions:
        terminated = step(a)[2]
        if terminated:
            reset()


def minatar_throughput_rows(config) -> list[dict]:
    """One row per (game, variant); the wrapper rows carry the ≤ 10 % claim."""
    import gymnasium
    import minatar

    from fixpoint_rl.envs.gym_minatar import GAMES as ENGINE_NAMES
    from fixpoint_rl.envs.gym_minatar import MinAtarEnv

    quick = getattr(config, "quick", False)
    games = ("Breakout", "Seaquest") if quick else GAMES
    steps = 5_000 if quick else 20_000
    rounds = 5 if quick else 7
    rows = []
    for game in games:
        actions = np.random.default_rng(config.seed).integers(0, 6, size=steps).tolist()
        raw = minatar.Environment(ENGINE_NAMES[game], sticky_action_prob=0.1)
        raw.seed(config.seed)
        raw.reset()
        wrapped = MinAtarEnv(game, sticky_action_prob=0.1, full_action_space=True)
        wrapped.reset(seed=config.seed)
        made = gymnasium.make(f"fixpoint/MinAtar-{game}-v1", sticky_action_prob=0.1,
                              full_action_space=True)
        made.reset(seed=config.seed)
        variants = {
            "raw": lambda: _play_raw(raw, actions, False),
            "raw+conv": lambda: _play_raw(raw, actions, True),
            "wrapper": lambda: _play_env(wrapped, actions),
            "make": lambda: _play_env(made, actions),
        }
        cpu = {name: [] for name in variants}
        wall = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds + 1):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                c0, w0 = time.process_time(), time.perf_counter()
                variants[name]()
                if r > 0:  # round 0 is the warm-up
                    cpu[name].append(time.process_time() - c0)
                    wall[name].append(time.perf_counter() - w0)
        med = {name: float(np.median(cpu[name])) for name in names}
        for name in names:
            overhead = med[name] / med["raw"] - 1.0
            claim = holds = None
            if name == "wrapper":
                claim = f"wrapper overhead over raw act+state ≤ {GOAL_OVERHEAD:.0%}"
                holds = bool(overhead <= GOAL_OVERHEAD)
            rows.append({
                "algorithm": f"MinAtar {name}",
                "problem": game,
                "claim": claim,
                "holds": holds,
                "steps_per_s": steps / med[name],
                "overhead": overhead,
                "cpu_s": med[name],
                "wall_s": float(np.median(wall[name])),
                "steps": steps,
                "repeats": rounds,
            })
    return rows
