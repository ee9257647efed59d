"""The analytic vector field of the TD-Flow fixed point on the closed-form problems (torch).

By TD-Flow Theorem 1 / Corollary 1 (Farebrother et al. 2025, arXiv 2503.09817) every variant
converges to the Monte-Carlo CFM path m_t(·|s, a) = ∫ p_{t|1}(·|x_1) m^π(dx_1|s, a); when m^π
is a Gaussian mixture its marginal velocity is known in closed form
(``fixpoint_rl.tabular.core.successor.gaussian_mixture_path``). :class:`AnalyticField` evaluates
it for conditioning inputs cond = (s, a) of a :class:`~fixpoint_rl.envs.ghm_tasks.TabularEmbedding`
or a :class:`~fixpoint_rl.envs.ghm_tasks.LinearGaussianSystem`, with the call signature of a
learned field, so it can stand in for a perfectly trained (target) network: as the exact target in
the gradient-variance study (Theorems 2–3 assume exactly such a Gaussian-smoothed previous path),
as the reference a learned field is compared with, and to check the fixed-point identity.

Shapes: x [B, d], t [B], cond [B, c] → [B, d].
"""

from __future__ import annotations

import numpy as np
import torch

from fixpoint_rl.envs.checks import check_choice, check_scalar
from fixpoint_rl.tabular.core.successor import PATH_KINDS, gaussian_mixture_path

__all__ = ["AnalyticField", "StraightGaussianField"]


class AnalyticField:
    """u*_t(x | s, a), the marginal velocity of the smoothed successor measure (a callable).

    Args:
      problem: a ``TabularEmbedding`` (cond = (embedding[s], one-hot a); s and a are recovered by
        argmax, so the embedding must be one-hot) or a ``LinearGaussianSystem``
        (cond = (s, a)).
      kind: path kind, ``"straight"`` or ``"curved"``.
      tol: truncation of the linear-Gaussian series (omitted mass γ^K ≤ tol).
      dtype: torch dtype of the computation.
    """

    def __init__(self, problem, kind: str = "straight", *, tol: float = 1e-6,
                 dtype: torch.dtype = torch.float64) -> None:
        from fixpoint_rl.envs.ghm_tasks import LinearGaussianSystem, TabularEmbedding

        self.kind = check_choice("kind", kind, PATH_KINDS)
        self.problem = problem
        self.dtype = dtype
        check_scalar("tol", tol, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        if isinstance(problem, TabularEmbedding):
            if not np.array_equal(problem.embedding, np.eye(problem.num_states)):
                raise ValueError("AnalyticField needs the one-hot embedding of a TabularEmbedding")
            S, A = problem.num_states, problem.num_actions
            self._weights = torch.tensor(problem.successor_measure().reshape(S * A, S), dtype=dtype)
            self._means = torch.tensor(problem.embedding, dtype=dtype)
            self._covs = torch.tensor(problem.noise_std**2 * np.broadcast_to(
                np.eye(S), (S, S, S)).copy(), dtype=dtype)
            self._tabular = True
        elif isinstance(problem, LinearGaussianSystem):
            K = problem.series_length(tol)
            w, _, covs = problem.successor_mixture(np.zeros((1, problem.dim)), tol=tol)
            self._weights = torch.tensor(w, dtype=dtype)
            self._covs = torch.tensor(covs, dtype=dtype)
            powers = [np.eye(problem.dim)]
            for _ in range(K - 1):
                powers.append(problem.F @ powers[-1])
            self._powers = torch.tensor(np.stack(powers), dtype=dtype)   # [K, d, d] F^{k−1}
            self._A = torch.tensor(problem.A, dtype=dtype)
            self._B = torch.tensor(problem.B, dtype=dtype)
            self._tabular = False
        else:
            raise ValueError(
                f"problem must be a TabularEmbedding or LinearGaussianSystem, got {type(problem).__name__}"
            )
        self.dim = problem.dim

    def mixture(self, cond: torch.Tensor):
        """(weights [B, K] or [K], means [K, d] or [B, K, d], covs [K, d, d]) of m^π(·|cond)."""
        cond = cond.to(self.dtype)
        if self._tabular:
            S = self.problem.num_states
            index = cond[:, :S].argmax(1) * self.problem.num_actions + cond[:, S:].argmax(1)
            return self._weights[index], self._means, self._covs
        d = self.problem.dim
        y = cond[:, :d] @ self._A.T + cond[:, d:] @ self._B.T          # [B, d]
        means = torch.einsum("kij,bj->bki", self._powers, y)           # F^{k−1} y
        return self._weights, means, self._covs

    def log_density(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """log m_t(x | cond) of the smoothed successor measure: [B]."""
        w, mu, cov = self.mixture(cond)
        return gaussian_mixture_path(x.to(self.dtype), t.to(self.dtype), w, mu, cov, self.kind)[0]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        w, mu, cov = self.mixture(cond)
        velocity = gaussian_mixture_path(x.to(self.dtype), t.to(self.dtype), w, mu, cov, self.kind)[1]
        return velocity.to(x.dtype)


class StraightGaussianField:
    """A field whose trajectories are straight lines: ψ_t(x_0) = (1−t) x_0 + t (μ(cond) + S x_0).

    With S symmetric positive definite, x_0 ↦ μ + S x_0 is the optimal transport map from N(0, I)
    to N(μ, S²), its straight interpolants never intersect, and the field generating them is
    v(x, t) = μ + (S − I)((1−t)I + tS)^{-1}(x − tμ). This is the setting of TD-Flow Theorem 3's
    equality case: the coupled interpolant (X_0, ψ_1(X_0)) of TD-CFM(C) and the partial flow
    ψ_t(X_0) of TD²-CFM then coincide, and so do their regression targets.

    Args:
      mean: callable cond [B, c] → μ [B, d].
      scale: [d, d] symmetric positive definite S.
    """

    def __init__(self, mean, scale, *, dtype: torch.dtype = torch.float64) -> None:
        S = np.asarray(scale, dtype=np.float64)
        if S.ndim != 2 or S.shape[0] != S.shape[1] or not np.allclose(S, S.T) or \
                np.linalg.eigvalsh(S).min() <= 0:
            raise ValueError(f"scale must be a symmetric positive definite matrix, got {S!r}")
        self.mean = mean
        self.scale = torch.tensor(S, dtype=dtype)
        self.dim = S.shape[0]
        self.dtype = dtype

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        mu = self.mean(cond).to(self.dtype)
        eye = torch.eye(self.dim, dtype=self.dtype)
        tt = t.to(self.dtype)[:, None, None]
        interp = (1 - tt) * eye + tt * self.scale                      # [B, d, d]
        resid = x.to(self.dtype) - tt[:, :, 0] * mu
        solved = torch.linalg.solve(interp, resid[:, :, None])[:, :, 0]
        return (mu + solved @ (self.scale - eye).T).to(x.dtype)
