"""Offline GPO trained to convergence on an LM, and the β ratio of two losses at equal KL.

Tang et al. 2024 (arXiv 2402.05749) §4: the losses f(β·ρ) regularise differently; to second order
equal regularisation needs β_kind/β_squared = r_squared/r_kind with r = f″(0)/|f′(0)|.

Oracles:
* the converged LM (``fit_offline_gpo``, nano Llama in float64, a two-token enumerable task) equals
  the tabular minimiser of the same empirical loss (``tabular.gpo.solve_gpo``, damped Newton),
  measured as the exact KL(target‖π) over the enumerated responses;
* the exact empirical loss used by the fit equals the dataset mean of ``gpo_lm_loss`` over the rows;
* ``beta_ratio_at_equal_kl`` is exact on curves whose ratio is known by construction;
* ``taylor_beta_ratio`` against f′(0), f″(0) from finite differences of ``gpo_loss``, and as the
  weak-preference limit of the tabular ratio (preferences ½ + O(ε): the ratio → Taylor as ε → 0).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.deep.llm.gpo import (
    beta_ratio_at_equal_kl,
    enumerable_pair_batch,
    enumerate_policy,
    fit_offline_gpo,
    gpo_lm_loss,
    taylor_beta_ratio,
)
from fixpoint_rl.deep.llm.models import build_lm
from fixpoint_rl.deep.llm.online_offline import population_gpo_loss
from fixpoint_rl.deep.llm.tasks import enumerable_task
from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer
from fixpoint_rl.envs.preference import random_contextual_game
from fixpoint_rl.tabular.core.mirror import kl_divergence
from fixpoint_rl.tabular.core.preference_losses import GPO_KINDS, gpo_loss, regularization_ratio
from fixpoint_rl.tabular.gpo import (
    empirical_pair_weights,
    preference_pair_weights,
    sample_preference_dataset,
    solve_gpo,
)

torch.set_num_threads(1)


def _setup(n_pairs=128, seed=3):
    """X = 2 prompts, responses = the N = 4 two-token strings over 'ab'; π_ref = the LM at init."""
    game = random_contextual_game(2, 4, seed=seed, kind="mixture")
    task = enumerable_task(["x0:", "x1:"], "ab", 2, pref=game.pref)
    tokenizer = build_char_tokenizer()
    reference = build_lm("nano", len(tokenizer), seed, dtype="float64").requires_grad_(False)
    with torch.no_grad():
        ref = enumerate_policy(reference, task, tokenizer).exp().numpy()
    ref /= ref.sum(-1, keepdims=True)
    dataset = sample_preference_dataset(task.pref, ref, n_pairs, np.random.default_rng(seed))
    weights = empirical_pair_weights(*dataset, task.n_contexts, task.n_responses)
    return task, tokenizer, reference, ref, dataset, weights


@pytest.mark.parametrize("kind", ["squared", "logistic"])
def test_converged_lm_equals_tabular_optimum(kind):
    """The LM trained to convergence reaches solve_gpo's optimum of the same empirical loss.

    Tolerance 1e-10 on KL(target‖π): KL ≈ ½Σπδ² for log-probability errors δ, so 1e-10 allows
    δ ≈ 1e-5. The floor is the LM's float32 RMSNorm (transformers computes it in float32 inside a
    float64 model): log-probabilities carry ≲1e-7 error, i.e. KL ≲ 1e-14 (measured 3e-16 squared,
    1.3e-15 logistic);
    an unconverged fit is far above (minibatch Adam, 500 steps: 2e-5).
    """
    task, tokenizer, reference, ref, _, weights = _setup()
    beta = 0.5
    target = solve_gpo(ref, weights, beta, kind)
    assert target.extras["converged"]
    model = build_lm("nano", len(tokenizer), 3, dtype="float64")
    fit = fit_offline_gpo(model, reference, task, tokenizer, weights, beta=beta, kind=kind)
    assert fit.converged
    np.testing.assert_allclose(fit.reference, ref, rtol=0, atol=1e-15)
    moved = float(np.mean(kl_divergence(target.final, ref)))
    assert moved > 0.05  # the optimum is far from π_ref, so reaching it is a real test
    assert float(np.mean(kl_divergence(target.final, fit.policy))) < 1e-10
    # same minimum of the same loss (relative 1e-9: losses are O(1), the policies agree to ~1e-7)
    assert fit.loss == pytest.approx(target.last("loss"), rel=1e-9)


def test_mean_margin_is_beta_over_length():
    """margin='mean' divides both log-ratios by L = 2: the same fit as margin='sum' at β/2."""
    task, tokenizer, reference, _, _, weights = _setup(seed=5)
    fits = [fit_offline_gpo(build_lm("nano", len(tokenizer), 5, dtype="float64"), reference, task, tokenizer,
                            weights, beta=beta, kind="squared", margin=margin)
            for beta, margin in ((1.0, "mean"), (0.5, "sum"))]
    # both converge to the same optimum: tolerance as in the test above
    assert float(np.mean(kl_divergence(fits[1].policy, fits[0].policy))) < 1e-10


def test_exact_loss_is_the_dataset_mean():
    """Σ W f(βρ) on enumerated log-probs = (1/N) Σ_n f(βρ_n) over the dataset rows (gpo_lm_loss).

    Tolerance 1e-9 relative: both are float64 forward passes of the same sequences in different
    batch layouts; the float32 RMSNorm inside rounds the same inputs the same way, and the
    remaining differences are float64 summation order (measured ~1e-16).
    """
    task, tokenizer, reference, _, dataset, weights = _setup(n_pairs=40)
    model = build_lm("nano", len(tokenizer), 11, dtype="float64")  # another init: margins ≠ 0
    allowed = task.response_token_ids(tokenizer)
    batch = enumerable_pair_batch(task, tokenizer, *dataset)
    for kind in GPO_KINDS:
        rows, margins = gpo_lm_loss(model, reference, batch, 0.7, kind, margin="sum", allowed_tokens=allowed)
        with torch.no_grad():
            exact = population_gpo_loss(enumerate_policy(model, task, tokenizer),
                                        enumerate_policy(reference, task, tokenizer), weights, 0.7, kind)
        assert float(margins.abs().max()) > 0.01
        assert float(exact) == pytest.approx(float(rows.detach()), rel=1e-9)


def test_fit_validates_input():
    task, tokenizer, reference, _, _, weights = _setup(n_pairs=8)
    model = build_lm("nano", len(tokenizer), 3, dtype="float64")
    with pytest.raises(ValueError, match="pair_weights"):
        fit_offline_gpo(model, reference, task, tokenizer, weights * 2, beta=1.0, kind="squared")
    with pytest.raises(ValueError, match="pair_weights"):
        fit_offline_gpo(model, reference, task, tokenizer, weights[:, :2], beta=1.0, kind="squared")
    with pytest.raises(ValueError, match="beta"):
        fit_offline_gpo(model, reference, task, tokenizer, weights, beta=0.0, kind="squared")
    with pytest.raises(ValueError, match="kind"):
        fit_offline_gpo(model, reference, task, tokenizer, weights, beta=1.0, kind="cubic")


# ----------------------------------------------------------------------------- β ratio helper
@given(
    steps=st.lists(st.floats(0.05, 2.0), min_size=1, max_size=11),
    drops=st.lists(st.floats(0.01, 3.0), min_size=12, max_size=12),
    ratio=st.floats(0.2, 5.0),
    start=st.floats(-3.0, 1.0),
    fractions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
)
def test_beta_ratio_exact_on_shifted_curves(steps, drops, ratio, start, fractions):
    """Any strictly decreasing KL(β) sampled on grid b and on grid a = ratio·b: the answer is ratio.

    Both interpolants are shifted copies in log β, so the result is exact up to float64 rounding
    of exp/log (1e-12 relative)."""
    log_betas = start + np.cumsum([0.0, *steps])
    betas_b = np.exp(log_betas)
    kl = np.exp(1.0 - np.cumsum(drops[: len(betas_b)]))
    levels = np.exp(np.log(kl.min()) + np.asarray(fractions) * (np.log(kl.max()) - np.log(kl.min())))
    measured = beta_ratio_at_equal_kl(ratio * betas_b, kl, betas_b, kl, levels)
    np.testing.assert_allclose(measured, ratio, rtol=1e-12)


def test_beta_ratio_exact_on_power_laws():
    """KL_a = c·(β/r)^(−p), KL_b = c·β^(−p) on unrelated grids: log-log linear, so exact."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        c, p, r = np.exp(rng.normal()), rng.uniform(0.5, 3.0), np.exp(rng.normal())
        betas_a = np.sort(np.exp(rng.uniform(-2, 2, 7)))
        betas_b = np.sort(np.exp(rng.uniform(-2, 2, 5)))
        kl_a, kl_b = c * (betas_a / r) ** (-p), c * betas_b ** (-p)
        low = max(kl_a.min(), kl_b.min())
        high = min(kl_a.max(), kl_b.max())
        if not low < high:
            continue
        levels = np.geomspace(low, high, 4)
        np.testing.assert_allclose(beta_ratio_at_equal_kl(betas_a, kl_a, betas_b, kl_b, levels), r, rtol=1e-12)


