"""MTPO / MTPO-τ with the paper's paired-trajectory estimator (issue 3: "two trajectories per
context, one Bernoulli preference, values by exact evaluation or Monte Carlo").

Independent oracles: brute-force enumeration of every (agent trajectory, opponent trajectory,
Bernoulli outcome) triple with its exact probability (written here, sharing no code with the
estimator; reach probabilities are also taken from the enumeration), the exact Q^{π,π}_α of
``preference_q_values`` (itself checked against enumeration in test_mtpo_core.py), the MTPO /
Nash-MD update formulas written out here, and the certified oracle π*_α.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixpoint_rl.envs.dialogue import random_layered_game

M = importlib.import_module("fixpoint_rl.tabular.multiturn")

# Exact expectations over ≤ 16·16·2 = 512 weighted terms per context in float64: each term is
# ~1e-16 relative, importance weights are ≤ 1/(min reach · min π) ≈ 1e3 here, so accumulated
# rounding is ≲ 1e-13; 1e-12 keeps a margin while a biased estimator is off by ≥ 1e-3.
EXACT = 1e-12


def tiny_game(seed, contexts=2):
    """H = 2, 2 actions, 2 successors per pair: ≤ 16 trajectories per context (enumerable)."""
    return random_layered_game(num_contexts=contexts, horizon=2, states_per_layer=2,
                               num_actions=2, branching=2, seed=seed)


def random_policy(game, seed):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(game.num_actions), size=game.num_decision_states) + 0.05
    return pi / pi.sum(axis=1, keepdims=True)


def trajectories(game, pi, start):
    """Enumerate (probability, states, actions, final state) from ``start`` under π."""
    out = []

    def walk(state, prob, states, actions):
        if state >= game.num_decision_states:
            out.append((prob, states, actions, state))
            return
        for a in range(game.num_actions):
            nxt, p = game.transitions(state, a)
            for s2, q in zip(nxt, p):
                walk(int(s2), prob * pi[state, a] * q, states + [state], actions + [a])

    walk(start, 1.0, [], [])
    return out


@pytest.mark.parametrize("estimator", ["exact", "monte_carlo"])
@pytest.mark.parametrize("seed", [0, 1])
def test_paired_estimator_is_unbiased_by_enumeration(estimator, seed):
    """E Q̂ = Q^{π,π}_α exactly, for every state–action pair, over all trajectory pairs and both
    Bernoulli outcomes (this is the expected update direction: the MD step is linear in Q̂)."""
    check_unbiased(tiny_game(seed), random_policy(tiny_game(seed), 100 + seed), 0.3, estimator)


@settings(max_examples=8)  # each example enumerates 2 × 512 draws; 8 keeps the file under 15 s
@given(game_seed=st.integers(0, 10_000), policy_seed=st.integers(0, 10_000),
       alpha=st.floats(0.01, 2.0), estimator=st.sampled_from(["exact", "monte_carlo"]))
def test_paired_estimator_is_unbiased_on_generated_games(game_seed, policy_seed, alpha, estimator):
    game = tiny_game(game_seed)
    check_unbiased(game, random_policy(game, policy_seed), alpha, estimator)


def check_unbiased(game, pi, alpha, estimator):
    arrays = M._Arrays(game)
    q_exact, _ = M.preference_q_values(game, pi, pi, alpha)
    context_of = np.asarray(game.state_context)
    for c in range(game.num_contexts):
        paths = trajectories(game, pi, c)
        assert abs(sum(p for p, *_ in paths) - 1.0) < EXACT
        reach = np.zeros(game.num_states)
        for prob, states, _, final in paths:
            for s in states + [final]:
                reach[s] += prob
        expected = np.zeros_like(q_exact)
        for prob, states, actions, final in paths:
            for prob_opp, _, _, opponent in paths:
                win = game.preference(final, opponent)
                for outcome, p_outcome in ((1.0, win), (0.0, 1.0 - win)):
                    draw = [(states, actions, final, opponent, outcome)]
                    q_hat = M._paired_q_estimate(arrays, pi, alpha, estimator, draw, reach)
                    expected += prob * prob_opp * p_outcome * q_hat
        # the identity holds on reachable states (d_π(x|c) > 0; π has full support, so these are
        # the states the dynamics can reach): unreachable states are never sampled and never
        # affect any trajectory, so their Q̂ is the baseline
        rows = (context_of[: game.num_decision_states] == c) & (reach[: game.num_decision_states] > 0)
        assert rows.sum() >= 2
        np.testing.assert_allclose(expected[rows], q_exact[rows], rtol=0, atol=EXACT)


def test_monte_carlo_updates_only_visited_pairs():
    game = tiny_game(4, contexts=1)
    pi = random_policy(game, 7)
    arrays = M._Arrays(game)
    reach = arrays.reach(pi)
    draws = M._paired_draws(arrays, pi, np.random.default_rng(3))
    q_hat = M._paired_q_estimate(arrays, pi, 0.3, "monte_carlo", draws, reach)
    visited = np.zeros(q_hat.shape, dtype=bool)
    visited[draws[0][0], draws[0][1]] = True
    assert visited.sum() == game.horizon
    # unvisited pairs carry the constant baseline ½ (no change of direction at that state)
    assert np.all(q_hat[~visited] == M.PAIRED_BASELINE)


@pytest.mark.parametrize("variant", ["mtpo", "mtpo_tau"])
@pytest.mark.parametrize("estimator", ["exact", "monte_carlo"])
def test_one_step_is_the_mirror_step_on_the_estimate(variant, estimator):
    """The first iterate equals the update formula written out here, applied to Q̂ from the same
    draws (replaying the documented order of random numbers), schedule 'constant'."""
    game = tiny_game(5)
    alpha, eta = 0.4, 0.7
    mu = np.asarray(game.reference)
    arrays = M._Arrays(game)
    if variant == "mtpo":
        evaluated = mu
        result = M.mtpo(game, alpha, 1, eta, "constant", sampling="paired_trajectories",
                        values=estimator, seed=11, reference_solution=mu)
    else:
        evaluated = mu  # π_0 = μ, so the mixture π_0^{1−αη} μ^{αη} is μ itself
        result = M.mtpo_tau(game, alpha, 1, eta, "constant", sampling="paired_trajectories",
                            values=estimator, seed=11, reference_solution=mu)
    draws = M._paired_draws(arrays, evaluated, np.random.default_rng(11))
    q_hat = M._paired_q_estimate(arrays, evaluated, alpha, estimator, draws, arrays.reach(evaluated))
    logits = alpha * eta * np.log(mu) + (1 - alpha * eta) * np.log(mu) + eta * q_hat
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    # same operations up to reassociation: a few ulps
    np.testing.assert_allclose(result.final, expected, rtol=0, atol=1e-13)
    assert not np.allclose(result.final, mu)  # the step did move


@pytest.mark.parametrize("solver", [M.mtpo, M.mtpo_tau])
@pytest.mark.parametrize("estimator", ["exact", "monte_carlo"])
def test_same_seed_same_numbers(solver, estimator):
    game = tiny_game(6)
    kwargs = dict(sampling="paired_trajectories", values=estimator, checkpoints=5)
    star = M.multiturn_regularized_nash(game, 0.5)
    a = solver(game, 0.5, 50, seed=9, reference_solution=star, **kwargs)
    b = solver(game, 0.5, 50, seed=9, reference_solution=star, **kwargs)
    c = solver(game, 0.5, 50, seed=10, reference_solution=star, **kwargs)
    np.testing.assert_array_equal(a.final, b.final)
    for key in a.metrics:
        np.testing.assert_array_equal(a.metrics[key], b.metrics[key])
    assert not np.array_equal(a.final, c.final)
    assert a.config["sampling"] == "paired_trajectories" and a.config["values"] == estimator


@pytest.mark.parametrize("solver", [M.mtpo, M.mtpo_tau])
@pytest.mark.parametrize("estimator", ["exact", "monte_carlo"])
def test_paired_runs_approach_the_regularized_nash(solver, estimator):
    """Theorem schedule, T = 4000, 4 seeds, KL_p(π*_α‖π_t) every 40 iterations. "late" = mean KL
    over t ∈ [3240, 4000], "early" = mean over t ∈ [40, 200]. Claims: late < 0.3·early (KL
    decreases) and late < 0.25·KL_p(π*_α‖μ) (approaches π*_α). Calibration (game seed 3, α = ¼,
    KL_p(π*‖μ) = 0.0526) over 8 disjoint groups of 4 other seeds per case: late/early ≤ 0.081
    (median ≈ 0.02) and late/KL_p(π*‖μ) ≤ 0.064 — both thresholds have ≥ 3.7× margin over the
    worst group."""
    game = tiny_game(3, contexts=1)
    alpha = 0.25
    star = M.multiturn_regularized_nash(game, alpha)
    start_kl = M.trajectory_kl(game, star, game.reference)
    curves = []
    for seed in range(4):
        result = solver(game, alpha, 4000, sampling="paired_trajectories", values=estimator,
                        seed=seed, reference_solution=star, checkpoint_every=40)
        iterations = result.metrics["iteration"]
        assert iterations[1] == 40 and iterations[-1] == 4000 and len(iterations) == 101
        curves.append(result.metrics["kl"])
    curves = np.array(curves)
    early, late = curves[:, 1:6].mean(), curves[:, -20:].mean()
    assert np.all(np.isfinite(curves))
    assert late < 0.3 * early
    assert late < 0.25 * start_kl


@pytest.mark.parametrize("solver", [M.mtpo, M.mtpo_tau])
def test_invalid_sampling_and_values_raise(solver):
    game = tiny_game(0)
    mu = np.asarray(game.reference)
    with pytest.raises(ValueError, match="sampling"):
        solver(game, 0.5, 2, sampling="pairs", reference_solution=mu)
    with pytest.raises(ValueError, match="values"):
        solver(game, 0.5, 2, sampling="paired_trajectories", values="mc", reference_solution=mu)
    with pytest.raises(ValueError, match="values"):
        solver(game, 0.5, 2, values="monte_carlo", reference_solution=mu)  # needs paired sampling
    with pytest.raises(ValueError, match="n_samples"):
        solver(game, 0.5, 2, sampling="paired_trajectories", n_samples=3, reference_solution=mu)
    with pytest.raises(ValueError, match="sampling"):
        solver(game, 0.5, 2, sampling=None, reference_solution=mu)


def test_monte_carlo_at_small_alpha_keeps_full_support():
    """Regression: at α = 0.05 the importance-weighted steps once underflowed a probability to 0
    (log 0 → RuntimeWarning, an error under the project's warning filter, and an action frozen at 0
    for good). The iterate must stay finite with full support and finite KL at every checkpoint."""
    game = random_layered_game(num_contexts=2, horizon=3, states_per_layer=3, num_actions=3, seed=1)
    alpha = 0.05
    star = M.multiturn_regularized_nash(game, alpha)
    result = M.mtpo(game, alpha, 3000, sampling="paired_trajectories", values="monte_carlo",
                    seed=0, reference_solution=star, checkpoints=5)
    assert np.all(result.final > 0) and np.all(np.isfinite(result.final))
    assert np.all(np.isfinite(result.metrics["kl"]))
    np.testing.assert_allclose(result.final.sum(axis=1), 1.0, rtol=0, atol=1e-12)
