"""Golden judges and learned preference models (Bradley–Terry reward model, pairwise PM).

Oracles on the intransitive three-type cycle of NLHF §3.2 (ε = 0.1, μ = (.5, .3, .2)) lifted to
one-token responses, trained on the *population* loss (all 9 ordered pairs weighted by μ(y)μ(y′),
soft labels P(y ≻ y′)) with float64 `nano` backbones:

* the BT reward model's reward differences converge to the exact BT maximum-likelihood fit
  (``tabular.nlhf``'s damped-Newton fit of the same weighted loss);
* the pairwise model reproduces P exactly (it is antisymmetric by construction and can represent
  any antisymmetric P over three responses), while the BT model's σ(r_i − r_j) cannot (the game is
  intransitive): the PM is strictly the better classifier;
* the length/quality judge is antisymmetric and has a cycle (so it is not Bradley–Terry).

Tolerance: 300 Adam steps reach the optimum to ~1e-6 (measured); asserted 1e-4 on rewards and P,
while the BT misfit is > 0.05.
"""

from __future__ import annotations

import numpy as np
import torch

from fixpoint_rl.deep.llm.preference_models import (
    PairwisePreferenceModel,
    RewardModel,
    length_quality_judge,
    preference_matrix,
)
from fixpoint_rl.deep.llm.tasks import preference_game_task
from fixpoint_rl.deep.llm.tokenizer import build_char_tokenizer
from fixpoint_rl.envs.preference import three_type_cycle
from fixpoint_rl.tabular.nlhf import _fit_bradley_terry

torch.set_num_threads(1)


def _train(model, loss_fn, steps=300):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(steps):
        if step == 200:
            optimizer.param_groups[0]["lr"] = 0.002
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_reward_model_and_pairwise_model_against_exact_fits():
    tokenizer = build_char_tokenizer()
    task = preference_game_task(three_type_cycle(0.1, ref=np.array([0.5, 0.3, 0.2])))
    pref, mu = task.pref[0], task.ref[0]
    weights = mu[:, None] * mu[None, :] * pref  # W[i, j]: i beats j
    prompt_ids, prompt_mask = task.prompt_batch(tokenizer)
    responses = task.all_response_ids(tokenizer)  # [3, 1]
    first, second = torch.arange(3).repeat_interleave(3), torch.arange(3).repeat(3)
    w = torch.tensor(weights.reshape(-1))
    p = torch.tensor(pref.reshape(-1))

    reward_model = RewardModel("nano", len(tokenizer), seed=0, dtype="float64")
    ones = torch.ones_like(responses)

    def rewards():
        return reward_model(prompt_ids.repeat(3, 1), prompt_mask.repeat(3, 1), responses, ones)

    def bt_loss():
        r = rewards()
        return (w * torch.nn.functional.softplus(r[second] - r[first])).sum()

    _train(reward_model, bt_loss)
    with torch.no_grad():
        r = rewards().numpy()
    exact = _fit_bradley_terry(weights, mu, 0.0)
    np.testing.assert_allclose(r - mu @ r, exact, atol=1e-4)

    pm = PairwisePreferenceModel("nano", len(tokenizer), seed=1, dtype="float64",
                                 sep_token_id=tokenizer.convert_tokens_to_ids("|"))
    pairs = (prompt_ids.repeat(9, 1), prompt_mask.repeat(9, 1), responses[first], ones[first], responses[second],
             ones[second])

    def pm_loss():
        return (torch.tensor(mu[first.numpy()] * mu[second.numpy()])
                * torch.nn.functional.binary_cross_entropy_with_logits(pm.logits(*pairs), p, reduction="none")).sum()

    _train(pm, pm_loss)
    with torch.no_grad():
        learned = pm(*pairs).numpy().reshape(3, 3)
    np.testing.assert_allclose(np.diag(learned), 0.5, atol=1e-12)  # antisymmetric by construction
    np.testing.assert_allclose(learned, pref, atol=1e-4)
    bt_implied = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
    assert np.max(np.abs(bt_implied - pref)) > 0.05  # BT cannot represent the cycle


def test_length_quality_judge_is_antisymmetric_and_cyclic():
    judge = length_quality_judge(3, cyclic_weight=0.6)
    responses = ["a", "ab", "abc", "abcd", "abcde"]
    P = preference_matrix(judge, responses)
    np.testing.assert_allclose(P + P.T, 1.0, atol=1e-15)
    # lengths 3 ≻ 2, 4 ≻ 3, 2 ≻ 4: a cycle (the mod-3 term outweighs quality at λ = 0.6)
    assert P[2, 1] > 0.5 and P[3, 2] > 0.5 and P[1, 3] > 0.5
    assert length_quality_judge(3, cyclic_weight=0.0)(["abc"], ["a"])[0] > 0.5  # quality alone: length 3 wins
