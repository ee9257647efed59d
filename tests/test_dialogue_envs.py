"""DialogueGame specs, generators and the gymnasium environments (issue 3)."""

from __future__ import annotations

import dataclasses
import importlib
import itertools

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.envs.dialogue import (
    DialogueGame,
    car_dealer,
    education_dialogue,
    random_layered_game,
    tree_game,
)

REG = importlib.import_module("fixpoint_rl.envs.registration")


@given(
    contexts=st.integers(1, 3), horizon=st.integers(1, 4), states=st.integers(1, 4),
    actions=st.integers(1, 4), branching=st.integers(1, 3), seed=st.integers(0, 1000),
)
def test_random_layered_game_is_valid_and_seeded(contexts, horizon, states, actions, branching, seed):
    game = random_layered_game(num_contexts=contexts, horizon=horizon, states_per_layer=states,
                               num_actions=actions, branching=branching, seed=seed)
    assert game.horizon == horizon and game.num_contexts == contexts
    assert game.num_state_action_pairs == contexts * actions * (1 + (horizon - 1) * states)
    again = random_layered_game(num_contexts=contexts, horizon=horizon, states_per_layer=states,
                                num_actions=actions, branching=branching, seed=seed)
    assert np.array_equal(game.transition_probs, again.transition_probs)
    assert np.array_equal(game.preference_values, again.preference_values)
    for c in range(contexts):
        block = game.preference_matrix(c)
        assert np.allclose(block + block.T, 1.0, atol=1e-12)
    with pytest.raises(ValueError):  # frozen arrays
        game.reference[0, 0] = 1.0


def test_tree_game_is_deterministic_with_action_prefix_states():
    game = tree_game(num_contexts=2, horizon=3, num_actions=2, seed=1)
    assert game.num_final_states == 2 * 2**3
    assert np.all(game.transition_probs == 1.0)
    # every final state is reached by exactly one action sequence from its context
    for c in range(2):
        finals = set()
        for seq in itertools.product(range(2), repeat=3):
            s = c
            for a in seq:
                s = int(game.transitions(s, a)[0][0])
            finals.add(s)
        assert len(finals) == 8


def test_education_dialogue_preference_is_not_bradley_terry():
    game = education_dialogue(horizon=2, num_topics=1, cycle_weight=0.5)
    P = game.preference_matrix(0)
    assert np.allclose(P + P.T, 1.0)
    # an intransitive triple (a ≻ b ≻ c ≻ a, each > ½) cannot come from any BT reward
    wins = P > 0.5 + 1e-9
    cyc = np.einsum("ab,bc,ca->", wins.astype(float), wins.astype(float), wins.astype(float))
    assert cyc > 0
    without = education_dialogue(horizon=2, num_topics=1, cycle_weight=0.0).preference_matrix(0)
    wins0 = (without > 0.5 + 1e-9).astype(float)
    assert np.einsum("ab,bc,ca->", wins0, wins0, wins0) == 0
    # posterior-predictive transitions are distributions
    assert game.num_actions == 5


def test_car_dealer_reward_and_preference():
    game = car_dealer(horizon=3)
    r = game.final_reward
    P = game.preference_matrix(0)
    F0 = int(game.final_starts[1])
    expected = 1 / (1 + np.exp(-(r[:F0, None] - r[None, :F0])))
    assert np.allclose(P, expected, atol=1e-12)
    assert r.min() == 0.0 and r.max() == 4.0


def _base_kwargs(game):
    return {f.name: getattr(game, f.name) for f in dataclasses.fields(game)}


@pytest.mark.parametrize(
    "field, value",
    [
        ("context_probs", [0.5, 0.6]),
        ("num_actions", 0),
        ("reference", "bad"),
        ("transition_probs", "probs*2"),
        ("transition_next", "wrong-layer"),
        ("preference_values", "not-antisymmetric"),
        ("preference_values", "nan"),
        ("final_reward", [1.0]),
        ("layer_starts", [0, 5, 3]),
    ],
)
def test_invalid_specs_raise_value_error(field, value):
    game = random_layered_game(seed=0)
    kwargs = _base_kwargs(game)
    if value == "bad":
        value = np.full_like(game.reference, 1.0)
    elif value == "probs*2":
        value = game.transition_probs * 2
    elif value == "wrong-layer":
        value = np.zeros_like(game.transition_next)
    elif value == "not-antisymmetric":
        value = np.full_like(game.preference_values, 0.7)
    elif value == "nan":
        value = np.where(np.arange(game.preference_values.size) == 0, np.nan, game.preference_values)
    kwargs[field] = value
    with pytest.raises(ValueError):
        DialogueGame(**kwargs)


