"""Reproducible torch execution: one seed, deterministic kernels, RNG capture, devices, and ``Run``.

Every deep training entry point goes through :func:`run_trainer` (the ``fixpoint train`` command,
the sweep runner and the tests all call it). It

1. sets the torch thread count (default 1: at the model sizes of this toolkit a second thread
   gives nothing on an idle machine and is 6-8x slower when cores are shared) and deterministic
   kernels (:func:`configure_torch`);
2. joins the process group when started by ``torchrun`` (:mod:`fixpoint_rl.deep.distributed`);
3. seeds python ``random``, the numpy global generator and torch from one seed
   (:func:`seed_everything`; every rank uses the same seed, so every rank draws the same global
   batch and takes its own shard of it);
4. builds a :class:`Run` (output folder, :class:`~fixpoint_rl.deep.checkpoint.Checkpointer`,
   :class:`~fixpoint_rl.deep.runlog.RunLog`, device, rank) and calls ``train(config, run)``.

Same seed, same config, same thread count on CPU -> bitwise identical losses and parameters, also
across a SIGKILL and resume (the checkpoint holds every RNG state; see ``fixpoint_rl.deep.toy``
for the trainer protocol). Across different thread counts or machines only float tolerance holds
(reduction order inside BLAS depends on the number of threads).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fixpoint_rl.envs.checks import check_int, describe

if TYPE_CHECKING:  # imported lazily at run time (registry imports trainers lazily too)
    from .checkpoint import Checkpointer
    from .registry import TrainerSpec
    from .runlog import RunLog

__all__ = [
    "seed_everything",
    "configure_torch",
    "capture_rng_state",
    "restore_rng_state",
    "generator_state",
    "restore_generator",
    "resolve_device",
    "Run",
    "RunSetupError",
    "run_trainer",
    "assert_resume_bitwise",
]

_MAX_SEED = 2**63 - 1


def _check_seed(seed: Any) -> int:
    return check_int("seed", seed, low=0, high=_MAX_SEED)


def seed_everything(seed: int) -> None:
    """Seed python ``random``, the numpy global generator and torch (CPU and every CUDA device).

    numpy's legacy global seed only takes 32 bits, so it receives ``seed mod 2**32``; python and
    torch receive the full seed. Prefer explicit generators in trainer code
    (``torch.Generator().manual_seed(seed)``, ``np.random.default_rng(seed)``) and save their
    states in the checkpoint; the global generators are seeded (and checkpointed) so that code
    which does use them (weight initialisation, dropout, library internals) is reproducible too.
    """
    seed = _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


_INTEROP_SET = False


def configure_torch(threads: int = 1, deterministic: bool = True) -> None:
    """Set the intra-op thread count and (by default) deterministic kernels for this process.

    Args:
      threads: torch intra-op threads (>= 1). Inter-op threads are set to the same number the
        first time (torch allows that only once per process).
      deterministic: ``torch.use_deterministic_algorithms(True)``, cuDNN deterministic and no
        cuDNN autotuning, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (needed for deterministic
        cuBLAS; set before the first CUDA call). Operations without a deterministic
        implementation then raise instead of silently varying.
    """
    global _INTEROP_SET
    threads = check_int("threads", threads, low=1)
    torch.set_num_threads(threads)
    if not _INTEROP_SET:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set, or parallel work already started in this process
            pass
        _INTEROP_SET = True
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    _set_deterministic_algorithms(bool(deterministic))


def _set_deterministic_algorithms(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode)`` without its 5-7 s import on CPU machines.

    The public function also sets ``torch._inductor.config.deterministic``, importing inductor
    and dynamo (measured 5.4 s, more than torch itself) in every process. Without CUDA, and with
    inductor not yet imported, only the kernel flag is set; ``torch.compile`` users on CPU who
    need bitwise determinism of compiled code should call the public function themselves.
    """
    if torch.cuda.is_available() or "torch._inductor.config" in sys.modules or not hasattr(
        torch._C, "_set_deterministic_algorithms"
    ):
        torch.use_deterministic_algorithms(mode)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=False)


