"""Input validation shared by every public function of fixpoint-rl (numpy only).

Every public function validates its inputs at the Python boundary and raises ``ValueError`` naming
the argument and the offending value, so that bad input never reaches a Numba kernel and never
turns into a silent NaN. The helpers here return the validated value in canonical form
(float64, C-contiguous arrays; Python scalars), which also means every kernel compiles once.

This module lives in ``fixpoint_rl.envs`` because it is the bottom layer (numpy only): problem
specifications, tabular solvers and deep code all import it.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "as_float_array",
    "as_generator",
    "check_bool",
    "check_choice",
    "check_distribution",
    "check_indices",
    "check_int",
    "check_scalar",
    "check_size_budget",
    "describe",
    "reject_complex",
]

# Tolerance for "sums to one": float64 sums of up to ~10^6 terms carry rounding error far below
# this, while any genuine modelling mistake (a missing branch, an unnormalised row) is far above.
SUM_TOLERANCE = 1e-9


def describe(value: Any, limit: int = 120) -> str:
    """A short, one-line, readable description of ``value`` for error messages.

    Numbers print plainly (``0.0``, not ``np.float64(0.0)``); small arrays print on one line
    (``[[1.0, 2.0], [3.0, 4.0]]``), larger ones by shape and dtype; never a multi-line dump.
    """
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_, np.void)):
        value = value.item()  # numpy scalar → the Python number it holds
    if isinstance(value, np.ndarray):
        if value.size <= 8 and value.dtype.kind in "biufc":
            text = np.array2string(value, precision=6, separator=", ", max_line_width=10**6)
            text = " ".join(text.split())  # one line, single spaces
        else:
            text = f"array(shape={value.shape}, dtype={value.dtype})"
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = repr(value)
        text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_float_array(
    name: str,
    value: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    finite: bool = True,
    nonnegative: bool = False,
    copy: bool = False,
) -> np.ndarray:
    """Convert ``value`` to a C-contiguous float64 array, or raise ``ValueError`` naming ``name``.

    Args:
      name: argument name used in the error message.
      value: array-like input.
      ndim: required number of dimensions (an int or a collection of allowed ints).
      shape: required shape; ``None`` entries are free.
      finite: reject NaN and ±inf.
      nonnegative: reject negative entries.
      copy: always return a fresh array (so frozen specs cannot be mutated from outside).
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"{name} must be an array of numbers, got {describe(value)}")
    reject_complex(name, value)
    try:
        array = np.array(value, dtype=np.float64, copy=True if copy else None, order="C")
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array of numbers, got {describe(value)}") from error
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if array.ndim not in allowed:
            expected = " or ".join(str(d) for d in allowed)
            raise ValueError(
                f"{name} must have {expected} dimensions, got shape {array.shape}"
            )
    if shape is not None:
        if array.ndim != len(shape) or any(
            want is not None and want != got for want, got in zip(shape, array.shape)
        ):
            want = tuple("?" if s is None else s for s in shape)
            raise ValueError(f"{name} must have shape {want}, got shape {array.shape}")
    if finite and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no NaN or inf), got {describe(array)}")
    if nonnegative and np.any(array < 0):
        raise ValueError(f"{name} must be non-negative, got minimum {describe(array.min())}")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array


def check_distribution(
    name: str,
    value: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    full_support: bool = False,
    atol: float = SUM_TOLERANCE,
    copy: bool = False,
) -> np.ndarray:
    """Validate probability vectors along the last axis: finite, ≥ 0, summing to 1 within ``atol``.

    Args:
      full_support: additionally require every entry to be > 0 (e.g. a reference policy μ that
        appears inside a logarithm or a KL).

    Returns:
      The float64 array (not renormalised: a distribution off by more than rounding is an error).
    """
    array = as_float_array(name, value, ndim=ndim, shape=shape, copy=copy)
    if array.ndim == 0 or array.shape[-1] == 0:
        raise ValueError(f"{name} must be a non-empty distribution, got shape {array.shape}")
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative, got minimum {describe(array.min())}")
    totals = array.sum(axis=-1)
    worst = float(np.max(np.abs(totals - 1.0)))
    if worst > atol:
        raise ValueError(
            f"{name} must sum to 1 along its last axis, got sums off by up to {worst:.3g}"
        )
    if full_support and np.any(array <= 0):
        raise ValueError(
            f"{name} must have full support (every entry > 0), got minimum {describe(array.min())}"
        )
    return array


def check_scalar(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Validate a finite real scalar inside an interval; returns it as a Python float."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        if not (isinstance(value, np.ndarray) and value.ndim == 0):
            raise ValueError(f"{name} must be a real number, got {describe(value)}")
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number!r}")
    if low is not None and (number < low or (not low_inclusive and number == low)):
        bracket = "[" if low_inclusive else "("
        upper = "inf" if high is None else describe(high)
        close = "]" if (high is not None and high_inclusive) else ")"
        raise ValueError(
            f"{name} must lie in {bracket}{describe(low)}, {upper}{close}, got {number!r}"
        )
    if high is not None and (number > high or (not high_inclusive and number == high)):
        bracket = "[" if low_inclusive else "("
        lower = "-inf" if low is None else describe(low)
        close = "]" if high_inclusive else ")"
        raise ValueError(
            f"{name} must lie in {bracket}{lower}, {describe(high)}{close}, got {number!r}"
        )
    return number