@pytest.mark.parametrize(
    "call",
    [
        lambda: random_layered_game(horizon=0),
        lambda: random_layered_game(reference="weird"),
        lambda: random_layered_game(seed=-1),
        lambda: tree_game(num_actions=0),
        lambda: education_dialogue(match_prob=1.5),
        lambda: education_dialogue(horizon=9),
        lambda: car_dealer(prices=[3.0, 1.0]),
        lambda: car_dealer(leave_prob=-0.1),
        lambda: random_layered_game().preference(0, 1),
    ],
)
def test_invalid_generator_arguments(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("env_id", REG.ENV_IDS)
def test_check_env_passes(env_id):
    env = gymnasium.make(env_id)
    check_env(env.unwrapped)
    env.close()


def test_registration_idempotent_and_module_prefix():
    REG.register_all()
    REG.register_all()
    env = gymnasium.make("fixpoint_rl.envs.registration:fixpoint/CarDealer-v0", horizon=2)
    obs, info = env.reset(seed=3)
    assert obs == info["context"]


def test_episode_reward_and_preference():
    env = gymnasium.make("fixpoint/CarDealer-v0")
    finals, rewards = [], []
    for seed in range(2):
        obs, info = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, done, truncated, info = env.step(env.action_space.sample())
            total += reward
        finals.append(info["final_state"])
        rewards.append(total)
    game = env.unwrapped.game
    n_dec = game.num_decision_states
    for f, r in zip(finals, rewards):
        assert r == game.final_reward[f - n_dec]
    a = n_dec + int(game.final_starts[0])
    b = a + 1
    p = env.unwrapped.preference(a, b)
    assert abs(p + env.unwrapped.preference(b, a) - 1.0) < 1e-12


def test_dialogue_game_env_from_spec_and_vector_env():
    game = random_layered_game(horizon=3, seed=4)
    vec = gymnasium.make_vec("fixpoint/DialogueGame-v0", num_envs=3, vectorization_mode="sync",
                             game=game)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (3,)
    for _ in range(7):  # crosses episode boundaries (autoreset)
        obs, reward, term, trunc, _ = vec.step(vec.action_space.sample())
        assert np.all(obs < game.num_states)
    vec.close()
    vec2 = gymnasium.make_vec("fixpoint/EducationDialogue-v0", num_envs=2, vectorization_mode="sync",
                              horizon=2)
    obs, _ = vec2.reset(seed=1)
    vec2.step(np.array([0, 1]))
    vec2.close()


@given(seed=st.integers(0, 1000), scale=st.floats(1.01, 3.0), entry=st.integers(0, 10**6))
def test_hypothesis_corrupted_specs_raise(seed, scale, entry):
    game = random_layered_game(seed=seed)
    kwargs = _base_kwargs(game)
    probs = np.array(game.transition_probs)
    probs[entry % probs.size] *= scale  # that row no longer sums to one
    with pytest.raises(ValueError):
        DialogueGame(**{**kwargs, "transition_probs": probs})
    pref = np.array(game.preference_values)
    i = entry % pref.size
    pref[i] = min(1.0, pref[i] + 0.05 * scale)  # breaks P + Pᵀ = 1 for that pair
    with pytest.raises(ValueError):
        DialogueGame(**{**kwargs, "preference_values": pref})


def test_env_transition_frequencies_match_the_spec():
    # 4000 first steps with a fixed action: the empirical next-state frequencies must match
    # p(x_2 | x_1, y) within 5 binomial standard deviations (false-failure rate < 1e-6 per state)
    env = gymnasium.make("fixpoint/DialogueGame-v0",
                         game=random_layered_game(num_contexts=1, branching=3, seed=2))
    game = env.unwrapped.game
    env.reset(seed=0)
    counts = {}
    n = 4000
    for i in range(n):
        env.reset(seed=i)
        obs, *_ = env.step(1)
        counts[obs] = counts.get(obs, 0) + 1
    nxt, probs = game.transitions(0, 1)
    expected = {}
    for s, p in zip(nxt, probs):
        expected[int(s)] = expected.get(int(s), 0.0) + p
    assert set(counts) <= set(expected)
    for s, p in expected.items():
        assert abs(counts.get(s, 0) / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12


def test_generators_refuse_oversized_dense_preferences():
    with pytest.raises(ValueError):
        random_layered_game(states_per_layer=10, final_states=10**5)
    with pytest.raises(ValueError):
        tree_game(num_actions=5, horizon=6)
    with pytest.raises(ValueError):
        education_dialogue(horizon=4)