def test_beta_ratio_validates_input():
    betas, kl = np.array([0.1, 1.0, 10.0]), np.array([1.0, 0.1, 0.01])
    with pytest.raises(ValueError, match="kl_a must decrease"):
        beta_ratio_at_equal_kl(betas, [1.0, 0.1, 0.2], betas, kl, [0.5])
    with pytest.raises(ValueError, match="kl_levels must lie"):
        beta_ratio_at_equal_kl(betas, kl, betas, kl, [2.0])
    with pytest.raises(ValueError, match="at least 2"):
        beta_ratio_at_equal_kl([1.0], [1.0], betas, kl, [0.5])
    with pytest.raises(ValueError, match="> 0"):
        beta_ratio_at_equal_kl(betas, [1.0, 0.1, 0.0], betas, kl, [0.5])


# ----------------------------------------------------------------------------- Taylor ratio
@pytest.mark.parametrize("kind", GPO_KINDS)
def test_taylor_ratio_from_finite_differences(kind):
    """r_squared/r_kind with f′(0), f″(0) by central differences of gpo_loss (β = 1).

    h = 1e-4: truncation h²·f‴/6 and h²·f⁗/12 ≲ 1e-8; rounding ε/h ≈ 1e-12 and ε/h² ≈ 2e-8 (f is
    O(1)), so 1e-6 relative. The hinge is linear on (−∞, 1): its difference quotient f″ is 0, ratio ∞.
    """
    h = 1e-4

    def derivatives(name):
        f_minus, f_zero, f_plus = (float(gpo_loss(x, 1.0, name)) for x in (-h, 0.0, h))
        return (f_plus - f_minus) / (2 * h), (f_plus - 2 * f_zero + f_minus) / h**2

    first, second = derivatives(kind)
    first_sq, second_sq = derivatives("squared")
    assert first < 0
    assert regularization_ratio(kind) == pytest.approx(second / abs(first), rel=1e-6, abs=1e-6)
    if kind == "hinge":
        assert abs(second) < 1e-6 and taylor_beta_ratio(kind) == float("inf")
    else:
        expected = (second_sq / abs(first_sq)) / (second / abs(first))
        assert taylor_beta_ratio(kind) == pytest.approx(expected, rel=1e-6)
    assert taylor_beta_ratio("logistic") == 2.0 and taylor_beta_ratio("savage") == 2.0
    with pytest.raises(ValueError, match="reference_kind"):
        taylor_beta_ratio("squared", reference_kind="hinge")


