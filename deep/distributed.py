"""Data-parallel training under ``torchrun``: process group, DDP wrapping, global-batch shards.

The same training script runs as one process or as ``torchrun --nproc-per-node N ...``: torchrun
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and
:func:`init_distributed` joins the process group (gloo on CPU, nccl when CUDA is available).

The scheme (Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel
Training", arXiv:2006.15704, §3): every rank holds the same parameters (DDP broadcasts rank 0's
at wrap time), draws the same *global* batch from the same seeded generator, and trains on its
contiguous shard (:func:`shard_batch`); in ``backward`` DDP all-reduces the gradients and divides
by the world size. With a loss that is a mean over the shard and equal shard sizes, that average
is the gradient of the mean loss over the global batch, so N processes follow the single-process
run on the global batch up to float rounding (the sum is split into N partial sums).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from fixpoint_rl.envs.checks import check_int, describe

__all__ = [
    "init_distributed",
    "is_distributed",
    "rank_and_world_size",
    "local_rank",
    "wrap_ddp",
    "shard_batch",
    "all_reduce_mean",
    "barrier",
    "destroy_distributed",
]


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def is_distributed() -> bool:
    """Whether this process is part of an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size): from the process group if initialised, else from the environment."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``, 0 without torchrun): its GPU."""
    return _env_int("LOCAL_RANK", 0)


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group when launched with ``WORLD_SIZE > 1``; returns (rank, world size).

    Idempotent; a no-op returning ``(0, 1)`` for a single process. ``backend`` defaults to nccl
    when CUDA is available, gloo otherwise. Under nccl the current CUDA device is set to
    ``LOCAL_RANK``.
    """
    rank, world_size = rank_and_world_size()
    if world_size <= 1 or is_distributed():
        return rank, world_size
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return dist.get_rank(), dist.get_world_size()


def destroy_distributed() -> None:
    """Leave the process group (no-op when there is none)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if is_distributed():
        dist.barrier()


def wrap_ddp(model: torch.nn.Module, device: torch.device | str | None = None) -> torch.nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` (requires an initialised process group).

    ``device``: the model's device; on CUDA it becomes ``device_ids=[index]``. Rank 0's
    parameters and buffers are broadcast to every rank here.
    """
    if not is_distributed():
        raise RuntimeError("wrap_ddp needs an initialised process group (init_distributed)")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cuda":
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return torch.nn.parallel.DistributedDataParallel(model)


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """Rank ``rank``'s contiguous slice along dim 0 of a global batch (the batch itself, not a
    copy, when ``world_size == 1``).

    ``batch``: a tensor or numpy array with B rows (B divisible by ``world_size``: unequal
    shards would weight the rows of the smaller shard more in DDP's average), or a tuple, list
    or dict of them (all with the same B). Returns the same structure with B / world_size rows.
    """
    world_size = check_int("world_size", world_size, low=1)
    rank = check_int("rank", rank, low=0, high=world_size - 1)
    if world_size == 1:
        return batch
    if isinstance(batch, Mapping):
        return {k: shard_batch(v, rank, world_size) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_batch(v, rank, world_size) for v in batch)
    if not isinstance(batch, (torch.Tensor, np.ndarray)) or batch.ndim == 0:
        raise ValueError(f"batch must be tensors/arrays with a batch dimension, got {describe(batch)}")
    size = batch.shape[0]
    if size % world_size:
        raise ValueError(
            f"batch size {size} must be divisible by the world size {world_size} "
            "(equal shards keep DDP's gradient average equal to the global-batch gradient)"
        )
    per = size // world_size
    return batch[rank * per:(rank + 1) * per]


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of ``value`` (a new tensor; a copy when not distributed)."""
    out = value.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out
