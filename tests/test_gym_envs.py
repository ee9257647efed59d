"""gymnasium environments: MinAtar wrapper, ALE vector env, and registration of every id.

Oracles: ``gymnasium.utils.env_checker.check_env``; the raw ``minatar.Environment`` seeded the
same way (the wrapper must reproduce it step for step); fresh interpreters for the import-order
behaviour of the registration hook and for the layering rule.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium
import minatar
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import fixpoint_rl.envs
from fixpoint_rl.envs.gym_minatar import GAMES, MinAtarEnv, minatar_env_id

gymnasium.register_envs(fixpoint_rl.envs)
MINIMAL_ACTIONS = {"Asterix": 5, "Breakout": 3, "Freeway": 3, "Seaquest": 6, "SpaceInvaders": 4}


@pytest.mark.parametrize("game", sorted(GAMES))
def test_minatar_ids_pass_check_env_with_uint8_channels_first(game):
    env = gymnasium.make(minatar_env_id(game))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure too
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    channels = minatar.Environment(GAMES[game]).state_shape()[2]
    assert obs.dtype == np.uint8 and obs.shape == (channels, 10, 10)
    assert set(np.unique(obs)) <= {0, 1}
    assert env.action_space.n == MINIMAL_ACTIONS[game]
    assert gymnasium.make(minatar_env_id(game), full_action_space=True).action_space.n == 6


@pytest.mark.parametrize("game", sorted(GAMES))
def test_wrapper_reproduces_raw_minatar_step_for_step(game):
    # seeded identically, the wrapper must replay the engine exactly (sticky draws included)
    env = MinAtarEnv(game, full_action_space=True, sticky_action_prob=0.3)
    env.reset(seed=5)
    raw = minatar.Environment(GAMES[game], sticky_action_prob=0.3)
    raw.seed(int(np.random.default_rng(5).integers(2**31 - 1)))  # gymnasium's np_random(5)
    raw.reset()
    actions = np.random.default_rng(1).integers(0, 6, size=300)
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(int(a))
        raw_reward, raw_terminal = raw.act(int(a))
        assert np.array_equal(obs, raw.state().transpose(2, 0, 1))
        assert reward == raw_reward and terminated == raw_terminal and not truncated
        if terminated:
            break


def test_same_seed_same_episode_and_different_seed_differs():
    def episode(seed):
        env = gymnasium.make("fixpoint/MinAtar-Asterix-v1")
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        frames, rewards = [obs], []
        for _ in range(200):
            obs, r, term, trunc, _ = env.step(env.action_space.sample())
            frames.append(obs)
            rewards.append(r)
            if term or trunc:
                break
        return np.stack(frames), np.array(rewards)

    a, b, c = episode(3), episode(3), episode(4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_minatar_arguments_are_validated_and_recorded():
    with pytest.raises(ValueError, match="game"):
        MinAtarEnv("Pong")
    with pytest.raises(ValueError, match="sticky_action_prob"):
        MinAtarEnv("Breakout", sticky_action_prob=1.0)
    with pytest.raises(ValueError, match="difficulty_ramping"):
        MinAtarEnv("Breakout", difficulty_ramping="yes")
    env = MinAtarEnv("Breakout", sticky_action_prob=0.0, difficulty_ramping=False)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(3)
    protocol = env.protocol()
    assert protocol["sticky_action_prob"] == 0.0 and protocol["difficulty_ramping"] is False
    assert protocol["action_set"] == "minimal (3)"


def test_register_envs_makes_every_fixpoint_id_available_in_either_import_order():
    from fixpoint_rl.envs.registration import ENV_IDS

    # gymnasium first (this process: gymnasium was imported before fixpoint_rl.envs)
    assert sorted(i for i in gymnasium.registry if i.startswith("fixpoint/")) == sorted(ENV_IDS)
    gymnasium.make("fixpoint/EducationDialogue-v0").reset(seed=0)
    # fixpoint_rl.envs first, in a fresh interpreter: gymnasium is not imported by it, and the
    # ids appear as soon as gymnasium is
    code = """
import sys
import fixpoint_rl.envs
assert "gymnasium" not in sys.modules
import gymnasium
gymnasium.register_envs(fixpoint_rl.envs)
ids = sorted(i for i in gymnasium.registry if i.startswith("fixpoint/"))
gymnasium.make("fixpoint/MinAtar-Seaquest-v1").reset(seed=0)
gymnasium.make("fixpoint/CarDealer-v0").reset(seed=0)
print(",".join(ids))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(",") == sorted(ENV_IDS)
    assert len(ENV_IDS) == 8


def test_ale_vector_env_for_pong_with_two_envs_steps_and_records_its_protocol():
    from fixpoint_rl.envs.gym_atari import ATARI_PROTOCOLS, make_atari_vector_env

    env = make_atari_vector_env("Pong", 2, seed=0, **ATARI_PROTOCOLS["dopamine"])
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        for _ in range(20):
            obs, reward, terminated, truncated, info = env.step(np.array([0, 2]))
        assert obs.shape == (2, 4, 84, 84) and reward.shape == (2,)
        assert set(np.unique(reward)) <= {-1, 0, 1}  # clipped
        protocol = env.protocol
        assert protocol["sticky_action_prob"] == 0.25 and protocol["frameskip"] == 4
        assert protocol["stack_num"] == 4 and protocol["reward_clipping"] is True
    finally:
        env.close()
    with pytest.raises(ValueError, match="game"):
        make_atari_vector_env("NotAGame", 1, sticky_action_prob=0.0)
    with pytest.raises(ValueError, match="sticky_action_prob"):
        make_atari_vector_env("Pong", 1, sticky_action_prob=1.5)
