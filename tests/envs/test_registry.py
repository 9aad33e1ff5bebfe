"""`make_env` ids, wrapper order and errors; `list_env_ids`."""

from __future__ import annotations

import importlib.util

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import RecordEpisodeStatistics, RescaleAction, TimeLimit

from envs.config import EnvConfig
from envs.event_camera import EventCamera
from envs.registry import LIST_IDS_HINT, list_env_ids, make_env
from envs.wrappers import ActionRepeat, PixelObservation

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*unwrapped version"),
    pytest.mark.filterwarnings("ignore:.*Box observation space m"),
]


def wrapper_chain(env: gymnasium.Env) -> list[type]:
    """Wrapper classes from outermost to innermost."""
    chain = []
    while isinstance(env, gymnasium.Wrapper):
        chain.append(type(env))
        env = env.env
    return chain


def test_plain_id_with_default_config():
    env = make_env("CartPole-v1", seed=0)
    assert wrapper_chain(env)[0] is RecordEpisodeStatistics
    assert env.observation_space.shape == (4,)
    check_env(env, skip_render_check=True)


def test_wrappers_applied_in_documented_order():
    config = {"pixels": True, "image_size": [24, 24], "action_repeat": 2, "time_limit": 30}
    chain = wrapper_chain(make_env("Pendulum-v1", config, seed=0))
    order = [RecordEpisodeStatistics, RescaleAction, PixelObservation, ActionRepeat, TimeLimit]
    assert [cls for cls in chain if cls in order] == order


def test_pixels_time_limit_and_action_repeat_take_effect():
    config = EnvConfig(pixels=True, image_size=(24, 32), grayscale=True, action_repeat=3, time_limit=10)
    env = make_env("Pendulum-v1", config, seed=0)
    check_env(env, skip_render_check=True)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (24, 32, 1) and observation.dtype == np.uint8
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    steps = 0
    truncated = False
    while not truncated:
        *_, truncated, info = env.step(env.action_space.sample())
        steps += 1
    assert steps == 4 and info["episode"]["l"] == 4  # 10 env steps in repeats of 3 (stops at 10)


def test_kwargs_reach_the_constructor():
    env = make_env("Pendulum-v1", {"kwargs": {"g": 3.0}})
    assert env.unwrapped.g == 3.0


def test_rescale_can_be_switched_off():
    env = make_env("Pendulum-v1", {"rescale_actions": False})
    assert env.action_space.high[0] == 2.0


def test_same_seed_same_episode():
    def rollout(seed: int) -> np.ndarray:
        config = {"image_size": [16, 16], "event_camera": {"shot_noise_rate": 2.0}}
        env = make_env("event:CartPole-v1", config, seed)
        observations = [env.reset()[0]]
        observations += [env.step(env.action_space.sample())[0] for _ in range(5)]
        return np.stack(observations)

    np.testing.assert_array_equal(rollout(1), rollout(1))
    assert not np.array_equal(rollout(1), rollout(2))


def test_event_id_wraps_the_render():
    env = make_env("event:CartPole-v1", {"image_size": [16, 16]})
    assert EventCamera in wrapper_chain(env)
    assert env.observation_space.shape == (16, 16, 2)


def test_event_id_with_pixels_is_rejected():
    with pytest.raises(ValueError, match="pixels"):
        make_env("event:CartPole-v1", {"pixels": True})


def test_user_registered_id():
    gymnasium.register("HmbrlTestCartPole-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    try:
        assert make_env("HmbrlTestCartPole-v0").observation_space.shape == (4,)
        assert "HmbrlTestCartPole-v0" in list_env_ids()
    finally:
        del gymnasium.registry["HmbrlTestCartPole-v0"]


@pytest.mark.parametrize(
    "env_id, match", [("CartPol-v1", "CartPole-v1"), ("event:CartPole-v9", "event:CartPole-v1")]
)
def test_unknown_id_suggests_and_says_how_to_list(env_id, match):
    with pytest.raises(ValueError) as error:
        make_env(env_id)
    assert match in str(error.value) and LIST_IDS_HINT in str(error.value)


def test_unknown_prefix_is_an_unknown_id():
    with pytest.raises(ValueError, match="list_env_ids"):
        make_env("nosuchfamily:Thing-v0")


def test_list_env_ids():
    ids = list_env_ids()
    assert {"CartPole-v1", "event:CartPole-v1", "Pendulum-v1"} <= set(ids)
    assert len(ids) == len(set(ids))


@pytest.mark.skipif(importlib.util.find_spec("dm_control") is not None, reason="dm_control is installed")
def test_dmc_without_dm_control_names_the_extra():
    with pytest.raises(ImportError, match=r'pip install "hmbrl\[dmc\]"'):
        make_env("dmc:cartpole-swingup")


@pytest.mark.skipif(importlib.util.find_spec("dm_control") is None, reason="dm_control is not installed")
def test_dmc_id_works():
    env = make_env("dmc:cartpole-balance", {"time_limit": 20}, seed=0)
    check_env(env, skip_render_check=True)
    with pytest.raises(ValueError, match="list_env_ids"):
        make_env("dmc:cartpole-nosuchtask")
    events = make_env("event:dmc:cartpole-swingup", {"image_size": [16, 16]}, seed=0)
    check_env(events, skip_render_check=True)


@pytest.mark.skipif(importlib.util.find_spec("ale_py") is not None, reason="ale-py is installed")
def test_ale_without_ale_py_names_the_extra():
    with pytest.raises(ImportError, match=r'pip install "hmbrl\[atari\]"'):
        make_env("ale:Pong")


def test_minigrid_id():
    pytest.importorskip("minigrid")
    env = make_env("minigrid:MiniGrid-DoorKey-5x5-v0", seed=0)
    assert env.observation_space == gymnasium.spaces.Box(0.0, 1.0, (7 * 7 * (11 + 6 + 3),), np.float32)
    observation, _ = env.reset(seed=0)
    assert observation.reshape(49, 20).sum(-1).tolist() == [3.0] * 49  # one object, colour, state per cell
    assert env.action_space == gymnasium.spaces.Discrete(7)
    assert env.step(0)[4]["success"] is False  # envs.wrappers.GoalSuccess: True on reaching the goal
    check_env(env, skip_render_check=True)
    assert "minigrid:MiniGrid-DoorKey-5x5-v0" in list_env_ids()
    with pytest.raises(ValueError, match="MiniGrid-DoorKey-5x5-v0"):
        make_env("minigrid:MiniGrid-DoorKy-5x5-v0")
