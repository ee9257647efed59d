"""Online vs offline IPO on enumerable-response LMs (float64 `nano` Llama) against tabular optima.

The task is a preference game lifted to one-token responses (``preference_game_task``): the
intransitive three-type cycle of NLHF §3.2 (ε = 0.1) with behaviour policy μ = (.5, .3, .2). The
reference π_ref is the LM at initialisation; training starts from it. Oracles:

* offline IPO (population loss, pairs from μ×μ) converges to π_ref·exp(2P(y ≻ μ)/β)
  (``tabular.gpo.ipo_optimum``);
* online IPO (population loss, pairs from sg(π_θ)×sg(π_θ)) converges to the regularised Nash
  equilibrium π ∝ π_ref·exp(2P(y ≻ π)/β), τ = β/2 (``tabular.online_offline.regularized_nash_ipo``);
  the two optima differ (checked), so the test tells them apart;
* the offline trainer ``gpo.train_offline_gpo`` (full batch, a sampled dataset of 300 triples)
  converges to the exact minimiser of the *empirical* IPO loss (``tabular.gpo.solve_gpo``, damped
  Newton on the same pair weights);
* sampled online pairs are on-policy draws labelled consistently (winner/loser tokens ↔ indices).

Tolerance: KL(oracle ‖ LM) after 400 Adam steps (lr 0.01, then 0.002 from step 300): < 1e-6 offline
(measured 2e-16: a fixed objective) and < 2e-5 online (measured 4e-6: the pair distribution moves
with π_θ, so Adam approaches the fixed point more slowly); both are over three orders below the
online–offline gap KL = 4.5e-2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixpoint_rl.deep.llm.gpo import enumerate_policy, train_offline_gpo
from fixpoint_rl.deep.llm.models import build_lm
from fixpoint_rl.deep.llm.online_offline import (
    offline_pair_weights,
    online_pair_weights,
    population_gpo_loss,
    sample_online_pairs,
)
from fixpoint_rl.deep.llm.tasks import preference_game_task
from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer
from fixpoint_rl.envs.preference import three_type_cycle
from fixpoint_rl.tabular.core.mirror import kl_divergence
from fixpoint_rl.tabular.gpo import empirical_pair_weights, ipo_optimum, sample_preference_dataset, solve_gpo
from fixpoint_rl.tabular.online_offline import regularized_nash_ipo

torch.set_num_threads(1)
BETA = 0.2


@pytest.fixture(scope="module")
def setup():
    tokenizer = build_char_tokenizer()
    task = preference_game_task(three_type_cycle(0.1, ref=np.array([0.5, 0.3, 0.2])))
    reference = build_lm("nano", len(tokenizer), seed=11, dtype="float64").requires_grad_(False)
    with torch.no_grad():
        log_ref = enumerate_policy(reference, task, tokenizer)
    return tokenizer, task, reference, log_ref


def _fresh_policy(tokenizer):
    return build_lm("nano", len(tokenizer), seed=11, dtype="float64").train()  # starts at π_ref


def _minimise(model, task, tokenizer, loss_fn, steps=400):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(steps):
        if step == 300:  # a smaller final step removes Adam's residual oscillation
            optimizer.param_groups[0]["lr"] = 0.002
        log_pi = enumerate_policy(model, task, tokenizer)
        loss = loss_fn(log_pi)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return enumerate_policy(model, task, tokenizer).exp().numpy()


def test_online_and_offline_ipo_stationary_points(setup):
    tokenizer, task, reference, log_ref = setup
    ref = log_ref.exp().numpy()
    offline_target = ipo_optimum(ref, task.pref, task.ref, BETA)
    online_target = regularized_nash_ipo(ref, task.pref, BETA)
    gap = float(kl_divergence(online_target, offline_target).sum())
    assert gap > 1e-3  # the two fixed points are different policies

    weights = offline_pair_weights(task.pref, task.ref)
    offline = _minimise(_fresh_policy(tokenizer), task, tokenizer,
                        lambda log_pi: population_gpo_loss(log_pi, log_ref, weights, BETA, "ipo"))
    online = _minimise(_fresh_policy(tokenizer), task, tokenizer,
                       lambda log_pi: population_gpo_loss(log_pi, log_ref, online_pair_weights(log_pi.exp(), task.pref),
                                                          BETA, "squared"))
    offline_error = float(kl_divergence(offline_target, offline).sum())
    online_error = float(kl_divergence(online_target, online).sum())
    print(f"online-offline gap {gap:.3e}; offline error {offline_error:.2e}; online error {online_error:.2e}")
    print("offline", offline.round(4), "online", online.round(4))
    assert offline_error < 1e-6 and online_error < 2e-5


def test_offline_trainer_reaches_the_empirical_ipo_minimiser(setup):
    tokenizer, task, reference, log_ref = setup
    context, winner, loser = sample_preference_dataset(task.pref, task.ref, 300, seed=0)
    weights = empirical_pair_weights(context, winner, loser, 1, 3)
    ref = log_ref.exp().numpy()
    target = solve_gpo(ref, weights, BETA, "squared").final
    result = train_offline_gpo(_fresh_policy(tokenizer), reference, task, tokenizer, (context, winner, loser),
                               beta=BETA, kind="ipo", margin="sum", steps=300, lr=0.01)
    error = float(kl_divergence(target, result.policy).sum())
    print(f"offline trainer: KL(solve_gpo ‖ LM) = {error:.2e}; losses {result.losses[[0, -1]]}")
    np.testing.assert_allclose(result.reference, ref, atol=1e-12)
    assert result.losses[-1] < result.losses[0]
    assert error < 1e-5  # full-batch Adam without step decay: measured ~1e-7


def test_sampled_online_pairs_are_labelled_consistently(setup):
    tokenizer, task, reference, _ = setup
    generator = torch.Generator().manual_seed(0)
    batch, triples = sample_online_pairs(reference, task, tokenizer, 64, generator=generator, label_pref=task.pref,
                                         label_generator=np.random.default_rng(0))
    assert batch.size == 64 and triples.shape == (64, 3)
    np.testing.assert_array_equal(task.indices_of(batch.chosen_ids, tokenizer), triples[:, 1])
    np.testing.assert_array_equal(task.indices_of(batch.rejected_ids, tokenizer), triples[:, 2])
    # same seeds → same pairs (bitwise reproducible)
    again, triples_again = sample_online_pairs(reference, task, tokenizer, 64, generator=torch.Generator().manual_seed(0),
                                               label_pref=task.pref, label_generator=np.random.default_rng(0))
    np.testing.assert_array_equal(triples, triples_again)
    with pytest.raises(ValueError, match="pair_weights"):
        population_gpo_loss(torch.zeros(1, 3), torch.zeros(1, 3), np.zeros((1, 2, 2)), BETA, "ipo")
