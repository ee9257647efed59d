"""Categorical (C51) representation of possibly signed measures: backend-neutral closed forms.

Written once against the array API (``array_api_compat``): the same functions run on numpy arrays
(tabular code, outside Numba) and on torch tensors (deep C51 agents; gradients flow). Numba
kernels carry the scalar-loop twin in ``fixpoint_rl.tabular._kernels.categorical`` (scatter form),
tied to :func:`categorical_projection` by a parity test.

Notation (Bellemare, Dabney & Munos 2017, arXiv 1707.06887, Eq. 7; Rowland et al. 2018, arXiv 1802.08163; shapes: M atoms, N source atoms, leading batch dims allowed):
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

Valid range: finite real arrays (complex ones are refused), supports with finite v_max − v_min
and m ≤ 2²⁷ atoms, equal total masses for the distances, push-forwards whose images stay finite.
Outside it ``ValueError`` names the argument.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from ...envs.checks import as_float_array, check_bool, check_choice, check_int, check_scalar

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

    Valid range: v_min < v_max, both finite with a finite span v_max − v_min; m ≥ 2 (an int, within
    memory).
    """

    v_min: float
    v_max: float
    m: int

    def __post_init__(self) -> None:
        v_min = check_scalar("v_min", self.v_min)
        v_max = check_scalar("v_max", self.v_max)
        m = check_int("m", self.m, low=2)
        if m > 2**27:  # 1 GiB of float64 atoms, and far more for the [M, M] operators built on them
            raise ValueError(f"m={m} atoms would need {8 * m / 2**30:.3g} GiB for the atoms alone "
                             f"(and O(M²) for projection matrices); the limit is 2**27; reduce m")
        if not v_max > v_min:
            raise ValueError(
                f"support must be increasing: v_max must exceed v_min, got v_min={v_min!r}, "
                f"v_max={v_max!r}"
            )
        if not np.isfinite(v_max - v_min):
            raise ValueError(
                f"v_max − v_min must be finite (the atom spacing overflows), got v_min={v_min!r}, "
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
    if not xp.isdtype(x.dtype, ("real floating", "integral")):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
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
        hint = ""
        if hasattr(support, "shape") or isinstance(support, (list, tuple)):
            hint = (" (measures on their own atoms: pass atoms_p=/atoms_q= by keyword, or use "
                    "sup_wasserstein1(atoms_p, probs_p, atoms_q, probs_q) — locations before "
                    "weights; evenly spaced atoms: CategoricalSupport.from_atoms)")
        raise ValueError(
            f"support must be a CategoricalSupport, got {type(support).__name__}{hint}"
        )
    return support


def projection_matrix(atoms_src, support: CategoricalSupport):
    """Hat matrix H [..., N, M], H[..., j, i] = h_i(clip(y_j)) = clip(1 − |ȳ_j − z_i|/Δ, 0, 1).

    Π_C(Σ_j w_j δ_{y_j}) = Σ_j w_j H[j, :]. Each row sums to 1 (mass preservation).

    Valid range: no numeric arguments; atoms_src finite (clipped to the support).
    """
    support = _check_support(support)
    atoms_src = _checked("atoms_src", atoms_src)
    xp = array_namespace(atoms_src)
    z = support.atoms_like(atoms_src)
    y = xp.clip(atoms_src, support.v_min, support.v_max)
    dist = xp.abs(y[..., :, None] - z) / support.delta
    return xp.clip(1.0 - dist, 0.0, 1.0)


PROJECTION_METHODS = ("scatter", "hat")


def _scatter_pairs(lower, lower_mass, upper_mass, m: int):
    """out[..., k] = Σ_j lower_mass[..., j]·[lower_j = k] + upper_mass[..., j]·[lower_j + 1 = k].

    The one backend-specific primitive of the scatter projection (the array API has no scatter):
    two in-place ``scatter_add_`` into a fresh zero tensor on torch (autograd flows into the
    masses), one ``np.bincount`` over flattened row offsets on numpy, and a one-hot contraction
    on any other array-API backend. Shapes: lower, lower_mass, upper_mass [..., N] → [..., M].
    """
    from array_api_compat import is_numpy_array, is_torch_array

    if is_torch_array(lower_mass):
        import torch  # only reached with torch tensors; tabular.core never imports torch itself

        out = torch.zeros((*lower_mass.shape[:-1], m), dtype=lower_mass.dtype,
                          device=lower_mass.device)
        out.scatter_add_(-1, lower, lower_mass)
        out.scatter_add_(-1, lower + 1, upper_mass)
        return out
    if is_numpy_array(lower_mass):
        lead = lower_mass.shape[:-1]
        rows = int(np.prod(lead, dtype=np.int64))
        n = lower_mass.shape[-1]
        flat = np.arange(rows, dtype=np.int64)[:, None] * m + lower.reshape(rows, n)
        index = np.concatenate([flat.ravel(), flat.ravel() + 1])
        weights = np.concatenate([lower_mass.reshape(-1), upper_mass.reshape(-1)])
        out = np.bincount(index, weights=weights, minlength=rows * m)
        return out.reshape(*lead, m).astype(lower_mass.dtype, copy=False)
    xp = array_namespace(lower_mass)
    grid = xp.arange(m, dtype=lower.dtype, device=array_device(lower))
    low = xp.astype(lower[..., :, None] == grid, lower_mass.dtype)
    high = xp.astype((lower[..., :, None] + 1) == grid, lower_mass.dtype)
    return xp.sum(low * lower_mass[..., :, None] + high * upper_mass[..., :, None], axis=-2)


def _scatter_projection(atoms_src, mass, support: CategoricalSupport):
    """Scatter form of Π_C: ȳ sits between atoms l and l + 1 and sends (1 − f)·w to l, f·w to l + 1.

    b = (ȳ − v_min)/Δ, l = clamp(⌊b⌋, 0, M − 2), f = clamp(b − l, 0, 1), and f = 1 exactly at
    ȳ = v_max. An integer b (a source atom on a grid point, both ends included) gives f = 0 (or 1
    at the top end): all the weight lands on that atom, with no "hole" — the (l == u) case that
    floor/ceil forms (CleanRL) must special-case. O(N) work instead of the hat form's O(N·M);
    linear (hence differentiable) in ``mass``.
    """
    xp = array_namespace(atoms_src, mass)
    m, v_min, v_max = support.m, support.v_min, support.v_max
    y = xp.clip(atoms_src, v_min, v_max)
    b = (y - v_min) / support.delta
    lower = xp.clip(xp.floor(b), 0.0, float(m - 2))
    frac = xp.clip(b - lower, 0.0, 1.0)
    frac = xp.where(y >= v_max, xp.ones_like(frac), frac)
    upper_mass = mass * frac
    return _scatter_pairs(xp.astype(lower, xp.int64), mass - upper_mass, upper_mass, m)


def categorical_projection(atoms_src, mass, support: CategoricalSupport, *, method: str = "scatter"):
    """Categorical (C51) projection of a possibly signed measure onto the support.

    Π_C(Σ_j w_j δ_{y_j}) = Σ_j w_j Σ_i h_i(clip(y_j, v_min, v_max)) δ_{z_i}
    (Bellemare, Dabney, Munos 2017, arXiv:1707.06887, Eq. 7; linear in ``mass`` — weights need
    not be probabilities).

    Args:
      atoms_src: [..., N] source locations y_j (any real numbers; out-of-range ones are clipped,
        so their mass goes to the end atoms).
      mass: [..., N] source weights w_j. May be negative; need not sum to 1.
      support: the target grid: a :class:`CategoricalSupport`, or strictly increasing atoms [M]
        (evenly spaced or not; the same grids ``categorical_fixed_point`` accepts).
      method: "scatter" (default, O(N) per row: each y_j sends its weight to its two neighbouring
        atoms; numpy ``bincount`` / torch ``scatter_add``, differentiable in ``mass``) or "hat"
        (the dense O(N·M) hat matrix of :func:`projection_matrix`; kept as the test oracle and for
        backends without a scatter primitive). Both agree to rounding.

    Returns:
      mass [..., M]. Total mass is preserved exactly; the mean is preserved when every y_j lies
      in [v_min, v_max]; atoms on the grid (including both ends) are reproduced exactly.

    Valid range: no numeric arguments; atoms_src finite (any values: clipped to the support); mass
    finite (signed allowed) with a shape matching atoms_src.
    """
    if not isinstance(support, CategoricalSupport) and not hasattr(support, "shape"):
        # a tuple such as (v_min, v_max, m) must not pass for three atoms: explicit atoms come
        # as an array (numpy / torch), anything else is refused, naming the argument
        hint = (" (for (v_min, v_max, m) use CategoricalSupport(v_min, v_max, m); explicit atoms "
                "as an array)" if isinstance(support, (tuple, list)) else "")
        raise ValueError(f"support must be a CategoricalSupport or an array of atoms, got "
                         f"{type(support).__name__}{hint}")
    atoms_src = _checked("atoms_src", atoms_src)
    mass = _checked("mass", mass)
    _same_shape("atoms_src", atoms_src, "mass", mass)
    method = check_choice("method", method, PROJECTION_METHODS)
    if not isinstance(support, CategoricalSupport):
        # an explicit atom array [M], as ``categorical_fixed_point`` accepts: evenly spaced atoms
        # take the fast paths below; strictly increasing uneven ones the hat matrix on that grid
        grid = _increasing_atoms(np.asarray(support.cpu() if hasattr(support, "cpu") else support))
        gaps = np.diff(grid)
        if np.max(np.abs(gaps - gaps.mean())) <= 1e-9 * max(1.0, float(np.max(np.abs(grid)))):
            support = CategoricalSupport.from_atoms(grid)
        else:
            return _uneven_projection(atoms_src, mass, grid)
    if method == "scatter":
        return _scatter_projection(atoms_src, mass, support)
    xp = array_namespace(atoms_src, mass)
    H = projection_matrix(atoms_src, support)  # [..., N, M]
    return xp.sum(H * mass[..., :, None], axis=-2)


def _project_unchecked(atoms_src, mass, support: CategoricalSupport, method: str = "scatter"):
    """:func:`categorical_projection` without input validation, for callers that validated the
    inputs the atoms and masses were computed from (``tabular.core.multistep``)."""
    if method == "scatter":
        return _scatter_projection(atoms_src, mass, support)
    xp = array_namespace(atoms_src, mass)
    return xp.sum(projection_matrix(atoms_src, support) * mass[..., :, None], axis=-2)


def _increasing_atoms(support) -> np.ndarray:
    """Atoms [M] from an array-like ``support``: finite, strictly increasing, M ≥ 2."""
    grid = as_float_array("support", support, ndim=1)
    if grid.shape[0] < 2:
        raise ValueError(f"support must hold at least 2 atoms, got shape {grid.shape}")
    gaps = np.diff(grid)
    if np.any(gaps <= 0):
        raise ValueError(f"support must be strictly increasing, got minimum gap {float(gaps.min())}")
    return grid


def _uneven_projection(atoms_src, mass, grid: np.ndarray):
    """Π_C onto strictly increasing, unevenly spaced atoms z [M]: each y (clipped to [z_0, z_{M−1}])
    splits its weight between its two neighbours z_i ≤ y ≤ z_{i+1} in proportions
    (z_{i+1} − y, y − z_i)/(z_{i+1} − z_i) — the hat functions of that grid, as in the DCFP solver
    (``fixpoint_rl.tabular.model_based``). Dense [..., N, M] weights (O(N·M))."""
    xp = array_namespace(atoms_src, mass)
    z = xp.asarray(grid, dtype=mass.dtype, device=array_device(mass))
    left_gap = xp.asarray(np.concatenate([[np.inf], np.diff(grid)]), dtype=mass.dtype,
                          device=array_device(mass))
    right_gap = xp.asarray(np.concatenate([np.diff(grid), [np.inf]]), dtype=mass.dtype,
                           device=array_device(mass))
    y = xp.clip(atoms_src, float(grid[0]), float(grid[-1]))[..., :, None]  # [..., N, 1]
    d = y - z  # [..., N, M]
    weight = xp.where(d >= 0, 1.0 - d / right_gap, 1.0 + d / left_gap)
    weight = xp.clip(weight, 0.0, None)
    return xp.sum(weight * mass[..., :, None], axis=-2)


def pushforward(atoms, reward, gamma):
    """Atoms of (b_{r,γ})_# ν: z ↦ r + γ z.

    Args:
      atoms: [..., M] atom locations (e.g. ``support.atoms``).
      reward: scalar or [...] rewards (broadcast against the leading dims of ``atoms``).
      gamma: discount γ in [0, 1] (scalar).

    Valid range: gamma in [0, 1]; atoms and reward finite (reward a scalar or broadcast over leading
    dimensions), and every image reward + gamma·atom finite in the atoms' dtype (|r| + γ|z| below
    ~1.8e308 in float64); otherwise ``ValueError`` naming reward and atoms.

    Returns:
      [..., M] new atom locations r + γ z (pair them with the same mass, then project).
    """
    atoms = _checked("atoms", atoms)
    xp = array_namespace(atoms)
    gamma = check_scalar("gamma", gamma, low=0.0, high=1.0)
    if isinstance(reward, (int, float)) and not isinstance(reward, bool):
        check_scalar("reward", reward)
        out = reward + gamma * atoms
    else:
        if isinstance(reward, bool):
            raise ValueError(f"reward must be a real number or array, got {reward!r}")
        try:
            array_namespace(reward)
        except TypeError:
            reward = as_float_array("reward", reward)
        reward = _checked("reward", reward[None] if reward.ndim == 0 else reward)
        reward = xp.asarray(reward, dtype=atoms.dtype)
        out = reward[..., None] + gamma * atoms
    if not bool(xp.all(xp.isfinite(out))):
        raise ValueError("reward + gamma * atoms overflows: reward and atoms must keep every "
                         "image r + γz finite")
    return out


def to_cdf(mass):
    """CDF coordinates F_i = Σ_{k≤i} mass_k along the last axis: [..., M] → [..., M].

    Valid range: no numeric arguments; mass [..., M] finite (signed measures allowed).
    """
    mass = _checked("mass", mass)
    xp = array_namespace(mass)
    return xp.cumulative_sum(mass, axis=-1)


def from_cdf(cdf):
    """Inverse of :func:`to_cdf`: mass_0 = F_0, mass_i = F_i − F_{i−1}. [..., M] → [..., M].

    Valid range: no numeric arguments; cdf [..., M] finite (the CDF coordinates of any signed
    measure).
    """
    cdf = _checked("cdf", cdf)
    xp = array_namespace(cdf)
    first = cdf[..., :1]
    return xp.concat([first, cdf[..., 1:] - cdf[..., :-1]], axis=-1)


def distribution_mean(mass, support: CategoricalSupport):
    """Σ_i mass_i z_i, shape [..., M] → [...] (the mean when the total mass is 1).

    Valid range: no numeric arguments; mass [..., M] finite (signed) on the support's M atoms.
    """
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
        _check_equal_mass(mass_p, mass_q)
        return to_cdf(mass_p - mass_q)[..., :-1], support.delta
    if atoms_p is None or atoms_q is None:
        raise ValueError("atoms_p and atoms_q are required when support is None")
    atoms_p, mass_p = _checked("atoms_p", atoms_p), _checked("mass_p", mass_p)
    atoms_q, mass_q = _checked("atoms_q", atoms_q), _checked("mass_q", mass_q)
    for atoms_name, atoms, mass_name, mass in (("atoms_p", atoms_p, "mass_p", mass_p),
                                               ("atoms_q", atoms_q, "mass_q", mass_q)):
        if atoms.shape[-1] != mass.shape[-1]:
            raise ValueError(
                f"{atoms_name} and {mass_name} must have the same last dimension (one mass per "
                f"atom), got shapes {tuple(atoms.shape)} and {tuple(mass.shape)}"
            )
    _check_equal_mass(mass_p, mass_q)
    return _merged_cdf_gaps(atoms_p, mass_p, atoms_q, mass_q)


def _check_equal_mass(mass_p, mass_q) -> None:
    """Distances between measures of different total mass are infinite (W1) or depend on where
    the mass difference is put: refuse them. Tolerance 1e-9 × max(1, |mass|) in float64 (sums of
    up to 10^6 terms err far less; an unnormalised input errs far more), 10^4 ε in lower
    precision (float32 softmax outputs sum to 1 only to ~1e-7 per term)."""
    xp = array_namespace(mass_p, mass_q)
    eps = float(xp.finfo(mass_p.dtype).eps) if xp.isdtype(mass_p.dtype, "real floating") else 0.0
    total_p = xp.sum(mass_p, axis=-1)
    total_q = xp.sum(mass_q, axis=-1)
    gap = xp.abs(total_p - total_q)
    scale = xp.maximum(xp.maximum(xp.abs(total_p), xp.abs(total_q)), xp.ones_like(gap))
    if bool(xp.any(gap > max(1e-9, 1e4 * eps) * scale)):
        worst = float(xp.max(gap))
        raise ValueError(
            "mass_p and mass_q must have equal total mass (distances are defined between "
            f"measures of the same mass), got totals differing by up to {worst:.3g}"
        )


def cramer_distance(mass_p, mass_q, support=None, *, atoms_p=None, atoms_q=None, squared=False):
    """Cramér (ℓ2) distance ℓ2(p, q) = (∫ (F_p − F_q)²)^{1/2} between equal-mass (signed) measures.

    On a grid (``support`` given): ℓ2² = Δ Σ_{i<M−1} (F_i − G_i)² (Rowland et al. 2018, arXiv 1802.08163).
    Between arbitrary discrete measures (``atoms_p`` [..., N], ``atoms_q`` [..., K] given instead):
    exact integral over the merged, sorted support.

    Args:
      mass_p: [..., M] (or [..., N]) masses of p (may be signed).
      mass_q: [..., M] (or [..., K]) masses of q, same total mass as p.
      squared: return ℓ2² instead of ℓ2 (True or False).

    Returns:
      [...] distances.

    Valid range: no numeric arguments; mass_p, mass_q finite (signed) measures of equal total mass
    (within 1e-9) on a common support, or on atoms_p/atoms_q of matching length.
    """
    squared = check_bool("squared", squared)
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
    (``atoms_p`` [..., N], ``atoms_q`` [..., K], keyword-only): exact integral over the merged
    sorted support. Positional arguments are masses only, so no call can swap locations and
    weights; functions that take locations positionally put them first (``sup_wasserstein1``).
    Raises ``ValueError`` when the total masses differ or an atom array does not match its masses.

    Returns:
      [...] distances.

    Valid range: no numeric arguments; mass_p, mass_q finite (signed) measures of equal total mass
    (within 1e-9) on a common support, or on atoms_p/atoms_q of matching length.
    """
    diff, width = _cdf_difference(mass_p, mass_q, support, atoms_p, atoms_q)
    xp = array_namespace(diff)
    if support is not None:
        return width * xp.sum(xp.abs(diff), axis=-1)
    return xp.sum(xp.abs(diff) * width, axis=-1)
