"""Shared timing plumbing of the ``fixpoint perf`` scripts: medians after warm-up, CPU time beside
wall time, pinned BLAS / Numba thread counts, and a header describing the machine as measured.

Every perf script times each side (ours and every baseline) with :func:`time_call`: one warm-up call
(compilation, caches, BLAS thread start-up), then ``repeats`` ≥ 5 samples; each sample runs the
call ``inner`` times, with ``inner`` chosen so a sample lasts at least ``min_sample_s`` (timer
resolution and Python overhead stay negligible for sub-millisecond calls). The reported time is the
median sample; ``cpu_s`` is the median process CPU time per call (all threads), so
``cpu_s / wall_s`` ≈ 2 shows a call that used both cores, and ≪ 1 a call that waited for the CPU
(the machine was loaded).

:func:`machine_header` records what decides those numbers: the BLAS library, its kernel
(architecture) and thread count (threadpoolctl), Numba's threading layer and thread count, the
``OPENBLAS_*`` / ``OMP_*`` / ``MKL_*`` / ``NUMBA_*`` environment variables and the 1/5/15-minute
load average. threadpoolctl (a runtime dependency) is used rather than ``numpy.show_config``:
numpy's build configuration names the BLAS it was compiled against but neither the kernel picked at
run time nor the live thread count, and it cannot pin the thread count, which the one-thread
gemv floor of ``perf nlhf`` needs.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fixpoint_rl.tabular._threads import blas_threads, numba_threads

__all__ = ["Timing", "time_call", "machine_header", "header_line", "with_machine_header", "blas_threads", "numba_threads",
           "load_1m", "MIN_REPEATS"]

MIN_REPEATS = 5


@dataclasses.dataclass(frozen=True)
class Timing:
    """Median wall and CPU seconds per call over ``repeats`` samples of ``inner`` calls each."""

    wall_s: float
    cpu_s: float
    min_s: float
    max_s: float
    repeats: int
    inner: int

    @property
    def spread(self) -> float:
        """Slowest / fastest sample: ≈ 1 on an idle machine, large under load."""
        return self.max_s / self.min_s if self.min_s > 0 else float("nan")


def time_call(fn: Callable[[], Any], *, repeats: int = MIN_REPEATS, min_sample_s: float = 0.0,
              warmup: int = 1) -> Timing:
    """Median seconds per call of ``fn`` after ``warmup`` untimed calls (see the module docstring)."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be ≥ {MIN_REPEATS} (medians over at least 5), got {repeats}")
    for _ in range(warmup):
        fn()
    inner = 1
    if min_sample_s > 0:
        while True:
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            if time.perf_counter() - start >= min_sample_s or inner >= 1 << 20:
                break
            inner *= 4
    walls, cpus = [], []
    for _ in range(repeats):
        cpu0 = time.process_time()
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        walls.append((time.perf_counter() - start) / inner)
        cpus.append((time.process_time() - cpu0) / inner)
    return Timing(wall_s=float(np.median(walls)), cpu_s=float(np.median(cpus)),
                  min_s=float(np.min(walls)), max_s=float(np.max(walls)), repeats=repeats,
                  inner=inner)


def load_1m() -> float:
    """The 1-minute load average (NaN where the OS does not report one)."""
    try:
        return float(os.getloadavg()[0])
    except OSError:  # pragma: no cover - platform without getloadavg
        return float("nan")


def machine_header() -> dict[str, Any]:
    """What the timings depend on: BLAS kernel and threads, Numba threads, env vars, load average."""
    import numba
    from threadpoolctl import threadpool_info

    pools = [
        {key: info.get(key) for key in ("user_api", "internal_api", "version", "architecture",
                                        "num_threads", "threading_layer", "filepath")}
        for info in threadpool_info()
    ]
    env = {key: value for key, value in sorted(os.environ.items())
           if key.startswith(("OPENBLAS_", "OMP_", "MKL_", "NUMBA_", "GOTO_", "BLIS_"))}
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet in this process
        layer = numba.config.THREADING_LAYER
    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "blas": pools,
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": layer,
        "env": env,
        "load_average_1_5_15": load,
    }


def header_line(header: dict[str, Any]) -> str:
    """One line of :func:`machine_header` for a table title."""
    blas = ", ".join(f"{p['internal_api']} {p['version']} {p['architecture']} ×{p['num_threads']}"
                     for p in header["blas"] if p.get("user_api") == "blas") or "no BLAS pool"
    env = " ".join(f"{k}={v}" for k, v in header["env"].items()) or "no thread env vars"
    return (f"{header['cpu_count']} CPUs; BLAS {blas}; numba {header['numba_threads']} threads "
            f"({header['numba_threading_layer']}); {env}; load {header['load_average_1_5_15']}")


def with_machine_header(table):
    """``table`` plus a last row describing the machine (shown in the terminal table) and the full
    :func:`machine_header` in ``table.attrs["machine"]`` (``fixpoint perf`` merges it into the JSON
    header of ``--out``)."""
    import pandas as pd

    header = machine_header()
    table = pd.concat([table, pd.DataFrame([dict(
        algorithm="machine (header)", problem="as measured", claim=None, holds=None,
        load_1m=load_1m(), note=header_line(header))])], ignore_index=True)
    table.attrs["machine"] = header
    return table
