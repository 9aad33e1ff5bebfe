"""The harness that times the reference DreamerV3 against us (``scripts/reference_dreamerv3``): its
old-gym shim over Gymnasium, and the updates/s read from both loops' metrics files."""

import importlib.util
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from scripts.reference_dreamerv3.updates_per_s import hmbrl_windows, rate, reference_windows, steady_windows

SHIM = Path(__file__).resolve().parents[2] / "scripts" / "reference_dreamerv3" / "shim" / "gym" / "__init__.py"


@pytest.fixture(scope="module")
def gym_shim():
    spec = importlib.util.spec_from_file_location("hmbrl_reference_gym_shim", SHIM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shim_gives_the_old_api_and_tells_truncation_from_termination(gym_shim):
    env = gym_shim.make("CartPole-v1", max_episode_steps=3, seed=7)
    observation = env.reset()
    reference = gymnasium.make("CartPole-v1", max_episode_steps=3)
    np.testing.assert_array_equal(observation, reference.reset(seed=7)[0])  # the seed reaches the first reset
    for t in range(3):  # alternating pushes keep the pole up for 3 steps: the time limit ends it
        observation, reward, done, info = env.step(np.asarray(t % 2, np.int32))
        assert reward == 1.0 and done == (t == 2) and info["is_terminal"] is False
    env = gym_shim.make("CartPole-v1")
    env.reset()
    steps = 0
    done = False
    while not done:  # always pushing right drops the pole: terminal
        _, _, done, info = env.step(1)
        steps += 1
    assert info["is_terminal"] is True and steps < 100
    assert env.action_space.n == 2 and env.observation_space.shape == (4,)


def test_reference_windows_take_their_length_from_the_policy_rate_and_skip_the_compiling_one():
    rows = [{"step": 100, "episode/score": 20.0},  # an episode line: not a window
            {"step": 1000, "fps/train": 0.0, "fps/policy": 100.0},  # prefill: no updates
            {"step": 3000, "fps/train": 1024.0, "fps/policy": 100.0},  # 20 s, 20 updates (compiles)
            {"step": 6200, "fps/train": 2048.0, "fps/policy": 64.0},  # 50 s, 100 updates
            {"step": 7800, "fps/train": 1024.0, "fps/policy": 32.0}]  # 50 s, 50 updates
    windows = reference_windows(rows)
    assert [w.seconds for w in windows] == [10.0, 20.0, 50.0, 50.0]
    assert [w.updates for w in windows] == [0.0, 20.0, 100.0, 50.0]
    assert [w.profiled for w in windows] == [False, False, True, True]  # they hold updates 100-120
    steady = steady_windows(windows)
    assert [w.step for w in steady] == [6200, 7800] and rate(steady) == pytest.approx(150 / 100)


def test_hmbrl_windows_take_their_length_from_the_environment_rate():
    rows = [{"step": 2000, "throughput/env_steps_per_second": 400.0, "throughput/updates": 0.0},  # prefill
            {"step": 4000, "throughput/env_steps_per_second": 40.0, "throughput/updates": 50.0},  # compiles
            {"step": 6000, "throughput/env_steps_per_second": 80.0, "throughput/updates": 112.5},
            {"step": 6000, "eval/return_mean": 30.0},
            {"step": 8000, "throughput/env_steps_per_second": 40.0, "throughput/updates": 175.0}]
    windows = hmbrl_windows(rows)
    assert [w.seconds for w in windows] == [5.0, 50.0, 25.0, 50.0]
    steady = steady_windows(windows)
    assert [(w.seconds, w.updates) for w in steady] == [(25.0, 62.5), (50.0, 62.5)]
    assert rate(steady) == pytest.approx(125 / 75)  # not the mean of the two rates
    with pytest.raises(ValueError, match="run longer"):
        steady_windows(hmbrl_windows(rows[:2]))
