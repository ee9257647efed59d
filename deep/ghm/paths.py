"""Affine probability paths for flow matching (TD-Flow background; Lipman et al. 2023; Liu et al. 2023).

X_t = α_t X_1 + β_t X_0 with X_0 ~ N(0, I): the conditional path p_{t|1}(·|x_1) =
N(α_t x_1, β_t² I), the conditional velocity given both ends u_{t|0,1} = α̇_t X_1 + β̇_t X_0, and
given the end only u_{t|1}(x|x_1) = α̇_t x_1 + β̇_t (x − α_t x_1)/β_t (for the straight path
(x_1 − x)/(1 − t), Farebrother et al. 2025, arXiv 2503.09817). Coefficients come from the
shared closed form ``fixpoint_rl.tabular.core.successor.path_coefficients``: ``"straight"`` (OT,
α = t, β = 1 − t) and ``"curved"`` (α = sin(πt/2), β = cos(πt/2), the paper's Table 2 ablation).

Shapes: B batch, d sample dimension; t is [B].
"""

from __future__ import annotations

import dataclasses

import torch

from fixpoint_rl.envs.checks import check_choice
from fixpoint_rl.tabular.core.successor import PATH_KINDS, path_coefficients

__all__ = ["AffinePath"]


@dataclasses.dataclass(frozen=True)
class AffinePath:
    """An affine Gaussian path from N(0, I) at t = 0 to the data at t = 1."""

    kind: str = "straight"

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, PATH_KINDS)

    def coefficients(self, t: torch.Tensor):
        """(α_t, β_t, α̇_t, β̇_t), each shaped like t."""
        return path_coefficients(t, self.kind)

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """X_t = α_t x_1 + β_t x_0: [B, d]."""
        alpha, beta, _, _ = self.coefficients(t)
        return alpha[:, None] * x1 + beta[:, None] * x0

    def endpoint_velocity(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """u_{t|0,1} = α̇_t x_1 + β̇_t x_0 (= x_1 − x_0 on the straight path): [B, d].

        Along X_t = α_t x_1 + β_t x_0 this also equals u_{t|1}(X_t | x_1), the CFM target, without
        the 1/β_t division that is singular at t = 1."""
        _, _, dalpha, dbeta = self.coefficients(t)
        return dalpha[:, None] * x1 + dbeta[:, None] * x0

    def conditional_velocity(self, x: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """u_{t|1}(x | x_1) = α̇_t x_1 + β̇_t (x − α_t x_1)/β_t for t < 1: [B, d]."""
        alpha, beta, dalpha, dbeta = self.coefficients(t)
        return dalpha[:, None] * x1 + (dbeta / beta)[:, None] * (x - alpha[:, None] * x1)
