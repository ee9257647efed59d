"""Run logging: a metrics CSV plus a JSON header, the same record format as ``fixpoint bench``.

``<out_dir>/<name>.csv`` has one row per :meth:`RunLog.log` call: the column ``step`` followed by
the metric names in order of first appearance (a row without some metric leaves its cell empty).
``<out_dir>/<name>.json`` holds the provenance of :func:`fixpoint_rl.tabular.core.records.provenance`
(package versions, git commit, python, platform, time), the config, seed and run facts; it is
written when the run starts (``"status": "running"``) and again at the end (``"finished"``, with
the trainer's summary and the elapsed time). Both files are written atomically or appended line
by line, so a run killed at any moment leaves readable files.

The CSV holds only values that the seed determines (no wall-clock times): a run that was killed
and resumed ends with a CSV byte-identical to an uninterrupted run's, because the run log is
attached to the checkpoints and restoring a checkpoint drops the rows logged after it.
Floats are written with ``repr`` (shortest text that reads back to the same float).

Progress: a rich progress bar when stderr is a terminal, otherwise plain lines on stderr (the
first log call, every 10 % of the steps and at least every ``plain_every_s`` seconds).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import numbers
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fixpoint_rl.envs.checks import check_int, describe
from fixpoint_rl.tabular.core.records import (
    atomic_write_files,
    atomic_write_text,
    dumps_header,
    provenance,
)

__all__ = ["RunLog", "format_value"]


def format_value(value: Any) -> str:
    """The CSV text of one metric value (floats by ``repr``, bools as True/False, None empty).

    Accepts python and numpy scalars, 0-d numpy arrays and one-element torch tensors.
    """
    if hasattr(value, "detach") and hasattr(value, "item"):  # torch tensor, no torch import
        if value.numel() != 1:
            raise ValueError(f"a logged tensor must have one element, got shape {tuple(value.shape)}")
        value = value.detach().item()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"a logged array must have one element, got shape {value.shape}")
        value = value.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, str):
        return value
    raise ValueError(f"a logged metric must be a number, bool, str or None, got {describe(value)}")


def _csv_text(columns: list[str], rows: list[Mapping[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return buffer.getvalue()


def _csv_line(columns: list[str], row: Mapping[str, str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([row.get(c, "") for c in columns])
    return buffer.getvalue()


class RunLog:
    """Metrics CSV + JSON header of one run, with a progress display.

    Args:
      out_dir: the run folder (created).
      name: file stem: ``<name>.csv`` and ``<name>.json`` (``train-<algorithm>`` for
        ``fixpoint train``).
      config: the run's config (a dataclass; recorded in the header).
      seed: the run's seed (recorded).
      total_steps: the number of steps, for the progress display (None: unknown).
      header: more JSON-able facts for the header (trainer, preset, device, ...).
      progress: show progress (a rich bar on a terminal, plain lines otherwise).
      enabled: False on ranks other than 0: every method is then a no-op.
      plain_every_s: least seconds between two plain progress lines.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        name: str,
        config: Any,
        seed: int,
        total_steps: int | None = None,
        *,
        header: Mapping[str, Any] | None = None,
        progress: bool = True,
        enabled: bool = True,
        plain_every_s: float = 10.0,
    ) -> None:
        if not isinstance(name, str) or not name or os.sep in name:
            raise ValueError(f"name must be a file stem, got {describe(name)}")
        if total_steps is not None:
            total_steps = check_int("total_steps", total_steps, low=0)
        self.out_dir = Path(out_dir)
        self.name = name
        self.csv_path = self.out_dir / f"{name}.csv"
        self.json_path = self.out_dir / f"{name}.json"
        self.total_steps = total_steps
        self.enabled = bool(enabled)
        self.progress = bool(progress) and self.enabled
        self.plain_every_s = float(plain_every_s)
        self.columns: list[str] = ["step"]
        self.rows = 0
        self.resumed_from: list[int] = []
        self._handle: io.TextIOWrapper | None = None
        self._bar = None
        self._task = None
        self._last_plain = -math.inf
        self._last_decile = -1
        self._started = time.perf_counter()
        self._provenance: dict[str, Any] | None = None
        config_record = _config_record(config)
        self._header: dict[str, Any] = {
            "name": name,
            "seed": seed,
            "config": config_record,
            "total_steps": total_steps,
            **dict(header or {}),
        }
        # The CSV is (re)started at the first log call, unless a checkpoint is restored first:
        # then the existing file is trimmed to the checkpoint's rows and appended to.
        self._initialised = False
        if self.enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._write_header(status="running")
            if self.progress:
                print(f"{name}: seed {seed}, writing {self.out_dir}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ files
    def _write_text(self, text: str) -> None:
        self._close_handle()
        atomic_write_text(self.csv_path, text)
        self._handle = open(self.csv_path, "a", encoding="utf-8", newline="")
        self._initialised = True

    def _ensure_open(self) -> None:
        if not self._initialised:
            self._write_text(_csv_text(self.columns, []))
        elif self._handle is None:
            self._handle = open(self.csv_path, "a", encoding="utf-8", newline="")

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _read_rows(self) -> list[dict[str, str]]:
        if self._handle is not None:
            self._handle.flush()
        if not self._initialised:
            return []
        with open(self.csv_path, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))

    def _write_header(self, **extra: Any) -> None:
        if self._provenance is None:  # once per run (it asks git for the commit)
            self._provenance = provenance()
        record = {**self._provenance, **self._header, "rows": self.rows,
                  "resumed_from_steps": self.resumed_from, **extra}
        atomic_write_text(self.json_path, dumps_header(record))

    # ------------------------------------------------------------------ logging
    def log(self, step: int, /, **metrics: Any) -> None:
        """Append one CSV row ``step, metrics...`` and update the progress display.

        Values: python/numpy numbers, bools, strings, None, one-element tensors (``.item()`` is
        taken, which synchronises a GPU: log every few steps in hot loops).
        """
        if not self.enabled:
            return
        step = check_int("step", step, low=0)
        if "step" in metrics:
            raise ValueError("metrics must not contain the name 'step' (it is the first column)")
        row = {"step": str(step)}
        for key, value in metrics.items():
            row[key] = format_value(value)
        self._ensure_open()
        new = [k for k in row if k not in self.columns]
        if new:  # a metric seen for the first time: rewrite the file with the wider header
            rows = self._read_rows() if self.rows else []
            self.columns.extend(new)
            self._write_text(_csv_text(self.columns, rows))
        assert self._handle is not None
        self._handle.write(_csv_line(self.columns, row))
        self._handle.flush()
        self.rows += 1
        self._show(step, metrics)

    def _show(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.progress:
            return
        shown = " ".join(f"{k}={_short(v)}" for k, v in metrics.items())
        total = self.total_steps
        if sys.stderr.isatty():
            if self._bar is None:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)

                self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
                                     transient=False)
                self._bar.start()
                self._task = self._bar.add_task(self.name, total=total, metrics="")
            self._bar.update(self._task, completed=step, metrics=shown)
            return
        now = time.perf_counter()
        decile = -1 if not total else (10 * step) // total
        if decile > self._last_decile or now - self._last_plain >= self.plain_every_s:
            self._last_decile = max(decile, self._last_decile)
            self._last_plain = now
            of = f"/{total}" if total else ""
            print(f"{self.name} step {step}{of} {shown}".rstrip(), file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ checkpoint attachment
    def state_dict(self) -> dict[str, Any]:
        """Columns, row count and a digest of the CSV so far (stored in every checkpoint).

        The CSV is flushed and fsynced first, so the rows the checkpoint refers to are on disk
        before the checkpoint is renamed into place.
        """
        if not self.enabled:
            return {"columns": list(self.columns), "rows": self.rows, "sha256": None}
        self._ensure_open()
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        text = _csv_text(self.columns, self._read_rows())
        return {"columns": list(self.columns), "rows": self.rows,
                "sha256": hashlib.sha256(text.encode()).hexdigest()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Trim the CSV on disk to the rows of the checkpoint (rows logged after it are dropped)."""
        columns, rows = list(state["columns"]), int(state["rows"])
        self.columns = columns
        self.rows = rows
        if not self.enabled:
            return
        kept = []
        if self.csv_path.is_file():
            with open(self.csv_path, encoding="utf-8", newline="") as handle:
                kept = list(csv.DictReader(handle))[:rows]
        text = _csv_text(columns, kept)
        if len(kept) != rows or (
            state.get("sha256") and hashlib.sha256(text.encode()).hexdigest() != state["sha256"]
        ):
            raise ValueError(
                f"{self.csv_path} does not hold the {rows} rows recorded in the checkpoint "
                f"(found {len(kept)} or different values); it was changed or deleted"
            )
        self._write_text(text)
        if self._last_step(kept) is not None:
            self.resumed_from.append(self._last_step(kept))

    @staticmethod
    def _last_step(rows: list[Mapping[str, str]]) -> int | None:
        return int(rows[-1]["step"]) if rows else None

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        """Stop the progress display and close the CSV (the file stays complete)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._close_handle()

    def mark(self, status: str) -> None:
        """Rewrite the JSON header with ``status`` (``"interrupted"``, ``"failed"``)."""
        if self.enabled:
            self._write_header(status=status)

    def finish(self, summary: Mapping[str, Any] | None = None, elapsed_s: float | None = None) -> None:
        """Close and rewrite the JSON header with ``status: finished``, the summary and time."""
        self.close()
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self._started if elapsed_s is None else elapsed_s
        # the CSV is rewritten together with the header (atomically, as one pair of files)
        text = _csv_text(self.columns, self._read_rows())
        if self._provenance is None:
            self._provenance = provenance()
        record = {**self._provenance, **self._header, "rows": self.rows,
                  "resumed_from_steps": self.resumed_from, "status": "finished",
                  "elapsed_s": elapsed, "summary": dict(summary or {})}
        atomic_write_files({self.csv_path: text, self.json_path: dumps_header(record)})


def _config_record(config: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {"class": type(config).__qualname__, **dataclasses.asdict(config)}
    return config


def _short(value: Any) -> str:
    try:
        text = format_value(value)
    except ValueError:
        return "?"
    try:
        number = float(text)
    except ValueError:
        return text
    if number.is_integer() and abs(number) < 1e12 and "." not in text and "e" not in text:
        return text
    return f"{number:.4g}"
