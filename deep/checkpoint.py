"""Atomic training checkpoints that resume bitwise: model, optimiser, RNG states, cursors, step.

A checkpoint is one ``torch.save`` file ``<directory>/step-<step:010d>.pt`` written to a temporary
sibling, fsynced and moved into place with ``os.replace``
(:func:`fixpoint_rl.tabular.core.records.atomic_open`). A process killed at any moment (SIGKILL
included) therefore leaves either the previous checkpoints or the new one, never a truncated
file; leftover temporary files are removed when the next run opens the folder.

Each file holds the trainer's ``state`` (anything ``torch.save`` can pickle: state dicts of the
model/optimiser/scheduler, the states of generators the trainer owns, replay buffers as numpy
arrays, environment objects, data cursors), the global RNG states (python, numpy, torch, CUDA;
added automatically), the state of attached objects (the run log, so a resumed run's CSV equals
an uninterrupted one) and the run's identity (trainer, seed, config) so that a folder is never
continued with a different config by mistake.

Checkpoints are trusted files written by this code: they are loaded with
``torch.load(weights_only=False)`` (they contain numpy arrays and python objects). Do not load
checkpoints from untrusted sources.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from fixpoint_rl.envs.checks import check_int, describe
from fixpoint_rl.tabular.core.records import atomic_open, atomic_write_text, dumps_header, jsonable

from .runtime import capture_rng_state, restore_rng_state

__all__ = ["Checkpointer", "load_checkpoint", "CHECKPOINT_PAUSE_ENV"]

FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{10})\.pt$")

#: Test hook: seconds to sleep between writing a checkpoint's temporary file and renaming it into
#: place, so that a test can kill the process while a checkpoint is being written: ``"0.05"``
#: pauses at every checkpoint, ``"60@40"`` only at the checkpoint of step 40.
CHECKPOINT_PAUSE_ENV = "FIXPOINT_CHECKPOINT_PAUSE_S"


def _test_pause(step: int) -> float:
    text = os.environ.get(CHECKPOINT_PAUSE_ENV, "")
    if not text:
        return 0.0
    seconds, _, at = text.partition("@")
    try:
        if at and int(at) != step:
            return 0.0
        return max(float(seconds), 0.0)
    except ValueError:
        raise ValueError(
            f"{CHECKPOINT_PAUSE_ENV} must look like SECONDS or SECONDS@STEP, got {text!r}"
        ) from None


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The full payload of one checkpoint file: ``{"step", "state", "rng", "identity", ...}``.

    Pure read, no side effects (use ``Checkpointer.latest()`` to resume a run).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a checkpoint file")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"path {str(path)!r} is not a fixpoint-rl checkpoint (format {FORMAT_VERSION})")
    return payload


class Checkpointer:
    """Writes and reads a run's checkpoints.

    Args:
      directory: folder of the ``step-*.pt`` files (created on first save).
      every_steps: :meth:`due` is true every that many steps.
      keep: number of newest checkpoints kept (older ones are deleted after each save; >= 1).
      identity: a JSON-able description of the run (trainer, seed, config). A checkpoint written
        under a different identity is refused by :meth:`latest` with a ``ValueError`` listing
        the differences.
      attachments: objects with ``state_dict()``/``load_state_dict()`` whose state is saved in
        every checkpoint and put back by :meth:`latest` (the run log).
      enabled: False on ranks other than 0 under ``torchrun``: :meth:`save` then writes nothing
        (all ranks hold the same parameters after a DDP step) and :meth:`latest` still reads.

    Usage in a trainer (see ``fixpoint_rl.deep.toy``)::

        state = run.checkpointer.latest()       # after building model/optimiser/generators
        if state is not None:
            model.load_state_dict(state["model"]); ...; start = state["step"]
        for step in range(start + 1, total + 1):
            ...
            if run.checkpointer.due(step) or step == total:
                run.checkpointer.save(step, {"model": model.state_dict(), ...})
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        every_steps: int,
        *,
        keep: int = 2,
        identity: Mapping[str, Any] | None = None,
        attachments: Mapping[str, Stateful] | None = None,
        enabled: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.every_steps = check_int("every_steps", every_steps, low=1)
        self.keep = check_int("keep", keep, low=1)
        self.identity = None if identity is None else jsonable(dict(identity))
        self.attachments = dict(attachments or {})
        for name, obj in self.attachments.items():
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise ValueError(
                    f"attachments[{name!r}] needs state_dict() and load_state_dict(), "
                    f"got {describe(obj)}"
                )
        self.enabled = bool(enabled)
        self.last_saved_step: int | None = None
        self._identity_written = False
        if self.enabled and self.directory.is_dir():
            for leftover in self.directory.glob(".step-*.tmp"):  # from a run killed mid-write
                leftover.unlink(missing_ok=True)

    # ------------------------------------------------------------------ queries
    def paths(self) -> list[Path]:
        """Existing checkpoint files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if _NAME.match(p.name)]
        return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))

    def latest_path(self) -> Path | None:
        """The newest checkpoint file, or None."""
        paths = self.paths()
        return paths[-1] if paths else None

    def exists(self) -> bool:
        """Whether there is a checkpoint to continue from."""
        return self.latest_path() is not None

    @property
    def identity_path(self) -> Path:
        """``identity.json``: the identity of the run that wrote the checkpoints (JSON)."""
        return self.directory / "identity.json"

    def check_identity(self) -> None:
        """Raise ``ValueError`` if the folder's checkpoints belong to a run with another identity.

        Reads ``identity.json`` only (cheap); :meth:`latest` checks the checkpoint itself too.
        """
        if self.identity is None or not self.exists() or not self.identity_path.is_file():
            return
        saved = json.loads(self.identity_path.read_text(encoding="utf-8"))
        if saved != self.identity:
            raise ValueError(
                f"{self.directory} holds checkpoints of a different run "
                f"({_differences(saved, self.identity)}); use another output folder or remove it"
            )

    def due(self, step: int) -> bool:
        """True when ``step`` is a multiple of ``every_steps`` (the same on every rank)."""
        return step % self.every_steps == 0

    # ------------------------------------------------------------------ save / load
    def save(self, step: int, state: Mapping[str, Any]) -> Path:
        """Write ``state`` as the checkpoint of ``step`` (atomically) and prune old files.

        ``state`` is the trainer's own dict; the global RNG states, the attachments' states and
        the run identity are added. Returns the checkpoint path (also on disabled ranks, where
        nothing is written).
        """
        step = check_int("step", step, low=0)
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a dict, got {describe(state)}")
        path = self.directory / f"step-{step:010d}.pt"
        if not self.enabled:
            return path
        payload = {
            "format": FORMAT_VERSION,
            "step": step,
            "identity": self.identity,
            "rng": capture_rng_state(),
            "attachments": {name: obj.state_dict() for name, obj in self.attachments.items()},
            "state": dict(state),
        }
        if self.identity is not None and not self._identity_written:
            atomic_write_text(self.identity_path, dumps_header(self.identity))
            self._identity_written = True
        pause = _test_pause(step)
        with atomic_open(path) as handle:
            torch.save(payload, handle)
            if pause > 0:
                handle.flush()
                time.sleep(pause)
        self.last_saved_step = step
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> dict[str, Any] | None:
        """Restore from the newest checkpoint and return the trainer's state, or None if none.

        Side effects, so call it once, after the trainer has built its model, optimiser and
        generators and before the first step: the global RNG states (python, numpy, torch,
        CUDA) are put back and every attachment is restored (the run log drops the rows logged
        after the checkpoint). The returned dict is the ``state`` given to :meth:`save` with
        ``"step"`` set to the checkpoint's step. Tensors are loaded onto the CPU
        (``load_state_dict`` moves them to the parameters' device).

        Raises:
          ValueError: the checkpoint was written by a run with a different identity (trainer,
            seed or config).
        """
        path = self.latest_path()
        if path is None:
            return None
        payload = load_checkpoint(path)
        if self.identity is not None and payload.get("identity") != self.identity:
            raise ValueError(
                f"checkpoint {str(path)!r} belongs to a different run "
                f"({_differences(payload.get('identity'), self.identity)}); use another output "
                "folder or remove it"
            )
        restore_rng_state(payload["rng"])
        for name, obj in self.attachments.items():
            if name in payload["attachments"]:
                obj.load_state_dict(payload["attachments"][name])
        state = dict(payload["state"])
        state["step"] = payload["step"]
        self.last_saved_step = payload["step"]
        return state


def _differences(saved: Any, current: Any, prefix: str = "") -> str:
    """A short description of how two identity dicts differ (first few keys)."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return f"{prefix or 'identity'}: saved {saved!r}, now {current!r}"
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
        if a != b:
            name = f"{prefix}{key}"
            out.append(_differences(a, b, name + ".") if isinstance(a, dict) and isinstance(b, dict)
                       else f"{name}: saved {a!r}, now {b!r}")
    return "; ".join(out[:5])
