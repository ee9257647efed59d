"""Atari 2600 (ALE) vector environments with the DQN preprocessing, every protocol choice explicit.

Built on ``ale_py.vector_env.AtariVectorEnv`` (ale-py ≥ 0.10; ROMs ship in the wheel), which does
the preprocessing of Mnih et al. (2015, Nature 518) natively in C++ threads — no OpenCV:
84×84 grey frames, max-pool over the last two frames, frame skip 4, a stack of 4, up to 30
no-op starts, FIRE on reset for games that need it, optional episodic life, reward clipping to
[−1, 1] (sign), and a cap of 108 000 frames (30 minutes) per episode.

Sticky actions (Machado et al. 2018, arXiv:1709.06009) differ between the usual anchors, so the
argument has no default and must be chosen: ALE ``-v5`` and Dopamine use 0.25; CleanRL and the
DQN/C51 papers use none (0.0); ``AtariVectorEnv`` itself defaults to 0.0. MinAtar's engine uses
0.1. :data:`ATARI_PROTOCOLS` names the two usual presets.

``make_atari_vector_env(...).protocol`` holds every choice (recorded in run headers). Frames are
counted as emulator frames: one agent step = ``frameskip`` frames.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ATARI_PROTOCOLS", "make_atari_vector_env"]

#: Named protocol presets (keyword arguments of :func:`make_atari_vector_env`).
ATARI_PROTOCOLS: dict[str, dict[str, Any]] = {
    # Dopamine (Castro et al. 2018) / Machado et al. 2018: sticky actions, full episodes.
    "dopamine": {"sticky_action_prob": 0.25, "episodic_life": False, "noop_max": 0},
    # CleanRL c51_atari.py / DQN Nature: no sticky actions, 30 no-ops, episodic life.
    "cleanrl": {"sticky_action_prob": 0.0, "episodic_life": True, "noop_max": 30},
}


def make_atari_vector_env(
    game: str,
    num_envs: int,
    *,
    sticky_action_prob: float,
    frameskip: int = 4,
    stack_num: int = 4,
    image_size: int = 84,
    noop_max: int = 30,
    fire_reset: bool = True,
    episodic_life: bool = False,
    reward_clipping: bool = True,
    max_episode_frames: int = 108_000,
    full_action_space: bool = False,
    num_threads: int = 0,
    seed: int | None = None,
):
    """A vector of ``num_envs`` preprocessed Atari games (``AtariVectorEnv``, autoreset next step).

    Args:
      game: ROM name in snake case ("pong", "breakout", "seaquest", …); CamelCase ("Pong") is
        converted.
      num_envs: number of parallel emulators (≥ 1).
      sticky_action_prob: repeat-action probability in [0, 1) (no default on purpose, see above).
      frameskip, stack_num, image_size: DQN preprocessing (4, 4, 84).
      noop_max: up to this many no-op actions after each reset (0 disables).
      fire_reset: press FIRE after reset in games that need it.
      episodic_life: end an episode (``terminated``) on each life loss (training-only trick).
      reward_clipping: clip rewards to {−1, 0, 1}.
      max_episode_frames: truncate episodes after this many emulator frames.
      num_threads: emulator threads (0 = one per environment, up to the cores).
      seed: seeds the emulators through the first ``reset`` if given (else call reset(seed=…)).

    Returns:
      the ``AtariVectorEnv``; observations uint8 [num_envs, stack_num, image_size, image_size];
      its ``protocol`` attribute (dict) records every choice above plus the ale-py version.
    """
    import ale_py
    from ale_py.vector_env import AtariVectorEnv

    from .checks import check_int, check_scalar

    if not isinstance(game, str) or not game:
        raise ValueError(f"game must be a ROM name string, got {game!r}")
    rom = _snake_case(game)
    if rom not in set(ale_py.roms.get_all_rom_ids()):
        raise ValueError(f"game must name an ALE ROM (e.g. 'pong'), got {game!r}")
    num_envs = check_int("num_envs", num_envs, low=1)
    sticky_action_prob = check_scalar("sticky_action_prob", sticky_action_prob, low=0.0, high=1.0,
                                      high_inclusive=False)
    frameskip = check_int("frameskip", frameskip, low=1)
    stack_num = check_int("stack_num", stack_num, low=1)
    image_size = check_int("image_size", image_size, low=8)
    noop_max = check_int("noop_max", noop_max, low=0)
    max_episode_frames = check_int("max_episode_frames", max_episode_frames, low=1)
    num_threads = check_int("num_threads", num_threads, low=0)
    for name, flag in (("fire_reset", fire_reset), ("episodic_life", episodic_life),
                       ("reward_clipping", reward_clipping), ("full_action_space", full_action_space)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be a bool, got {flag!r}")
    env = AtariVectorEnv(
        rom,
        num_envs,
        num_threads=num_threads,
        max_num_frames_per_episode=max_episode_frames,
        repeat_action_probability=sticky_action_prob,
        full_action_space=full_action_space,
        img_height=image_size,
        img_width=image_size,
        grayscale=True,
        stack_num=stack_num,
        frameskip=frameskip,
        maxpool=True,
        noop_max=noop_max,
        episodic_life=episodic_life,
        reward_clipping=reward_clipping,
        use_fire_reset=fire_reset,
    )
    env.protocol = {
        "env": f"ALE {rom}",
        "engine": f"ale-py {ale_py.__version__} AtariVectorEnv",
        "num_envs": num_envs,
        "sticky_action_prob": sticky_action_prob,
        "frameskip": frameskip,
        "frames_per_step": frameskip,
        "stack_num": stack_num,
        "observation": f"uint8 grey ({stack_num}, {image_size}, {image_size}), max-pool of 2 frames",
        "noop_max": noop_max,
        "fire_reset": fire_reset,
        "episodic_life": episodic_life,
        "reward_clipping": reward_clipping,
        "max_episode_frames": max_episode_frames,
        "action_set": "full (18)" if full_action_space else "minimal",
        "autoreset": "next_step",
    }
    if seed is not None:
        env.reset(seed=int(seed))
    return env


def _snake_case(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0 and name[i - 1] != "_":
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
