"""Torch implementations of the fixpoint-rl algorithms (install the ``deep`` extra).

Losses and projections are thin adapters over the backend-neutral closed forms in
``fixpoint_rl.tabular.core``; this package never imports the Numba kernels in
``fixpoint_rl.tabular._kernels`` (a kernel called from a torch path would silently leave autograd
and the GPU). A test checks that rule in a subprocess.

The training runtime every algorithm uses (``fixpoint train``):

- :mod:`~fixpoint_rl.deep.runtime`: ``seed_everything``, ``configure_torch`` (1 thread,
  deterministic kernels), RNG capture, ``resolve_device``, the ``Run`` a trainer receives and
  ``run_trainer`` that runs (or resumes) one training run;
- :mod:`~fixpoint_rl.deep.checkpoint`: ``Checkpointer``, atomic checkpoints that resume bitwise
  after SIGKILL;
- :mod:`~fixpoint_rl.deep.runlog`: ``RunLog``, metrics CSV + JSON header (the ``fixpoint bench``
  record format) and progress display;
- :mod:`~fixpoint_rl.deep.config`: ``Config`` (frozen, validated dataclasses) and
  ``apply_overrides`` (``--set key=value``);
- :mod:`~fixpoint_rl.deep.registry`: ``TrainerSpec`` and the static ``TRAINER_MODULES`` table;
- :mod:`~fixpoint_rl.deep.distributed`: DistributedDataParallel under ``torchrun``;
- :mod:`~fixpoint_rl.deep.sweep`: ``run_sweep`` over seeds x settings (process pool or Ray);
- :mod:`~fixpoint_rl.deep.toy`: the reference trainer to copy.

The names below are imported lazily (``import fixpoint_rl.deep`` does not import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "seed_everything": "runtime",
    "configure_torch": "runtime",
    "capture_rng_state": "runtime",
    "restore_rng_state": "runtime",
    "generator_state": "runtime",
    "restore_generator": "runtime",
    "resolve_device": "runtime",
    "Run": "runtime",
    "RunSetupError": "runtime",
    "run_trainer": "runtime",
    "assert_resume_bitwise": "runtime",
    "Checkpointer": "checkpoint",
    "load_checkpoint": "checkpoint",
    "RunLog": "runlog",
    "Config": "config",
    "apply_overrides": "config",
    "TrainerSpec": "registry",
    "TRAINER_MODULES": "registry",
    "get_trainer": "registry",
    "run_sweep": "sweep",
    "grid_cells": "sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fixpoint_rl.deep' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
