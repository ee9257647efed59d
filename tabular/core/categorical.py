"""Categorical (C51) representation of possibly signed measures: backend-neutral closed forms.

Written once against the array API (``array_api_compat``): the same functions run on numpy arrays
(tabular code, outside Numba) and on torch tensors (deep C51 agents; gradients flow). Numba
kernels carry the scalar-loop twin in ``fixpoint_rl.tabular._kernels.categorical`` (scatter form),
tied to :func:`categorical_projection` by a parity test.

Notation (distributional.md §1; shapes: M atoms, N source atoms, leading batch dims allowed):
  support   evenly spaced atoms z_i = v_min + iΔ, i = 0..M−1, Δ = (v_max − v_min)/(M − 1)
  mass      [..., M] weights of Σ_i mass_i δ_{z_i}; MAY BE NEGATIVE (signed measures, e.g. the
            Q(λ) targets); need not sum to 1 unless stated
  probs     [..., M] non-negative weights summing to 1 (only where this is guaranteed)
  cdf       [..., M] F_i = Σ_{k≤i} mass_k (F_{M−1} = total mass)

Formulas:
  Π_C δ_y = Σ_i h_i(ȳ) δ_{z_i},  ȳ = clip(y, v_min, v_max),  h_i(y) = max(0, 1 − |y − z_i|/Δ),
  extended linearly to signed mixtures (Bellemare et al. 2017 Eq. 7; dopamine hat-matrix form);
  ℓ2²(p, q) = Δ Σ_{i<M−1} (F_i − G_i)² and W1(p, q) = Δ Σ_{i<M−1} |F_i − G_i| on the grid;
  pushforward b_{r,γ}: z ↦ r + γ z.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from ...envs.checks import as_float_array, check_int, check_scalar

__all__ = [
    "CategoricalSupport",
    "categorical_projection",
    "cramer_distance",
    "distribution_mean",
    "from_cdf",
    "projection_matrix",
    "pushforward",
    "to_cdf",
    "wasserstein1",
]


@dataclasses.dataclass(frozen=True)
class CategoricalSupport:
    """M evenly spaced atoms z_i = v_min + iΔ on [v_min, v_max] (frozen, validated).

    Attributes:
      v_min, v_max: end atoms, v_min < v_max (finite).
      m: number of atoms M ≥ 2.
    """

    v_min: float
    v_max: float
    m: int

    def __post_init__(self) -> None:
        v_min = check_scalar("v_min", self.v_min)
        v_max = check_scalar("v_max", self.v_max)
        m = check_int("m", self.m, low=2)
        if not v_max > v_min:
            raise ValueError(
                f"support must be increasing: v_max must exceed v_min, got v_min={v_min!r}, "
                f"v_max={v_max!r}"
            )
        object.__setattr__(self, "v_min", v_min)
        object.__setattr__(self, "v_max", v_max)
        object.__setattr__(self, "m", m)

    @classmethod
    def from_atoms(cls, atoms) -> "CategoricalSupport":
        """Build from an explicit atom array [M]; it must be strictly increasing and evenly spaced."""
        atoms = as_float_array("atoms", atoms, ndim=1)
        if atoms.shape[0] < 2:
            raise ValueError(f"atoms must hold at least 2 atoms, got shape {atoms.shape}")
        gaps = np.diff(atoms)
        if np.any(gaps <= 0):
            raise ValueError(f"atoms must be strictly increasing, got minimum gap {gaps.min()!r}")
        support = cls(float(atoms[0]), float(atoms[-1]), int(atoms.shape[0]))
        if np.max(np.abs(atoms - support.atoms)) > 1e-9 * max(1.0, np.max(np.abs(atoms))):
            raise ValueError("atoms must be evenly spaced")
        return support

    @property
    def delta(self) -> float:
        """Spacing Δ = (v_max − v_min)/(M − 1)."""
        return (self.v_max - self.v_min) / (self.m - 1)

    @property
    def atoms(self) -> np.ndarray:
        """Atoms [M] (float64 numpy), z_i = v_min + iΔ; the last one is exactly v_max."""
        z = self.v_min + self.delta * np.arange(self.m, dtype=np.float64)
        z[-1] = self.v_max
        return z

    def atoms_like(self, x):
        """The atoms [M] as an array of ``x``'s namespace, dtype and device (numpy or torch)."""
        xp = array_namespace(x)
        return xp.asarray(self.atoms, dtype=x.dtype, device=array_device(x))

    def dirac(self, index: int) -> np.ndarray:
        """probs [M] of δ_{z_index}."""
        index = check_int("index", index, low=0, high=self.m - 1)
        out = np.zeros(self.m)
        out[index] = 1.0
        return out


