"""Deep MTPO / MTPO-τ (fixpoint_rl.deep.llm.mtpo) against the tabular oracles of
fixpoint_rl.tabular.multiturn, on games small enough to enumerate every transcript."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixpoint_rl.deep.llm import mtpo as M
from fixpoint_rl.tabular.multiturn import (
    final_state_distribution,
    mtpo,
    multiturn_preference,
    multiturn_rlhf,
    preference_q_values,
    trajectory_kl,
)

torch.set_num_threads(1)


def _exact_config(**changes):
    base = dict(game="tree", num_contexts=1, horizon=2, num_actions=3, alpha=0.1, dtype="float64",
                estimator="expected", lam=1.0, sft_steps=0, lr=3e-3, lr_schedule="linear", steps=60)
    base.update(changes)
    return M.MTPOConfig(**base)


def _reach(game, table):
    """d(x) = ρ(c) · P(reach x | c) for every decision state, by a forward pass (independent of
    the module's transcript enumeration)."""
    A, n_dec = game.num_actions, game.num_decision_states
    d = np.zeros(game.num_states)
    d[: game.num_contexts] = game.context_probs
    for s in range(n_dec):
        for a in range(A):
            k = s * A + a
            lo, hi = game.transition_starts[k], game.transition_starts[k + 1]
            np.add.at(d, game.transition_next[lo:hi], d[s] * table[s, a] * game.transition_probs[lo:hi])
    return d[:n_dec]


def _deep_expected_loss(state):
    """The trainer's own loss on the enumerated batch (what train_step differentiates)."""
    config, game, policy = state.config, state.game, state.policy
    batch = M.enumerate_transcripts(policy, state.tokenizer, state.text)
    if config.algorithm == "mtpo":
        opponent = M.final_distribution(policy, batch, game)
    else:
        opponent = M.final_distribution(policy, batch, game, table=M._mixture_table(state, batch))
    terminal = M._terminal_signals(state, batch, None, opponent)
    logp, values = M.decision_outputs(policy, batch.ids, batch.mask, batch.prompt_len, game.horizon)
    log_ref = M._log_ref(game, batch.states[:, :-1]).to(logp)
    actions = torch.from_numpy(batch.actions)
    with torch.no_grad():
        kl = (logp.exp() * (logp - log_ref)).sum(-1)
        rewards = M.turn_rewards(torch.from_numpy(terminal), kl, config.alpha)
        advantages, _ = M.gae(rewards, values.detach(), 1.0)
        weights = torch.from_numpy(batch.weights) * logp.gather(-1, actions[..., None]).squeeze(-1).sum(-1).exp()
    return M.mtpo_loss(logp, log_ref, actions, advantages, weights, config.alpha), batch, logp


@pytest.mark.parametrize("algorithm", ["mtpo", "mtpo_tau"])
def test_expected_gradient_is_the_tabular_mirror_direction_through_the_softmax_jacobian(algorithm):
    """∂E[L]/∂z_θ(x,·) = −d(x) (diag π − ππᵀ)(Q^{π,π′}_α − α log(π/μ))(x,·): the expected
    (enumerated) MTPO loss's gradient in the logits of every decision state is the tabular
    mirror-descent direction of eq. (2) through the softmax Jacobian, with Q from the tabular
    backward induction (π′ = π_θ for MTPO, π′ = π^β for MTPO-τ).

    Logit space: float64 on both sides, the same finite sums in two orders -> 1e-13 absolute
    (entries are ~1e-2). Parameter space: ∇_θ E[L] against the oracle pulled back through ∂z/∂θ;
    transformers' LlamaRMSNorm computes in float32 even in a float64 model, so the two orders
    (the value baseline cancels only after that float32 step) agree to ~1e-7 relative: 1e-5."""
    state = M.prepare(_exact_config(algorithm=algorithm, num_contexts=2, mixture_beta=0.3), seed=3)
    game, policy = state.game, state.policy
    params = [p for p in policy.lm.parameters()]
    loss, batch, logp = _deep_expected_loss(state)
    logp.retain_grad()
    deep = torch.autograd.grad(loss, params + [logp], retain_graph=True)
    deep, logit_grad = deep[:-1], deep[-1].numpy()

    table = M.policy_table(policy, state.tokenizer, state.text)
    opponent = table if algorithm == "mtpo" else M._mixture_table(state, batch)
    q, _ = preference_q_values(game, table, opponent, state.config.alpha)
    g = q - state.config.alpha * np.log(table / np.asarray(game.reference))
    coef = _reach(game, table)[:, None] * table * (g - np.sum(table * g, axis=1, keepdims=True))
    # gradient with respect to each state's log-softmax output, summed over the transcripts that
    # share the state, then to its logits: ∂L/∂z = G − π ΣG
    G = np.zeros_like(coef)
    np.add.at(G, batch.states[:, :-1].ravel(), logit_grad.reshape(-1, game.num_actions))
    by_logits = G - table * G.sum(axis=1, keepdims=True)
    assert np.abs(coef).max() > 1e-3  # a non-trivial direction
    assert np.allclose(by_logits, -coef, rtol=0, atol=1e-13)

    # parameter space: one enumerated transcript per decision state carries z_θ(x,·)
    rows, turns, states = [], [], []
    for b in range(batch.ids.shape[0]):
        for h in range(game.horizon):
            if int(batch.states[b, h]) not in states:
                rows.append(b), turns.append(h), states.append(int(batch.states[b, h]))
    assert sorted(states) == list(range(game.num_decision_states))
    z = logp[rows, turns]
    oracle = torch.autograd.grad(-(torch.from_numpy(coef[states]) * z).sum(), params)
    flat_deep = torch.cat([t.flatten() for t in deep])
    flat_oracle = torch.cat([t.flatten() for t in oracle])
    assert torch.allclose(flat_deep, flat_oracle, rtol=0, atol=1e-5 * float(flat_oracle.abs().max()))


def test_expected_mtpo_drives_the_exact_kl_to_the_regularized_nash_down():
    """Exact (enumerated) MTPO updates on the LM: KL_p(π*_α‖π_θ), computed by the tabular oracle,
    falls below a tenth of KL_p(π*_α‖μ) within 60 steps with a linearly decayed step
    (measured: KL_p(π*_α‖μ) = 0.197, initial LM 0.506, after 60 steps 0.0058)."""
    state = M.prepare(_exact_config(), seed=0)
    game = state.game
    start = trajectory_kl(game, state.nash, np.asarray(game.reference))
    for _ in range(60):
        M.train_step(state)
    table = M.policy_table(state.policy, state.tokenizer, state.text)
    end = trajectory_kl(game, state.nash, table)
    assert end < start / 10, (start, end)
    assert M.evaluate(state)["kl_to_nash"] == pytest.approx(end, rel=1e-12)


def test_rollouts_sample_the_exact_final_state_distribution():
    """Sampled plays of the LM policy and of μ on the stochastic Education Dialogue (H = 2): the
    empirical final-state frequencies of 1500 plays match the enumerated distribution within 5
    binomial standard errors per state (plus 1e-3 for rare states), and the MTPO-τ mixture
    source with β = 1 is μ."""
    state = M.prepare(_exact_config(game="education", num_contexts=1, estimator="sampled"), seed=0)
    game = state.game
    batch = M.enumerate_transcripts(state.policy, state.tokenizer, state.text)
    n = 1500
    for source, table in (("policy", None), ("reference", np.asarray(game.reference)),
                          ("mixture", np.asarray(game.reference))):
        exact = M.final_distribution(state.policy, batch, game, table=table)
        plays = M.rollout(state.policy, state.tokenizer, state.text, np.zeros(n, dtype=np.int64),
                          torch.Generator().manual_seed(1), np.random.default_rng(2), source=source, beta=1.0)
        counts = np.bincount(plays.states[:, -1] - game.num_decision_states, minlength=game.num_final_states) / n
        bound = 5 * np.sqrt(exact * (1 - exact) / n) + 1e-3
        assert np.all(np.abs(counts - exact) <= bound), source
        # the transcript determines the final state
        assert state.text.state_of(state.tokenizer.decode(plays.ids[0].tolist())) == plays.states[0, -1]


@pytest.mark.slow
def test_sampled_mtpo_moves_towards_the_nash():
    """The sampled estimator (two self-play rollouts per context, GAE λ = 0.95, preference
    probabilities as feedback) is a noisy version of the same gradient: 80 steps leave
    KL_p(π*_α‖π_θ) below a third of its initial value (measured ~0.6 -> ~0.07)."""
    state = M.prepare(_exact_config(estimator="sampled", lam=0.95, batch_contexts=16, feedback="probability",
                                    steps=80), seed=0)
    first = M.evaluate(state)["kl_to_nash"]
    for _ in range(80):
        M.train_step(state)
    assert M.evaluate(state)["kl_to_nash"] < first / 3


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[0.1, -0.2, 1.0]], dtype=torch.float64)
    values = torch.tensor([[0.3, 0.5, 0.7]], dtype=torch.float64)
    adv1, ret1 = M.gae(rewards, values, 1.0)  # λ = 1: Monte-Carlo return minus V
    assert torch.allclose(adv1, torch.tensor([[0.9 - 0.3, 0.8 - 0.5, 1.0 - 0.7]], dtype=torch.float64))
    assert torch.allclose(ret1, torch.tensor([[0.9, 0.8, 1.0]], dtype=torch.float64))
    adv0, _ = M.gae(rewards, values, 0.0)  # λ = 0: one-step TD errors
    assert torch.allclose(adv0, torch.tensor([[0.1 + 0.5 - 0.3, -0.2 + 0.7 - 0.5, 1.0 - 0.7]], dtype=torch.float64))
    with pytest.raises(ValueError, match="lam"):
        M.gae(rewards, values, 1.5)
    with pytest.raises(ValueError, match="values"):
        M.gae(rewards, values[:, :2], 0.5)


