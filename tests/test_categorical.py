"""Categorical core (Bellemare, Dabney & Munos 2017, arXiv 1707.06887, Eq. 7; Rowland et al. 2018, arXiv 1802.08163): projection, Cramér / W1, CDFs.

Oracles: exact closed forms (Dirac identity ℓ2²(δ_a, δ_b) = |a − b|, the Δ·u(1−u) bin error),
the merged-support exact integral (an independent code path from the grid formula), and the
defining properties of an orthogonal projection. Tolerances: every quantity is a short float64
sum of O(1) terms, so rounding is ~1e-14; 1e-10 leaves room without hiding a real error (a
projection bug shifts mass by at least ~1e-3 here).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.tabular import (
    CategoricalSupport,
    categorical_projection,
    cramer_distance,
    distribution_mean,
    from_cdf,
    pushforward,
    to_cdf,
    wasserstein1,
)

TOL = 1e-10

supports = st.builds(
    CategoricalSupport,
    v_min=st.floats(-5, 0),
    v_max=st.floats(0.5, 10),
    m=st.integers(2, 40),
)
seeds = st.integers(0, 2**32 - 1)


def _in_range_atoms(rng, support, n):
    return rng.uniform(support.v_min, support.v_max, size=n)


@given(supports, seeds, st.integers(1, 12))
def test_mass_preserved_for_signed_weights_and_any_locations(support, seed, n):
    rng = np.random.default_rng(seed)
    y = rng.uniform(support.v_min - 5, support.v_max + 5, size=(3, n))
    w = rng.normal(size=(3, n))
    out = categorical_projection(y, w, support)
    np.testing.assert_allclose(out.sum(-1), w.sum(-1), atol=TOL)


@given(supports, seeds, st.integers(1, 12))
def test_mean_preserved_without_clipping_signed(support, seed, n):
    rng = np.random.default_rng(seed)
    y = _in_range_atoms(rng, support, (3, n))
    w = rng.normal(size=(3, n))
    out = categorical_projection(y, w, support)
    np.testing.assert_allclose(
        distribution_mean(out, support), (w * y).sum(-1), atol=TOL * (1 + np.abs(y).max())
    )


def test_out_of_range_mass_goes_to_end_atoms():
    support = CategoricalSupport(0.0, 4.0, 5)
    out = categorical_projection(np.array([-3.0, 7.5]), np.array([0.25, -0.75]), support)
    np.testing.assert_array_equal(out, [0.25, 0.0, 0.0, 0.0, -0.75])


@given(supports)
def test_idempotent_on_grid_atoms_including_endpoints(support):
    z = support.atoms
    out = categorical_projection(z[None, :].repeat(support.m, 0), np.eye(support.m), support)
    np.testing.assert_allclose(out, np.eye(support.m), atol=1e-12)
    # projecting a projection changes nothing (Π_C ∘ Π_C = Π_C)
    rng = np.random.default_rng(support.m)
    once = categorical_projection(rng.uniform(-6, 11, 9), rng.normal(size=9), support)
    twice = categorical_projection(z, once, support)
    np.testing.assert_allclose(twice, once, atol=1e-12)


@pytest.mark.parametrize("v_min,m", [(-3.0, 7), (0.0, 11), (-10.0, 21)])
def test_integer_offsets_exact_no_holes(v_min, m):
    # Δ = 1: b = (y − v_min)/Δ is an exact integer — the "holes" bug loses this mass
    support = CategoricalSupport(v_min, v_min + (m - 1), m)
    y = v_min + np.arange(m, dtype=float)
    out = categorical_projection(y, np.ones(m), support)
    np.testing.assert_array_equal(out, np.ones(m))
    np.testing.assert_array_equal(categorical_projection(y[-1:], np.ones(1), support)[-1], 1.0)


@given(supports, seeds, st.floats(-3, 3), st.floats(-3, 3))
def test_linear_in_signed_mass(support, seed, alpha, beta):
    rng = np.random.default_rng(seed)
    y = rng.uniform(support.v_min - 2, support.v_max + 2, size=6)
    w1, w2 = rng.normal(size=6), rng.normal(size=6)
    left = categorical_projection(y, alpha * w1 + beta * w2, support)
    right = alpha * categorical_projection(y, w1, support) + beta * categorical_projection(y, w2, support)
    np.testing.assert_allclose(left, right, atol=TOL)


@given(supports, seeds, st.integers(1, 8))
def test_pythagoras_in_cramer(support, seed, n):
    rng = np.random.default_rng(seed)
    y = _in_range_atoms(rng, support, n)
    w = rng.normal(size=n)
    w = w - (w.sum() - 1.0) / n  # unit mass, signed
    proj = categorical_projection(y, w, support)
    q = rng.normal(size=support.m)
    q = q - (q.sum() - 1.0) / support.m
    z = support.atoms
    total = cramer_distance(w, q, atoms_p=y, atoms_q=z, squared=True)
    parts = cramer_distance(w, proj, atoms_p=y, atoms_q=z, squared=True) + cramer_distance(
        proj, q, support, squared=True
    )
    np.testing.assert_allclose(total, parts, atol=TOL * (1 + total))


@given(supports, seeds, st.integers(1, 8))
def test_projection_error_bounds(support, seed, n):
    rng = np.random.default_rng(seed)
    y = _in_range_atoms(rng, support, n)
    probs = rng.dirichlet(np.ones(n))
    proj = categorical_projection(y, probs, support)
    z = support.atoms
    assert cramer_distance(probs, proj, atoms_p=y, atoms_q=z, squared=True) <= support.delta / 4 + TOL
    assert wasserstein1(probs, proj, atoms_p=y, atoms_q=z) <= support.delta / 2 + TOL


def test_projection_error_tight_at_bin_midpoint():
    # a Dirac u of the way through a bin has ℓ2² error exactly Δ u (1 − u) : Δ/4 at u = ½
    support = CategoricalSupport(0.0, 2.0, 5)
    d = support.delta
    for u in (0.25, 0.5, 0.9):
        y = np.array([d + u * d])
        proj = categorical_projection(y, np.ones(1), support)
        err = cramer_distance(np.ones(1), proj, atoms_p=y, atoms_q=support.atoms, squared=True)
        assert err == pytest.approx(d * u * (1 - u), abs=1e-12)
    y = np.array([1.5 * d])
    proj = categorical_projection(y, np.ones(1), support)
    assert wasserstein1(np.ones(1), proj, atoms_p=y, atoms_q=support.atoms) == pytest.approx(d / 2)


@given(supports, seeds, st.integers(1, 8))
def test_projection_non_expansive_signed(support, seed, n):
    rng = np.random.default_rng(seed)
    y1, y2 = _in_range_atoms(rng, support, n), _in_range_atoms(rng, support, n)
    w1, w2 = rng.normal(size=n), rng.normal(size=n)
    w2 = w2 - (w2.sum() - w1.sum()) / n  # equal total mass
    p1, p2 = categorical_projection(y1, w1, support), categorical_projection(y2, w2, support)
    before_l2 = cramer_distance(w1, w2, atoms_p=y1, atoms_q=y2)
    before_w1 = wasserstein1(w1, w2, atoms_p=y1, atoms_q=y2)
    assert cramer_distance(p1, p2, support) <= before_l2 + TOL
    assert wasserstein1(p1, p2, support) <= before_w1 + TOL


@given(supports, seeds)
def test_grid_formulas_equal_merged_support_integrals(support, seed):
    rng = np.random.default_rng(seed)
    p, q = rng.normal(size=(2, 4, support.m))
    q = q - (q.sum(-1, keepdims=True) - p.sum(-1, keepdims=True)) / support.m
    z = support.atoms
    np.testing.assert_allclose(
        cramer_distance(p, q, support), cramer_distance(p, q, atoms_p=z, atoms_q=z), atol=TOL
    )
    np.testing.assert_allclose(
        wasserstein1(p, q, support), wasserstein1(p, q, atoms_p=z, atoms_q=z), atol=TOL
    )


@given(st.floats(-50, 50), st.floats(-50, 50))
def test_dirac_identity(a, b):
    value = cramer_distance(
        np.ones(1), np.ones(1), atoms_p=np.array([a]), atoms_q=np.array([b]), squared=True
    )
    assert value == pytest.approx(abs(a - b), abs=1e-12)
    assert wasserstein1(
        np.ones(1), np.ones(1), atoms_p=np.array([a]), atoms_q=np.array([b])
    ) == pytest.approx(abs(a - b), abs=1e-12)


@given(seeds, st.floats(0.0, 0.99), st.floats(-3, 3))
def test_pushforward_scales_cramer_by_gamma_and_w1_by_gamma(seed, gamma, r):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(2, 5))
    p, q = rng.dirichlet(np.ones(5), size=2)
    l2 = cramer_distance(p, q, atoms_p=x, atoms_q=y, squared=True)
    w1 = wasserstein1(p, q, atoms_p=x, atoms_q=y)
    l2_push = cramer_distance(
        p, q, atoms_p=pushforward(x, r, gamma), atoms_q=pushforward(y, r, gamma), squared=True
    )
    w1_push = wasserstein1(p, q, atoms_p=pushforward(x, r, gamma), atoms_q=pushforward(y, r, gamma))
    assert l2_push == pytest.approx(gamma * l2, abs=1e-12)
    assert w1_push == pytest.approx(gamma * w1, abs=1e-12)


def test_pushforward_broadcasts_rewards():
    support = CategoricalSupport(0.0, 1.0, 3)
    out = pushforward(support.atoms, np.array([1.0, 2.0]), 0.5)
    np.testing.assert_allclose(out, [[1.0, 1.25, 1.5], [2.0, 2.25, 2.5]])


@given(seeds, st.integers(2, 30))
def test_cdf_roundtrip_and_mean(seed, m):
    rng = np.random.default_rng(seed)
    mass = rng.normal(size=(3, m))
    np.testing.assert_allclose(from_cdf(to_cdf(mass)), mass, atol=1e-12)
    np.testing.assert_allclose(to_cdf(mass)[..., -1], mass.sum(-1), atol=1e-12)
    support = CategoricalSupport(-1.0, 2.0, m)
    np.testing.assert_allclose(distribution_mean(mass, support), mass @ support.atoms, atol=1e-12)


def test_support_atoms_and_from_atoms():
    support = CategoricalSupport(-1.0, 1.0, 5)
    np.testing.assert_allclose(support.atoms, [-1, -0.5, 0, 0.5, 1])
    assert support.delta == 0.5
    assert CategoricalSupport.from_atoms(support.atoms) == support
    np.testing.assert_array_equal(support.dirac(2), [0, 0, 1, 0, 0])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(v_min=1.0, v_max=1.0, m=5),
        dict(v_min=2.0, v_max=1.0, m=5),
        dict(v_min=0.0, v_max=1.0, m=1),
        dict(v_min=float("nan"), v_max=1.0, m=5),
        dict(v_min=0.0, v_max=float("inf"), m=5),
        dict(v_min=0.0, v_max=1.0, m=2.5),
    ],
)
def test_invalid_support_raises(kwargs):
    with pytest.raises(ValueError):
        CategoricalSupport(**kwargs)


@given(st.lists(st.floats(-10, 10), min_size=2, max_size=8))
def test_from_atoms_rejects_non_increasing(values):
    atoms = np.array(values)
    if np.all(np.diff(atoms) > 0):
        atoms = atoms[::-1].copy()
    with pytest.raises(ValueError):
        CategoricalSupport.from_atoms(atoms)


def test_from_atoms_rejects_uneven_spacing_and_bad_arguments():
    with pytest.raises(ValueError, match="evenly"):
        CategoricalSupport.from_atoms([0.0, 1.0, 3.0])
    support = CategoricalSupport(0.0, 1.0, 3)
    with pytest.raises(ValueError, match="support"):
        categorical_projection(np.zeros(2), np.ones(2), support=(0.0, 1.0, 3))
    with pytest.raises(ValueError, match="atoms_p"):
        cramer_distance(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="either"):
        wasserstein1(np.ones(3), np.ones(3), support, atoms_p=support.atoms, atoms_q=support.atoms)
    with pytest.raises(ValueError, match="gamma"):
        pushforward(support.atoms, 0.0, -0.5)
