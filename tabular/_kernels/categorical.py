"""Scalar-loop (scatter-form) twin of ``fixpoint_rl.tabular.core.categorical`` for Numba kernels.

The categorical projection Π_C δ_y = Σ_i h_i(clip(y)) δ_{z_i} is written here as a scatter: the
clipped location y sits at fractional index b = (ȳ − v_min)/Δ between atoms l = ⌊b⌋ and l + 1,
which receive weights (1 − (b − l)) and (b − l). This equals the hat-matrix form of the core
module (tied by ``tests/test_categorical_kernels.py``), handles integer b (no "holes": the whole
weight goes to atom l) and both ends (b = M − 1 puts everything on the last atom).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _project_add(out, y, weight, v_min, v_max, delta):
    """out[:] += weight · Π_C δ_y (scatter form). out: [M] float64, modified in place."""
    m = out.shape[0]
    if y <= v_min:
        out[0] += weight
        return
    if y >= v_max:
        out[m - 1] += weight
        return
    b = (y - v_min) / delta
    lower = int(math.floor(b))
    if lower >= m - 1:
        out[m - 1] += weight
        return
    frac = b - lower
    out[lower] += weight * (1.0 - frac)
    out[lower + 1] += weight * frac


@njit(cache=True)
def _project_pushforward_add(out, mass, reward, gamma, v_min, v_max, delta):
    """out[:] += Π_C (b_{reward,γ})_# Σ_j mass_j δ_{z_j} for the grid's own atoms z_j.

    out, mass: [M] float64 (mass may be signed). Linear in ``mass``.
    """
    m = mass.shape[0]
    for j in range(m):
        w = mass[j]
        if w != 0.0:
            z = v_min + j * delta
            if j == m - 1:
                z = v_max
            _project_add(out, reward + gamma * z, w, v_min, v_max, delta)


@njit(cache=True)
def _project_batch(atoms_src, mass, v_min, v_max, delta, m):
    """Π_C for a batch: atoms_src, mass [B, N] → out [B, M] (scatter form)."""
    batch, n = atoms_src.shape
    out = np.zeros((batch, m))
    for b in range(batch):
        for j in range(n):
            _project_add(out[b], atoms_src[b, j], mass[b, j], v_min, v_max, delta)
    return out


@njit(cache=True)
def _pushforward_matrix(reward, gamma, v_min, v_max, delta, m):
    """The [M, M] matrix K with (Π_C (b_{r,γ})_# ν) = ν @ K for grid measures ν (row j = Π_C δ_{r+γz_j})."""
    out = np.zeros((m, m))
    for j in range(m):
        z = v_min + j * delta
        if j == m - 1:
            z = v_max
        _project_add(out[j], reward + gamma * z, 1.0, v_min, v_max, delta)
    return out
