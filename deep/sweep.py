"""Experiment grids: run one function over many cells (seeds x settings) in parallel.

A *cell* is a plain dict (JSON-able) describing one run; a grid is a list of cells, built with
:func:`grid_cells` (the cartesian product of settings, times seeds; grids are data, as in bsuite's
``sweep.py``). :func:`run_sweep` maps a top-level function over the cells:

- by default on a local pool of fresh processes (``concurrent.futures.ProcessPoolExecutor`` with
  the *spawn* start method: no state inherited from the parent, one torch thread each);
- on an existing Ray cluster when ``ray_address`` is given (``ray.init(address=...)``;
  ``"local"`` starts a private local Ray instance; if Ray is already initialised in this process,
  that instance is used). Ray is the optional extra ``ray``.

Results come back in cell order whatever the executor, and each cell's run is seeded by the cell,
so the local pool, Ray and a plain loop give identical results. On a cluster of several
machines each cell writes on the machine that runs it: give run folders on a shared file system.
For training runs,
:func:`train_cell` is the function: each cell gets its own run folder and, as everywhere in
``fixpoint train``, rerunning an interrupted sweep resumes every unfinished cell from its last
checkpoint.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from fixpoint_rl.envs.checks import check_int, describe

__all__ = ["SweepError", "grid_cells", "cell_label", "run_sweep", "train_cell"]


class SweepError(RuntimeError):
    """Some cells failed; ``results`` holds the others' results (None for failed cells) and
    ``failures`` maps a cell index to its error text."""

    def __init__(self, failures: dict[int, str], results: list[Any]) -> None:
        first = next(iter(failures.items()))
        super().__init__(
            f"{len(failures)} of {len(results)} sweep cells failed; cell {first[0]}: {first[1]}"
        )
        self.failures = failures
        self.results = results


def grid_cells(
    seeds: Sequence[int],
    grid: Mapping[str, Sequence[Any]] | None = None,
    **common: Any,
) -> list[dict[str, Any]]:
    """Cells for every combination of ``grid`` values times every seed (seeds vary fastest).

    Each cell is ``{**common, "seed": s, "settings": {key: value, ...}}``.
    """
    if not seeds:
        raise ValueError("seeds must name at least one seed, got []")
    grid = dict(grid or {})
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"grid[{key!r}] must be a non-empty list of values, got {describe(values)}")
    cells = []
    for combo in itertools.product(*grid.values()):
        settings = dict(zip(grid, combo))
        for seed in seeds:
            cells.append({**common, "seed": check_int("seed", seed, low=0), "settings": settings})
    return cells


def cell_label(cell: Mapping[str, Any]) -> str:
    """A folder-safe name of a cell: ``lr=0.1,hidden=64-64/seed0``-like, without slashes."""
    parts = [f"{k}={_text(v)}" for k, v in dict(cell.get("settings") or {}).items()]
    parts.append(f"seed{cell.get('seed')}")
    label = "_".join(parts)
    return "".join(c if c.isalnum() or c in "=._-," else "-" for c in label)


def _text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(_text(v) for v in value) or "none"
    return str(value)


def run_sweep(
    fn: Callable[[dict[str, Any]], Any],
    cells: Sequence[Mapping[str, Any]],
    workers: int | None = None,
    ray_address: str | None = None,
    *,
    cpus_per_cell: float = 1.0,
    gpus_per_cell: float = 0.0,
) -> list[Any]:
    """``[fn(cell) for cell in cells]``, computed in parallel; results in cell order.

    Args:
      fn: a module-level function (it is pickled by reference into the workers).
      cells: the cells (dicts; they are copied into the workers).
      workers: local processes (default: ``min(len(cells), os.cpu_count())``); ``0`` runs the
        cells one after another in this process (debugging). Ignored with ``ray_address``.
      ray_address: a Ray cluster address (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``)
        or ``"local"`` for a private local instance; None: the local process pool.
      cpus_per_cell, gpus_per_cell: resources Ray reserves for each cell.

    Raises:
      SweepError: after every cell has run, if any raised (the others' results are attached).
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {describe(fn)}")
    cells = [dict(cell) for cell in cells]
    if not cells:
        return []
    if ray_address is not None:
        return _run_ray(fn, cells, ray_address, cpus_per_cell, gpus_per_cell)
    if workers is None:
        workers = min(len(cells), os.cpu_count() or 1)
    workers = check_int("workers", workers, low=0)
    if workers == 0:
        return _collect([_call(fn, cell) for cell in cells])
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(cells)), mp_context=context) as pool:
        try:
            futures = [pool.submit(_call, fn, cell) for cell in cells]
            outcomes = [future.result() for future in futures]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return _collect(outcomes)


def _call(fn: Callable[[dict[str, Any]], Any], cell: dict[str, Any]) -> tuple[bool, Any]:
    """(ok, result or error text): errors travel back as text so one bad cell does not stop
    the others (and unpicklable exceptions cannot break the pool)."""
    try:
        return True, fn(cell)
    except Exception as error:  # noqa: BLE001  (reported with the cell by _collect)
        return False, f"{type(error).__name__}: {error}"


def _collect(outcomes: list[tuple[bool, Any]]) -> list[Any]:
    results = [value if ok else None for ok, value in outcomes]
    failures = {i: value for i, (ok, value) in enumerate(outcomes) if not ok}
    if failures:
        raise SweepError(failures, results)
    return results


def _run_ray(fn, cells, address, cpus_per_cell, gpus_per_cell) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "ray_address needs Ray: pip install 'fixpoint-rl[ray]'"
        ) from None
    if not ray.is_initialized():
        if address == "local":  # a private instance on this machine, quiet
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address)
    remote = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell)(_call)
    references = [remote.remote(fn, cell) for cell in cells]
    try:
        outcomes = ray.get(references)
    except BaseException:
        for reference in references:
            ray.cancel(reference, force=True)
        raise
    return _collect(outcomes)


def train_cell(cell: Mapping[str, Any]) -> dict[str, Any]:
    """Run (or resume) one training run described by a cell; returns its summary.

    Cell keys: ``algorithm``, ``preset`` (None: the default), ``overrides`` (list of
    ``key=value``), ``settings`` (dict of grid values, applied after ``overrides``), ``seed``,
    ``out_dir``, and optionally ``threads`` (1), ``device`` ("auto"), ``checkpoint_every``.
    The summary gets the cell's ``seed``, ``settings`` and ``out_dir`` added.
    """
    from .config import apply_overrides
    from .registry import get_trainer
    from .runtime import run_trainer

    spec = get_trainer(cell["algorithm"])
    config = spec.config(cell.get("preset"))
    settings = dict(cell.get("settings") or {})
    overrides = list(cell.get("overrides") or []) + [
        f"{k}={_override_text(v)}" for k, v in settings.items()
    ]
    config = apply_overrides(config, overrides)
    summary = run_trainer(
        spec,
        config,
        seed=cell["seed"],
        out_dir=cell["out_dir"],
        preset=cell.get("preset"),
        threads=cell.get("threads", 1),
        device=cell.get("device", "auto"),
        checkpoint_every=cell.get("checkpoint_every"),
        progress=False,
    )
    return {"seed": cell["seed"], "settings": settings, "out_dir": str(cell["out_dir"]), **summary}


def _override_text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_override_text(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)
