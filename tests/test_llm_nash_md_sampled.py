"""Statistical unbiasedness of the SAMPLED Nash-MD-PG and RLHF policy-gradient estimators.

The estimators are run exactly as ``fixpoint train nash_md_pg|rlhf`` runs them
(``deep.llm.nash_md.sampled_nash_md_pg_loss`` / ``sampled_rlhf_pg_loss``, the functions the trainer
calls: contexts drawn from ν, y ~ π_θ by the KV-cache sampler, y′ from the two-model per-token
geometric mixture, P(y ≻ y′), the surrogate loss, ``backward``) on an enumerable task: a float64
one-layer Llama, X = 2 prompts, K = 3 response tokens, responses of L = 2 tokens (N = 9), so the
token-level KL reward-to-go matters.

Oracle (computed another way): the exact gradient, by autograd through enumeration, of the
objective each estimator is unbiased for,
  Nash-MD-PG:  J(θ) = Σ_x ν(x) [ Σ_y π_θ(y|x)·P(y ≻ π̃_x) − τ·KL(π_θ(·|x)‖μ(·|x)) ],
  RLHF:        J(θ) = Σ_x ν(x) [ Σ_y π_θ(y|x)·r(x, y)   − τ·KL(π_θ(·|x)‖μ(·|x)) ],
with π̃ the per-token mixture's exact distribution (``per_token_mixture_logprobs``) held fixed —
the estimator stops the gradient through the opponent. Deterministic companions: the estimator's
own expectation by enumeration (every context and y weighted by ν·π_θ; for the RLHF baselines
every PAIR of rows of a B = 2 batch) equals ∇J to 1e-6 of the largest coordinate (transformers'
RMSNorm computes in float32 inside a float64 model: measured ~1e-7 relative; the biases tested are
> 1e-2 relative), and the batch-mean baseline's expectation is ∇[(1 − 1/B)·Σπr − τ·KL] instead.

Statistics: M independent minibatch gradients −∇loss (the trainer's update direction, B rows each),
projected on d fixed unit directions: the 4 coordinates with the largest |∇J|, the gradients of
J's two terms (preference or reward part, KL part) and, for Nash-MD-PG, the direction of the
token-KL bias (from enumeration), so that the check has power against the alternatives below.
Per direction: |mean − exact| ≤ z·s.e., s.e. = sample standard deviation / √M. Family-wise
false-alarm probability α = 1e-3 over all the unbiased checks of this file (3 runs: 7 + 7 + 6 = 20
directions, Bonferroni): z = Student-t⁻¹(1 − α/40, M − 1) (each estimate is a mean of B bounded
terms, so the t approximation is good). Seeds are fixed, so the outcome is deterministic; the
probability says how unlikely a pass → fail flip is under another seed.

Power: the same check FAILS for deliberately biased variants of the same code — the KL reward-to-go
replaced by each token's own log-ratio (``kl_form="token"``, the KL loss of TRL's former
NashMDTrainer) and the opponent replaced by y′ = y (P(y ≻ y) = ½: the preference term vanishes).
The two variants need different regimes to show with few samples (the token-KL bias grows with τ
and with π far from μ, which also raises the KL noise that hides the preference term), hence two
problems. The RLHF batch-mean baseline's bias ((B − 1)/B on the reward part) is checked exactly by
enumeration (a sampled check would need ~10⁴ batches at B = 2 to see it). Measured z of every run
is printed. Runtime ≈ 10–15 s (one thread).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import t as student_t

from fixpoint_rl.deep.llm.models import LMConfig, build_lm
from fixpoint_rl.deep.llm.nash_md import (
    all_sequences,
    kl_regularized_pg_loss,
    per_token_mixture_logprobs,
    sampled_nash_md_pg_loss,
    sampled_rlhf_pg_loss,
)
from fixpoint_rl.deep.llm.sampling import enumerate_logprobs, sequence_logprobs
from fixpoint_rl.envs.preference import random_game

torch.set_num_threads(1)

VOCAB = 8
ALLOWED = torch.tensor([3, 4, 5])
LENGTH = 2
PROMPTS = torch.tensor([[1, 6, 7], [1, 7, 6]])
PROMPT_MASK = torch.ones_like(PROMPTS)
NU = torch.tensor([0.4, 0.6], dtype=torch.float64)  # context weights ν
MIXTURE = 0.5
N_TOP = 4
ALPHA = 1e-3
N_UNBIASED_DIRECTIONS = 7 + 7 + 6  # all unbiased checks of this file (Bonferroni)
TINY = LMConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, name="tiny")
# two regimes (see the module docstring): (head scale, τ, game kind, M minibatches, B rows)
REGIMES = {"far": (20.0, 0.5, "mixture", 40, 32), "near": (12.0, 0.3, "antisymmetric", 60, 32)}


def _critical_z(m: int) -> float:
    return float(student_t.isf(ALPHA / (2 * N_UNBIASED_DIRECTIONS), m - 1))


def _tiny_lm(seed, head_scale):
    """A float64 one-layer Llama whose output head is scaled up so that π(·|x, y_<n) is skewed
    (a fresh LM is almost uniform; the biases under test need π ≠ μ and a non-flat P(y ≻ π̃))."""
    model = build_lm(TINY, VOCAB, seed=seed, dtype="float64")
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)
    return model


def _problem(regime):
    head_scale, tau, game, m, b = REGIMES[regime]
    responses = all_sequences(ALLOWED, LENGTH)  # [9, 2]
    N = responses.shape[0]
    reference = _tiny_lm(11, head_scale).eval().requires_grad_(False)
    policy = _tiny_lm(3, head_scale)
    pref = torch.tensor(np.stack([random_game(N, seed=5, kind=game).pref, random_game(N, seed=6, kind=game).pref]))
    reward = torch.tensor(np.random.default_rng(0).normal(size=(2, N)))  # [X, N] = [2, 9]
    return dict(responses=responses, reference=reference, policy=policy, pref=pref, reward=reward, tau=tau, M=m, B=b)


@pytest.fixture(scope="module")
def far():
    return _problem("far")


@pytest.fixture(scope="module")
def near():
    return _problem("near")


def _flat_grad(model, loss):
    parameters = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(parameters, grads)])


def _index(tokens):
    """Response index (base K, first token most significant: ``all_sequences`` order) of [B, L] tokens."""
    digits = tokens - int(ALLOWED[0])
    return digits[:, 0] * len(ALLOWED) + digits[:, 1]


def _objective_gradient(problem, score, *, score_weight=1.0, kl_weight=1.0):
    """∇_θ [score_weight·Σ_x ν Σ_y π_θ·score − kl_weight·τ·Σ_x ν KL(π_θ‖μ)] by autograd through
    enumeration; ``score`` [X, N] is P(y ≻ π̃) or r, held fixed."""
    policy, reference, responses = problem["policy"], problem["reference"], problem["responses"]
    log_pi = enumerate_logprobs(policy, PROMPTS, PROMPT_MASK, responses, allowed_tokens=ALLOWED)
    with torch.no_grad():
        log_mu = enumerate_logprobs(reference, PROMPTS, PROMPT_MASK, responses, allowed_tokens=ALLOWED)
    pi = log_pi.exp()
    kl = (pi * (log_pi - log_mu)).sum(-1)
    objective = NU @ (score_weight * (pi * score).sum(-1) - kl_weight * problem["tau"] * kl)
    return _flat_grad(policy, objective)


def _opponent_win(problem):
    """[X, N] P(y ≻ π̃_x): π̃ the per-token mixture's exact distribution (no gradient)."""
    with torch.no_grad():
        mix = per_token_mixture_logprobs(problem["policy"], problem["reference"], MIXTURE, PROMPTS, PROMPT_MASK,
                                         problem["responses"], ALLOWED).exp()
    return torch.einsum("xij,xj->xi", problem["pref"], mix)


