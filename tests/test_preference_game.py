"""PreferenceGame validation and the game library (envs/preference.py), checked against direct
computations written independently here (face enumeration, the sigmoid, the rater-type model)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixpoint_rl.envs.preference import (
    GAME_KINDS,
    PreferenceGame,
    bradley_terry,
    dice,
    random_contextual_game,
    random_game,
    rock_paper_scissors,
    three_type_cycle,
)

# Exact rational constructions are reproduced to float64 rounding; 1e-12 leaves room for it only.
EXACT = 1e-12


def _assert_valid_preferences(pref: np.ndarray) -> None:
    assert np.all((pref >= 0) & (pref <= 1))
    np.testing.assert_allclose(pref + np.swapaxes(pref, -1, -2), 1.0, atol=EXACT)
    np.testing.assert_allclose(np.diagonal(pref, axis1=-2, axis2=-1), 0.5, atol=EXACT)


def test_dice_matches_face_enumeration():
    faces = [(2, 4, 9), (1, 6, 8), (3, 5, 7)]
    expected = np.array(
        [
            [np.mean([(a > b) + 0.5 * (a == b) for a, b in itertools.product(fi, fj)]) for fj in faces]
            for fi in faces
        ]
    )
    game = dice()
    np.testing.assert_allclose(game.pref, expected, atol=EXACT)
    # each die beats the next with probability 5/9 (NLHF App. C.1)
    for i in range(3):
        assert game.pref[i, (i + 1) % 3] == pytest.approx(5 / 9, abs=EXACT)
    np.testing.assert_allclose(game.ref, np.full(3, 1 / 3))
    assert game.n_actions == 3 and not game.is_contextual and game.n_contexts == 1


def test_rock_paper_scissors():
    game = rock_paper_scissors()
    rock, paper, scissors = 0, 1, 2
    assert game.pref[paper, rock] == 1.0 and game.pref[scissors, paper] == 1.0
    assert game.pref[rock, scissors] == 1.0 and game.pref[rock, paper] == 0.0
    _assert_valid_preferences(game.pref)


@given(st.floats(-2 / 3, 1 / 3))
def test_three_type_cycle_is_the_rater_mixture(eps):
    a, b, c = 1 / 3 - eps, 1 / 3 + eps / 2, 1 / 3 + eps / 2
    # Each type: 1 on its strict pair, ½ elsewhere; P is the share-weighted average (NLHF §3.2).
    expected = np.zeros((3, 3))
    for share, (winner, loser) in ((a, (1, 0)), (b, (0, 2)), (c, (2, 1))):
        one_type = np.full((3, 3), 0.5)
        one_type[winner, loser], one_type[loser, winner] = 1.0, 0.0
        expected += share * one_type
    game = three_type_cycle(eps)
    np.testing.assert_allclose(game.pref, expected, atol=EXACT)
    assert game.pref[1, 0] == pytest.approx(2 / 3 - eps / 2, abs=EXACT)


@given(st.lists(st.floats(-20, 20), min_size=1, max_size=8))
def test_bradley_terry_is_the_sigmoid_of_reward_differences(rewards):
    r = np.array(rewards)
    game = bradley_terry(r)
    expected = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
    np.testing.assert_allclose(game.pref, expected, atol=EXACT)
    _assert_valid_preferences(game.pref)


def test_bradley_terry_contextual_rewards():
    rewards = np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]])
    game = bradley_terry(rewards)
    assert game.is_contextual and game.pref.shape == (2, 3, 3) and game.ref.shape == (2, 3)
    np.testing.assert_allclose(game.pref[1], bradley_terry(rewards[1]).pref)


@given(st.integers(1, 30), st.integers(0, 2**31), st.sampled_from(GAME_KINDS), st.sampled_from(["uniform", "dirichlet"]))
def test_random_games_are_valid_and_reproducible(K, seed, kind, ref):
    game = random_game(K, seed, kind, ref)
    _assert_valid_preferences(game.pref)
    assert game.ref.shape == (K,) and np.all(game.ref > 0)
    again = random_game(K, seed, kind, ref)
    np.testing.assert_array_equal(game.pref, again.pref)
    np.testing.assert_array_equal(game.ref, again.ref)


def _beats(pref: np.ndarray) -> np.ndarray:
    return pref > 0.5


def test_bradley_terry_kind_is_transitive_and_antisymmetric_kind_is_not():
    beats = _beats(random_game(12, 3, "bradley_terry").pref)
    for i, j, k in itertools.permutations(range(12), 3):
        assert not (beats[i, j] and beats[j, k] and beats[k, i])
    beats = _beats(random_game(12, 3, "antisymmetric").pref)
    assert any(beats[i, j] and beats[j, k] and beats[k, i] for i, j, k in itertools.permutations(range(12), 3))


def test_random_seeds_differ_and_generator_accepted():
    assert not np.array_equal(random_game(5, 0).pref, random_game(5, 1).pref)
    np.testing.assert_array_equal(random_game(5, np.random.default_rng(7)).pref, random_game(5, 7).pref)


def test_random_contextual_game_shapes_and_contexts():
    game = random_contextual_game(6, 4, seed=2, kind="antisymmetric", ref="dirichlet")
    assert game.is_contextual and game.n_contexts == 6 and game.n_actions == 4
    assert game.pref.shape == (6, 4, 4) and game.ref.shape == (6, 4)
    np.testing.assert_allclose(game.context_weights, np.full(6, 1 / 6))
    _assert_valid_preferences(game.pref)
    one = game.context(4)
    np.testing.assert_array_equal(one.pref, game.pref[4])
    np.testing.assert_array_equal(one.ref, game.ref[4])
    # contexts are drawn independently
    assert not np.array_equal(game.pref[0], game.pref[1])


def test_game_is_frozen_and_read_only():
    pref = dice().pref.copy()
    game = PreferenceGame(pref, np.full(3, 1 / 3))
    pref[0, 1] = 0.0  # the game copied its input
    assert game.pref[0, 1] == pytest.approx(5 / 9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        game.ref = np.ones(3) / 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        game.pref[0, 0] = 1.0
    np.testing.assert_allclose(game.payoff, pref * 0 + dice().pref - 0.5)
    new = game.with_ref([0.5, 0.3, 0.2])
    np.testing.assert_allclose(new.ref, [0.5, 0.3, 0.2])


# --- invalid inputs -------------------------------------------------------------------------

VALID = dice().pref


@given(st.integers(0, 2), st.integers(0, 2), st.floats(2e-9, 0.4))
def test_non_antisymmetric_pref_is_rejected(i, j, delta):
    pref = VALID.copy()
    pref[i, j] += delta if pref[i, j] + delta <= 1 else -delta
    with pytest.raises(ValueError, match="pref"):
        PreferenceGame(pref, np.full(3, 1 / 3))


@given(st.floats(1e-6, 5.0), st.booleans())
def test_pref_outside_unit_interval_is_rejected(excess, above):
    pref = np.full((2, 2), 0.5)
    value = 1 + excess if above else -excess
    pref[0, 1], pref[1, 0] = value, 1 - value  # antisymmetric, but out of [0, 1]
    with pytest.raises(ValueError, match="pref"):
        PreferenceGame(pref, [0.5, 0.5])


@given(st.sampled_from([np.nan, np.inf, -np.inf]), st.integers(0, 8))
def test_non_finite_pref_is_rejected(bad, flat):
    pref = VALID.copy()
    pref.flat[flat] = bad
    with pytest.raises(ValueError, match="pref"):
        PreferenceGame(pref, np.full(3, 1 / 3))


def test_non_half_diagonal_is_rejected():
    pref = np.array([[0.6, 0.5], [0.5, 0.4]])  # pref + pref.T has 1.2 on the diagonal
    with pytest.raises(ValueError, match="pref"):
        PreferenceGame(pref, [0.5, 0.5])


@pytest.mark.parametrize(
    "pref, ref",
    [
        (np.full((2, 3), 0.5), [0.5, 0.5]),  # non-square
        (np.full(3, 0.5), [1 / 3] * 3),  # 1-D
        (np.full((1, 1, 2, 2), 0.5), [0.5, 0.5]),  # 4-D
        (VALID, [0.5, 0.5]),  # ref too short
        (VALID, np.full((2, 3), 1 / 3)),  # contextual ref for a single game
        (np.stack([VALID, VALID]), [1 / 3] * 3),  # single ref for a contextual game
        (np.zeros((0, 0)), []),  # empty
        ("dice", [1.0]),  # not numbers
    ],
)
def test_wrong_shapes_are_rejected(pref, ref):
    with pytest.raises(ValueError):
        PreferenceGame(pref, ref)


@given(st.integers(0, 2), st.floats(0.0, 0.5))
def test_ref_without_full_support_is_rejected(zero_at, other):
    ref = np.array([other, 1 - other, 0.0])
    ref = np.roll(ref, zero_at - 2)
    with pytest.raises(ValueError, match="ref"):
        PreferenceGame(VALID, ref)


@given(st.floats(1e-6, 10.0))
def test_ref_not_summing_to_one_is_rejected(scale):
    with pytest.raises(ValueError, match="ref"):
        PreferenceGame(VALID, np.full(3, 1 / 3) * (1 + scale))


def test_context_weights_are_validated():
    pref = np.stack([VALID, VALID])
    ref = np.full((2, 3), 1 / 3)
    game = PreferenceGame(pref, ref, context_weights=[0.25, 0.75])
    np.testing.assert_allclose(game.context_weights, [0.25, 0.75])
    for bad in ([0.5, 0.6], [1.0], [np.nan, 1.0], [-0.5, 1.5]):
        with pytest.raises(ValueError, match="context_weights"):
            PreferenceGame(pref, ref, context_weights=bad)
    with pytest.raises(ValueError, match="context_weights"):
        PreferenceGame(VALID, [1 / 3] * 3, context_weights=[1.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: random_game(0, 0),
        lambda: random_game(3, -1),
        lambda: random_game(3, 0, kind="cyclic"),
        lambda: random_game(3, 0, ref="zipf"),
        lambda: random_game(2.5, 0),
        lambda: random_contextual_game(0, 3, 0),
        lambda: three_type_cycle(0.5),
        lambda: three_type_cycle(np.nan),
        lambda: bradley_terry([]),
        lambda: bradley_terry([0.0, np.inf]),
        lambda: dice(ref=[1.0, 0.0, 0.0]),
        lambda: dice().context(0),
    ],
)
def test_library_rejects_invalid_arguments(call):
    with pytest.raises(ValueError):
        call()


@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 3))
def test_mismatched_ref_shape_is_rejected(K, K_ref, X):
    """Hypothesis-generated shape mismatches between pref [K, K] / [X, K, K] and ref."""
    pref = np.full((K, K), 0.5) if X == 0 else np.full((X, K, K), 0.5)
    ref_shape = (K_ref,) if X == 0 else (X, K_ref)
    if K_ref == K:  # make it mismatch another way: a contextual ref for a single game or vice versa
        ref_shape = (2, K) if X == 0 else (K,)
    with pytest.raises(ValueError, match="ref"):
        PreferenceGame(pref, np.full(ref_shape, 1.0 / ref_shape[-1]))
