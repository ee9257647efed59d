"""Shared plumbing for ``fixpoint bench`` and ``fixpoint perf``: config, progress, output files,
terminal tables and summaries.

Terminal tables fit the window: numbers print to 3 significant digits and never wrap; claim texts
become short tags (C1, C2, …) explained under the table; columns that do not fit are listed as
hidden (``--wide`` shows every column, ``--format csv|json`` prints every column for machines).
Output files (``bench-<name>.csv`` + ``bench-<name>.json``) are written together and atomically,
with Ctrl-C deferred until both are in place."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

__all__ = [
    "BenchConfig",
    "OutputDirError",
    "FORMATS",
    "Summary",
    "format_cell",
    "format_table",
    "normalize_table",
    "provenance",
    "ratio_legend",
    "summarize",
    "validate_out_dir",
    "write_outputs",
]

T = TypeVar("T")

SIZES = ("quick", "default", "full")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Settings every benchmark receives.

    Attributes:
      size: "quick" (smoke test, seconds), "default" (the small setting `fixpoint bench` runs,
        under 2 minutes for everything on 2 cores) or "full" (the study as in the papers).
      seed: base seed; every random draw in a benchmark derives from it.
      progress: show a progress bar on long loops.
    """

    size: str = "default"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")

    @property
    def quick(self) -> bool:
        return self.size == "quick"

    @property
    def full(self) -> bool:
        return self.size == "full"

    def pick(self, quick: T, default: T, full: T) -> T:
        """Choose a setting by size: ``cfg.pick(quick=100, default=2000, full=100_000)``."""
        return {"quick": quick, "default": default, "full": full}[self.size]

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar (on a terminal, when enabled)."""
        if not self.progress or not sys.stderr.isatty():
            yield from items
            return
        from rich.progress import track

        yield from track(items, description=description, total=total, transient=True)


from fixpoint_rl.tabular.core.records import atomic_write_files, dumps_header, jsonable, provenance

_jsonable = jsonable

FORMATS = ("table", "csv", "json")
REQUIRED_COLUMNS = ("algorithm", "problem", "claim", "holds")
SIGNIFICANT_DIGITS = 3
TEXT_WIDTH = 26  # text cells (algorithm, problem, metric names) wrap beyond this in narrow tables


class OutputDirError(ValueError):
    """``--out`` names a place where the output files cannot be written."""


def validate_out_dir(out: str | os.PathLike | None) -> Path | None:
    """Check (before any work) that ``out`` is a folder we can write into; create it if missing.

    Raises ``OutputDirError`` naming the problem: empty string, an existing file, a folder that
    cannot be created or is not writable.
    """
    if out is None:
        return None
    text = os.fspath(out)
    if not str(text).strip():
        raise OutputDirError("--out must name a folder, got an empty string")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"--out {str(path)!r} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputDirError(f"--out {str(path)!r} is not a writable folder ({reason})") from None
    return path


@contextlib.contextmanager
def _sigint_deferred():
    """Hold back Ctrl-C while the block runs; raise KeyboardInterrupt after it, if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def write_outputs(out_dir: Path, name: str, table: pd.DataFrame, header: dict[str, Any]) -> list[Path]:
    """Write ``<name>.csv`` (the rows) and ``<name>.json`` (provenance, seed, config, summary)."""
    csv_path = Path(out_dir) / f"{name}.csv"
    json_path = Path(out_dir) / f"{name}.json"
    csv_text = table.to_csv(index=False)
    json_text = dumps_header({**provenance(), **header})
    # both files are staged and renamed together: a CSV never appears without its header; a
    # Ctrl-C during the renames is delivered after both are in place
    with _sigint_deferred():
        return atomic_write_files({csv_path: csv_text, json_path: json_text})


# ----------------------------------------------------------------------------- vocabulary, summaries