def _rows(problem, contexts, response_index):
    """Prompt rows and response tokens of (context, response) pairs, with both models' per-token log-probs."""
    tokens = problem["responses"][response_index]
    ones = torch.ones_like(tokens)
    rows = (PROMPTS[contexts], PROMPT_MASK[contexts], tokens, ones)
    policy_tokens = sequence_logprobs(problem["policy"], *rows, per_token=True, allowed_tokens=ALLOWED)
    with torch.no_grad():
        reference_tokens = sequence_logprobs(problem["reference"], *rows, per_token=True, allowed_tokens=ALLOWED)
    return policy_tokens, reference_tokens, ones


def _enumerated_estimator_gradient(problem, score, kl_form="reward_to_go"):
    """Exact expectation of the one-row estimator: every (x, y) weighted by ν(x)·π_θ(y|x), score(x, y)
    in closed form, the same surrogate loss (its gradient is −mean of ĝ, so negate)."""
    X, N = score.shape
    contexts = torch.arange(X).repeat_interleave(N)
    policy_tokens, reference_tokens, ones = _rows(problem, contexts, torch.arange(N).repeat(X))
    weights = NU[contexts] * policy_tokens.detach().sum(-1).exp() * (X * N)
    loss = kl_regularized_pg_loss(policy_tokens, reference_tokens, ones, score.reshape(-1), problem["tau"],
                                  weights=weights, kl_form=kl_form)
    return -_flat_grad(problem["policy"], loss)