def _checked(name: str, x, *, last_dim: int | None = None):
    """Validate an array argument on any array-API backend: ≥ 1 dimension, finite entries, and
    (optionally) a given last dimension. Python lists and scalars become float64 numpy arrays.
    Raises ``ValueError`` naming the argument (bad input never turns into a silent NaN)."""
    try:
        array_namespace(x)
    except TypeError:
        x = as_float_array(name, x)
    xp = array_namespace(x)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension, got a scalar")
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if last_dim is not None and x.shape[-1] != last_dim:
        raise ValueError(f"{name} must have last dimension {last_dim}, got shape {tuple(x.shape)}")
    return x


def _same_shape(name_a: str, a, name_b: str, b) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )


def _check_support(support) -> CategoricalSupport:
    if not isinstance(support, CategoricalSupport):
        raise ValueError(f"support must be a CategoricalSupport, got {type(support).__name__}")
    return support


def projection_matrix(atoms_src, support: CategoricalSupport):
    """Hat matrix H [..., N, M], H[..., j, i] = h_i(clip(y_j)) = clip(1 − |ȳ_j − z_i|/Δ, 0, 1).

    Π_C(Σ_j w_j δ_{y_j}) = Σ_j w_j H[j, :]. Each row sums to 1 (mass preservation).
    """
    support = _check_support(support)
    atoms_src = _checked("atoms_src", atoms_src)
    xp = array_namespace(atoms_src)
    z = support.atoms_like(atoms_src)
    y = xp.clip(atoms_src, support.v_min, support.v_max)
    dist = xp.abs(y[..., :, None] - z) / support.delta
    return xp.clip(1.0 - dist, 0.0, 1.0)


def categorical_projection(atoms_src, mass, support: CategoricalSupport):
    """Categorical (C51) projection of a possibly signed measure onto the support.

    Π_C(Σ_j w_j δ_{y_j}) = Σ_j w_j Σ_i h_i(clip(y_j, v_min, v_max)) δ_{z_i}
    (distributional.md §1; linear in ``mass`` — weights need not be probabilities).

    Args:
      atoms_src: [..., N] source locations y_j (any real numbers; out-of-range ones are clipped,
        so their mass goes to the end atoms).
      mass: [..., N] source weights w_j. May be negative; need not sum to 1.
      support: the target grid (M atoms).

    Returns:
      mass [..., M]. Total mass is preserved exactly; the mean is preserved when every y_j lies
      in [v_min, v_max]; atoms on the grid (including both ends) are reproduced exactly.
    """
    atoms_src = _checked("atoms_src", atoms_src)
    mass = _checked("mass", mass)
    _same_shape("atoms_src", atoms_src, "mass", mass)
    xp = array_namespace(atoms_src, mass)
    H = projection_matrix(atoms_src, support)  # [..., N, M]
    return xp.sum(H * mass[..., :, None], axis=-2)


def pushforward(atoms, reward, gamma):
    """Atoms of (b_{r,γ})_# ν: z ↦ r + γ z.

    Args:
      atoms: [..., M] atom locations (e.g. ``support.atoms``).
      reward: scalar or [...] rewards (broadcast against the leading dims of ``atoms``).
      gamma: discount γ ≥ 0 (scalar).

    Returns:
      [..., M] new atom locations r + γ z (pair them with the same mass, then project).
    """
    atoms = _checked("atoms", atoms)
    xp = array_namespace(atoms)
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0)
    if isinstance(reward, (int, float)):
        check_scalar("reward", reward)
        return reward + gamma * atoms
    reward = xp.asarray(reward, dtype=atoms.dtype)
    if not bool(xp.all(xp.isfinite(reward))):
        raise ValueError("reward must be finite (no NaN or inf)")
    return reward[..., None] + gamma * atoms


def to_cdf(mass):
    """CDF coordinates F_i = Σ_{k≤i} mass_k along the last axis: [..., M] → [..., M]."""
    mass = _checked("mass", mass)
    xp = array_namespace(mass)
    return xp.cumulative_sum(mass, axis=-1)


def from_cdf(cdf):
    """Inverse of :func:`to_cdf`: mass_0 = F_0, mass_i = F_i − F_{i−1}. [..., M] → [..., M]."""
    cdf = _checked("cdf", cdf)
    xp = array_namespace(cdf)
    first = cdf[..., :1]
    return xp.concat([first, cdf[..., 1:] - cdf[..., :-1]], axis=-1)


def distribution_mean(mass, support: CategoricalSupport):
    """Σ_i mass_i z_i, shape [..., M] → [...] (the mean when the total mass is 1)."""
    support = _check_support(support)
    mass = _checked("mass", mass, last_dim=support.m)
    xp = array_namespace(mass)
    return xp.sum(mass * support.atoms_like(mass), axis=-1)


