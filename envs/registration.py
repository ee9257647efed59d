"""gymnasium environments for the multi-turn dialogue games, registered under ``fixpoint/``.

Importing this module registers (idempotently):

* ``fixpoint/EducationDialogue-v0`` — :func:`fixpoint_rl.envs.dialogue.education_dialogue`
  (keyword arguments of ``gymnasium.make`` are passed to the generator);
* ``fixpoint/CarDealer-v0`` — :func:`fixpoint_rl.envs.dialogue.car_dealer` (reward = sale price
  at the end of the episode);
* ``fixpoint/DialogueGame-v0`` — any :class:`DialogueGame` (``gymnasium.make(...,
  game=my_game)``; default: ``random_layered_game()``).

* ``fixpoint/MinAtar-<Game>-v1`` for Asterix, Breakout, Freeway, Seaquest, SpaceInvaders —
  :class:`fixpoint_rl.envs.gym_minatar.MinAtarEnv` (keyword arguments: ``sticky_action_prob``,
  ``difficulty_ramping``, ``full_action_space``).

gymnasium 1.x has no plugin entry points and ``gymnasium.register_envs(module)`` is a no-op
marker, so registration happens on import. ``import fixpoint_rl.envs`` arranges it without
importing gymnasium itself: if gymnasium is already imported this module is imported at once,
otherwise a one-shot import hook imports it right after gymnasium finishes importing
(``fixpoint_rl.envs._gym_hook``). So the documented pattern works in either import order::

    import gymnasium
    import fixpoint_rl.envs
    gymnasium.register_envs(fixpoint_rl.envs)
    env = gymnasium.make("fixpoint/CarDealer-v0")

Importing this module directly, or the module-prefix syntax
``gymnasium.make("fixpoint_rl.envs.registration:fixpoint/CarDealer-v0")``, also works.

Observation: the global state id (``Discrete(N)``; it encodes context, turn and dialogue history,
see the dialogue module's layout). Action: ``Discrete(A)``. Episodes last exactly H steps; reward
is 0 until the last step, where it is r(x_{H+1}) if the game has a reward (Car Dealer) and 0
otherwise. ``info`` holds ``context`` and ``turn``, plus ``final_state`` at the end;
``env.unwrapped.preference(final_a, final_b)`` = P(x_a ≻ x_b | c) compares two finished episodes.
"""

from __future__ import annotations

import gymnasium
from gymnasium import spaces

from .dialogue import DialogueGame, car_dealer, education_dialogue, random_layered_game

__all__ = [
    "DialogueEnv", "EducationDialogueEnv", "CarDealerEnv", "register_all", "ENV_IDS",
    "MINATAR_ENV_IDS",
]


class DialogueEnv(gymnasium.Env):
    """A :class:`DialogueGame` as a gymnasium environment (one context ~ ρ per episode)."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, game: DialogueGame | None = None, render_mode: str | None = None):
        if game is None:
            game = random_layered_game()
        if not isinstance(game, DialogueGame):
            raise ValueError(f"game must be a DialogueGame, got {type(game).__name__}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.game = game
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(game.num_states)
        self.action_space = spaces.Discrete(game.num_actions)
        self._state = 0
        self._turn = 0
        self._context = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._context = int(self.np_random.choice(self.game.num_contexts, p=self.game.context_probs))
        self._state = self._context
        self._turn = 0
        return self._state, {"context": self._context, "turn": 0}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in [0, {self.game.num_actions}), got {action!r}")
        if self._state >= self.game.num_decision_states:
            raise ValueError("step called after the episode ended; call reset()")
        nxt, probs = self.game.transitions(self._state, int(action))
        self._state = int(nxt[self.np_random.choice(len(nxt), p=probs / probs.sum())])
        self._turn += 1
        info = {"context": self._context, "turn": self._turn}
        terminated = self._state >= self.game.num_decision_states
        reward = 0.0
        if terminated:
            info["final_state"] = self._state
            if self.game.final_reward is not None:
                reward = float(self.game.final_reward[self._state - self.game.num_decision_states])
        return self._state, reward, terminated, False, info

    def preference(self, final_a: int, final_b: int) -> float:
        """P(x_a ≻ x_b | c) between two final states of the same context."""
        return self.game.preference(final_a, final_b)

    def render(self):
        if self.render_mode == "ansi":
            return f"context={self._context} turn={self._turn} state={self._state}"
        return None


class EducationDialogueEnv(DialogueEnv):
    """``fixpoint/EducationDialogue-v0``: keyword arguments go to :func:`education_dialogue`."""

    def __init__(self, render_mode: str | None = None, **kwargs):
        super().__init__(education_dialogue(**kwargs), render_mode=render_mode)


class CarDealerEnv(DialogueEnv):
    """``fixpoint/CarDealer-v0``: keyword arguments go to :func:`car_dealer`."""

    def __init__(self, render_mode: str | None = None, **kwargs):
        super().__init__(car_dealer(**kwargs), render_mode=render_mode)


#: MinAtar games (``fixpoint_rl.envs.gym_minatar``; the engine is imported on ``make`` only)
MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
MINATAR_ENV_IDS = tuple(f"fixpoint/MinAtar-{game}-v1" for game in MINATAR_GAMES)


def register_all() -> None:
    """Register every ``fixpoint/…`` id (idempotent: an id already registered is left alone).

    Entry points are strings, so registering imports neither MinAtar nor the dialogue solvers.
    """
    entries = {
        "fixpoint/EducationDialogue-v0": ("fixpoint_rl.envs.registration:EducationDialogueEnv", {}),
        "fixpoint/CarDealer-v0": ("fixpoint_rl.envs.registration:CarDealerEnv", {}),
        "fixpoint/DialogueGame-v0": ("fixpoint_rl.envs.registration:DialogueEnv", {}),
    }
    for game, env_id in zip(MINATAR_GAMES, MINATAR_ENV_IDS):
        entries[env_id] = ("fixpoint_rl.envs.gym_minatar:MinAtarEnv", {"game": game})
    for env_id, (entry_point, kwargs) in entries.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id, entry_point=entry_point, kwargs=kwargs, disable_env_checker=False
            )


register_all()

ENV_IDS = (
    "fixpoint/EducationDialogue-v0", "fixpoint/CarDealer-v0", "fixpoint/DialogueGame-v0",
    *MINATAR_ENV_IDS,
)
