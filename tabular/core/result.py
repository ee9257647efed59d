"""The one result type returned by every iterative solver in fixpoint-rl.

Every solver (Nash-MD, MTPO, distributional operator iteration, DCFP drivers, bandit trainers)
returns a :class:`SolverResult`: the final iterate, per-checkpoint metrics, wall time with Numba
compile time reported separately, and the configuration that produced it. Solvers return data;
they never print.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from fixpoint_rl.envs.checks import as_float_array, check_scalar, describe

__all__ = ["SolverResult"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SolverResult:
    """Outcome of an iterative solver.

    Attributes:
      final: the last iterate (a policy [K], [X, K], [H, S, A], a distribution [S, A, M], …).
      metrics: per-checkpoint columns, each a 1-D array of length C (number of checkpoints). Always
        contains ``"iteration"``; usually ``"kl"`` (KL from the reference solution to the iterate)
        and ``"exploitability"``, plus solver-specific columns.
      wall_time_s: seconds spent running the solver, excluding Numba compilation.
      compile_time_s: seconds spent compiling (or loading from cache) Numba kernels for this call.
      config: the solver name and every argument that determines the numbers (seed included).
      extras: further named outputs (average iterate, reference solution, fitted rewards, …).

    Valid range: wall_time_s and compile_time_s finite ≥ 0; final a finite real array; metrics a
    mapping of equal-length 1-D arrays including 'iteration'.
    """

    final: np.ndarray
    metrics: Mapping[str, np.ndarray]
    wall_time_s: float
    compile_time_s: float
    config: Mapping[str, Any]
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # every field validated, naming it: a result never carries a NaN iterate, a negative or
        # non-finite time, or metrics that are not a mapping of equal-length columns
        as_float_array("final", self.final)  # finite real numbers (checked, stored unchanged)
        if not isinstance(self.metrics, Mapping):
            raise ValueError(f"metrics must be a mapping name -> [C] array, got {describe(self.metrics)}")
        check_scalar("wall_time_s", self.wall_time_s, low=0.0)
        check_scalar("compile_time_s", self.compile_time_s, low=0.0)
        if not isinstance(self.config, Mapping):
            raise ValueError(f"config must be a mapping, got {describe(self.config)}")
        if "iteration" not in self.metrics:
            raise ValueError(f"metrics must contain 'iteration', got keys {sorted(self.metrics)}")
        lengths = {key: np.shape(column) for key, column in self.metrics.items()}
        if len({shape for shape in lengths.values()}) > 1:
            raise ValueError(f"metrics columns must have equal lengths, got {lengths}")

    @property
    def iterations(self) -> np.ndarray:
        """Checkpoint iterations [C]."""
        return np.asarray(self.metrics["iteration"])

    def metric(self, name: str) -> np.ndarray:
        """One metric column [C]; raises ``ValueError`` naming the metric if absent."""
        if name not in self.metrics:
            raise ValueError(f"name must be one of {sorted(self.metrics)}, got {name!r}")
        return np.asarray(self.metrics[name])

    def last(self, name: str) -> float:
        """The metric at the final checkpoint."""
        return float(self.metric(name)[-1])

    def to_frame(self):
        """Per-checkpoint metrics as a pandas DataFrame (one row per checkpoint)."""
        import pandas as pd

        return pd.DataFrame({key: np.asarray(value) for key, value in self.metrics.items()})
