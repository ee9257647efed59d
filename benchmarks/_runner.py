"""Shared plumbing for ``fixpoint bench`` and ``fixpoint perf``: config, progress, output files."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
import subprocess
import sys
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

__all__ = ["BenchConfig", "provenance", "write_outputs", "format_table"]

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


def write_outputs(out_dir: Path, name: str, table: pd.DataFrame, header: dict[str, Any]) -> list[Path]:
    """Write ``<name>.csv`` (the rows) and ``<name>.json`` (provenance, seed, config, summary)."""
    csv_path = out_dir / f"{name}.csv"
    json_path = out_dir / f"{name}.json"
    # both files are staged and renamed together: a CSV never appears without its header
    atomic_write_files({csv_path: table.to_csv(index=False),
                        json_path: dumps_header({**provenance(), **header})})
    return [csv_path, json_path]


def _format_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "NO"
    if isinstance(value, (float, np.floating)):
        magnitude = abs(float(value))
        if magnitude != 0 and (magnitude < 1e-3 or magnitude >= 1e5):
            return f"{float(value):.3e}"
        return f"{float(value):.4g}"
    return str(value)


def format_table(table: pd.DataFrame, title: str):
    """A rich Table of the rows (floats to 4 significant digits, claims as yes/NO/–)."""
    from rich.markup import escape
    from rich.table import Table

    rich_table = Table(title=title, title_justify="left", show_lines=False)
    for column in table.columns:
        rich_table.add_column(escape(str(column)), overflow="fold")
    for row in table.itertuples(index=False):
        # escape: labels such as "nash_md[n=16]" are data, not rich markup
        rich_table.add_row(*(escape(_format_cell(value)) for value in row))
    return rich_table
