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
    mtpo_tau,
    multiturn_preference,
    multiturn_regularized_nash,
    multiturn_rlhf,
    preference_q_values,
    single_turn_rlhf,
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


def _geometric_mixture_table(table, reference, tau):
    """π^τ ∝ π^{1−τ} μ^τ per state (numpy, independent of the module's torch mixture)."""
    logits = (1 - tau) * np.log(table) + tau * np.log(reference)
    mix = np.exp(logits - logits.max(axis=1, keepdims=True))
    return mix / mix.sum(axis=1, keepdims=True)


def _logit_gradient(state):
    """∂L/∂z_θ(x, ·) [N_dec, A] of the trainer's own expected policy loss (``step_losses``), summed
    over the transcripts that share a state; also the losses and the LM's policy table."""
    game = state.game
    losses = M.step_losses(state)
    (by_logp,) = torch.autograd.grad(losses.policy_loss, losses.logp, retain_graph=True)
    G = np.zeros((game.num_decision_states, game.num_actions))
    np.add.at(G, losses.batch.states[:, :-1].ravel(), by_logp.numpy().reshape(-1, game.num_actions))
    table = M.policy_table(state.policy, state.tokenizer, state.text)
    # from the log-softmax outputs to the logits: ∂L/∂z = G − π ΣG
    return G - table * G.sum(axis=1, keepdims=True), table, losses


def _tabular_direction(game, table, algorithm, alpha, tau):
    """(d [N_dec], g [N_dec, A]): the state weights and the per-state ascent direction g of the
    tabular algorithm (``fixpoint_rl.tabular.multiturn``) at π = ``table``."""
    mu = np.asarray(game.reference)
    if algorithm == "mtpo":
        q, _ = preference_q_values(game, table, table, alpha)
        return _reach(game, table), q - alpha * np.log(table / mu)
    if algorithm == "mtpo_tau_nash_md":
        q, _ = preference_q_values(game, table, _geometric_mixture_table(table, mu, tau), alpha)
        return _reach(game, table), q - alpha * np.log(table / mu)
    # MTPO-τ: one tabular step with constant η = τ/α (so that ηα = τ) from π_0 = table:
    # log π_1 − log π_0 = η (Q^{π^τ,π^τ}_α − α log(π_0/μ)) + a per-state constant
    eta = tau / alpha
    step = mtpo_tau(game, alpha, 1, eta=eta, schedule="constant", init=table, checkpoints=2,
                    reference_solution=table).final
    mix = _geometric_mixture_table(table, mu, tau)
    return _reach(game, mix), (np.log(step) - np.log(table)) / eta


@pytest.mark.parametrize("algorithm, game_name", [("mtpo", "tree"), ("mtpo_tau", "tree"), ("mtpo_tau_nash_md", "tree"),
                                                  ("mtpo_tau", "education")])
def test_expected_gradient_is_the_tabular_direction_through_the_softmax_jacobian(algorithm, game_name):
    """The expected (enumerated) loss's gradient in the logits of every decision state is
    −d(x)(diag π − ππᵀ) g(x, ·), g the tabular ascent direction at π = π_θ:
    MTPO: g = Q^{π,π}_α − α log(π/μ), d = d_π (eq. 2); Nash-MD-PG variant: g = Q^{π,π^τ}_α −
    α log(π/μ), d = d_π; the paper's MTPO-τ: g = (log π_1 − log π_0)/η of ONE tabular
    ``mtpo_tau`` step with ηα = τ (= Q^{π^τ,π^τ}_α − α log(π/μ) + const), d = d_{π^τ} (both
    trajectories come from the mixture; the ratio π_θ/π^τ makes the update the mirror step's).

    Logit space: float64 on both sides, the same finite sums in different orders (and for MTPO-τ
    one exp/log round trip through the tabular step, divided by η = 3) -> 1e-13 absolute (entries
    ~7e-2; measured 1.4e-17 / 2.2e-17 / 1.4e-17 for MTPO / MTPO-τ / the Nash-MD-PG variant).
    Parameter space: ∇_θ E[L] against the oracle pulled back through ∂z/∂θ; transformers'
    LlamaRMSNorm computes in float32 even in a float64 model, so the two orders (the value
    baseline cancels only after that float32 step) agree to ~1e-7 relative: 1e-5."""
    tau, alpha = 0.3, 0.1
    kind = dict(game=game_name, num_contexts=2 if game_name == "tree" else 1)  # education: stochastic replies
    state = M.prepare(_exact_config(algorithm=algorithm, mixture_beta=tau, alpha=alpha, **kind), seed=3)
    game, policy = state.game, state.policy
    by_logits, table, losses = _logit_gradient(state)
    d, g = _tabular_direction(game, table, algorithm, alpha, tau)
    coef = d[:, None] * table * (g - np.sum(table * g, axis=1, keepdims=True))
    assert np.abs(coef).max() > 1e-3  # a non-trivial direction
    assert np.allclose(by_logits, -coef, rtol=0, atol=1e-13), np.abs(by_logits + coef).max()
    if algorithm == "mtpo_tau":
        # the same direction from the tabular Q of the mixture playing itself (its own KL)
        mu = np.asarray(game.reference)
        mix = _geometric_mixture_table(table, mu, tau)
        q, _ = preference_q_values(game, mix, mix, alpha)
        g2 = q - alpha * np.log(table / mu)
        centred = lambda x: x - np.sum(table * x, axis=1, keepdims=True)  # noqa: E731
        assert np.allclose(centred(g), centred(g2), rtol=0, atol=1e-12)

    # parameter space: one enumerated transcript per decision state carries z_θ(x,·)
    params = list(policy.lm.parameters())
    batch, logp = losses.batch, losses.logp
    deep = torch.autograd.grad(losses.policy_loss, params, retain_graph=True)
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


