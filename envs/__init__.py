"""Problem specifications (numpy only) and gymnasium environments.

Specifications (``PreferenceGame``, ``DialogueGame``, ``TabularMDP``, ``MarkovRewardProcess``) are
frozen dataclasses validated at construction. They import numpy only, so every layer can use them.
gymnasium environments live in ``fixpoint_rl.envs.registration`` and ``envs/gym_*.py``: importing
``fixpoint_rl.envs`` never imports gymnasium, yet the ``fixpoint/…`` ids are registered as soon as
gymnasium is imported (before or after; ``_gym_hook``).

Names are re-exported lazily (PEP 562) from the modules listed in ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # --- preference games (NLHF, issue 2) ---
    "PreferenceGame": ".preference",
    "dice": ".preference",
    "rock_paper_scissors": ".preference",
    "three_type_cycle": ".preference",
    "bradley_terry": ".preference",
    "random_game": ".preference",
    "random_contextual_game": ".preference",
    # --- multi-turn dialogue games (MTPO, issue 3) ---
    "DialogueGame": ".dialogue",
    "random_layered_game": ".dialogue",
    "tree_game": ".dialogue",
    "education_dialogue": ".dialogue",
    "car_dealer": ".dialogue",
    # --- tabular MDPs (Q(lambda), issue 4) ---
    "TabularMDP": ".mdp",
    "MarkovRewardProcess": ".mdp",
    "garnet": ".mdp",
    "chain_mdp": ".mdp",
    "two_state_mdp": ".mdp",
    "check_policy": ".mdp",
    "uniform_policy": ".mdp",
    "random_policy": ".mdp",
    "greedy_policy": ".mdp",
    "epsilon_greedy_policy": ".mdp",
    # --- DCFP study environments (issue 5) ---
    "chain": ".dcfp_envs",
    "low_random": ".dcfp_envs",
    "high_random": ".dcfp_envs",
    "two_state": ".dcfp_envs",
    "random_mrp": ".dcfp_envs",
    "global_support": ".dcfp_envs",
    "environment_support": ".dcfp_envs",
    "return_bounds": ".dcfp_envs",
    "DCFP_ENVIRONMENTS": ".dcfp_envs",
}

__all__ = sorted(_EXPORTS)


# gymnasium ids ``fixpoint/…``: registered as soon as gymnasium is (or becomes) imported, without
# importing it here (see ``_gym_hook``); ``gymnasium.register_envs(fixpoint_rl.envs)`` then works.
from . import _gym_hook  # noqa: E402

_gym_hook.install()


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
