"""``fixpoint``: the command-line entry point.

  fixpoint bench [NAME ...] [--quick | --full] [--seed N] [--out DIR] [--format F] [--wide]
      Convergence benchmarks: run each solver family on its problems, compare with exact answers,
      fit rates and check the papers' bounds. Prints a summary line per family and overall.
  fixpoint perf [NAME ...] [--quick] [--seed N] [--out DIR] [--format F] [--wide]
      Performance scripts: throughput of each hot path and its ratio to a baseline measured in
      the same run (plain numpy, the BLAS floor); a missed goal is a failed claim.

Exit status: 0 every claim holds, 1 some claim failed (``holds`` False), 2 bad arguments (checked
before any work, ``--out`` included), 130 interrupted by Ctrl-C (no partial files).
  fixpoint list
      The registered benchmarks and performance scripts.
  fixpoint train ALGORITHM [--preset P] [--set KEY=VALUE ...] [--seed N] [--out DIR] [--resume]
      Train a deep algorithm: checkpointed, resumable after a kill, torchrun-ready; with
      --seeds/--grid a sweep on a local process pool or a Ray cluster (fixpoint train --list).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .registry import BENCHMARKS, PERF, Entry

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
    kind = "bench" if allow_full else "perf"
    parser.add_argument(
        "--out", type=str, default=None, metavar="DIR",
        help=f"write {kind}-<name>.csv (rows) and {kind}-<name>.json (versions, seed, configuration, "
        "summary) into DIR, created if missing; checked before any work",
    )
    parser.add_argument(
        "--format", choices=("table", "csv", "json"), default="table",
        help="stdout: tables fitted to the terminal (default), or every row as CSV / JSON "
        "(summary lines then go to stderr)",
    )
    parser.add_argument(
        "--wide", action="store_true", help="table format: show every column, however wide"
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
    from .train import add_train_parser  # `fixpoint train` (deep training; torch imported lazily)

    add_train_parser(sub)
    return parser


def _run_entries(args: argparse.Namespace, registry: dict[str, Entry], kind: str) -> int:
    from ._runner import run_entries

    return run_entries(args, registry, kind)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        # one line, no traceback; output files are written atomically, so none is partial
        print(f"fixpoint {args.command}: interrupted (Ctrl-C); no partial output files were left",
              file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train":
        from .train import run_train

        return run_train(args)
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