def normalize_table(table: pd.DataFrame) -> pd.DataFrame:
    """Required columns first (``algorithm``, ``problem``, ``claim``, ``holds``), then the rest.

    A missing ``claim`` column is added empty; ``holds`` values become True / False / None.
    """
    table = table.copy()
    for column in REQUIRED_COLUMNS:
        if column not in table.columns:
            table[column] = None
    table["holds"] = pd.Series([_verdict(v) for v in table["holds"]], index=table.index, dtype=object)
    table["claim"] = pd.Series(
        [None if _missing(v) else str(v) for v in table["claim"]], index=table.index, dtype=object
    )
    rest = [c for c in table.columns if c not in REQUIRED_COLUMNS]
    return table[[*REQUIRED_COLUMNS, *rest]]


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _verdict(value: Any) -> bool | None:
    if _missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value in ("True", "False"):
        return value == "True"
    raise ValueError(f"holds must be True, False or None, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Summary:
    """Counts of one table: rows, rows with a claim, and the rows whose claim failed."""

    name: str
    rows: int
    claims: int
    failed: tuple[str, ...]  # "algorithm on problem: claim"

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        """``nlhf: 212 rows, 14 claims checked, all hold``."""
        claims = "1 claim" if self.claims == 1 else f"{self.claims} claims"
        if self.claims == 0:
            verdict = "no claims checked"
        elif self.ok:
            verdict = f"{claims} checked, all hold"
        else:
            verdict = f"{claims} checked, {len(self.failed)} FAILED"
        return f"{self.name}: {self.rows} rows, {verdict}"

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "claims_checked": self.claims, "claims_failed": len(self.failed),
                "failed": list(self.failed)}


def summarize(name: str, table: pd.DataFrame) -> Summary:
    table = normalize_table(table)
    judged = table[table["holds"].map(lambda v: v is not None).astype(bool)]
    failed = judged[judged["holds"].map(lambda v: v is False).astype(bool)]
    lines = tuple(
        f"{row.algorithm} on {row.problem}" + (f": {row.claim}" if row.claim else "")
        for row in failed.itertuples(index=False)
    )
    return Summary(name=name, rows=int(len(table)), claims=int(len(judged)), failed=lines)


def overall_line(kind: str, summaries: list[Summary], elapsed_s: float) -> str:
    rows = sum(s.rows for s in summaries)
    claims = sum(s.claims for s in summaries)
    failed = sum(len(s.failed) for s in summaries)
    families = "1 family" if len(summaries) == 1 else f"{len(summaries)} families"
    if claims == 0:
        verdict = "no claims checked"
    else:
        verdict = f"{claims} claims checked, " + ("all hold" if not failed else f"{failed} FAILED")
    return f"fixpoint {kind}: {families}, {rows} rows, {verdict} ({elapsed_s:.1f} s)"


def ratio_legend(columns) -> list[str]:
    """One line per ratio column (``*_x``) saying which way it reads."""
    lines = []
    for column in columns:
        column = str(column)
        if column == "x_floor":
            lines.append("x_floor = our seconds / floor seconds (< 1: faster than the floor)")
            continue
        if not column.endswith("_x"):
            continue
        if column == "speedup_x":
            lines.append("speedup_x = baseline seconds / our seconds (> 1: ours is faster; the "
                         "baseline is named in the claim)")
        elif column.startswith("speedup_vs_"):
            base = column[len("speedup_vs_"):-2]
            lines.append(f"{column} = {base} seconds / our seconds (> 1: ours is faster)")
        elif column.startswith("slowdown_vs_"):
            base = column[len("slowdown_vs_"):-2]
            lines.append(f"{column} = our seconds / {base} seconds (≥ 1; closer to 1 is better)")
        else:
            lines.append(f"{column}: a ratio (see the module docstring for its direction)")
    return lines


# ----------------------------------------------------------------------------- terminal tables


def format_number(value: float) -> str:
    """3 significant digits, short exponent: 0.0123, 12.3, 1234, 1.88e-12, 4.6e+7."""
    value = float(value)
    if value == 0:
        return "0"
    if not np.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    magnitude = abs(value)
    short = f"{value:.{SIGNIFICANT_DIGITS}g}"
    if float(short) == value:  # exact in 3 digits (0.2, 0.75, 1e-09): no padding zeros
        if "e" in short:
            mantissa, exponent = short.split("e")
            return f"{mantissa}e{int(exponent):+d}"
        return short
    if 1e-3 <= magnitude < 1e5:
        if magnitude >= 10 ** (SIGNIFICANT_DIGITS - 1):
            return f"{value:.0f}"
        decimals = SIGNIFICANT_DIGITS - 1 - int(np.floor(np.log10(magnitude)))
        text = f"{value:.{decimals}f}"
        # rounding may add a digit (9.996 → 10.00): re-round with one decimal fewer
        if len(text.lstrip("-").replace(".", "").lstrip("0")) > SIGNIFICANT_DIGITS and decimals > 0:
            text = f"{value:.{decimals - 1}f}"
        return text
    mantissa, exponent = f"{value:.{SIGNIFICANT_DIGITS - 1}e}".split("e")
    return f"{mantissa}e{int(exponent):+d}"