def reject_complex(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` if ``value`` holds complex numbers.

    numpy would otherwise drop the imaginary part with only a ``ComplexWarning`` when converting
    to float64 (or the array-API helpers would silently return complex output).
    """
    if isinstance(value, (complex, np.complexfloating)) or (
        not isinstance(value, (str, bytes, numbers.Real)) and _holds_complex(value)
    ):
        raise ValueError(f"{name} must be real, got complex values {describe(value)}")


def _holds_complex(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return np.iscomplexobj(value)
    if hasattr(value, "dtype"):  # torch tensors and other array-likes
        return "complex" in str(value.dtype)
    if isinstance(value, (list, tuple)):
        try:
            return np.iscomplexobj(np.asarray(value))
        except (TypeError, ValueError):
            return False
    return False


def check_bool(name: str, value: Any) -> bool:
    """Validate a boolean flag: only ``True``/``False`` (or numpy bools), never ``'no'``, 0/1, None."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


# Work and memory limits for caller-chosen sizes. The tabular solvers run ~10⁸ elementary steps a
# second on one core, so 10¹¹ steps is already ~20 minutes to hours; 8 GiB is more than any
# problem of this package needs. Sizes above these are refused up front, with the estimate.
WORK_BUDGET = 1e11
MEMORY_BUDGET_BYTES = 8 * 2**30


def check_size_budget(
    name: str,
    value: Any,
    *,
    work: float | None = None,
    memory_bytes: float | None = None,
    work_budget: float = WORK_BUDGET,
    memory_budget: float = MEMORY_BUDGET_BYTES,
) -> None:
    """Refuse a size argument that would run for hours or exhaust memory, before any work.

    Args:
      name: the argument whose value drives the cost (named in the message with its value).
      value: its value (for the message).
      work: estimated number of elementary steps (e.g. iterations · K² · X), as a float so that
        products of huge sizes never overflow.
      memory_bytes: estimated peak memory of the arrays the call allocates.
    """
    if work is not None and float(work) > work_budget:
        hours = float(work) / 1e8 / 3600
        raise ValueError(
            f"{name}={describe(value)} would need about {float(work):.2g} elementary steps "
            f"(≈ {hours:.2g} h at 10⁸ steps/s), above the limit of {work_budget:.0e}; reduce {name}"
        )
    if memory_bytes is not None and float(memory_bytes) > memory_budget:
        raise ValueError(
            f"{name}={describe(value)} would need about {float(memory_bytes) / 2**30:.3g} GiB of "
            f"memory, above the limit of {memory_budget / 2**30:.3g} GiB; reduce {name}"
        )


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Validate an integer (bools rejected) in [low, high]; returns a Python int."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer, got {describe(value)}")
    number = int(value)
    if low is not None and number < low:
        raise ValueError(f"{name} must be ≥ {low}, got {number}")
    if high is not None and number > high:
        raise ValueError(f"{name} must be ≤ {high}, got {number}")
    return number


def check_indices(
    name: str, value: Any, *, upper: int, min_size: int = 1, shape: Sequence[int] | None = None
) -> np.ndarray:
    """Validate a 1-D integer array of indices in [0, upper) (e.g. sampled responses or actions).

    Args:
      upper: number of valid indices (K responses, C chains of thought, ...).
      min_size: least number of entries (e.g. 2 for leave-one-out baselines).
      shape: exact shape required instead of 1-D with ``min_size`` entries.

    Returns:
      The indices as an int64 array.
    """
    array = np.asarray(value)
    wrong_shape = array.shape != tuple(shape) if shape is not None else (
        array.ndim != 1 or array.size < min_size
    )
    if (
        wrong_shape
        or not np.issubdtype(array.dtype, np.integer)
        or array.min() < 0
        or array.max() >= upper
    ):
        want = f"shape {tuple(shape)}" if shape is not None else f"≥ {min_size} entries"
        raise ValueError(
            f"{name} must be a 1-D integer array ({want}) of indices in [0, {upper - 1}], "
            f"got {describe(value)}"
        )
    return array.astype(np.int64)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Validate that ``value`` is one of ``choices``."""
    options = tuple(choices)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {options}, got {describe(value)}")
    return value


def as_generator(name: str, seed: Any) -> np.random.Generator:
    """A ``np.random.Generator`` from an int seed or an existing Generator (never global state).

    Numba kernels do not see ``np.random.seed``; pass the returned Generator into kernels.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an int or a numpy Generator, got {describe(seed)}")
    if int(seed) < 0:
        raise ValueError(f"{name} must be non-negative, got {int(seed)}")
    return np.random.default_rng(int(seed))