@pytest.mark.parametrize("kind", ["logistic", "exponential", "truncated_quadratic", "savage"])
def test_taylor_ratio_is_the_weak_preference_limit(kind):
    """Preferences ½ + ε·(P − ½) with P a random game: the tabular ratio at equal KL → Taylor.

    The optimal margins are σ* = O(ε) and the Bayes links deviate from linear at O(ε³) (e.g.
    logit(½ + δ) = 4δ + (16/3)δ³), so the ratio is Taylor·(1 + O(ε²)): with ε = 0.02 and |P − ½| ≤ ½
    the bound is ~(4/3)ε² ≈ 5e-4 (measured 2e-5 to 4e-5); tolerance 1e-3. The kind's β grid is the
    squared grid times the Taylor factor, so the interpolation adds only an O(ε²)-sized error."""
    game = random_contextual_game(2, 5, seed=1, kind="mixture")
    eps = 0.02
    pref = 0.5 + eps * (game.pref - 0.5)
    ref = np.random.default_rng(2).dirichlet(np.ones(5), size=2)
    weights = preference_pair_weights(pref, ref)
    betas = np.geomspace(0.002, 0.2, 6)
    taylor = taylor_beta_ratio(kind)

    def kls(name, grid):
        return [solve_gpo(ref, weights, float(b), name).last("kl_to_ref") for b in grid]

    levels = np.geomspace(*sorted(kls("squared", betas[[1, -2]])), 3)
    measured = beta_ratio_at_equal_kl(taylor * betas, kls(kind, taylor * betas), betas, kls("squared", betas), levels)
    np.testing.assert_allclose(measured, taylor, rtol=1e-3)
    # and the limit is not trivially reached: with the game's own preferences (ε = 1, entries up to
    # ~0.9) the measured ratio departs from Taylor by 4–34 % (measured), for all but the truncated
    # quadratic, which equals the squared loss while every optimal margin stays below 1
    if kind != "truncated_quadratic":
        strong = preference_pair_weights(game.pref, ref)
        scaled = betas * 50  # the same KL range at preferences 50× further from ½
        far = [solve_gpo(ref, strong, float(b), kind).last("kl_to_ref") for b in taylor * scaled]
        near = [solve_gpo(ref, strong, float(b), "squared").last("kl_to_ref") for b in scaled]
        common = np.geomspace(max(min(far), min(near)), min(max(far), max(near)), 5)[1:-1]
        departure = beta_ratio_at_equal_kl(taylor * scaled, far, scaled, near, common) / taylor - 1
        assert np.all(departure > 0.02)
