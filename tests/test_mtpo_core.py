"""MTPO core: value functions, Lemma 3.1 / 4.1 / B.5, Theorem 4.2 / B.1 / B.2 / B.4, fixed point,
oracle and exploitability (Shani et al. 2024, arXiv 2405.14655, Lemmas 3.1, 4.1, B.5, Theorem 4.2).

Independent oracles: brute-force trajectory enumeration (written here, sharing no code with the
Numba kernels), the two-action closed form π*(y1) = σ(logit μ(y1) + (p − ½)/α) (derived),
and the exploitability certificate.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.envs.dialogue import random_layered_game, tree_game

M = importlib.import_module("fixpoint_rl.tabular.multiturn")

# Exact identities in float64 on games with ≤ a few hundred trajectories: rounding is ~1e-15 per
# term, so 1e-12 leaves three orders of margin while any formula error is ≥ 1e-4.
EXACT = 1e-12


def small_game(seed, horizon=2, contexts=2, actions=3, states=3, reward=False):
    return random_layered_game(num_contexts=contexts, horizon=horizon, states_per_layer=states,
                               num_actions=actions, branching=2, with_reward=reward, seed=seed)


def random_policy(game, seed, concentration=1.0):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.full(game.num_actions, concentration), size=game.num_decision_states)
    pi = pi + 1e-3
    return pi / pi.sum(axis=1, keepdims=True)


def trajectories(game, pi, start):
    """Enumerate (probability, [(state, action), ...], final state) from ``start`` under π."""
    out = []

    def walk(state, prob, path):
        if state >= game.num_decision_states:
            out.append((prob, path, state))
            return
        for a in range(game.num_actions):
            nxt, p = game.transitions(state, a)
            for s2, q in zip(nxt, p):
                walk(int(s2), prob * pi[state, a] * q, path + [(state, a)])

    walk(start, 1.0, [])
    return out


def kl_rows(p, q):
    return np.array([np.sum(p[i] * np.log(p[i] / q[i])) for i in range(len(p))])


def test_lemma_3_1_trajectory_kl_by_enumeration():
    for seed in range(3):
        game = small_game(seed, horizon=3, states=2)
        pi, other = random_policy(game, seed), random_policy(game, seed + 10)
        total = 0.0
        for c in range(game.num_contexts):
            # KL between trajectory distributions: Σ_τ P_π(τ) log(P_π(τ)/P_π'(τ)); transitions cancel
            for prob, path, _ in trajectories(game, pi, c):
                ratio = sum(np.log(pi[s, a] / other[s, a]) for s, a in path)
                total += game.context_probs[c] * prob * ratio
        assert abs(M.trajectory_kl(game, pi, other) - total) < EXACT


def test_terminal_and_q_v_recursions_by_enumeration():
    game = small_game(4, horizon=3, states=2)
    pi, opp = random_policy(game, 1), random_policy(game, 2)
    alpha = 0.3
    q, v = M.preference_q_values(game, pi, opp, alpha)
    kl = kl_rows(pi, game.reference)
    for c in range(game.num_contexts):
        # V(x_{H+1}) = P(x_{H+1} ≻ π'), π' rolled out from the context's initial state
        opp_final = {}
        for prob, _, final in trajectories(game, opp, c):
            opp_final[final] = opp_final.get(final, 0.0) + prob
        for final in range(game.num_decision_states, game.num_states):
            if game.state_context[final] != c:
                continue
            expected = sum(w * game.preference(final, f2) for f2, w in opp_final.items())
            assert abs(v[final] - expected) < EXACT
    # V(x_h) = E_π[P(x_{H+1} ≻ π') − α Σ_{h'≥h} KL[x_{h'}] | x_h], by enumerating continuations
    for state in range(game.num_decision_states):
        expected = sum(
            prob * (v[final] - alpha * sum(kl[s] for s, _ in path))
            for prob, path, final in trajectories(game, pi, state)
        )
        assert abs(v[state] - expected) < EXACT
        assert abs(v[state] - pi[state] @ q[state]) < EXACT
        for a in range(game.num_actions):
            nxt, p = game.transitions(state, a)
            assert abs(q[state, a] - (p @ v[nxt] - alpha * kl[state])) < EXACT


@given(seed=st.integers(0, 10_000), alpha=st.floats(0.01, 2.0))
def test_lemma_4_1_value_difference_exact(seed, alpha):
    game = small_game(seed, horizon=2)
    pi, pi2, bar = (random_policy(game, seed + k) for k in range(3))
    lhs = M.multiturn_preference(game, pi, bar, alpha) - M.multiturn_preference(game, pi2, bar, alpha)
    q, _ = M.preference_q_values(game, pi, bar, alpha)
    reach = np.zeros(game.num_states)
    reach[: game.num_contexts] = game.context_probs  # ρ-weighted reach under π'
    for s in range(game.num_decision_states):
        for a in range(game.num_actions):
            nxt, p = game.transitions(s, a)
            np.add.at(reach, nxt, reach[s] * pi2[s, a] * p)
    per_state = (
        np.sum((pi - pi2) * q, axis=1)
        + alpha * kl_rows(pi2, game.reference)
        - alpha * kl_rows(pi, game.reference)
    )
    rhs = float(reach[: game.num_decision_states] @ per_state)
    assert abs(lhs - rhs) < EXACT


@given(seed=st.integers(0, 10_000), alpha=st.floats(0.02, 3.0), horizon=st.integers(1, 4))
def test_oracle_certified_and_lemma_b5(seed, alpha, horizon):
    game = small_game(seed, horizon=horizon)
    star = M.multiturn_regularized_nash(game, alpha)
    # certificate: exploitability ≤ 1e-10 (the oracle's contract), and ≥ −1e-12 (it is a max − ½
    # of exact values, so only rounding can make it negative)
    gap = M.multiturn_exploitability(game, star, alpha)
    assert -1e-12 <= gap <= 1e-10
    # Lemma B.5: α KL_p(π*‖μ) ≤ P(π* ≻ μ) − ½ ≤ ½
    assert M.trajectory_kl(game, star, game.reference) <= 1.0 / (2 * alpha) + 1e-12
    # game value ½ and the NE inequality P_α(π* ≻ π) ≥ ½ for other policies
    assert abs(M.multiturn_preference(game, star, star, alpha) - 0.5) < EXACT
    other = random_policy(game, seed + 1)
    assert M.multiturn_preference(game, star, other, alpha) >= 0.5 - 1e-9
    # exploitability is positive away from the equilibrium
    assert M.multiturn_exploitability(game, other, alpha) > 1e-8
    assert M.multiturn_exploitability(game, game.reference, alpha) > 0.0 or np.allclose(
        star, game.reference, atol=1e-6
    )


@pytest.mark.parametrize("p, mu1, alpha", [(0.7, 0.5, 0.1), (0.7, 0.2, 0.1), (0.3, 0.6, 0.05)])
def test_oracle_two_action_closed_form(p, mu1, alpha):
    game = tree_game(horizon=1, num_actions=2, seed=0)
    import dataclasses

    game = dataclasses.replace(
        game,
        reference=np.array([[mu1, 1 - mu1]]),
        preference_values=np.array([0.5, p, 1 - p, 0.5]),
    )
    star = M.multiturn_regularized_nash(game, alpha)
    logit = np.log(mu1 / (1 - mu1)) + (p - 0.5) / alpha
    # two-action closed-form test vectors: 0.880797 (μ uniform) and 0.648786 (μ = (0.2, 0.8)) at p=0.7, α=0.1
    assert abs(star[0, 0] - 1 / (1 + np.exp(-logit))) < 1e-9


@pytest.mark.parametrize("variant", ["mtpo", "mtpo_tau"])
@pytest.mark.parametrize("seed, horizon, alpha", [(0, 2, 0.5), (1, 3, 0.2), (2, 4, 1.0)])
def test_theorem_bounds_along_theorem_schedule(variant, seed, horizon, alpha):
    game = small_game(seed, horizon=horizon)
    solver = M.mtpo if variant == "mtpo" else M.mtpo_tau
    result = solver(game, alpha, 300, checkpoint_every=1)
    t = result.metrics["iteration"]
    if variant == "mtpo":
        # Theorem 4.2: KL_p(π*‖π_t) ≤ 32HQ²/(α²(t+1)), asserted only as ≤ (the bound is loose)
        assert np.all(result.metrics["kl"] <= M.mtpo_theorem_bound(game, alpha, t, "mtpo"))
    else:
        # Theorem B.2 for the mixture, and Corollary B.4: KL(π*‖π^α_t) ≤ (1 − η_tα)KL(π*‖π_t) + η_t/2
        kl_mix = result.metrics["kl_mixture"][:-1]
        assert np.all(kl_mix <= M.mtpo_theorem_bound(game, alpha, t[:-1], "mtpo_tau"))
        eta = result.metrics["eta"][:-1]
        assert np.all(kl_mix <= (1 - eta * alpha) * result.metrics["kl"][:-1] + eta / 2 + 1e-12)
    # last-iterate convergence: KL decays (final far below initial)
    assert result.metrics["kl"][-1] < 0.05 * result.metrics["kl"][0]


def test_theorem_b1_one_step_inequality():
    game = small_game(5, horizon=3)
    alpha = 0.3
    star = M.multiturn_regularized_nash(game, alpha)
    reach = np.zeros(game.num_states)
    reach[: game.num_contexts] = game.context_probs
    for s in range(game.num_decision_states):
        for a in range(game.num_actions):
            nxt, p = game.transitions(s, a)
            np.add.at(reach, nxt, reach[s] * star[s, a] * p)
    pi = game.reference.copy()
    for t in range(40):
        eta = 2.0 / (alpha * (t + 2))
        q, _ = M.preference_q_values(game, pi, pi, alpha)
        advantage = q - alpha * np.log(pi / game.reference)
        spread = np.max(np.abs(advantage), axis=1) ** 2
        term = float(reach[: game.num_decision_states] @ spread)
        before = M.trajectory_kl(game, star, pi)
        pi = M.mtpo(game, alpha, 1, eta=eta, schedule="constant", init=pi,
                    reference_solution=star).final
        after = M.trajectory_kl(game, star, pi)
        assert after <= (1 - eta * alpha) * before + 2 * eta**2 * term + 1e-12


@pytest.mark.parametrize("eta_alpha", [0.05, 0.5, 1.0])
def test_equilibrium_is_exact_fixed_point_of_mtpo_for_constant_eta(eta_alpha):
    game = small_game(7, horizon=3)
    alpha = 0.2
    star = M.multiturn_regularized_nash(game, alpha)
    result = M.mtpo(game, alpha, 5, eta=eta_alpha / alpha, schedule="constant", init=star,
                    reference_solution=star)
    # the oracle is certified to exploitability ≤ 1e-10 and polished to residual 1e-12 in log
    # space, so one MTPO step moves it by at most ~1e-11
    assert np.max(np.abs(result.final - star)) < 1e-10
    # constant-η MTPO-τ (Nash-MD) is biased: its fixed point is not π*_α (Munos et al. 2024, arXiv 2312.00886, Theorem 1 needs the decreasing schedule)
    biased = M.mtpo_tau(game, alpha, 400, eta=0.5 / alpha, schedule="constant",
                        reference_solution=star)
    assert biased.metrics["kl"][-1] > 1e-9


def test_sampled_mtpo_reproducible_and_learns():
    game = small_game(3, horizon=2)
    a = M.mtpo(game, 0.5, 200, n_samples=4, seed=11)
    b = M.mtpo(game, 0.5, 200, n_samples=4, seed=11)
    c = M.mtpo(game, 0.5, 200, n_samples=4, seed=12)
    assert np.array_equal(a.final, b.final)
    assert not np.array_equal(a.final, c.final)
    assert a.metrics["kl"][-1] < 0.5 * a.metrics["kl"][0]
    d = M.mtpo_tau(game, 0.5, 200, n_samples=4, seed=11)
    assert d.metrics["kl"][-1] < 0.5 * d.metrics["kl"][0]


def test_result_type_and_metrics():
    game = small_game(0)
    result = M.mtpo(game, 0.5, 20, checkpoints=5)
    assert result.metrics["iteration"][0] == 0 and result.metrics["iteration"][-1] == 20
    assert {"kl", "exploitability", "eta"} <= set(result.metrics)
    assert result.config["solver"] == "mtpo" and result.config["alpha"] == 0.5
    assert np.all(result.metrics["exploitability"] >= -1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda g: M.mtpo(g, 0.0, 10),
        lambda g: M.mtpo(g, -1.0, 10),
        lambda g: M.mtpo(g, 0.5, 0),
        lambda g: M.mtpo(g, 0.5, 10, eta=1.0),
        lambda g: M.mtpo(g, 0.5, 10, schedule="constant"),
        lambda g: M.mtpo(g, 0.5, 10, eta=3.0, schedule="constant"),
        lambda g: M.mtpo(g, 0.5, 10, schedule="linear"),
        lambda g: M.mtpo_tau(g, 0.5, 10, n_samples=0),
        lambda g: M.mtpo(g, 0.5, 10, init=np.ones((3, 3))),
        lambda g: M.mtpo(g, float("nan"), 10),
        lambda g: M.mtpo("game", 0.5, 10),
        lambda g: M.trajectory_kl(g, np.full((g.num_decision_states, 3), 0.5), g.reference),
        lambda g: M.preference_q_values(g, g.reference, g.reference, -0.1),
        lambda g: M.multiturn_exploitability(g, g.reference[:-1], 0.1),
        lambda g: M.multiturn_regularized_nash(g, 0.0),
    ],
)
def test_invalid_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call(small_game(0))


@given(data=st.lists(st.floats(-5, 5), min_size=1, max_size=6))
def test_invalid_policy_rows_raise(data):
    game = small_game(1)
    pi = game.reference.copy()
    pi[0, 0] += 0.1 + abs(data[0])  # no longer sums to one
    with pytest.raises(ValueError):
        M.multiturn_exploitability(game, pi, 0.1)


def test_numba_recursion_matches_numpy_reference_on_a_larger_game():
    # the vectorised numpy backward induction of the perf script (np.add.reduceat per layer)
    # shares no code with the fused kernel; sums of ≤ 10^4 terms agree to ~1e-15 relative
    from fixpoint_rl.benchmarks.perf_mtpo import numpy_backward

    game = random_layered_game(num_contexts=3, horizon=4, states_per_layer=50, num_actions=6,
                               branching=3, final_states=40, seed=9)
    pi, opp = random_policy(game, 3), random_policy(game, 4)
    q, v = M.preference_q_values(game, pi, opp, 0.4)
    values = np.zeros(game.num_states)
    values[game.num_decision_states :] = v[game.num_decision_states :]
    q_ref, v_ref = numpy_backward(game, pi, 0.4, values)
    assert np.max(np.abs(q - q_ref)) < EXACT
    assert np.max(np.abs(v - v_ref)) < EXACT


def test_parallel_backward_identical_to_serial(monkeypatch):
    # above PARALLEL_PAIRS the layers are backed up with prange; states of a layer are independent,
    # so the iterates must be bit-identical to the serial sweep
    game = random_layered_game(num_contexts=2, horizon=3, states_per_layer=300, num_actions=5,
                               branching=2, final_states=30, seed=1)
    monkeypatch.setattr(M, "PARALLEL_PAIRS", 1)
    parallel = M.mtpo(game, 0.3, 3, checkpoints=2, reference_solution=game.reference).final
    monkeypatch.setattr(M, "PARALLEL_PAIRS", 10**12)
    serial = M.mtpo(game, 0.3, 3, checkpoints=2, reference_solution=game.reference).final
    assert np.array_equal(parallel, serial)
