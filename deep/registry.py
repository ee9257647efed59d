"""The algorithms ``fixpoint train`` knows: a static name -> module table, imported lazily.

To add an algorithm, write a module that defines ``TRAINERS: list[TrainerSpec]`` (or one
``TRAINER``) and add one line to :data:`TRAINER_MODULES`. Nothing is imported until a trainer is
asked for, so ``fixpoint --help`` stays fast and a trainer with heavy imports (``transformers``)
costs nothing to the others. ``fixpoint_rl.deep.toy`` is the reference example.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from fixpoint_rl.envs.checks import describe

__all__ = ["TRAINER_MODULES", "TrainerSpec", "get_trainer", "load_trainers"]

#: algorithm name -> module defining ``TRAINERS`` (a list of TrainerSpec) or ``TRAINER``.
TRAINER_MODULES: dict[str, str] = {
    "toy": "fixpoint_rl.deep.toy",
    "tdflow": "fixpoint_rl.deep.ghm.train",
    "c51": "fixpoint_rl.deep.distributional.agent",
    "nstep_c51": "fixpoint_rl.deep.distributional.agent",
    "retrace_c51": "fixpoint_rl.deep.distributional.agent",
    "qlambda_c51": "fixpoint_rl.deep.distributional.agent",
    "passk": "fixpoint_rl.deep.llm.train_rl",
    "majk": "fixpoint_rl.deep.llm.train_rl",
    "rloo": "fixpoint_rl.deep.llm.train_rl",
    "grpo": "fixpoint_rl.deep.llm.train_rl",
    "agro": "fixpoint_rl.deep.llm.train_rl",
    "jepo": "fixpoint_rl.deep.llm.train_rl",
    "gpo": "fixpoint_rl.deep.llm.train_preference",
    "online_gpo": "fixpoint_rl.deep.llm.train_preference",
    "nash_md_pg": "fixpoint_rl.deep.llm.train_preference",
    "rlhf": "fixpoint_rl.deep.llm.train_preference",
    "online_offline": "fixpoint_rl.deep.llm.online_offline_text",
    "mtpo": "fixpoint_rl.deep.llm.mtpo",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainerSpec:
    """One trainable algorithm.

    Attributes:
      name: the algorithm name on the command line (``fixpoint train <name>``).
      description: one line for ``fixpoint train --list``.
      config_cls: the config dataclass (a ``fixpoint_rl.deep.config.Config`` subclass).
      presets: preset name -> function returning a config; the first one is the default
        (by convention named ``"default"``).
      train: ``train(config, run) -> dict`` of summary metrics (see ``fixpoint_rl.deep.runtime.Run``).
      steps_field: the config field holding the total number of steps (progress display);
        ``None`` if there is none.
      checkpoint_every: default steps between checkpoints (``--checkpoint-every`` overrides).
    """

    name: str
    description: str
    config_cls: type
    presets: Mapping[str, Callable[[], Any]]
    train: Callable[[Any, Any], Mapping[str, Any]]
    steps_field: str | None = "steps"
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or " " in self.name:
            raise ValueError(f"name must be a non-empty word, got {describe(self.name)}")
        if not dataclasses.is_dataclass(self.config_cls):
            raise ValueError(f"config_cls must be a dataclass, got {describe(self.config_cls)}")
        if not self.presets:
            raise ValueError(f"presets of trainer {self.name!r} must name at least one preset")
        if not callable(self.train):
            raise ValueError(f"train must be callable, got {describe(self.train)}")
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int) \
                or self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive int, got {self.checkpoint_every!r}")

    @property
    def default_preset(self) -> str:
        return next(iter(self.presets))

    def config(self, preset: str | None = None) -> Any:
        """The config of ``preset`` (default: the first preset)."""
        name = self.default_preset if preset is None else preset
        if name not in self.presets:
            raise ValueError(
                f"preset {name!r} is not a preset of {self.name!r}; choose from {list(self.presets)}"
            )
        config = self.presets[name]()
        if not isinstance(config, self.config_cls):
            raise TypeError(f"preset {name!r} of {self.name!r} returned {describe(config)}")
        return config

    def total_steps(self, config: Any) -> int | None:
        if self.steps_field is None:
            return None
        value = getattr(config, self.steps_field, None)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _specs_of(module_name: str) -> list[TrainerSpec]:
    module = importlib.import_module(module_name)
    if hasattr(module, "TRAINERS"):
        specs = list(module.TRAINERS)
    elif hasattr(module, "TRAINER"):
        specs = [module.TRAINER]
    else:
        raise TypeError(f"{module_name} defines neither TRAINERS nor TRAINER")
    for spec in specs:
        if not isinstance(spec, TrainerSpec):
            raise TypeError(f"{module_name}: {describe(spec)} is not a TrainerSpec")
    return specs


def get_trainer(name: str) -> TrainerSpec:
    """The registered trainer ``name`` (its module is imported now).

    Raises:
      ValueError: ``name`` is not registered (the message lists the registered names).
    """
    if name not in TRAINER_MODULES:
        raise ValueError(
            f"algorithm {name!r} is not registered; choose from {sorted(TRAINER_MODULES)}"
        )
    for spec in _specs_of(TRAINER_MODULES[name]):
        if spec.name == name:
            return spec
    raise TypeError(f"{TRAINER_MODULES[name]} does not define a trainer named {name!r}")


def load_trainers() -> dict[str, TrainerSpec]:
    """Every registered trainer, by name (imports every trainer module)."""
    return {name: get_trainer(name) for name in TRAINER_MODULES}
