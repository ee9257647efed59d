"""Small statistics used by benchmarks, figures and tests (numpy only)."""

from __future__ import annotations

import numpy as np

from fixpoint_rl.envs.checks import as_float_array, check_int, check_scalar

__all__ = ["loglog_slope"]


def loglog_slope(x, y, *, floor: float = 0.0, min_points: int = 3) -> float:
    """Least-squares slope of log y against log x, using only points with y > floor and x > 0.

    Used to check convergence rates: a KL curve decaying as O(1/T) has slope ≈ −1, a Monte-Carlo
    error as O(N^{-1/2}) has slope ≈ −½. Points at or below ``floor`` (e.g. float64 round-off or an
    approximation floor) are excluded, since they carry no rate information.

    Args:
      x: [C] non-negative abscissae (iterations, sample sizes); x = 0 points are excluded,
        negative x is a ValueError.
      y: [C] errors.
      floor: only points with y > floor are fitted.
      min_points: return NaN when fewer points remain (no rate can be claimed).

    Returns:
      The fitted slope, or NaN if fewer than ``min_points`` usable points.
    """
    xs = as_float_array("x", x, ndim=1)
    ys = as_float_array("y", y, ndim=1)
    if ys.shape != xs.shape:
        raise ValueError(f"x and y must have the same length, got shapes {xs.shape} and {ys.shape}")
    floor = check_scalar("floor", floor)
    min_points = check_int("min_points", min_points, low=2)  # a slope needs two points
    if np.any(xs < 0):
        raise ValueError(f"x must be non-negative, got minimum {float(xs.min())!r}")
    keep = (ys > floor) & (xs > 0)  # x = 0 (e.g. iteration 0) has no logarithm: excluded
    if int(keep.sum()) < min_points:
        return float("nan")
    slope, _ = np.polyfit(np.log(xs[keep]), np.log(ys[keep]), 1)
    return float(slope)
