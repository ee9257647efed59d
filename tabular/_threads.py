"""When to split a Numba kernel over threads, and running a block on a given number of threads.

The parallel kernels (``_kernels.nlhf._run_block_contexts`` / ``_run_block_rows`` /
``run_nash_md_threads``, ``_kernels.mtpo._backward_layers_parallel``) give results that are
bitwise independent of the thread count (each output entry is computed by one thread with the same
code; tested), so this choice changes only the speed. Two threads help on an idle 2-core machine
and hurt badly on a loaded one (a descheduled thread stalls every barrier: measured 0.47 → 24 ms
per Nash-MD iteration at K = 1000 with a load average of 18 on 2 cores), hence the load test below.

How much a Numba ``prange`` region gains also depends on Numba's threading layer, chosen once per
process: measured at K = 1000 (``benchmarks/perf_nlhf.py``), one region per P·π product ran at
67 µs per Nash-MD iteration on two threads with OpenMP but at the one-thread speed (92-96 µs) with
TBB and workqueue, whose second thread did not join regions this short. TBB arrives with MKL (the
``fast`` extra), and Numba prefers it by default, so ``tabular/_kernels/__init__.py`` puts OpenMP
first unless the user chose a layer; single-context Nash-MD in addition uses plain threads
(``_kernels.nlhf.run_nash_md_threads``), which do not depend on the layer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["core_is_free", "parallel_worthwhile", "numba_threads", "blas_threads", "blas_threads_for"]


def core_is_free() -> bool:
    """True when the 1-minute load average is at most (CPU count − ½). Our own running thread
    keeps the load near 1 by itself, so the earlier test "≤ CPU count − 1" refused a second thread
    on an idle 2-core machine whenever the load average was a little above 1 (measured 1.05-1.7
    right after other work); half a core of slack still refuses it whenever another job keeps a
    core busy."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - platform without a load average
        return True
    return load <= (os.cpu_count() or 1) - 0.5


def parallel_worthwhile(work: float, threshold: float) -> bool:
    """True when ``work`` ≥ ``threshold``, Numba has ≥ 2 threads and a core is free
    (:func:`core_is_free`)."""
    import numba

    if work < threshold or numba.get_num_threads() < 2:
        return False
    return core_is_free()


@contextlib.contextmanager
def numba_threads(n: int | None) -> Iterator[None]:
    """Run Numba parallel regions on ``n`` threads inside the block (None: leave it as it is)."""
    if n is None:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


_CONTROLLER = None


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit the BLAS thread pool to ``n`` threads inside the block (None: leave it as it is).

    threadpoolctl's controller is created once (it scans the loaded libraries); entering and
    leaving a limit then costs about 10 µs.
    """
    global _CONTROLLER
    if n is None:
        yield
        return
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=n, user_api="blas"):
        yield


def blas_threads_for(work: float, threshold: float) -> int | None:
    """None (BLAS's own thread count) when ``parallel_worthwhile``, else 1."""
    return None if parallel_worthwhile(work, threshold) else 1
