"""Exactness of the language-model RL estimators on enumerable-response LMs (float64 `nano` Llama).

Every response is L tokens over K allowed tokens, so π_θ(y|x) over the N = K^L responses is a
proper distribution computed in one forward pass (`enumerate_logprobs`). Oracles:

* chain rule: the exact expected gradient of each surrogate (every group of samples enumerated,
  weighted by its probability) equals Σ_y g_y ∇_w log π_θ(y) with g the tabular closed-form gradient
  with respect to softmax logits, evaluated at logits = log π_θ (valid because softmax(log π) = π):
  k-sample objectives (`objective_gradient`), AGRO / naive PG (`agro_expected_gradient`,
  `naive_pg_expected_gradient`), JEPO (`jepo_expected_gradient`, answer and CoT parts);
* unbiasedness of the sampled estimators (groups drawn by the LM's own sampler) within a CLT band;
* AGRO's stationary point π_ref·exp(r/β) from on-policy, reference and replayed data, while naive
  PG's is not; JEPO's bound ordering, gap identity, and no-CoT = SFT.

Tolerances: the chain-rule identities hold to 1e-6 of the largest gradient coordinate (the float64
model's RMSNorm runs in float32, see `_assert_close`); sampled checks use 5 standard errors (a false alarm has probability < 1e-6 per coordinate).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fixpoint_rl.deep.llm.agro import agro_advantages, agro_loss
from fixpoint_rl.deep.llm.jepo import jepo_advantages, jepo_bound_estimate, jepo_loss, jepo_rl_loss
from fixpoint_rl.deep.llm.models import build_lm
from fixpoint_rl.deep.llm.pg_losses import compute_advantages, policy_gradient_loss
from fixpoint_rl.deep.llm.sampling import enumerate_logprobs, sample, sequence_logprobs
from fixpoint_rl.tabular import (
    agro_expected_gradient,
    agro_optimal_policy,
    jensen_bound,
    jepo_expected_gradient,
    log_evidence,
    multi_sample_bound,
    naive_pg_expected_gradient,
    objective_gradient,
)
from fixpoint_rl.tabular.core.mirror import kl_divergence

torch.set_num_threads(1)

VOCAB = 8
ALLOWED = torch.tensor([3, 4, 5])  # K = 3 response tokens
PROMPT = torch.tensor([[1, 6, 7]])
PROMPT_MASK = torch.ones_like(PROMPT)


def _responses(length):
    return torch.tensor(list(itertools.product(ALLOWED.tolist(), repeat=length)), dtype=torch.long)


@pytest.fixture(scope="module")
def model():
    return build_lm("nano", VOCAB, seed=3, dtype="float64")


@pytest.fixture(scope="module")
def reference():
    return build_lm("nano", VOCAB, seed=11, dtype="float64")


def _grad(model, loss):
    parameters = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, parameters, allow_unused=True, retain_graph=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(parameters, grads)])


def _tuples(size, n):
    return torch.tensor(list(itertools.product(range(size), repeat=n)), dtype=torch.long)


def _assert_close(ours, expected):
    scale = float(expected.abs().max())
    assert scale > 1e-6  # a vanishing gradient would make the check vacuous
    # transformers' LlamaRMSNorm normalises in float32 even in a float64 model, so ∇ log π_θ carries
    # float32 round-off (~1e-8 relative; measured 1.7e-8 on Σ_y π_y ∇log π_y, which is 0 exactly).
    # Both sides differ by a multiple of that null direction, hence 1e-6 of the largest coordinate;
    # a wrong estimator is off by O(1e-2) or more.
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6 * scale)


REWARD = np.array([0.0, 1.0, 0.0, 0.3, 0.0, 0.0, 1.0, 0.0, 0.6])  # 9 responses (L = 2)
ANSWER = np.array([0, 1, 0, 2, 0, 0, 1, 0, 3])  # answer classes; equal answers, equal rewards


@pytest.mark.parametrize(
    "estimator,objective,n,k",
    [
        ("rloo", "mean", 3, 3),
        ("pass_at_k", "pass_at_k", 2, 2),
        ("pass_at_k", "pass_at_k", 3, 3),
        ("pass_at_k", "pass_at_k", 3, 2),  # unbiased k-subset estimator, n > k
        ("majority_vote", "majority_vote", 3, 3),
    ],
)
def test_k_sample_expected_gradient_is_tabular_gradient_through_the_lm(model, estimator, objective, n, k):
    logp = enumerate_logprobs(model, PROMPT, PROMPT_MASK, _responses(2), allowed_tokens=ALLOWED)[0]
    probs = logp.detach().exp()
    assert abs(float(probs.sum()) - 1.0) < 1e-12
    tuples = _tuples(9, n)
    weights = probs[tuples].prod(dim=1)
    rewards = torch.as_tensor(REWARD)[tuples]
    answers = torch.as_tensor(ANSWER)[tuples] if objective == "majority_vote" else None
    advantages = compute_advantages(estimator, rewards, answers=answers, k=k)
    surrogate = (weights * policy_gradient_loss(logp[tuples], advantages, reduction="none")).sum()
    response_answer = ANSWER if objective == "majority_vote" else None
    tabular = objective_gradient(logp.detach().numpy(), REWARD, objective, k, response_answer)
    expected = -(torch.as_tensor(tabular) * logp).sum()
    _assert_close(_grad(model, surrogate), _grad(model, expected))


def _response_index(tokens):
    digits = tokens - ALLOWED[0]
    return digits[:, 0] * 3 + digits[:, 1]


@pytest.mark.parametrize("estimator,objective,n,k", [
    ("pass_at_k", "pass_at_k", 4, 2),
    ("majority_vote", "majority_vote", 3, 3),
    pytest.param("pass_at_k", "pass_at_k", 4, 4, marks=pytest.mark.slow),
    pytest.param("rloo", "mean", 4, 4, marks=pytest.mark.slow),
])
def test_sampled_k_sample_estimators_are_unbiased(model, estimator, objective, n, k):
    groups = 3000
    logp = enumerate_logprobs(model, PROMPT, PROMPT_MASK, _responses(2), allowed_tokens=ALLOWED)[0].detach()
    probs = logp.exp()
    drawn = sample(model, PROMPT.repeat(groups, 1), PROMPT_MASK.repeat(groups, 1), 2, n=n,
                   stop_at_eos=False, generator=5, allowed_tokens=ALLOWED)
    index = _response_index(drawn.tokens).view(groups, n)
    rewards = torch.as_tensor(REWARD)[index]
    answers = torch.as_tensor(ANSWER)[index] if objective == "majority_vote" else None
    advantages = compute_advantages(estimator, rewards, answers=answers, k=k)
    # per-group estimate in logit coordinates: Σ_i A_i (e_{y_i} − π)
    score = torch.nn.functional.one_hot(index, 9).double() - probs
    estimates = torch.einsum("gi,gik->gk", advantages, score).numpy()
    mean, error = estimates.mean(0), estimates.std(0, ddof=1) / np.sqrt(groups)
    tabular = objective_gradient(logp.numpy(), REWARD, objective, k, ANSWER if objective == "majority_vote" else None)
    assert np.all(np.abs(mean - tabular) <= 5 * error + 1e-12)


BETA = 0.5


def _agro_setup(model, reference):
    logp = enumerate_logprobs(model, PROMPT, PROMPT_MASK, _responses(2), allowed_tokens=ALLOWED)[0]
    with torch.no_grad():
        ref_logp = enumerate_logprobs(reference, PROMPT, PROMPT_MASK, _responses(2), allowed_tokens=ALLOWED)[0]
    return logp, ref_logp


@pytest.mark.parametrize("source", ["on_policy", "reference", "replay"])
@pytest.mark.parametrize("estimator", ["agro", "naive"])
def test_agro_expected_gradient_is_tabular_gradient_through_the_lm(model, reference, source, estimator):
    logp, ref_logp = _agro_setup(model, reference)
    probs, ref = logp.detach().exp(), ref_logp.exp()
    mu = {"on_policy": probs, "reference": ref, "replay": 0.3 * probs + 0.7 * torch.softmax(torch.arange(9.0, dtype=torch.float64), 0)}[source]
    tuples = _tuples(9, 3)
    weights = mu[tuples].prod(dim=1)
    loss = agro_loss(logp[tuples], ref_logp[tuples], torch.as_tensor(REWARD)[tuples], BETA, estimator=estimator, reduction="none")
    function = agro_expected_gradient if estimator == "agro" else naive_pg_expected_gradient
    tabular = function(logp.detach().numpy(), REWARD, ref.numpy(), BETA, mu.numpy())
    _assert_close(_grad(model, (weights * loss).sum()), _grad(model, -(torch.as_tensor(tabular) * logp).sum()))


def _train_agro(source, estimator, steps=150):
    policy = build_lm("nano", VOCAB, seed=3, dtype="float64")
    reference = build_lm("nano", VOCAB, seed=11, dtype="float64")
    policy.train()
    with torch.no_grad():
        ref_logp = enumerate_logprobs(reference, PROMPT, PROMPT_MASK, _responses(2), allowed_tokens=ALLOWED)[0]
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    pairs = _tuples(9, 2)
    rewards = torch.as_tensor(REWARD)[pairs]
    history = []
    for _ in range(steps):
        logp = enumerate_logprobs(policy, PROMPT, PROMPT_MASK, _responses(2), allowed_tokens=ALLOWED)[0]
        probs = logp.detach().exp()
        history = (history + [probs])[-20:]
        mu = {"on_policy": probs, "reference": ref_logp.exp(), "replay": torch.stack(history).mean(0)}[source]
        loss = agro_loss(logp[pairs], ref_logp[pairs], rewards, BETA, estimator=estimator, reduction="none")
        optimizer.zero_grad()
        (mu[pairs].prod(dim=1) * loss).sum().backward()
        optimizer.step()
    optimum = agro_optimal_policy(REWARD, ref_logp.exp().numpy(), BETA)
    return float(kl_divergence(probs.numpy(), optimum))


@pytest.mark.parametrize("source", [
    "reference", pytest.param("on_policy", marks=pytest.mark.slow), pytest.param("replay", marks=pytest.mark.slow),
])
def test_agro_reaches_the_kl_regularised_optimum_from_any_data(source):
    # π* = π_ref exp(r/β)/Z is the unique stationary point when μ covers every response
    assert _train_agro(source, "agro") < 1e-6


def test_naive_pg_from_reference_data_stalls_away_from_the_optimum():
    # naive PG's off-policy stationary point is biased (tabular analogue: KL ≈ 0.014)
    assert _train_agro("reference", "naive") > 1e-3


def _cot_model_tables(model, cot_length=2):
    cots = _responses(cot_length)
    log_q = enumerate_logprobs(model, PROMPT, PROMPT_MASK, cots, allowed_tokens=ALLOWED)[0]
    prompts = torch.cat([PROMPT.repeat(cots.shape[0], 1), cots], dim=1)
    answers = ALLOWED[:, None]
    log_p = enumerate_logprobs(model, prompts, torch.ones_like(prompts), answers, allowed_tokens=ALLOWED)
    return log_q, log_p  # [C], [C, A]


TARGET = 1  # a* = the second allowed token


@pytest.mark.parametrize("bound,n", [("single", 1), ("single", 3), ("multi", 2), ("multi", 3)])
def test_jepo_expected_gradient_is_tabular_gradient_through_the_lm(model, bound, n):
    log_q, log_p = _cot_model_tables(model)
    q = log_q.detach().exp()
    tuples = _tuples(9, n)
    weights = q[tuples].prod(dim=1)
    loss = jepo_loss(log_q[tuples], log_p[tuples, TARGET], bound=bound, reduction="none")
    cot_gradient, answer_gradient = jepo_expected_gradient(log_q.detach().numpy(), log_p.detach().numpy(), TARGET, n, bound=bound)
    expected = -(torch.as_tensor(cot_gradient) * log_q).sum() - (torch.as_tensor(answer_gradient) * log_p).sum()
    _assert_close(_grad(model, (weights * loss).sum()), _grad(model, expected))


def test_jepo_bounds_order_and_gap_identity_on_an_enumerable_cot(model):
    with torch.no_grad():
        log_q, log_p = _cot_model_tables(model)
    q, likelihood = log_q.exp().numpy(), log_p[:, TARGET].exp().numpy()
    evidence = log_evidence(q, likelihood)
    bounds = [multi_sample_bound(q, likelihood, n) for n in (1, 2, 3, 4)]
    assert np.all(np.diff(bounds) > 0) and bounds[-1] < evidence
    assert bounds[0] == pytest.approx(jensen_bound(q, likelihood), abs=1e-13)
    posterior = q * likelihood / np.dot(q, likelihood)
    # gap identity log π(a*) − L⁽¹⁾ = KL(q ‖ posterior), float64 to 1e-12
    assert evidence - bounds[0] == pytest.approx(float(kl_divergence(q, posterior)), abs=1e-12)
    # the LM's own evidence: log Σ_c π(c) π(a*|c) by enumeration
    assert evidence == pytest.approx(float(torch.logsumexp(log_q + log_p[:, TARGET], 0)), abs=1e-12)
    # our per-group bound estimates average (over every CoT tuple) to L⁽ⁿ⁾
    for n in (1, 2, 3):
        tuples = _tuples(9, n)
        weights = log_q.exp()[tuples].prod(dim=1)
        for bound in ("single", "multi"):
            estimate = float((weights * jepo_bound_estimate(log_p[tuples, TARGET], bound)).sum())
            assert estimate == pytest.approx(bounds[0] if bound == "single" else bounds[n - 1], abs=1e-12)


def test_jepo_without_cot_is_sft(model):
    # one allowed CoT token and CoT length 1: the CoT is deterministic (q = 1)
    only = torch.tensor([3])
    cot = torch.tensor([[3]])
    log_q = enumerate_logprobs(model, PROMPT, PROMPT_MASK, cot, allowed_tokens=only)[0]
    prompt = torch.cat([PROMPT, cot], dim=1)
    answer = torch.tensor([[4]])
    log_answer = sequence_logprobs(model, prompt, torch.ones_like(prompt), answer, torch.ones_like(answer), allowed_tokens=ALLOWED)
    sft = -log_answer.sum()
    for bound, n in (("single", 1), ("single", 4), ("multi", 4)):
        loss = jepo_loss(log_q.expand(1, n), log_answer.expand(1, n), bound=bound)
        _assert_close(_grad(model, loss), _grad(model, sft))


@pytest.mark.parametrize("bound,n", [("multi", 3), pytest.param("single", 3, marks=pytest.mark.slow)])
def test_sampled_jepo_estimator_is_unbiased(model, bound, n):
    with torch.no_grad():
        log_q, log_p = _cot_model_tables(model)
    groups, batches = 2000, 20
    drawn = sample(model, PROMPT.repeat(groups, 1), PROMPT_MASK.repeat(groups, 1), 2, n=n,
                   stop_at_eos=False, generator=9, allowed_tokens=ALLOWED)
    index = _response_index(drawn.tokens).view(groups, n)
    cot_logits = log_q.clone().requires_grad_(True)  # tabular coordinates φ, ψ at the LM's values
    answer_logits = log_p.clone().requires_grad_(True)
    estimates = []
    for chunk in index.chunk(batches):
        lq = torch.log_softmax(cot_logits, 0)[chunk]
        lp = torch.log_softmax(answer_logits, 1)[chunk, TARGET]
        g_cot, g_answer = torch.autograd.grad(-jepo_loss(lq, lp, bound=bound), [cot_logits, answer_logits])
        estimates.append(torch.cat([g_cot, g_answer.reshape(-1)]).numpy())
    estimates = np.array(estimates)
    mean, error = estimates.mean(0), estimates.std(0, ddof=1) / np.sqrt(batches)
    exact_cot, exact_answer = jepo_expected_gradient(log_q.numpy(), log_p.numpy(), TARGET, n, bound=bound)
    exact = np.concatenate([exact_cot, exact_answer.reshape(-1)])
    assert np.all(np.abs(mean - exact) <= 5 * error + 1e-12)


@pytest.mark.parametrize("source", ["reference", pytest.param("on_policy", marks=pytest.mark.slow)])
def test_sampled_agro_estimator_is_unbiased(model, reference, source):
    logp, ref_logp = _agro_setup(model, reference)
    logp = logp.detach()
    sampler = model if source == "on_policy" else reference
    groups, n = 3000, 3
    drawn = sample(sampler, PROMPT.repeat(groups, 1), PROMPT_MASK.repeat(groups, 1), 2, n=n,
                   stop_at_eos=False, generator=13, allowed_tokens=ALLOWED)
    index = _response_index(drawn.tokens).view(groups, n)
    logits = logp.clone().requires_grad_(True)
    per_group = agro_loss(torch.log_softmax(logits, 0)[index], ref_logp[index], torch.as_tensor(REWARD)[index], BETA, reduction="none")
    # per-group estimates in closed form: Σ_i A_i (e_{y_i} − π), A from agro_loss's advantages
    advantages = agro_advantages(torch.as_tensor(REWARD)[index], logp[index], ref_logp[index], BETA)
    score = torch.nn.functional.one_hot(index, 9).double() - logp.exp()
    estimates = torch.einsum("gi,gik->gk", advantages, score).numpy()
    # the autograd path of agro_loss gives the same per-group estimates (checked on the sum)
    total = torch.autograd.grad(-per_group.sum(), logits)[0].numpy()
    np.testing.assert_allclose(total, estimates.sum(0), atol=1e-9)
    mean, error = estimates.mean(0), estimates.std(0, ddof=1) / np.sqrt(groups)
    mu = (logp if source == "on_policy" else ref_logp).exp().numpy()
    exact = agro_expected_gradient(logp.numpy(), REWARD, ref_logp.exp().numpy(), BETA, mu)
    assert np.all(np.abs(mean - exact) <= 5 * error + 1e-12)


def test_jepo_app_b_options_do_what_they_say():
    torch.manual_seed(0)
    cot = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    answer = -torch.rand(4, 3, dtype=torch.float64).requires_grad_(True)
    # std_clip: every CoT weight lies in [−clip, clip]
    grad = torch.autograd.grad(jepo_loss(cot, answer, bound="multi", advantage_normalization="std_clip", clip=0.5, sup_coef=0.0, reduction="none").sum(), cot)[0]
    assert float(grad.abs().max()) <= 0.5 + 1e-15
    # sup_coef = 0 removes the likelihood term, sup_coef = 2 doubles it
    g0 = torch.autograd.grad(jepo_loss(cot, answer, sup_coef=0.0), answer)[0]
    g2 = torch.autograd.grad(jepo_loss(cot, answer, sup_coef=2.0), answer)[0]
    assert float(g0.abs().max()) == 0.0
    torch.testing.assert_close(g2, torch.full_like(g2, -2.0 / 3 / 4))
    # format penalty: mis-formatted samples get no likelihood gradient and a lower CoT weight
    well = torch.tensor([[True, False, True]] * 4)
    g_answer = torch.autograd.grad(jepo_loss(cot, answer, well_formatted=well, format_penalty=10.0), answer)[0]
    assert float(g_answer[:, 1].abs().max()) == 0.0
    g_cot = torch.autograd.grad(jepo_loss(cot, answer.detach() * 0 - 1.0, well_formatted=well, format_penalty=10.0), cot)[0]
    assert bool((g_cot[:, 1] > 0).all())  # loss gradient > 0: ascent lowers log π(c) of the bad one
    # length normalisation divides the CoT log-probability
    lengths = torch.full((4, 3), 5)
    a = torch.autograd.grad(jepo_loss(cot, answer, sup_coef=0.0), cot)[0]
    b = torch.autograd.grad(jepo_loss(cot, answer, sup_coef=0.0, length_normalization="cot", cot_lengths=lengths), cot)[0]
    torch.testing.assert_close(b, a / 5)
    # the multi-sample advantages are F − ṽ_i exactly
    values = answer.detach()
    full = torch.logsumexp(values, 1, keepdim=True) - np.log(3)
    others = torch.stack([torch.logsumexp(values[:, [j for j in range(3) if j != i]], 1) - np.log(2) for i in range(3)], 1)
    torch.testing.assert_close(jepo_advantages(values, "multi"), full - others)


def test_combined_jepo_rl_switches_per_prompt():
    cot = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    answer = torch.full((2, 3), -1.0, dtype=torch.float64, requires_grad=True)
    completion = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    loss = jepo_rl_loss(cot, answer, completion, rewards, reduction="none")
    g_completion, g_answer = torch.autograd.grad(loss.sum(), [completion, answer])
    # prompt 0 has a verified sample: RLOO on the completion, no JEPO term; prompt 1: JEPO only
    torch.testing.assert_close(g_completion[0], -torch.tensor([-0.5, 1.0, -0.5], dtype=torch.float64) / 3)
    assert float(g_answer[0].abs().max()) == 0.0 and float(g_completion[1].abs().max()) == 0.0
    assert float(g_answer[1].abs().min()) > 0.0