@pytest.mark.parametrize("algorithm", ["mtpo", "mtpo_tau"])
def test_expected_updates_drive_the_exact_kl_to_the_regularized_nash_down(algorithm):
    """Exact (enumerated) MTPO and MTPO-τ (τ = 0.05) updates on the LM: KL_p(π*_α‖π_θ), π*_α from
    the tabular oracle, falls below a tenth of KL_p(π*_α‖μ) within 60 steps with a linearly
    decayed step (measured: KL_p(π*_α‖μ) = 0.197, initial LM 0.506, after 60 steps MTPO 0.0058,
    MTPO-τ 0.0060; the τ-biased rest point is this close to π*_α at τ = 0.05). The module's enumerated KL equals the tabular forward-pass KL (1e-12:
    the same float64 sums in another order)."""
    config = _exact_config(algorithm=algorithm, mixture_beta=0.05)
    game = M.build_game(config)
    nash = multiturn_regularized_nash(game, config.alpha)
    state = M.prepare(config, seed=0, nash=nash)
    start = trajectory_kl(game, nash, np.asarray(game.reference))
    for _ in range(60):
        M.train_step(state)
    table = M.policy_table(state.policy, state.tokenizer, state.text)
    end = trajectory_kl(game, nash, table)
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
@pytest.mark.parametrize("algorithm", ["mtpo", "mtpo_tau"])
def test_sampled_mtpo_moves_towards_the_nash(algorithm):
    """The sampled estimator (two self-play rollouts per context — from the mixture with τ = 0.05
    for MTPO-τ — GAE λ = 0.95, preference probabilities as feedback) is a noisy version of the
    same gradient: 80 steps leave KL_p(π*_α‖π_θ) below a third of its initial value (measured
    ~0.6 -> ~0.07)."""
    config = _exact_config(algorithm=algorithm, mixture_beta=0.05, estimator="sampled", lam=0.95,
                           batch_contexts=16, feedback="probability", steps=80)
    state = M.prepare(config, seed=0, nash=multiturn_regularized_nash(M.build_game(config), config.alpha))
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


@pytest.mark.parametrize("game_name", ["tree", "education"])
def test_reward_fits_equal_the_tabular_bradley_terry_fits(game_name):
    """Population limit (``reward_pairs=0``): the module's own BT fits (torch L-BFGS on the
    enumerated transcript tree) equal the tabular Newton fits of ``fixpoint_rl.tabular.multiturn``:
    the multi-turn reward r̂ [F] of ``multiturn_rlhf`` and the single-turn policy
    μ exp(r̂(x, ·)/α) of ``single_turn_rlhf`` (continuation signal). Both solve the same strictly
    convex problem, both by Newton to a gradient of 1e-13, with a Hessian bounded below by
    l2 = 1e-3: |Δr| ≤ 1e-13/1e-3 = 1e-10, so 1e-8 (policies: α = 0.1 turns it into ≤ 1e-7
    relative). Sampled fits (2000 pairs) are reproducible: same seed, same reward bits."""
    alpha = 0.1
    kind = dict(game=game_name, horizon=2, num_contexts=1 if game_name == "education" else 2)
    game = M.build_game(_exact_config(**kind))
    multi = M.prepare(_exact_config(algorithm="rlhf_multi", reward_pairs=0, alpha=alpha, **kind), seed=0)
    assert np.allclose(multi.reward, multiturn_rlhf(game, alpha).extras["reward"], rtol=0, atol=1e-8)
    single = M.prepare(_exact_config(algorithm="rlhf_single", reward_pairs=0, alpha=alpha, **kind), seed=0)
    logits = np.log(np.asarray(game.reference)) + single.reward / alpha
    policy = np.exp(logits - logits.max(axis=1, keepdims=True))
    policy /= policy.sum(axis=1, keepdims=True)
    assert np.allclose(policy, single_turn_rlhf(game, alpha).final, rtol=1e-7, atol=1e-12)
    if game_name == "tree":
        sampled = [M.prepare(_exact_config(algorithm="rlhf_multi", reward_pairs=2000, alpha=alpha, **kind),
                             seed=0).reward for _ in range(2)]
        assert np.array_equal(sampled[0], sampled[1])
        assert not np.allclose(sampled[0], multi.reward, atol=1e-3)  # the draws matter
        # the caller may hand over its own reward instead (e.g. the tabular fit)
        tabular = multiturn_rlhf(game, alpha).extras["reward"]
        given = M.prepare(_exact_config(algorithm="rlhf_multi", alpha=alpha, **kind), seed=0, reward=tabular)
        assert np.array_equal(given.reward, tabular)