def _merged_cdf_gaps(atoms_p, mass_p, atoms_q, mass_q):
    """Sorted merged support: (F_p − F_q) on each gap [..., N+K−1] and the gap widths."""
    xp = array_namespace(atoms_p, mass_p, atoms_q, mass_q)
    shape_p = mass_p.shape
    shape_q = mass_q.shape
    atoms_p = atoms_p + xp.zeros(shape_p, dtype=mass_p.dtype)
    atoms_q = atoms_q + xp.zeros(shape_q, dtype=mass_q.dtype)
    lead = np.broadcast_shapes(tuple(shape_p[:-1]), tuple(shape_q[:-1]))
    atoms_p = xp.broadcast_to(atoms_p, (*lead, shape_p[-1]))
    mass_p = xp.broadcast_to(mass_p, (*lead, shape_p[-1]))
    atoms_q = xp.broadcast_to(atoms_q, (*lead, shape_q[-1]))
    mass_q = xp.broadcast_to(mass_q, (*lead, shape_q[-1]))
    x = xp.concat([atoms_p, atoms_q], axis=-1)
    w = xp.concat([mass_p, -mass_q], axis=-1)
    order = xp.argsort(x, axis=-1)
    x_sorted = xp.take_along_axis(x, order, axis=-1)
    diff_cdf = xp.cumulative_sum(xp.take_along_axis(w, order, axis=-1), axis=-1)
    return diff_cdf[..., :-1], x_sorted[..., 1:] - x_sorted[..., :-1]


def _cdf_difference(mass_p, mass_q, support, atoms_p, atoms_q):
    """Validated F_p − F_q on each interval between consecutive atoms, and the interval widths.

    On a grid (``support``): ([..., M−1] differences, the scalar Δ). Between arbitrary discrete
    measures (``atoms_p``, ``atoms_q``): ([..., N+K−1] differences, [..., N+K−1] gaps) over the
    merged sorted support. Both distances below are integrals of a function of this difference.
    """
    if support is not None:
        if atoms_p is not None or atoms_q is not None:
            raise ValueError("pass either support or atoms_p/atoms_q, not both")
        support = _check_support(support)
        mass_p = _checked("mass_p", mass_p, last_dim=support.m)
        mass_q = _checked("mass_q", mass_q, last_dim=support.m)
        return to_cdf(mass_p - mass_q)[..., :-1], support.delta
    if atoms_p is None or atoms_q is None:
        raise ValueError("atoms_p and atoms_q are required when support is None")
    return _merged_cdf_gaps(
        _checked("atoms_p", atoms_p), _checked("mass_p", mass_p),
        _checked("atoms_q", atoms_q), _checked("mass_q", mass_q),
    )


def cramer_distance(mass_p, mass_q, support=None, *, atoms_p=None, atoms_q=None, squared=False):
    """Cramér (ℓ2) distance ℓ2(p, q) = (∫ (F_p − F_q)²)^{1/2} between equal-mass (signed) measures.

    On a grid (``support`` given): ℓ2² = Δ Σ_{i<M−1} (F_i − G_i)² (distributional.md §1).
    Between arbitrary discrete measures (``atoms_p`` [..., N], ``atoms_q`` [..., K] given instead):
    exact integral over the merged, sorted support.

    Args:
      mass_p: [..., M] (or [..., N]) masses of p (may be signed).
      mass_q: [..., M] (or [..., K]) masses of q, same total mass as p.
      squared: return ℓ2² instead of ℓ2.

    Returns:
      [...] distances.
    """
    diff, width = _cdf_difference(mass_p, mass_q, support, atoms_p, atoms_q)
    xp = array_namespace(diff)
    if support is not None:
        sq = width * xp.sum(diff * diff, axis=-1)
    else:
        sq = xp.sum(diff * diff * width, axis=-1)
    return sq if squared else xp.sqrt(xp.clip(sq, 0.0, None))


def wasserstein1(mass_p, mass_q, support=None, *, atoms_p=None, atoms_q=None):
    """W1(p, q) = ∫ |F_p − F_q| between equal-mass (signed) measures.

    On a grid (``support`` given): Δ Σ_{i<M−1} |F_i − G_i|. Between arbitrary discrete measures
    (``atoms_p`` [..., N], ``atoms_q`` [..., K]): exact integral over the merged sorted support.

    Returns:
      [...] distances.
    """
    diff, width = _cdf_difference(mass_p, mass_q, support, atoms_p, atoms_q)
    xp = array_namespace(diff)
    if support is not None:
        return width * xp.sum(xp.abs(diff), axis=-1)
    return xp.sum(xp.abs(diff) * width, axis=-1)