def capture_rng_state() -> dict[str, Any]:
    """The states of python ``random``, numpy's global generator, torch CPU and every CUDA device.

    Returns a dict that ``torch.save`` can store and :func:`restore_rng_state` puts back.
    Generators owned by the trainer (``torch.Generator``, ``np.random.Generator``) are not global:
    store them with :func:`generator_state`.
    """
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back the global RNG states captured by :func:`capture_rng_state`."""
    missing = {"python", "numpy", "torch"} - set(state)
    if missing:
        raise ValueError(f"state is missing RNG entries {sorted(missing)}, got keys {sorted(state)}")
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def generator_state(generator: torch.Generator | np.random.Generator) -> Any:
    """The state of a trainer-owned generator, for the checkpoint (a tensor or a plain dict)."""
    if isinstance(generator, torch.Generator):
        return generator.get_state()
    if isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    raise ValueError(
        f"generator must be a torch.Generator or numpy.random.Generator, got {describe(generator)}"
    )


def restore_generator(generator: torch.Generator | np.random.Generator, state: Any) -> None:
    """Put back into ``generator`` (in place) a state returned by :func:`generator_state`."""
    if isinstance(generator, torch.Generator):
        generator.set_state(state)
    elif isinstance(generator, np.random.Generator):
        generator.bit_generator.state = state
    else:
        raise ValueError(
            "generator must be a torch.Generator or numpy.random.Generator, "
            f"got {describe(generator)}"
        )


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """A torch device from ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or ``"mps"``.

    ``local_rank`` picks the GPU of this process under ``torchrun`` when ``spec`` is ``"auto"``
    or ``"cuda"`` (one process per GPU).
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"device must be a non-empty string, got {describe(spec)}")
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise ValueError(f"device {spec!r} is not a torch device: {error}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r}: CUDA is not available on this machine")
        index = local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        device = torch.device("cuda", index)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {spec!r}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {spec!r}")
    return device


def _torch_settings() -> tuple[int, bool, bool, bool]:
    return (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)


def _restore_torch_settings(settings: tuple[int, bool, bool, bool]) -> None:
    """Put back the thread count and determinism flags of the caller (a test, a notebook)."""
    threads, deterministic, cudnn_deterministic, cudnn_benchmark = settings
    torch.set_num_threads(threads)
    _set_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = cudnn_deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark


class RunSetupError(ValueError):
    """A run could not start: invalid arguments, or a folder holding another run's checkpoints
    (``fixpoint train`` reports it in one line with exit status 2)."""


