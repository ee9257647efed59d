"""Small statistics used by benchmarks, figures and tests (numpy only)."""

from __future__ import annotations

import numpy as np

from fixpoint_rl.envs.checks import as_float_array, check_choice, check_int, check_scalar

__all__ = ["loglog_slope"]


def loglog_slope(x, y, *, floor: float = 0.0, min_points: int = 3, too_few: str = "raise") -> float:
    """Least-squares slope of log y against log x, using only points with y > floor and x > 0.

    Used to check convergence rates: a KL curve decaying as O(1/T) has slope ≈ −1, a Monte-Carlo
    error as O(N^{-1/2}) has slope ≈ −½. Points at or below ``floor`` (e.g. float64 round-off or an
    approximation floor) are excluded, since they carry no rate information.

    Valid range: x [C] finite and ≥ 0, y [C] finite (same length), floor any finite real,
    min_points an integer ≥ 2 (a slope needs two points), with at least ``min_points`` points
    having y > floor and x > 0. When fewer remain, ``too_few="raise"`` (default) raises a
    ``ValueError`` naming ``min_points`` and ``floor``; ``too_few="nan"`` returns NaN instead (for
    callers that report "no rate" rather than fail, e.g. a curve that reached its floor at once).
    Inside the range the slope is finite: y ≤ 1.8e308 and x ≤ 1.8e308 have finite logarithms.

    Args:
      x: [C] non-negative abscissae (iterations, sample sizes); x = 0 points are excluded,
        negative x is a ValueError.
      y: [C] errors.
      floor: only points with y > floor are fitted.
      min_points: the fewest usable points a slope is fitted on.
      too_few: "raise" or "nan": what happens with fewer than ``min_points`` usable points.

    Returns:
      The fitted slope (NaN only with ``too_few="nan"`` and too few usable points).
    """
    xs = as_float_array("x", x, ndim=1)
    ys = as_float_array("y", y, ndim=1)
    if ys.shape != xs.shape:
        raise ValueError(f"x and y must have the same length, got shapes {xs.shape} and {ys.shape}")
    floor = check_scalar("floor", floor)
    min_points = check_int("min_points", min_points, low=2)  # a slope needs two points
    too_few = check_choice("too_few", too_few, ("raise", "nan"))
    if np.any(xs < 0):
        raise ValueError(f"x must be non-negative, got minimum {float(xs.min())!r}")
    keep = (ys > floor) & (xs > 0)  # x = 0 (e.g. iteration 0) has no logarithm: excluded
    usable = int(keep.sum())
    if usable < min_points:
        if too_few == "nan":
            return float("nan")
        raise ValueError(
            f"min_points={min_points} usable points needed, got {usable} with y > floor={floor!r} "
            "and x > 0 (pass too_few='nan' to get NaN instead)"
        )
    slope, _ = np.polyfit(np.log(xs[keep]), np.log(ys[keep]), 1)
    return float(slope)
