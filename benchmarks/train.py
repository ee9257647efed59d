"""``fixpoint train``: train a registered deep algorithm, resume it, or run a grid of runs.

  fixpoint train --list
  fixpoint train ALGORITHM [--preset P] [--set KEY=VALUE ...] [--seed N] [--out DIR]
                 [--resume] [--threads N] [--device D] [--checkpoint-every N] [--no-progress]
  fixpoint train ALGORITHM --show-config [--preset P] [--set ...]
  fixpoint train ALGORITHM --seeds 0 1 2 [--grid KEY=V1,V2 ...] [--workers N | --ray ADDRESS]

A run folder (default ``runs/<algorithm>/<preset>-<config digest>-seed<N>``) holds
``train-<algorithm>.csv`` (metrics), ``train-<algorithm>.json`` (config, seed, versions, git
commit, summary) and ``checkpoints/``. Rerunning the same command continues from the last
checkpoint (``--resume`` makes a missing checkpoint an error); a folder holding another
config's checkpoints is refused. Under ``torchrun --nproc-per-node N -m fixpoint_rl.benchmarks
train ...`` the run is data-parallel (rank 0 writes the files). Errors in the command line exit
with status 2 and one line; Ctrl-C exits with status 130 (the last checkpoint stays intact).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_train_parser", "run_train"]


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "train",
        help="train a deep algorithm (checkpointed, resumable, torchrun-ready), or a grid of runs",
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(__doc__ or "").split("\n\n", 1)[-1],
    )
    parser.add_argument("algorithm", nargs="?", help="registered algorithm (see --list)")
    parser.add_argument("--list", action="store_true", help="list algorithms and their presets")
    parser.add_argument("--show-config", action="store_true",
                        help="print the resolved config with each field's help, then exit")
    parser.add_argument("--preset", default=None, help="named preset (default: the first one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config field (repeatable)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    seeds.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="several seeds: run a sweep, one folder per cell")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="sweep over values of a field (repeatable; tuples as (a,b),(c,d))")
    parser.add_argument("--out", type=Path, default=None, help="run folder (sweep: parent folder)")
    parser.add_argument("--resume", action="store_true",
                        help="require a checkpoint to continue from (rerunning resumes anyway)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (auto)")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                        help="steps between checkpoints (default: the algorithm's)")
    parser.add_argument("--workers", type=int, default=None,
                        help="sweep: local worker processes (default: one per CPU)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="sweep: run the cells on this Ray cluster ('auto', host:port, 'local')")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    return parser


class _UsageError(Exception):
    pass


def _fail(message: str) -> int:
    print(f"fixpoint train: {message}", file=sys.stderr)
    return 2


def _list() -> int:
    from fixpoint_rl.deep.registry import TRAINER_MODULES, get_trainer

    print("fixpoint train algorithms (presets; the first is the default):")
    for name in TRAINER_MODULES:
        try:
            spec = get_trainer(name)
        except ImportError as error:  # an optional dependency is missing
            print(f"  {name:<14} (unavailable: {error})")
            continue
        print(f"  {name:<14} {spec.description}")
        print(f"  {'':<14} presets: {', '.join(spec.presets)}")
    return 0


def _show_config(spec: Any, config: Any) -> int:
    import dataclasses

    from fixpoint_rl.deep.config import field_docs

    print(f"{spec.name}: {type(config).__name__}")
    docs = field_docs(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        print(f"  {field.name} = {value!r}")
        if docs.get(field.name):
            print(f"      {docs[field.name]}")
    return 0


def _split_values(text: str) -> list[str]:
    """``"0.1,0.2"`` -> ["0.1", "0.2"]; commas inside brackets stay: ``"(1,2),(3,4)"``."""
    values, depth, current = [], 0, ""
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [v.strip() for v in values]


def _parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise _UsageError(f"--grid must look like KEY=V1,V2, got {item!r}")
        key, text = item.split("=", 1)
        values = _split_values(text)
        if not key.strip() or any(v == "" for v in values):
            raise _UsageError(f"--grid must look like KEY=V1,V2, got {item!r}")
        grid[key.strip()] = values
    return grid


def run_train(args: argparse.Namespace) -> int:
    """Execute ``fixpoint train`` from parsed arguments; returns the exit status."""
    if args.list:
        return _list()
    if not args.algorithm:
        return _fail("name an algorithm (fixpoint train --list shows them)")
    if args.ray is not None and args.workers is not None:
        return _fail("--workers and --ray exclude each other (Ray schedules its own workers)")
    # SIGTERM (cluster preemption, `kill`) ends the run like Ctrl-C: last checkpoint intact.
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signal handling to the caller
        previous = _NOT_SET
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("fixpoint train: interrupted; rerun the same command to resume from the last "
              "checkpoint", file=sys.stderr)
        return 130
    finally:
        if previous is not _NOT_SET:
            signal.signal(signal.SIGTERM, previous)


_NOT_SET = object()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    from fixpoint_rl.deep.config import apply_overrides, config_digest
    from fixpoint_rl.deep.registry import get_trainer

    try:
        spec = get_trainer(args.algorithm)
        preset = args.preset or spec.default_preset
        config = apply_overrides(spec.config(preset), args.overrides)
        grid = _parse_grid(args.grid)
        if args.seed is not None and args.seed < 0:
            raise _UsageError(f"--seed must be non-negative, got {args.seed}")
        if args.threads < 1:
            raise _UsageError(f"--threads must be ≥ 1, got {args.threads}")
        if args.checkpoint_every is not None and args.checkpoint_every < 1:
            raise _UsageError(f"--checkpoint-every must be ≥ 1, got {args.checkpoint_every}")
    except (ValueError, _UsageError) as error:
        return _fail(str(error))
    except ImportError as error:  # an optional dependency of this algorithm is missing
        return _fail(f"{args.algorithm} is unavailable here ({error}); install its extra")
    if args.show_config:
        return _show_config(spec, config)
    if args.seeds is not None or grid:
        if args.resume:
            return _fail("--resume is for single runs (rerunning a sweep resumes every cell)")
        return _run_sweep(args, spec, preset, config, grid)

    from fixpoint_rl.deep.distributed import rank_and_world_size
    from fixpoint_rl.deep.runtime import RunSetupError, resolve_device, run_trainer

    seed = 0 if args.seed is None else args.seed
    out = args.out or Path("runs") / spec.name / f"{preset}-{config_digest(config)}-seed{seed}"
    rank, _ = rank_and_world_size()
    try:
        resolve_device(args.device)
    except ValueError as error:
        return _fail(str(error))
    try:
        summary = run_trainer(
            spec, config, seed=seed, out_dir=out, preset=preset, threads=args.threads,
            device=args.device, checkpoint_every=args.checkpoint_every,
            require_checkpoint=args.resume, progress=not args.no_progress,
        )
    except RunSetupError as error:  # a user error found before training; others propagate
        return _fail(str(error))
    if rank == 0:
        print(json.dumps({"out": str(out), **_plain(summary)}))
    return 0


def _plain(summary: dict[str, Any]) -> dict[str, Any]:
    from fixpoint_rl.tabular.core.records import jsonable

    return jsonable(summary)


def _run_sweep(args, spec, preset, config, grid) -> int:
    from fixpoint_rl.deep.config import apply_overrides, config_digest
    from fixpoint_rl.deep.sweep import SweepError, cell_label, grid_cells, run_sweep, train_cell
    from fixpoint_rl.tabular.core.records import atomic_write_files, dumps_header, provenance

    seeds = args.seeds if args.seeds is not None else [0 if args.seed is None else args.seed]
    if any(s < 0 for s in seeds):
        return _fail(f"--seeds must be non-negative, got {seeds}")
    base = args.out or Path("runs") / spec.name / f"{preset}-sweep-{config_digest(config)}"
    cells = grid_cells(seeds, grid, algorithm=spec.name, preset=preset,
                       overrides=list(args.overrides), threads=args.threads,
                       device=args.device,
                       checkpoint_every=args.checkpoint_every)
    try:  # every cell's config is checked before anything starts
        for cell in cells:
            apply_overrides(config, [f"{k}={v}" for k, v in cell["settings"].items()])
            cell["out_dir"] = str(base / cell_label(cell))
    except ValueError as error:
        return _fail(str(error))
    print(f"fixpoint train {spec.name}: sweep of {len(cells)} runs in {base}", file=sys.stderr)
    try:
        results = run_sweep(train_cell, cells, workers=args.workers, ray_address=args.ray)
        failures: dict[int, str] = {}
    except SweepError as error:
        results, failures = error.results, error.failures
    except ValueError as error:
        return _fail(str(error))
    import pandas as pd

    rows = []
    for index, (cell, result) in enumerate(zip(cells, results)):
        row = {"cell": cell_label(cell), "seed": cell["seed"], **cell["settings"]}
        if result is not None:
            row.update({k: v for k, v in result.items() if k not in ("seed", "settings", "out_dir")})
        row["error"] = failures.get(index, "")
        rows.append(row)
    table = pd.DataFrame(rows)
    header = {**provenance(), "kind": "train-sweep", "trainer": spec.name, "preset": preset,
              "overrides": list(args.overrides), "grid": grid, "seeds": seeds,
              "executor": f"ray:{args.ray}" if args.ray else f"local:{args.workers or 'auto'}",
              "cells": [dict(c) for c in cells]}
    atomic_write_files({base / "sweep.csv": table.to_csv(index=False),
                        base / "sweep.json": dumps_header(header)})
    print(table.to_string(index=False))
    for index, text in failures.items():
        print(f"fixpoint train: cell {cell_label(cells[index])} failed: {text}", file=sys.stderr)
    return 1 if failures else 0