def _enumerated_pair_baseline_gradient(problem, baseline):
    """Exact expectation of a B = 2 RLHF minibatch with a batch-coupled baseline: every pair of rows
    ((x₁, y₁), (x₂, y₂)) weighted by ν(x₁)π(y₁|x₁)·ν(x₂)π(y₂|x₂), scores as in
    ``sampled_rlhf_pg_loss``."""
    X, N = problem["reward"].shape
    cells = X * N
    first, second = torch.arange(cells).repeat_interleave(cells), torch.arange(cells).repeat(cells)
    order = torch.stack([first, second], 1).reshape(-1)  # rows (pair 0 row 1, pair 0 row 2, …)
    contexts, responses = order // N, order % N
    policy_tokens, reference_tokens, ones = _rows(problem, contexts, responses)
    r = problem["reward"][contexts, responses].view(-1, 2)
    if baseline == "leave_one_out":
        scores = r - r.flip(-1)  # the other row's reward
    else:
        scores = r - r.mean(-1, keepdim=True)
    p = NU[contexts] * policy_tokens.detach().sum(-1).exp()
    weights = (p.view(-1, 2).prod(-1, keepdim=True).expand(-1, 2)).reshape(-1) * cells * cells  # mean over pairs
    loss = kl_regularized_pg_loss(policy_tokens, reference_tokens, ones, scores.reshape(-1), problem["tau"],
                                  weights=weights)
    return -_flat_grad(problem["policy"], loss)


def _unit(v):
    return v / v.norm()


def _directions(exact, extra):
    top = exact.abs().argsort(descending=True)[:N_TOP]
    basis = torch.zeros((N_TOP, exact.numel()), dtype=exact.dtype)
    basis[torch.arange(N_TOP), top] = 1.0
    return torch.cat([basis, torch.stack([_unit(v) for v in extra])])


def _sampled_projections(problem, make_loss, directions, seed):
    """[M, d] projections of M independent minibatch gradients −∇loss, contexts and samples drawn
    with two generators as in the trainer."""
    context_generator = torch.Generator().manual_seed(seed)
    sample_generator = torch.Generator().manual_seed(seed + 1)
    out = []
    for _ in range(problem["M"]):
        contexts = torch.multinomial(NU, problem["B"], replacement=True, generator=context_generator)
        loss = make_loss(problem["policy"], PROMPTS[contexts], PROMPT_MASK[contexts], contexts, sample_generator)
        out.append(directions @ -_flat_grad(problem["policy"], loss))
    return torch.stack(out)


def _max_z(samples, exact, directions):
    """max over directions of |mean − exact| / s.e."""
    se = samples.std(0, unbiased=True) / np.sqrt(samples.shape[0])
    assert bool((se > 0).all())
    return float(((samples.mean(0) - directions @ exact).abs() / se).max())


def _nash_md_loss(problem, *, same_opponent=False, kl_form="reward_to_go"):
    pref = problem["pref"]

    def make(policy, ids, mask, contexts, generator):
        def preference(mine, other):
            return pref[contexts, _index(mine), _index(mine if same_opponent else other)]

        return sampled_nash_md_pg_loss(policy, problem["reference"], ids, mask, LENGTH, preference, problem["tau"],
                                       mixture=MIXTURE, generator=generator, allowed_tokens=ALLOWED,
                                       kl_form=kl_form).loss

    return make


def _rlhf_loss(problem, baseline):
    reward = problem["reward"]

    def make(policy, ids, mask, contexts, generator):
        return sampled_rlhf_pg_loss(policy, problem["reference"], ids, mask, LENGTH,
                                    lambda mine: reward[contexts, _index(mine)], problem["tau"], generator=generator,
                                    allowed_tokens=ALLOWED, baseline=baseline).loss

    return make


def _assert_close(ours, expected):
    scale = float(expected.abs().max())
    assert scale > 1e-3  # a vanishing gradient would make the check vacuous
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6 * scale)