_NUMBA_FREE = r"""
import sys
import numpy as np
import torch
torch.set_num_threads(1)
from fixpoint_rl.deep.llm import mtpo as M
base = dict(game="tree", num_contexts=1, horizon=2, num_actions=3, sft_steps=1, steps=2, batch_contexts=2)
for algorithm in M.ALGORITHMS:  # expected updates for MTPO*, sampled ones and sampled fits for RLHF
    estimator = "sampled" if algorithm.startswith("rlhf") else "expected"
    config = M.MTPOConfig(algorithm=algorithm, estimator=estimator, reward_pairs=50, **base)
    game = M.build_game(config)
    state = M.prepare(config, seed=0, nash=np.asarray(game.reference))  # any state policy
    M.train_step(state)
    metrics = M.evaluate(state)
    assert {"kl_to_nash", "win_rate_vs_nash"} <= set(metrics), metrics
bad = sorted(m for m in sys.modules if m.split(".")[0] == "numba" or m.startswith("fixpoint_rl.tabular")
             and not m.startswith("fixpoint_rl.tabular.core") and m != "fixpoint_rl.tabular")
assert not bad, bad
print("numba-free")
"""


def test_deep_mtpo_training_and_evaluation_never_import_numba():
    """Layering (fixpoint_rl.deep imports torch, tabular.core and envs only): a fresh process that
    prepares, trains one step of every algorithm (reward fits included) and
    evaluates with a given π*_α has no numba and no tabular solver module in ``sys.modules``."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _NUMBA_FREE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "numba-free" in result.stdout, result.stdout + result.stderr


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="alpha"):
        M.MTPOConfig(alpha=0.0)
    with pytest.raises(ValueError, match="reward_source"):
        M.MTPOConfig(algorithm="rlhf_multi", reward_source="game", game="tree")
    with pytest.raises(ValueError, match="algorithm"):
        M.MTPOConfig(algorithm="nope")
    state = M.prepare(_exact_config(), seed=0)
    with pytest.raises(ValueError, match="source"):
        M.rollout(state.policy, state.tokenizer, state.text, [0], torch.Generator(), np.random.default_rng(0),
                  source="nope")
    game = state.game
    with pytest.raises(ValueError, match="nash"):  # wrong shape
        M.prepare(_exact_config(), seed=0, nash=np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="nash"):  # rows not distributions
        M.prepare(_exact_config(), seed=0, nash=np.ones((game.num_decision_states, game.num_actions)))
    with pytest.raises(ValueError, match="reward"):  # MTPO has no reward
        M.prepare(_exact_config(), seed=0, reward=np.zeros(game.num_final_states))
    with pytest.raises(ValueError, match="reward"):  # rlhf_multi's reward is [F]
        M.prepare(_exact_config(algorithm="rlhf_multi"), seed=0, reward=np.zeros(3))
    with pytest.raises(ValueError, match="wins"):
        M.fit_bradley_terry(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="l2"):
        M.fit_bradley_terry(np.ones((1, 3, 3)), l2=0.0)


def test_train_resumes_bitwise(tmp_path):
    from fixpoint_rl.deep.runtime import assert_resume_bitwise

    config = M.MTPOConfig(steps=6, sft_steps=2, log_every=1, eval_every=3, batch_contexts=4,
                          algorithm="mtpo_tau", lr_schedule="linear")
    assert_resume_bitwise("mtpo", config, tmp_path, checkpoint_every=2, stop_after_log_calls=3)
