"""``fixpoint``: the command-line entry point.

  fixpoint bench [NAME ...] [--quick | --full] [--seed N] [--out DIR]
      Convergence benchmarks: run each solver family on its problems, compare with exact answers,
      fit rates and check the papers' bounds. Exit status 1 if a claimed bound is violated.
  fixpoint perf [NAME ...] [--quick] [--seed N] [--out DIR]
      Performance scripts: throughput of each hot path and its ratio to a baseline measured in
      the same run (plain numpy, the BLAS floor).
  fixpoint list
      The registered benchmarks and performance scripts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .registry import BENCHMARKS, PERF, Entry, load

__all__ = ["main"]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fixpoint-rl")
    except metadata.PackageNotFoundError:  # running from a checkout without installing
        return "unknown"


def _add_common(parser: argparse.ArgumentParser, registry: dict[str, Entry], allow_full: bool) -> None:
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"which to run (default: all). Choices: {', '.join(registry)}",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smallest setting (smoke test, seconds)")
    if allow_full:
        size.add_argument("--full", action="store_true", help="the full study (minutes to hours)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument(
        "--out", type=Path, default=None, help="write <name>.csv rows and a <name>.json header here"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fixpoint",
        description="fixpoint-rl: convergence benchmarks and performance scripts for checked "
        "implementations of preference-based and distributional RL papers.",
    )
    parser.add_argument("--version", action="version", version=f"fixpoint-rl {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    bench = sub.add_parser(
        "bench",
        help="convergence benchmarks against exact answers (the main job)",
        description="Run the registered convergence benchmarks: "
        + "; ".join(f"{e.name}: {e.description}" for e in BENCHMARKS.values()),
    )
    _add_common(bench, BENCHMARKS, allow_full=True)

    perf = sub.add_parser(
        "perf",
        help="throughput of the hot paths, as ratios to baselines measured in the same run",
        description="Run the registered performance scripts: "
        + "; ".join(f"{e.name}: {e.description}" for e in PERF.values()),
    )
    _add_common(perf, PERF, allow_full=False)

    sub.add_parser("list", help="list the registered benchmarks and performance scripts")
    return parser


def _is_false(value) -> bool:
    """True only for a boolean False (None / NaN mean "no claim on this row")."""
    import numpy as np

    return isinstance(value, (bool, np.bool_)) and not bool(value)


def _run_entries(args: argparse.Namespace, registry: dict[str, Entry], kind: str) -> int:
    from rich.console import Console

    from ._runner import BenchConfig, format_table, write_outputs

    unknown = [name for name in args.names if name not in registry]
    if unknown:
        print(
            f"fixpoint {kind}: unknown name(s) {unknown}; choose from {list(registry)}",
            file=sys.stderr,
        )
        return 2
    if args.seed < 0:
        print(f"fixpoint {kind}: --seed must be non-negative, got {args.seed}", file=sys.stderr)
        return 2
    size = "quick" if args.quick else ("full" if getattr(args, "full", False) else "default")
    config = BenchConfig(size=size, seed=args.seed, progress=not args.no_progress)
    # Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns: give it room.
    console = Console() if sys.stdout.isatty() else Console(width=220)
    names = args.names or list(registry)
    violated: list[str] = []
    for name in names:
        entry = registry[name]
        run = load(entry)
        start = time.perf_counter()
        table = run(config)
        elapsed = time.perf_counter() - start
        console.print(format_table(table, f"fixpoint {kind} {name}  ({entry.description}; "
                                           f"size={size}, seed={args.seed}, {elapsed:.1f} s)"))
        if kind == "bench" and "holds" in table.columns:
            failed = table[table["holds"].map(_is_false)]
            for row in failed.itertuples(index=False):
                violated.append(f"{name}: {row.algorithm} on {row.problem}")
        if args.out is not None:
            header = {"benchmark": name, "kind": kind, "size": size, "seed": args.seed,
                      "description": entry.description, "elapsed_s": elapsed,
                      "rows": int(len(table))}
            for path in write_outputs(args.out, f"{kind}-{name}", table, header):
                console.print(f"wrote {path}")
    if violated:
        console.print(f"[bold red]{len(violated)} claimed bound(s) violated:[/]")
        for line in violated:
            console.print(f"  {line}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        for title, registry in (("bench", BENCHMARKS), ("perf", PERF)):
            print(f"fixpoint {title}:")
            for entry in registry.values():
                print(f"  {entry.name:<12} {entry.description}")
        return 0
    if args.command == "bench":
        return _run_entries(args, BENCHMARKS, "bench")
    return _run_entries(args, PERF, "perf")


if __name__ == "__main__":
    sys.exit(main())