def test_enumerated_estimator_expectations_against_objective_gradients(far):
    win = _opponent_win(far)
    exact = _objective_gradient(far, win)
    # the ½ baseline has zero expectation: score P(y ≻ π̃) − ½ (as in the estimator) gives ∇J
    _assert_close(_enumerated_estimator_gradient(far, win - 0.5), exact)
    # the token-own-log-ratio KL is biased for L = 2, far beyond round-off
    biased = _enumerated_estimator_gradient(far, win - 0.5, kl_form="token")
    assert float((biased - exact).abs().max()) > 1e-2 * float(exact.abs().max())
    # RLHF, B = 2: the leave-one-out baseline is unbiased; the batch mean halves the reward part
    reward = far["reward"]
    _assert_close(_enumerated_pair_baseline_gradient(far, "leave_one_out"), _objective_gradient(far, reward))
    _assert_close(_enumerated_pair_baseline_gradient(far, "batch_mean"),
                  _objective_gradient(far, reward, score_weight=0.5))
    gap = _objective_gradient(far, reward) - _objective_gradient(far, reward, score_weight=0.5)
    assert float(gap.abs().max()) > 1e-2 * float(exact.abs().max())


def test_sampled_nash_md_pg_is_unbiased_and_the_check_sees_the_token_kl_bias(far):
    win = _opponent_win(far)
    exact = _objective_gradient(far, win)
    token = _enumerated_estimator_gradient(far, win - 0.5, kl_form="token")
    directions = _directions(exact, [_objective_gradient(far, win, kl_weight=0.0),
                                     _objective_gradient(far, win, score_weight=0.0), token - exact])
    z = {label: _max_z(_sampled_projections(far, make, directions, seed=7), exact, directions)
         for label, make in [("nash_md_pg", _nash_md_loss(far)), ("own-token KL", _nash_md_loss(far, kl_form="token"))]}
    threshold = _critical_z(far["M"])
    print(f"far regime: z threshold {threshold:.2f}; max |mean − exact|/s.e.:", {k: round(v, 2) for k, v in z.items()})
    assert z["nash_md_pg"] <= threshold
    assert z["own-token KL"] > threshold


def test_sampled_nash_md_pg_is_unbiased_and_the_check_sees_a_missing_opponent(near):
    win = _opponent_win(near)
    exact = _objective_gradient(near, win)
    token = _enumerated_estimator_gradient(near, win - 0.5, kl_form="token")
    directions = _directions(exact, [_objective_gradient(near, win, kl_weight=0.0),
                                     _objective_gradient(near, win, score_weight=0.0), token - exact])
    z = {label: _max_z(_sampled_projections(near, make, directions, seed=9), exact, directions)
         for label, make in [("nash_md_pg", _nash_md_loss(near)), ("y' = y", _nash_md_loss(near, same_opponent=True))]}
    threshold = _critical_z(near["M"])
    print(f"near regime: z threshold {threshold:.2f}; max |mean − exact|/s.e.:", {k: round(v, 2) for k, v in z.items()})
    assert z["nash_md_pg"] <= threshold
    assert z["y' = y"] > threshold


def test_sampled_rlhf_pg_with_leave_one_out_baseline_is_unbiased(far):
    problem = dict(far, M=80, B=8)
    reward = problem["reward"]
    exact = _objective_gradient(problem, reward)
    directions = _directions(exact, [_objective_gradient(problem, reward, kl_weight=0.0),
                                     _objective_gradient(problem, reward, score_weight=0.0)])
    samples = _sampled_projections(problem, _rlhf_loss(problem, "leave_one_out"), directions, seed=8)
    z, threshold = _max_z(samples, exact, directions), _critical_z(problem["M"])
    print(f"RLHF leave-one-out: z threshold {threshold:.2f}; max |mean − exact|/s.e. {z:.2f}")
    assert z <= threshold
    # the sampled check is not vacuous: the same draws miss an objective without the KL term
    assert _max_z(samples, _objective_gradient(problem, reward, kl_weight=0.0), directions) > threshold


def test_sampled_losses_validate_their_arguments(far):
    with pytest.raises(ValueError, match="baseline"):
        _rlhf_loss(far, "median")(far["policy"], PROMPTS, PROMPT_MASK, torch.tensor([0, 1]), 0)
    with pytest.raises(ValueError, match="prompt_ids"):
        _rlhf_loss(far, "leave_one_out")(far["policy"], PROMPTS[:1], PROMPT_MASK[:1], torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="kl_form"):
        _nash_md_loss(far, kl_form="per_sequence")(far["policy"], PROMPTS, PROMPT_MASK, torch.tensor([0, 1]), 0)