def format_cell(value: Any, column: str = "") -> str:
    """Text of one cell. Only ``holds`` = False reads as a failure (``FAIL``)."""
    if column == "holds":
        verdict = _verdict(value)
        return "–" if verdict is None else ("yes" if verdict else "FAIL")
    if _missing(value):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer() and abs(value) < 1e6 and column in _INTEGER_LIKE:
            return str(int(value))
        return format_number(value)
    return str(value)


_INTEGER_LIKE = {"iterations", "K", "X", "H", "S", "A", "m", "N", "n", "k", "seed", "steps"}


def _claim_tags(claims: pd.Series) -> dict[str, str]:
    tags: dict[str, str] = {}
    for claim in claims:
        if claim is not None and claim not in tags:
            tags[claim] = f"C{len(tags) + 1}"
    return tags


def format_table(
    table: pd.DataFrame,
    title: str,
    *,
    width: int | None = None,
    wide: bool = False,
    display_columns: Sequence[str] | None = None,
):
    """A rich renderable: the table (fitted to ``width`` unless ``wide``), claim and ratio legends.

    Narrow mode keeps ``algorithm``, ``problem`` (as a group heading when the rows come in runs
    of one problem and the table would not fit), a claim tag and ``holds``, then metric columns
    (``display_columns`` first) as long as they fit; the others are named as hidden.
    """
    from rich import box
    from rich.console import Group
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    table = normalize_table(table)
    tags = _claim_tags(table["claim"])
    cells: dict[str, list[str]] = {}
    for column in table.columns:
        if column == "claim":
            cells["claim"] = [tags.get(v, "–") if v is not None else "–" for v in table["claim"]]
        else:
            cells[str(column)] = [format_cell(v, str(column)) for v in table[column]]
    metrics = [str(c) for c in table.columns if c not in REQUIRED_COLUMNS]
    if display_columns is not None:
        first = [c for c in display_columns if c in metrics]
        metrics = first + [c for c in metrics if c not in first]
    all_cols = ["algorithm", "problem", "claim", "holds", *metrics]
    if not tags:
        all_cols.remove("claim")

    def is_numeric(column: str) -> bool:
        if column in ("algorithm", "problem", "claim"):
            return False
        return bool(table[column].map(
            lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        ).any())

    numeric = {c: is_numeric(c) for c in all_cols}

    def need(column: str) -> int:
        # numbers (and holds / claim tags) never wrap: the widest cell; text wraps beyond
        # TEXT_WIDTH characters when the table must fit a window. A header up to 14 characters
        # stays on one line, a longer one folds.
        widest = max((len(c) for c in cells[column]), default=1)
        if not wide and not numeric[column] and column not in ("holds", "claim"):
            widest = min(widest, TEXT_WIDTH)
        return max(widest, min(len(column), 14), 1)

    def total(columns: list[str], extra: int = 0) -> int:
        # columns are separated by 2 characters; rich keeps 1 right pad after the last one
        return sum(widths[c] for c in columns) + 2 * (len(columns) - 1) + 1 + extra

    widths = {c: need(c) for c in all_cols}
    limit = width if width is not None else 10**9
    grouped = False
    hidden: list[str] = []
    columns = list(all_cols)
    problems = list(table["problem"].astype(str))
    runs = sum(1 for i, p in enumerate(problems) if i == 0 or problems[i - 1] != p)
    if not wide and total(columns) > limit:
        if len(problems) > 1 and runs <= len(problems) / 2:
            # rows come in runs of one problem: print the problem once, as a heading
            grouped = True
            columns.remove("problem")
            widths["algorithm"] += 2  # indented under the heading
        while total(columns) > limit and columns[-1] not in REQUIRED_COLUMNS:
            hidden.insert(0, columns.pop())

    def new_table(show_header: bool, with_title: bool):
        rich_table = Table(
            title=escape(title) if with_title else None, title_justify="left",
            box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), show_edge=False,
            show_header=show_header,
        )
        for column in columns:
            rich_table.add_column(
                escape(column), width=widths[column], no_wrap=False, overflow="fold",
                justify="right" if numeric[column] else "left",
            )
        return rich_table

    def row_cells(i: int) -> list:
        row = []
        for column in columns:
            text = cells[column][i]
            style = "bold red" if column == "holds" and text == "FAIL" else ""
            if numeric[column] or column in ("holds", "claim"):
                row.append(Text(text, style=style, no_wrap=True, overflow="ellipsis"))
            elif column == "algorithm" and grouped:
                row.append(Padding(Text(text, overflow="fold"), (0, 0, 0, 2)))  # under its heading
            else:
                row.append(Text(text, style=style, overflow="fold"))
        return row

    parts: list[Any] = []
    if grouped:
        # one header, then per problem a heading line and a header-less table with the same
        # fixed column widths, so the columns line up across groups
        parts.append(new_table(show_header=True, with_title=True))
        start = 0
        while start < len(problems):
            stop = start
            while stop < len(problems) and problems[stop] == problems[start]:
                stop += 1
            parts.append(Text(problems[start], style="bold", overflow="fold"))
            block = new_table(show_header=False, with_title=False)
            for i in range(start, stop):
                block.add_row(*row_cells(i))
            parts.append(block)
            start = stop
    else:
        rich_table = new_table(show_header=True, with_title=True)
        for i in range(len(table)):
            rich_table.add_row(*row_cells(i))
        parts.append(rich_table)
    if tags:
        for claim, tag in tags.items():
            verdicts = [v for c, v in zip(table["claim"], table["holds"]) if c == claim]
            judged = [v for v in verdicts if v is not None]
            failed = sum(1 for v in judged if v is False)
            state = "all hold" if not failed else f"{failed} FAILED"
            count = "1 row" if len(judged) == 1 else f"{len(judged)} rows"
            parts.append(Text(f"{tag}: {claim}  [{count}, {state}]"))
    for line in ratio_legend(columns):
        parts.append(Text(line))
    if hidden:
        parts.append(Text(f"hidden at {limit} columns: {', '.join(hidden)} (--wide shows all)",
                          style="dim"))
    group = Group(*parts)
    group.required_width = total(columns)  # print with at least this width (``--wide``)
    return group