def test_enumerated_final_distribution_and_win_rates_match_the_tabular_forward_pass():
    """On the stochastic Education Dialogue (H = 2): the transcript tree reproduces the tabular
    final-state distribution and P(π ≻ π′) of tabular.multiturn (float64 sums; 1e-12)."""
    state = M.prepare(_exact_config(game="education", num_contexts=1, estimator="sampled"), seed=0)
    game = state.game
    batch = M.enumerate_transcripts(state.policy, state.tokenizer, state.text)
    mu = np.asarray(game.reference)
    other = np.roll(mu, 1, axis=1)
    d_mu = M.final_distribution(None, batch, game, table=mu)
    d_other = M.final_distribution(None, batch, game, table=other)
    assert np.allclose(d_mu, final_state_distribution(game, mu), atol=1e-12)
    assert M.win_rate(game, d_other, d_mu) == pytest.approx(multiturn_preference(game, other, mu, 0.0), abs=1e-12)
    table = M.policy_table(state.policy, state.tokenizer, state.text)
    assert np.allclose(M.final_distribution(state.policy, batch, game), final_state_distribution(game, table),
                       atol=1e-12)


def test_win_rate_ranking_of_mtpo_against_multiturn_rlhf_matches_the_tabular_one():
    """Tree game (seed 6, H = 2, A = 3, α = 0.1): tabular MTPO (≈ π*_α) LOSES to population
    multi-turn RLHF head to head, P = 0.419 (the BT reward makes RLHF greedier). Deep MTPO and deep
    multi-turn RLHF trained by exact expected updates give the same side of ½, within 0.04."""
    game_cfg = dict(game_seed=6)
    tab = M.build_game(_exact_config(**game_cfg))
    reference_win = multiturn_preference(tab, mtpo(tab, 0.1, 500, checkpoints=2).final,
                                         multiturn_rlhf(tab, 0.1).final, 0.0)
    tables = {}
    for algorithm in ("mtpo", "rlhf_multi"):
        state = M.prepare(_exact_config(algorithm=algorithm, reward_pairs=0, **game_cfg), seed=0)
        for _ in range(60):
            M.train_step(state)
        tables[algorithm] = M.policy_table(state.policy, state.tokenizer, state.text)
    deep_win = multiturn_preference(tab, tables["mtpo"], tables["rlhf_multi"], 0.0)
    assert (deep_win - 0.5) * (reference_win - 0.5) > 0, (deep_win, reference_win)
    assert abs(deep_win - reference_win) < 0.04, (deep_win, reference_win)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="alpha"):
        M.MTPOConfig(alpha=0.0)
    with pytest.raises(ValueError, match="reward_source"):
        M.MTPOConfig(algorithm="rlhf_multi", reward_source="game", game="tree")
    with pytest.raises(ValueError, match="source"):
        state = M.prepare(_exact_config(), seed=0)
        M.rollout(state.policy, state.tokenizer, state.text, [0], torch.Generator(), np.random.default_rng(0),
                  source="nope")


def test_train_resumes_bitwise(tmp_path):
    from fixpoint_rl.deep.runtime import assert_resume_bitwise

    config = M.MTPOConfig(steps=6, sft_steps=2, log_every=1, eval_every=3, batch_contexts=4,
                          algorithm="mtpo_tau", lr_schedule="linear")
    assert_resume_bitwise("mtpo", config, tmp_path, checkpoint_every=2, stop_after_log_calls=3)
