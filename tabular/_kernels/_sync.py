"""Atomic counters for Numba kernels that keep one parallel region alive over many steps.

Numba exposes no atomics on the CPU target, so these are LLVM intrinsics: ``fetch_add`` (a
sequentially consistent read-modify-write, hence also a release of the caller's earlier writes)
and ``load_acquire`` (an acquire load, so data written before the matching ``fetch_add`` is
visible after it). ``wait_until_at_least`` spins on such a load and falls back to
``sched_yield`` after a few thousand spins, so a waiting thread hands its core back on a loaded
machine instead of burning its time slice.

Used by ``_kernels.nlhf._nash_md_participant`` (each thread runs all T iterations in one call,
work claimed chunk by chunk from a shared counter: no thread ever waits for work that no
running thread has claimed, so it cannot deadlock whatever order the threads start in).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["fetch_add", "load_acquire", "sched_yield", "wait_until_at_least"]


def _element_pointer(context, builder, array_type, array, index):
    array_struct = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, array_struct, [index],
                                    wraparound=False)


@intrinsic
def fetch_add(typingctx, counters, index, value):
    """Atomically add ``value`` to ``counters[index]`` (int64 [n]); returns the previous value."""
    if not (isinstance(counters, types.Array) and counters.dtype == types.int64 and counters.ndim == 1):
        return None
    signature = types.int64(counters, index, value)

    def codegen(context, builder, sig, args):
        array, i, v = args
        pointer = _element_pointer(context, builder, sig.args[0], array, i)
        v = context.cast(builder, v, sig.args[2], types.int64)
        return builder.atomic_rmw("add", pointer, v, "seq_cst")

    return signature, codegen


@intrinsic
def load_acquire(typingctx, counters, index):
    """``counters[index]`` (int64 [n]) read with acquire ordering (never hoisted out of a loop)."""
    if not (isinstance(counters, types.Array) and counters.dtype == types.int64 and counters.ndim == 1):
        return None
    signature = types.int64(counters, index)

    def codegen(context, builder, sig, args):
        array, i = args
        pointer = _element_pointer(context, builder, sig.args[0], array, i)
        return builder.load_atomic(pointer, "acquire", 8)

    return signature, codegen


@intrinsic
def sched_yield(typingctx):
    """The C library's ``sched_yield()`` (POSIX): give the core to another runnable thread."""
    signature = types.int32()

    def codegen(context, builder, sig, args):
        function_type = ir.FunctionType(ir.IntType(32), [])
        function = cgutils.get_or_insert_function(builder.module, function_type, "sched_yield")
        return builder.call(function, [])

    return signature, codegen


SPINS_BEFORE_YIELD = 4096


@njit(cache=True, inline="always")
def wait_until_at_least(counters, index, target):
    """Spin until ``counters[index] ≥ target`` (yielding the core after ``SPINS_BEFORE_YIELD``)."""
    spins = 0
    while load_acquire(counters, index) < target:
        spins += 1
        if spins > SPINS_BEFORE_YIELD:
            sched_yield()