# ----------------------------------------------------------------------------- the command


def _module_constants(entry) -> dict[str, Any]:
    """The module's upper-case settings (``TAU``, ``GAMMA``, …): part of the configuration."""
    module = importlib_module(entry)
    constants = {}
    for key, value in vars(module).items():
        if key.isupper() and not key.startswith("_"):
            if isinstance(value, (bool, int, float, str, np.generic)) or (
                isinstance(value, (tuple, list)) and all(isinstance(v, (bool, int, float, str)) for v in value)
            ):
                constants[key] = value
    return constants


def _console(width: int | None = None):
    from rich.console import Console

    if width is not None:
        return Console(width=width)
    if sys.stdout.isatty():
        return Console()
    # off a terminal (CI logs, pipes) use $COLUMNS if set, else room for the wide tables
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() and int(columns) > 0 else 220)


def run_entries(args, registry: dict, kind: str, *, console=None) -> int:
    """``fixpoint bench|perf``: validate, run each family, print, write files; the exit status.

    0: every claim holds; 1: some ``holds`` is False (a violated bound or a missed perf goal);
    2: bad arguments (found before any work). Ctrl-C propagates as KeyboardInterrupt (``main``
    turns it into exit status 130); files of families that finished are complete, others absent.
    """
    import time

    from .registry import load

    def fail(message: str) -> int:
        print(f"fixpoint {kind}: {message}", file=sys.stderr)
        return 2

    unknown = [name for name in args.names if name not in registry]
    if unknown:
        return fail(f"unknown name(s) {unknown}; choose from {list(registry)}")
    if args.seed < 0:
        return fail(f"--seed must be non-negative, got {args.seed}")
    output_format = getattr(args, "format", "table")
    if output_format not in FORMATS:
        return fail(f"--format must be one of {FORMATS}, got {output_format!r}")
    try:
        out_dir = validate_out_dir(args.out)
    except OutputDirError as error:
        return fail(str(error))
    size = "quick" if args.quick else ("full" if getattr(args, "full", False) else "default")
    config = BenchConfig(size=size, seed=args.seed, progress=not args.no_progress)
    console = console if console is not None else _console()
    err_console = _console_stderr()
    names = args.names or list(registry)
    not_installed = {name: registry[name].missing() for name in names if registry[name].missing()}
    if not_installed and args.names:
        return fail("; ".join(
            f"{name} needs {', '.join(missing)}: pip install -e \".[{registry[name].extra}]\""
            for name, missing in not_installed.items()))
    for name, missing in not_installed.items():  # running every family: say what is left out
        err_console.print(f"{name}: not run (needs {', '.join(missing)}; "
                          f"pip install -e \".[{registry[name].extra}]\")", markup=False)
    names = [name for name in names if name not in not_installed]
    wide = bool(getattr(args, "wide", False))
    command = " ".join(["fixpoint", kind, *sys.argv[2:]]) if sys.argv[1:2] == [kind] else None
    summaries: list[Summary] = []
    collected: list[tuple[str, pd.DataFrame, dict]] = []
    started = time.perf_counter()
    for name in names:
        entry = registry[name]
        run = load(entry)
        start = time.perf_counter()
        raw = run(config)
        elapsed = time.perf_counter() - start
        extra_header = dict(getattr(raw, "attrs", {}) or {})  # e.g. perf scripts' machine header
        table = normalize_table(raw)
        summary = summarize(name, table)
        summaries.append(summary)
        header = {
            "benchmark": name, "kind": kind, "size": size, "seed": args.seed,
            "description": entry.description, "elapsed_s": elapsed, "rows": int(len(table)),
            "config": {**dataclasses.asdict(config), "module": f"fixpoint_rl.benchmarks{entry.module}",
                       "constants": _module_constants(entry), "command": command},
            "columns": [str(c) for c in table.columns],
            "summary": summary.as_dict(),
            **extra_header,
        }
        if output_format == "table":
            display = getattr(importlib_module(entry), "DISPLAY_COLUMNS", None)
            rendered = format_table(
                table, f"fixpoint {kind} {name}: {entry.description} (size={size}, seed={args.seed}, "
                f"{elapsed:.1f} s)", width=None if wide else console.width, wide=wide,
                display_columns=display)
            print_wide(console, rendered, wide)
            console.print(summary.line(), style="bold" if summary.ok else "bold red")
            console.print()
        else:
            err_console.print(summary.line())
            collected.append((name, table, header))
        if out_dir is not None:
            for path in write_outputs(out_dir, f"{kind}-{name}", table, header):
                (console if output_format == "table" else err_console).print(f"wrote {path}")
    total = overall_line(kind, summaries, time.perf_counter() - started)
    if output_format == "csv":
        frames = [t.assign(benchmark=n)[["benchmark", *t.columns]] for n, t, _ in collected]
        sys.stdout.write(pd.concat(frames, ignore_index=True).to_csv(index=False))
    elif output_format == "json":
        payload = {"kind": kind, "summary": total,
                   "benchmarks": [{"name": n, "header": h, "rows": t.to_dict(orient="records")}
                                  for n, t, h in collected]}
        sys.stdout.write(json.dumps(jsonable(payload), indent=1) + "\n")
    failed = [f"{s.name}: {line}" for s in summaries for line in s.failed]
    report = console if output_format == "table" else err_console
    if failed:
        report.print(f"[bold red]{len(failed)} claim(s) failed:[/]")
        for line in failed:
            report.print(f"  {line}", markup=False)
    report.print(total, style="bold" if not failed else "bold red", markup=False)
    return 1 if failed else 0


def print_wide(console, rendered, wide: bool) -> None:
    """Print ``rendered``; with ``wide``, at its own width even beyond the window's."""
    if not wide or rendered.required_width <= console.width:
        console.print(rendered)
        return
    saved = console.width
    console.width = rendered.required_width
    try:
        console.print(rendered)
    finally:
        console.width = saved


def importlib_module(entry):
    import importlib

    return importlib.import_module(entry.module, "fixpoint_rl.benchmarks")


def _console_stderr():
    from rich.console import Console

    return Console(stderr=True, width=None if sys.stderr.isatty() else 220)
