"""MinAtar as a gymnasium environment: ``fixpoint/MinAtar-<Game>-v1``.

MinAtar (Young & Tian 2019, arXiv:1903.03176) is a 10×10 miniature of five Atari games. The PyPI
release (``minatar`` 1.0.15) ships a gymnasium interface that returns bool observations, registers
nothing on import and fails ``gymnasium.utils.env_checker.check_env`` (it ignores the seed passed to
``reset``); this module wraps the game engine directly instead.

Protocol (every choice explicit; recorded by :meth:`MinAtarEnv.protocol`):

* Observation: uint8 [C, 10, 10] in {0, 1} (channels first, as torch convolutions want them; a
  transposed view of a fresh [10, 10, C] array, so not C-contiguous);
  C = 4 (Asterix, Breakout), 6 (SpaceInvaders), 7 (Freeway), 10 (Seaquest).
* Actions: the game's *minimal* action set (MinAtar's own ``-v1`` convention): Asterix 5,
  Breakout 3, Freeway 3, Seaquest 6, SpaceInvaders 4 actions; action k means
  ``minimal_action_set()[k]`` of the engine (0 = no-op, 1 left, 2 up, 3 right, 4 down, 5 fire).
  ``full_action_space=True`` exposes all 6 (MinAtar ``-v0``, used for MinAtar's published curves).
* Sticky actions: with probability ``sticky_action_prob`` (default 0.1, MinAtar's own default;
  ALE v5 uses 0.25, CleanRL none, Dopamine Atari 0.25) the previous action is repeated. The draw
  uses the engine's random stream exactly as ``minatar.Environment.act`` does, so a seeded
  :class:`MinAtarEnv` reproduces ``minatar.Environment`` seeded the same way, step for step.
* Difficulty ramping (``difficulty_ramping``, default True as in MinAtar): the games speed up
  over an episode.
* Seeding: ``reset(seed=s)`` seeds gymnasium's ``np_random`` and, from it, the engine's
  ``RandomState`` (game randomness and sticky draws), and clears the remembered sticky action;
  ``reset()`` without a seed continues the stream. Same seed and actions → same episode.
* No time limit (MinAtar has none); episodes end when the game ends (``terminated``).
* Reward: the game's integer reward as float (no clipping needed: MinAtar rewards are 0/1,
  except Seaquest's surfacing bonus).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

__all__ = ["GAMES", "MinAtarEnv", "minatar_env_id"]

#: gymnasium game name → MinAtar engine module name
GAMES: dict[str, str] = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}
_ENGINE_TO_GAME = {v: k for k, v in GAMES.items()}

# channel colours for render_mode="rgb_array" (black background, then a fixed palette)
_PALETTE = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190],
    ],
    dtype=np.uint8,
)


def minatar_env_id(game: str) -> str:
    """``fixpoint/MinAtar-<Game>-v1`` for a game of :data:`GAMES`."""
    return f"fixpoint/MinAtar-{_game_name(game)}-v1"


def _game_name(game: str) -> str:
    if game in GAMES:
        return game
    if game in _ENGINE_TO_GAME:
        return _ENGINE_TO_GAME[game]
    raise ValueError(f"game must be one of {sorted(GAMES)}, got {game!r}")


class MinAtarEnv(gymnasium.Env):
    """One MinAtar game as a gymnasium environment (see the module docstring for the protocol).

    Args:
      game: "Asterix", "Breakout", "Freeway", "Seaquest" or "SpaceInvaders" (engine names such
        as "space_invaders" are accepted too).
      sticky_action_prob: probability of repeating the previous action, in [0, 1).
      difficulty_ramping: whether the game speeds up over an episode.
      full_action_space: all 6 engine actions instead of the game's minimal set.
      render_mode: None or "rgb_array" ([10·scale, 10·scale, 3] uint8 image).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        game: str = "Breakout",
        *,
        sticky_action_prob: float = 0.1,
        difficulty_ramping: bool = True,
        full_action_space: bool = False,
        render_mode: str | None = None,
    ):
        self.game = _game_name(game)
        if isinstance(sticky_action_prob, bool) or not isinstance(sticky_action_prob, (int, float)):
            raise ValueError(f"sticky_action_prob must be a number in [0, 1), got {sticky_action_prob!r}")
        if not 0.0 <= float(sticky_action_prob) < 1.0:
            raise ValueError(f"sticky_action_prob must lie in [0, 1), got {sticky_action_prob!r}")
        if not isinstance(difficulty_ramping, bool):
            raise ValueError(f"difficulty_ramping must be a bool, got {difficulty_ramping!r}")
        if not isinstance(full_action_space, bool):
            raise ValueError(f"full_action_space must be a bool, got {full_action_space!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.sticky_action_prob = float(sticky_action_prob)
        self.difficulty_ramping = difficulty_ramping
        self.full_action_space = full_action_space
        self.render_mode = render_mode
        engine = _engine_module(GAMES[self.game])
        self._game = engine.Env(ramping=difficulty_ramping)
        self._random = np.random.RandomState()
        self._game.random = self._random
        actions = range(6) if full_action_space else self._game.minimal_action_set()
        self._action_map = tuple(int(a) for a in actions)
        # bound methods looked up once (the step loop is a few microseconds long)
        self._act, self._state, self._rand = self._game.act, self._game.state, self._random.rand
        self._n_actions = len(self._action_map)
        self._last_action = 0
        channels = self._game.state_shape()[2]
        self.observation_space = spaces.Box(0, 1, (channels, 10, 10), dtype=np.uint8)
        self.action_space = spaces.Discrete(self._n_actions)
        self._needs_reset = True

    def protocol(self) -> dict[str, Any]:
        """Every environment choice, for run headers."""
        return {
            "env": minatar_env_id(self.game),
            "engine": f"minatar {_minatar_version()}",
            "sticky_action_prob": self.sticky_action_prob,
            "difficulty_ramping": self.difficulty_ramping,
            "action_set": "full (6)" if self.full_action_space else f"minimal ({self._n_actions})",
            "observation": f"uint8 {tuple(self.observation_space.shape)} channels-first",
            "time_limit": None,
            "reward_clipping": False,
            "frames_per_step": 1,
        }

    def _observation(self) -> np.ndarray:
        return self._game.state().transpose(2, 0, 1)  # uint8 [C, 10, 10] view

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # derive the engine stream from gymnasium's seeded generator (one seed governs both)
            self._random.seed(int(self.np_random.integers(2**31 - 1)))
            self._last_action = 0
        self._game.reset()
        self._needs_reset = False
        return self._observation(), {}

    def step(self, action):
        if action.__class__ is not int:
            if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
                self._step_error(action)
            action = int(action)
        if self._needs_reset or not 0 <= action < self._n_actions:
            self._step_error(action)
        a = self._action_map[action]
        # the sticky-action draw of minatar.Environment.act, on the same random stream
        if self._rand() < self.sticky_action_prob:
            a = self._last_action
        self._last_action = a
        reward, terminated = self._act(a)
        if terminated:
            self._needs_reset = True
        # uint8, written by the engine itself (see _channels_first_zeros); [C, 10, 10] view
        return self._state().transpose(2, 0, 1), float(reward), bool(terminated), False, {}

    def _step_error(self, action):
        if self._needs_reset and isinstance(action, (int, np.integer)) \
                and 0 <= action < self._n_actions:
            raise ValueError("step called before reset() or after the episode ended; call reset()")
        raise ValueError(f"action must be an integer in [0, {self._n_actions}), got {action!r}")

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        state = self._game.state()  # [10, 10, C] bool
        image = np.zeros((10, 10, 3), dtype=np.uint8)
        for c in range(state.shape[2]):
            image[state[:, :, c]] = _PALETTE[c % len(_PALETTE)]
        return np.kron(image, np.ones((8, 8, 1), dtype=np.uint8))


def _engine_module(name: str):
    """The game module ``minatar/environments/<name>.py``, loaded *without* running
    ``minatar/__init__.py`` (which imports matplotlib.pyplot and seaborn: ~1–5 s per process).

    The game modules import numpy only. The module is registered in ``sys.modules`` as
    ``fixpoint_rl.envs._minatar_<name>`` so that pickled environments (checkpoints) find it;
    :func:`_load_engines` registers all five when this module is imported.
    """
    import importlib.util
    import sys

    key = f"{__name__.rsplit('.', 1)[0]}._minatar_{name}"
    module = sys.modules.get(key)
    if module is not None:
        return module
    spec = importlib.util.find_spec("minatar")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("MinAtar is not installed: pip install minatar")
    import os

    path = os.path.join(list(spec.submodule_search_locations)[0], "environments", f"{name}.py")
    file_spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[key] = module
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    module.np = _CHANNELS_FIRST_NUMPY  # this private copy only; ``minatar`` itself is untouched
    return module


def _channels_first_zeros(shape, dtype=float):
    """``np.zeros`` as seen by the private game modules: the one [10, 10, C] bool array a game
    allocates (in ``state()``) is allocated as uint8 instead, so the engine writes the
    observation straight into uint8 and the wrapper only returns its channels-first transposed
    view — no conversion per step (measured: a bool array plus ``view(uint8).transpose`` costs
    ~2.4 µs more per Breakout step; writing into a channels-first strided array ~1.5 µs more).
    Every other call is plain ``np.zeros``."""
    if dtype is bool and len(shape) == 3:
        return np.zeros(shape, dtype=np.uint8)
    return np.zeros(shape, dtype)


def _make_channels_first_numpy():
    import types

    shim = types.ModuleType("numpy")
    shim.__dict__.update({k: v for k, v in np.__dict__.items() if not k.startswith("__")})
    shim.zeros = _channels_first_zeros
    return shim


_CHANNELS_FIRST_NUMPY = _make_channels_first_numpy()


def _load_engines() -> None:
    for name in GAMES.values():
        _engine_module(name)


def _minatar_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("minatar")
    except PackageNotFoundError:  # pragma: no cover - the extra is installed with the env
        return "unknown"


_load_engines()  # cheap (numpy only); lets pickled environments unpickle in a fresh process
