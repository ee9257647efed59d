"""Numba helpers: compile-time accounting for the common result type.

Solvers report Numba compilation (or cache loading) separately from run time. Call
:func:`compile_for` on each kernel with the exact arguments it will receive before starting the
run clock; it compiles the matching specialisation (or loads it from the on-disk cache) and returns
the seconds spent. Kernels are ``@njit(cache=True)`` and never receive jitted functions as
arguments (that defeats the cache).
"""

from __future__ import annotations

import time

import numba

__all__ = ["compile_for", "Stopwatch"]


def compile_for(dispatcher, *args) -> float:
    """Compile ``dispatcher`` for the types of ``args`` (no call is made); return seconds spent."""
    signature = tuple(numba.typeof(arg) for arg in args)
    start = time.perf_counter()
    dispatcher.compile(signature)
    return time.perf_counter() - start


class Stopwatch:
    """Accumulates compile and run seconds for one solver call.

    Example::

        clock = Stopwatch()
        clock.compile(_nash_md_kernel, pi, ref, pref, eta)
        with clock.running():
            out = _nash_md_kernel(pi, ref, pref, eta)
        result = SolverResult(..., wall_time_s=clock.wall_s, compile_time_s=clock.compile_s)
    """

    def __init__(self) -> None:
        self.compile_s = 0.0
        self.wall_s = 0.0

    def compile(self, dispatcher, *args) -> None:
        self.compile_s += compile_for(dispatcher, *args)

    def running(self) -> "_Running":
        return _Running(self)


class _Running:
    def __init__(self, watch: Stopwatch) -> None:
        self._watch = watch
        self._start = 0.0

    def __enter__(self) -> "_Running":
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._watch.wall_s += time.perf_counter() - self._start
