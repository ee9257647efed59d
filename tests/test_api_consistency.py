"""API consistency (issue 15): one argument style per family, aliases for the peers' names, old
spellings refused with a pointer to the new one, plain numbers in error messages.

Oracles: hand-written scalar loops (uneven-grid projection), the DCFP linear solve (fixed point of
the same projection), the canonical loss kinds, and exact message texts.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from fixpoint_rl.envs.checks import as_float_array, check_scalar, describe
from fixpoint_rl.envs.mdp import MarkovRewardProcess, garnet, greedy_policy, random_policy
from fixpoint_rl.tabular import (
    CategoricalSupport,
    bayes_link,
    contraction_modulus,
    gpo_loss,
    q_lambda_bound_from_mismatch,
    q_lambda_contraction_bound,
    sup_wasserstein1,
)
from fixpoint_rl.tabular.core.categorical import categorical_projection, cramer_distance, wasserstein1
from fixpoint_rl.tabular.core.preference_losses import GPO_ALIASES, gpo_loss_derivative
from fixpoint_rl.tabular.model_based import categorical_fixed_point


# ----------------------------------------------------------------------------- GPO aliases


@pytest.mark.parametrize("alias, kind", sorted(GPO_ALIASES.items()))
def test_gpo_aliases_are_the_canonical_losses(alias, kind):
    margin = np.linspace(-3.0, 3.0, 13)
    np.testing.assert_array_equal(gpo_loss(margin, 0.7, alias), gpo_loss(margin, 0.7, kind))
    np.testing.assert_array_equal(gpo_loss_derivative(margin, 0.7, alias),
                                  gpo_loss_derivative(margin, 0.7, kind))
    assert bayes_link(0.8, alias) == bayes_link(0.8, kind)


def test_unknown_gpo_kind_lists_kinds_and_aliases():
    with pytest.raises(ValueError) as error:
        gpo_loss(1.0, 1.0, "kto")
    message = str(error.value)
    assert message.startswith("kind must be one of")
    for name in ("logistic", "savage", "'dpo' (= 'logistic')", "'ipo' (= 'squared')",
                 "'slic' (= 'hinge')", "'kto'"):
        assert name in message


# ----------------------------------------------------------------------------- Q(λ) bounds


def _problem(seed=0):
    mdp = garnet(4, 2, 2, seed, gamma=0.9)
    rng = np.random.default_rng(seed)
    pi = greedy_policy(rng.random((4, 2)))
    mu = 0.7 * pi + 0.3 * random_policy(mdp, rng)
    return mdp, pi, mu


def test_contraction_bound_takes_the_modulus_arguments():
    bound = list(inspect.signature(q_lambda_contraction_bound).parameters)[:4]
    modulus = list(inspect.signature(contraction_modulus).parameters)[:4]
    assert bound == modulus == ["mdp", "pi", "mu", "lam"]
    mdp, pi, mu = _problem()
    for lam in (0.0, 0.5, 1.0):
        kappa = np.max(np.abs(pi - lam * mu).sum(1))
        expected = np.sqrt(0.9) * kappa / (1 - lam * np.sqrt(0.9))
        assert q_lambda_contraction_bound(mdp, pi, mu, lam) == pytest.approx(expected, rel=1e-13)
        eps = float(np.max(np.abs(pi - mu).sum(1)))
        # κ ≤ (1 − λ) + λε, so the policy form never exceeds the plain-number form
        assert q_lambda_contraction_bound(mdp, pi, mu, lam) <= q_lambda_bound_from_mismatch(
            0.9, lam, eps) + 1e-12


@pytest.mark.parametrize("args", [(0.9, 0.5, 0.1), (0.9, 0.5, 0.1, 2.0)])
def test_old_numeric_spelling_points_at_the_new_function(args):
    with pytest.raises(ValueError, match="q_lambda_bound_from_mismatch"):
        q_lambda_contraction_bound(*args)


# ----------------------------------------------------------------------------- distances


def test_wasserstein_and_cramer_refuse_unequal_mass():
    support = CategoricalSupport(0.0, 1.0, 3)
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.4, 0.4, 0.4])  # masses 1.0 and 1.2
    for distance in (wasserstein1, cramer_distance):
        with pytest.raises(ValueError, match=r"mass_p and mass_q must have equal total mass.*0\.2"):
            distance(p, q, support)
        with pytest.raises(ValueError, match="equal total mass"):
            distance(p, q, atoms_p=np.array([0.0, 1.0, 2.0]), atoms_q=np.array([0.0, 1.0, 2.0]))


def test_atoms_and_masses_of_different_length_name_the_argument():
    with pytest.raises(ValueError, match=r"atoms_q and mass_q must have the same last dimension"):
        wasserstein1(np.array([0.5, 0.5]), np.array([1.0]), atoms_p=np.array([0.0, 1.0]),
                     atoms_q=np.array([0.0, 1.0]))


def test_locations_passed_positionally_to_a_grid_distance_get_a_pointer():
    atoms, probs = np.array([0.0, 1.0]), np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="sup_wasserstein1"):
        wasserstein1(atoms, probs, atoms)
    # the pointed-at function, locations before weights, agrees with the keyword form
    pair = sup_wasserstein1(atoms, probs[None], np.array([0.0, 2.0]), probs[None])
    assert pair == pytest.approx(float(wasserstein1(probs, probs, atoms_p=atoms,
                                                    atoms_q=np.array([0.0, 2.0]))))


# ----------------------------------------------------------------------------- uneven atoms


def _scalar_projection(ys, ws, z):
    """Hand-written Π_C on an arbitrary increasing grid: clip, find the bin, split linearly."""
    out = np.zeros(len(z))
    for y, w in zip(ys, ws):
        y = min(max(y, z[0]), z[-1])
        i = int(np.searchsorted(z, y, side="right") - 1)
        if i >= len(z) - 1:
            out[-1] += w
            continue
        frac = (y - z[i]) / (z[i + 1] - z[i])
        out[i] += w * (1 - frac)
        out[i + 1] += w * frac
    return out


def test_projection_accepts_the_uneven_atoms_the_fixed_point_accepts():
    rng = np.random.default_rng(3)
    z = np.cumsum(rng.uniform(0.2, 1.5, size=7)) - 0.5
    ys = rng.uniform(z[0] - 1, z[-1] + 1, size=20)
    ws = rng.normal(size=20)  # signed weights: the projection is linear in them
    # float64 rounding of a few dozen products: 1e-12
    np.testing.assert_allclose(categorical_projection(ys, ws, z), _scalar_projection(ys, ws, z),
                               atol=1e-12)
    # one-state MRP r = 1, γ = 0.8: η_C = Π_C (1 + γ z)_# η_C on the same uneven grid, so
    # iterating the projection (a γ-contraction in W1) must reach categorical_fixed_point's answer
    z = np.array([0.0, 0.5, 1.5, 3.0, 5.0])
    mrp = MarkovRewardProcess(P=np.ones((1, 1)), reward=np.ones((1, 1)), gamma=0.8)
    eta = np.full(5, 0.2)
    for _ in range(400):  # 0.8^400 ≈ 1e-39: far below the 1e-12 tolerance
        eta = categorical_projection(1.0 + 0.8 * z, eta, z)
    np.testing.assert_allclose(eta, categorical_fixed_point(mrp, z)[0], atol=1e-12)


def test_evenly_spaced_atom_arrays_match_the_support_object():
    support = CategoricalSupport(-1.0, 2.0, 7)
    ys, ws = np.array([-3.0, 0.1, 0.7, 1.9, 5.0]), np.array([0.2, -0.1, 0.4, 0.3, 0.2])
    np.testing.assert_array_equal(categorical_projection(ys, ws, support.atoms),
                                  categorical_projection(ys, ws, support))


# ----------------------------------------------------------------------------- messages


def test_messages_print_plain_numbers_on_one_line():
    assert describe(np.float64(0.0)) == "0.0"
    assert describe(np.int64(3)) == "3"
    assert "\n" not in describe(np.eye(2)) and describe(np.eye(2)).startswith("[[1.")
    with pytest.raises(ValueError) as error:
        check_scalar("tau", np.float64(-1.0), low=np.float64(0.0), low_inclusive=False)
    assert str(error.value) == "tau must lie in (0.0, inf), got -1.0"
    with pytest.raises(ValueError) as error:
        as_float_array("pi", np.array([[-0.5, 1.5]]), nonnegative=True)
    assert str(error.value) == "pi must be non-negative, got minimum -0.5"
