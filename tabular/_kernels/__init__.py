"""Numba kernels (``@njit(cache=True)`` functions of float64 arrays) behind the tabular solvers.

Threading layer. Numba picks the first available of ``THREADING_LAYER_PRIORITY``, by default
TBB first. TBB arrives with Intel MKL (the ``fast`` extra installs pypardiso, which depends on MKL),
and with TBB the short ``prange`` regions of these kernels never got a second thread: Nash-MD at
K = 1000 took 92–96 µs per iteration on two threads, the same as on one, against 67 µs with the
OpenMP layer (fastest of ≥ 100 samples, same run; ``python -m fixpoint_rl.benchmarks perf nlhf``
records the layer in its header). So unless the user chose a layer (``NUMBA_THREADING_LAYER`` or
``NUMBA_THREADING_LAYER_PRIORITY``), OpenMP is preferred, then TBB, then the portable workqueue:
the kernels then behave the same whether or not MKL is installed. Results do not depend on the
layer (every parallel kernel is bitwise independent of the thread count, tested).
"""

from __future__ import annotations

import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