@dataclasses.dataclass(eq=False)
class Run:
    """What a trainer receives besides its config: where to write, how to checkpoint and log.

    A trainer is ``train(config, run) -> dict`` (summary metrics). The protocol, shown in full by
    ``fixpoint_rl.deep.toy``:

    - build model, optimiser and generators (seeded from ``run.seed``), then call
      ``state = run.checkpointer.latest()``; when it is not ``None`` the run continues: load the
      state dicts and generator states from it and start at ``state["step"]``
      (``latest()`` has already put back the global RNG states and trimmed the log);
    - at every step call ``run.log.log(step, **metrics)`` (only the values that the seed
      determines: no wall-clock times) and, when ``run.checkpointer.due(step)``,
      ``run.checkpointer.save(step, {...})`` with everything needed to continue;
    - under ``torchrun`` wrap the model with ``run.wrap_model`` and train on
      ``run.shard(global_batch)``; logging and checkpoint writing happen on rank 0 only (the
      calls are no-ops elsewhere).

    Attributes:
      out_dir: the run folder (CSV + JSON header, ``checkpoints/``).
      seed: the run's seed (already applied to the global generators).
      device: the torch device to train on.
      checkpointer: atomic checkpoints in ``out_dir / "checkpoints"``.
      log: metrics CSV + JSON header, progress display.
      resume: True when a checkpoint exists, i.e. ``checkpointer.latest()`` will return a state.
      rank, world_size: this process's rank and the number of processes (0 and 1 without
        ``torchrun``).
      is_main: ``rank == 0``: the process that writes files.
      progress: whether a progress display was requested.
      threads: torch intra-op threads of this process.
    """

    out_dir: Path
    seed: int
    device: torch.device
    checkpointer: Checkpointer
    log: RunLog
    resume: bool = False
    rank: int = 0
    world_size: int = 1
    is_main: bool = True
    progress: bool = True
    threads: int = 1

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` on ``self.device``, wrapped in DistributedDataParallel when world_size > 1.

        Keep a reference to the unwrapped model for ``state_dict()`` (or use ``.module``).
        """
        from .distributed import wrap_ddp

        model = model.to(self.device)
        return wrap_ddp(model, self.device) if self.world_size > 1 else model

    def shard(self, batch: Any) -> Any:
        """This rank's contiguous slice (along dim 0) of a global batch (a tensor, array or a
        tuple/list/dict of them); the whole batch when world_size == 1."""
        from .distributed import shard_batch

        return shard_batch(batch, self.rank, self.world_size)

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of ``value`` (a copy; ``value`` itself when world_size == 1)."""
        from .distributed import all_reduce_mean

        return all_reduce_mean(value) if self.world_size > 1 else value


def run_trainer(
    trainer: str | TrainerSpec,
    config: Any,
    *,
    seed: int,
    out_dir: str | os.PathLike,
    preset: str | None = None,
    threads: int = 1,
    device: str = "auto",
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    require_checkpoint: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run one training run to completion (or continue it from its last checkpoint).

    Args:
      trainer: a registered algorithm name (see ``fixpoint train --list``) or a ``TrainerSpec``.
      config: an instance of the trainer's config class.
      seed: the run's seed (>= 0).
      out_dir: the run folder. If it holds a checkpoint of the same trainer, config and seed, the
        run continues from it (rerunning a killed command resumes it); a checkpoint written with
        a different trainer, config or seed raises ``ValueError`` (choose another folder).
      preset: the preset name, recorded in the JSON header only.
      threads: torch intra-op threads (default 1).
      device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
      checkpoint_every: steps between checkpoints (default: the trainer's
        ``checkpoint_every``). Checkpoint cadence does not change the results.
      keep_checkpoints: how many of the newest checkpoints to keep (>= 1).
      require_checkpoint: raise ``ValueError`` if there is no checkpoint to continue from
        (``fixpoint train --resume``).
      progress: show progress on stderr: a rich progress bar on a terminal, plain lines
        otherwise (rank 0 only).

    The caller's torch thread count and determinism flags are put back afterwards (the global
    RNGs are left as training left them), so tests and notebooks can call it in process.

    Returns:
      The trainer's summary dict (also written into the JSON header as ``summary``).

    Raises:
      RunSetupError: (a ValueError) before training starts: an invalid argument, a folder with
        checkpoints of a different trainer/config/seed, no checkpoint under
        ``require_checkpoint``.
    """
    from .checkpoint import Checkpointer
    from .config import config_to_dict
    from .distributed import init_distributed, local_rank
    from .registry import TrainerSpec, get_trainer
    from .runlog import RunLog

    # Everything up to the first training step is setup: its errors are the user's (a bad
    # value, a folder of another run) and are raised as RunSetupError (a ValueError).
    try:
        spec = trainer if isinstance(trainer, TrainerSpec) else get_trainer(trainer)
        if not isinstance(config, spec.config_cls):
            raise ValueError(
                f"config must be a {spec.config_cls.__name__} for trainer {spec.name!r}, "
                f"got {describe(config)}"
            )
        seed = _check_seed(seed)
        threads = check_int("threads", threads, low=1)
        every = spec.checkpoint_every if checkpoint_every is None else checkpoint_every
        every = check_int("checkpoint_every", every, low=1)
        keep_checkpoints = check_int("keep_checkpoints", keep_checkpoints, low=1)
        out_dir = Path(out_dir)

        saved_torch = _torch_settings()
        configure_torch(threads)
        rank, world_size = init_distributed()
        torch_device = resolve_device(device, local_rank())
        seed_everything(seed)
        is_main = rank == 0

        identity = {"trainer": spec.name, "seed": seed, "config": config_to_dict(config)}
        checkpointer = Checkpointer(
            out_dir / "checkpoints",
            every_steps=every,
            keep=keep_checkpoints,
            identity=identity,
            enabled=is_main,
        )
        checkpointer.check_identity()  # before anything in the folder is touched
        has_checkpoint = checkpointer.exists()
        if require_checkpoint and not has_checkpoint:
            raise ValueError(f"resume: no checkpoint in {checkpointer.directory} to continue from")
        log = RunLog(
            out_dir,
            f"train-{spec.name}",
            config,
            seed,
            total_steps=spec.total_steps(config),
            header={"trainer": spec.name, "kind": "train", "preset": preset,
                    "description": spec.description, "world_size": world_size,
                    "device": str(torch_device), "threads": threads},
            progress=bool(progress) and is_main,
            enabled=is_main,
        )
        checkpointer.attachments["runlog"] = log
    except ValueError as error:
        if "saved_torch" in locals():
            _restore_torch_settings(saved_torch)
        raise RunSetupError(str(error)) from error
    run = Run(
        out_dir=out_dir,
        seed=seed,
        device=torch_device,
        checkpointer=checkpointer,
        log=log,
        resume=has_checkpoint,
        rank=rank,
        world_size=world_size,
        is_main=is_main,
        progress=bool(progress),
        threads=threads,
    )
    start = time.perf_counter()
    try:
        summary = spec.train(config, run)
    except BaseException as error:
        log.close()
        log.mark("interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
        raise
    finally:
        log.close()
        _restore_torch_settings(saved_torch)
    if not isinstance(summary, Mapping):
        raise TypeError(f"trainer {spec.name!r} must return a dict, got {describe(summary)}")
    summary = dict(summary)
    log.finish(summary=summary, elapsed_s=time.perf_counter() - start)
    return summary


def assert_resume_bitwise(
    trainer: str | TrainerSpec,
    config: Any,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    checkpoint_every: int,
    stop_after_log_calls: int,
    device: str = "cpu",
) -> None:
    """Check a trainer's resume protocol: interrupted and resumed == uninterrupted, bit for bit.

    Runs ``config`` three times in this process under ``out_dir``: uninterrupted
    (``uninterrupted/``); interrupted by an exception raised inside its
    ``stop_after_log_calls + 1``-th ``run.log.log`` call (``resumed/``, which must hold a
    checkpoint by then); and resumed from that folder to the end. The final checkpoints' states
    (every tensor, array and number, recursively) and the CSVs must be identical. One line in a
    trainer's tests::

        assert_resume_bitwise("toy", small_config, tmp_path, checkpoint_every=10,
                              stop_after_log_calls=13)

    Raises:
      AssertionError: the run ended before the interruption, no checkpoint existed at the
        interruption, or a value or CSV byte differs (the message names the first key).
    """
    from .checkpoint import load_checkpoint
    from .registry import TrainerSpec, get_trainer

    spec = trainer if isinstance(trainer, TrainerSpec) else get_trainer(trainer)
    stop_after_log_calls = check_int("stop_after_log_calls", stop_after_log_calls, low=0)
    out_dir = Path(out_dir)
    options = dict(seed=seed, checkpoint_every=checkpoint_every, device=device, progress=False)
    run_trainer(spec, config, out_dir=out_dir / "uninterrupted", **options)

    class _Stop(Exception):
        pass

    def train_until_stopped(config: Any, run: Run) -> Mapping[str, Any]:
        log_step = run.log.log
        calls = 0

        def log(step: int, /, **metrics: Any) -> None:
            nonlocal calls
            calls += 1
            if calls > stop_after_log_calls:
                if not run.checkpointer.exists():
                    raise AssertionError(
                        f"no checkpoint after {stop_after_log_calls} log calls: raise "
                        "stop_after_log_calls or lower checkpoint_every")
                raise _Stop
            log_step(step, **metrics)

        run.log.log = log  # type: ignore[method-assign]
        return spec.train(config, run)

    stopping = dataclasses.replace(spec, train=train_until_stopped)
    try:
        run_trainer(stopping, config, out_dir=out_dir / "resumed", **options)
    except _Stop:
        pass
    else:
        raise AssertionError(
            f"the run finished within {stop_after_log_calls} log calls: lower stop_after_log_calls")
    run_trainer(spec, config, out_dir=out_dir / "resumed", **options)

    from .checkpoint import Checkpointer

    finals = [load_checkpoint(Checkpointer(out_dir / name / "checkpoints", 1).latest_path())
              for name in ("uninterrupted", "resumed")]
    assert finals[0]["step"] == finals[1]["step"], (finals[0]["step"], finals[1]["step"])
    _assert_identical(finals[0]["state"], finals[1]["state"], "state")
    name = f"train-{spec.name}.csv"
    assert (out_dir / "uninterrupted" / name).read_bytes() == \
        (out_dir / "resumed" / name).read_bytes(), f"{name} differs after resuming"


def _assert_identical(a: Any, b: Any, path: str, depth: int = 0) -> None:
    """Recursive bitwise equality of checkpoint states (tensors, arrays, containers, scalars,
    generators, and objects by their attributes)."""
    if a is b:
        return
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), \
            f"{path} differs after resuming"
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{path} differs after resuming"
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{path}: keys differ"
        for key in a:
            _assert_identical(a[key], b[key], f"{path}[{key!r}]", depth)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{path}[{i}]", depth)
    elif isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        pass  # both NaN
    elif isinstance(a, (np.random.RandomState, np.random.Generator, random.Random,
                        torch.Generator)):
        assert type(a) is type(b), f"{path}: types differ"
        states = [x.get_state() if isinstance(x, (np.random.RandomState, torch.Generator))
                  else x.getstate() if isinstance(x, random.Random)
                  else x.bit_generator.state for x in (a, b)]
        _assert_identical(states[0], states[1], f"{path}.state", depth)
    elif type(a).__eq__ is object.__eq__ and not hasattr(a, "__dict__"):
        assert type(a) is type(b), f"{path}: types differ"
        try:
            same = pickle.dumps(a) == pickle.dumps(b)
        except (TypeError, pickle.PicklingError, AttributeError) as error:
            raise AssertionError(f"{path} ({type(a).__name__}) cannot be compared: {error}") from None
        assert same, f"{path} differs after resuming (pickled)"
    elif type(a).__eq__ is object.__eq__:
        # an object without value equality (an environment, a replay buffer): its attributes
        assert type(a) is type(b), f"{path}: types differ"
        if depth < 8:
            _assert_identical(vars(a), vars(b), f"{path}.__dict__", depth + 1)
        else:
            assert pickle.dumps(a) == pickle.dumps(b), f"{path} differs after resuming (pickled)"
    else:
        assert a == b, f"{path} differs after resuming: {a!r} != {b!r}"
