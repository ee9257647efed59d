"""GPO losses as functions of the margin (tabular/core/preference_losses.py).

Oracles: hand-computed Bayes-link vectors (minimiser of p f(x) + (1−p) f(−x)); numerical minimisation of
p·f(x) + (1 − p)·f(−x) (scipy); finite differences for f′(0), f″(0) and the analytic derivatives;
TRL's loss formulas (sigmoid, hinge, ipo) typed from trl/trainer/dpo_trainer.py; torch autograd.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import torch
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.tabular import bayes_link, gpo_loss
from fixpoint_rl.tabular.core.preference_losses import (
    GPO_KINDS,
    gpo_loss_derivative,
    gpo_loss_second_derivative,
    loss_derivatives_at_zero,
    regularization_ratio,
)

SMOOTH = tuple(k for k in GPO_KINDS if k != "hinge")
margins = st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=20).map(np.array)
betas = st.floats(0.01, 10.0)


@pytest.mark.parametrize(
    "kind, expected",
    [("logistic", 1.386294), ("savage", 1.386294), ("exponential", 0.693147), ("squared", 0.6),
     ("truncated_quadratic", 0.6), ("hinge", 1.0)],
)
def test_bayes_link_matches_the_notes_vector_at_p_0_8(kind, expected):
    # The hand-computed vectors have 6 decimals: tolerance 1e-6.
    assert float(bayes_link(0.8, kind)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("kind", SMOOTH)
@given(p=st.floats(0.05, 0.95))
def test_bayes_link_minimises_the_conditional_risk(kind, p):
    risk = lambda x: p * float(gpo_loss(x, 1.0, kind)) + (1 - p) * float(gpo_loss(-x, 1.0, kind))
    # Brent's method on a bracket containing the minimiser; xtol 1e-10 → agreement to 1e-6 (the
    # risk is flat to second order at its minimum, so x is resolved to about sqrt(eps)).
    found = scipy.optimize.minimize_scalar(risk, bounds=(-5, 5), method="bounded",
                                           options={"xatol": 1e-10}).x
    assert float(bayes_link(p, kind)) == pytest.approx(found, abs=1e-5)


@given(p=st.floats(0.01, 0.99).filter(lambda p: abs(p - 0.5) > 1e-3))
def test_hinge_bayes_link_is_a_minimiser_on_a_grid(p):
    grid = np.linspace(-3, 3, 6001)
    risk = p * gpo_loss(grid, 1.0, "hinge") + (1 - p) * gpo_loss(-grid, 1.0, "hinge")
    link = float(bayes_link(p, "hinge"))
    assert link == np.sign(2 * p - 1)
    value = p * float(gpo_loss(link, 1.0, "hinge")) + (1 - p) * float(gpo_loss(-link, 1.0, "hinge"))
    assert value <= risk.min() + 1e-12


@pytest.mark.parametrize("kind", GPO_KINDS)
def test_derivatives_at_zero_match_finite_differences_and_table(kind):
    h = 1e-4
    f = lambda x: float(gpo_loss(x, 1.0, kind))
    first = (f(h) - f(-h)) / (2 * h)  # O(h²) ≈ 1e-8 error
    second = (f(h) - 2 * f(0.0) + f(-h)) / h**2  # O(h²) + rounding 1e-16/h² ≈ 1e-8
    expected_first, expected_second = loss_derivatives_at_zero(kind)
    assert first == pytest.approx(expected_first, abs=1e-6)
    assert second == pytest.approx(expected_second, abs=1e-5)
    table = {"logistic": (-0.5, 0.25), "hinge": (-1, 0), "squared": (-2, 2),
             "exponential": (-1, 1), "truncated_quadratic": (-2, 2), "savage": (-0.25, 0.125)}
    assert (expected_first, expected_second) == table[kind]


def test_regularization_ratios_are_the_notes_values():
    ratios = [regularization_ratio(k) for k in GPO_KINDS]
    assert ratios == [0.5, 0.0, 1.0, 1.0, 1.0, 0.5]


@given(margin=margins, beta=betas)
def test_logistic_is_minus_log_sigmoid_and_hinge_is_slic(margin, beta):
    # TRL sigmoid: −logσ(βΔ); scipy's log_expit is an independent stable implementation.
    np.testing.assert_allclose(gpo_loss(margin, beta, "logistic"),
                               -scipy.special.log_expit(beta * margin), rtol=1e-12, atol=1e-300)
    # TRL hinge / SLiC: relu(1 − βΔ).
    np.testing.assert_allclose(gpo_loss(margin, beta, "hinge"),
                               np.maximum(0.0, 1.0 - beta * margin), rtol=1e-14, atol=1e-14)


@given(margin=margins, beta_trl=betas)
def test_squared_is_trl_ipo_up_to_the_documented_scale(margin, beta_trl):
    trl_ipo = (margin - 1.0 / (2.0 * beta_trl)) ** 2
    np.testing.assert_allclose(gpo_loss(margin, 2.0 * beta_trl, "squared"),
                               4.0 * beta_trl**2 * trl_ipo, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", GPO_KINDS)
def test_analytic_derivatives_match_finite_differences(kind, rng):
    margin = rng.normal(0.0, 2.0, 200)
    beta = 0.7
    margin = margin[np.abs(beta * margin - 1.0) > 1e-3]  # keep away from the hinge kink
    h = 1e-6
    numeric = (gpo_loss(margin + h, beta, kind) - gpo_loss(margin - h, beta, kind)) / (2 * h)
    np.testing.assert_allclose(gpo_loss_derivative(margin, beta, kind), numeric, rtol=1e-6, atol=1e-8)
    h2 = 1e-4
    numeric2 = (gpo_loss_derivative(margin + h2, beta, kind)
                - gpo_loss_derivative(margin - h2, beta, kind)) / (2 * h2)
    np.testing.assert_allclose(gpo_loss_second_derivative(margin, beta, kind), numeric2,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", GPO_KINDS)
def test_torch_float64_parity_of_values_and_gradients(kind, rng):
    beta = 1.3
    values = rng.normal(0.0, 3.0, 64)
    margin = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    loss = gpo_loss(margin, beta, kind)
    assert isinstance(loss, torch.Tensor)
    np.testing.assert_allclose(loss.detach().numpy(), gpo_loss(values, beta, kind), rtol=1e-14, atol=1e-15)
    (grad,) = torch.autograd.grad(loss.sum(), margin, create_graph=True)
    np.testing.assert_allclose(grad.detach().numpy(), gpo_loss_derivative(values, beta, kind),
                               rtol=1e-12, atol=1e-15)
    if kind != "hinge":
        (hess,) = torch.autograd.grad(grad.sum(), margin)
        np.testing.assert_allclose(hess.numpy(), gpo_loss_second_derivative(values, beta, kind),
                                   rtol=1e-10, atol=1e-14)


def test_torch_bayes_link_matches_numpy():
    p = np.array([0.2, 0.5, 0.8])
    for kind in GPO_KINDS:
        np.testing.assert_allclose(bayes_link(torch.tensor(p), kind).numpy(), bayes_link(p, kind),
                                   rtol=1e-14)


@pytest.mark.parametrize(
    "call",
    [lambda: gpo_loss(1.0, 1.0, "kto"), lambda: gpo_loss(1.0, 0.0, "logistic"),
     lambda: gpo_loss(1.0, -1.0, "squared"), lambda: gpo_loss(np.nan, 1.0, "logistic"),
     lambda: gpo_loss([0.0, np.inf], 1.0, "hinge"), lambda: gpo_loss(1.0, float("nan"), "hinge"),
     lambda: gpo_loss("1", 1.0, "hinge"), lambda: bayes_link(1.0, "logistic"),
     lambda: bayes_link(0.0, "squared"), lambda: bayes_link(np.nan, "logistic"),
     lambda: bayes_link(0.3, "orpo"), lambda: loss_derivatives_at_zero("sigmoid"),
     lambda: gpo_loss(torch.tensor([float("nan")]), 1.0, "savage")],
)
def test_invalid_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


@given(beta=st.floats(-10, 0), kind=st.sampled_from(GPO_KINDS))
def test_nonpositive_beta_raises(beta, kind):
    with pytest.raises(ValueError, match="beta"):
        gpo_loss(np.zeros(3), beta, kind)
