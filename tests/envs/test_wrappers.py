"""Each wrapper in `envs.wrappers` (and the Gymnasium ones we apply) under `check_env`."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import RescaleAction

from envs.registry import make_env
from envs.wrappers import (ActionRepeat, GoalSuccess, KeepSourceObservation, OneHotGrid, PixelObservation,
                           SelectObservation, rescale_to_unit, resize_frame)

# check_env warns on every wrapped env and on unbounded Boxes (CartPole's, voxel grids): both expected.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*unwrapped version"),
    pytest.mark.filterwarnings("ignore:.*Box observation space m"),
]


class CountingEnv(gymnasium.Env):
    """Observation = steps taken, reward = step index, terminates after ``length`` steps."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, length: int = 5, render_mode: str | None = "rgb_array"):
        self.length = length
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Box(0, 100, (1,), np.float32)
        self.action_space = gymnasium.spaces.Box(-2.0, 4.0, (2,), np.float32)
        self.steps = 0
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.steps += 1
        self.actions.append(np.asarray(action))
        return np.full(1, self.steps, np.float32), float(self.steps), self.steps >= self.length, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((40, 60, 3), np.uint8)
        frame[:, : 10 * (self.steps + 1)] = 200  # a bar that grows with the step count
        return frame


def test_action_repeat_sums_rewards():
    env = ActionRepeat(CountingEnv(length=10), repeat=3)
    env.reset(seed=0)
    observation, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert observation[0] == 3 and reward == 1 + 2 + 3 and not (terminated or truncated)


def test_action_repeat_stops_at_termination():
    env = ActionRepeat(CountingEnv(length=4), repeat=3)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    observation, reward, terminated, _, _ = env.step(env.action_space.sample())
    assert terminated and observation[0] == 4 and reward == 4  # stopped after one of three repeats


def test_action_repeat_stops_at_truncation():
    env = ActionRepeat(gymnasium.wrappers.TimeLimit(CountingEnv(length=100), 5), repeat=4)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    observation, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert truncated and not terminated and observation[0] == 5 and reward == 5



@pytest.mark.parametrize("length, limit, success", [(2, 5, True), (5, 2, False)])
def test_goal_success_is_termination_with_a_positive_reward(length, limit, success):
    env = GoalSuccess(gymnasium.wrappers.TimeLimit(CountingEnv(length=length), limit))
    env.reset(seed=0)
    infos = [env.step(env.action_space.sample())[4] for _ in range(2)]
    assert [info["success"] for info in infos] == [False, success]  # truncated with reward 2: no success
    check_env(GoalSuccess(CountingEnv()), skip_render_check=True)


def test_action_repeat_check_env():
    check_env(ActionRepeat(gymnasium.make("CartPole-v1"), 2), skip_render_check=True)


@pytest.mark.parametrize("grayscale", [False, True])
def test_pixel_observation(grayscale):
    env = PixelObservation(CountingEnv(), image_size=(20, 30), grayscale=grayscale)
    observation, _ = env.reset(seed=0)
    channels = 1 if grayscale else 3
    assert observation.shape == (20, 30, channels) and observation.dtype == np.uint8
    assert env.observation_space.contains(observation)
    observation, *_ = env.step(env.action_space.sample())
    # The bar covers 20 of 60 render columns after one step, so 10 of 30 resized columns.
    assert observation[:, :9].min() > 150 and observation[:, 11:].max() == 0


@pytest.mark.parametrize("env_id, flags", [("event:CartPole-v1", {}), ("CartPole-v1", {"pixels": True})])
def test_cameras_keep_the_source_observation_of_the_last_repeated_step(env_id, flags):
    """A camera's env keeps what plain CartPole-v1, seeded alike and given every action twice, returns."""
    env = make_env(env_id, {"action_repeat": 2, "image_size": [16, 16], **flags})
    plain = gymnasium.make("CartPole-v1")
    observation, info = env.reset(seed=4)
    reference, _ = plain.reset(seed=4)
    assert observation is not info[KeepSourceObservation.KEY]  # the agent sees the camera, not the state
    np.testing.assert_array_equal(info[KeepSourceObservation.KEY], reference)
    for action in [0, 1, 1, 0, 1, 0, 0]:
        _, reward, terminated, truncated, info = env.step(action)
        for _ in range(2):
            reference, *_ = plain.step(action)
        np.testing.assert_array_equal(info[KeepSourceObservation.KEY], reference)
        assert reward == 2.0 and not (terminated or truncated)
    assert KeepSourceObservation.KEY not in make_env("CartPole-v1").reset(seed=0)[1]  # state runs: not copied


def test_keep_source_observation_check_env():
    check_env(KeepSourceObservation(CountingEnv()), skip_render_check=True)


def test_pixel_observation_check_env():
    env = PixelObservation(gymnasium.make("CartPole-v1", render_mode="rgb_array"), (32, 32), grayscale=True)
    check_env(env, skip_render_check=True)


def test_pixel_observation_needs_rgb_array():
    with pytest.raises(ValueError, match="rgb_array"):
        PixelObservation(gymnasium.make("CartPole-v1"))


def test_resize_frame_keeps_matching_sizes_and_drops_alpha():
    frame = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    np.testing.assert_array_equal(resize_frame(frame, (8, 8)), frame[..., :3])
    assert resize_frame(frame, (4, 6)).shape == (4, 6, 3)


def test_rescale_to_unit_maps_bounds():
    inner = CountingEnv(length=10)
    env = rescale_to_unit(inner)
    assert isinstance(env, RescaleAction)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    env.reset(seed=0)
    env.step(np.array([-1.0, 1.0], np.float32))
    env.step(np.array([0.0, 0.0], np.float32))
    np.testing.assert_allclose(inner.actions, [[-2.0, 4.0], [1.0, 1.0]])
    check_env(rescale_to_unit(gymnasium.make("Pendulum-v1")), skip_render_check=True)


def test_rescale_to_unit_leaves_other_spaces_alone():
    env = gymnasium.make("CartPole-v1")
    assert rescale_to_unit(env) is env


def test_select_observation():
    pytest.importorskip("minigrid")  # registers the MiniGrid ids
    env = gymnasium.make("MiniGrid-Empty-5x5-v0")
    wrapped = SelectObservation(env, "image")
    assert wrapped.observation_space == env.observation_space["image"]
    check_env(wrapped, skip_render_check=True)
    with pytest.raises(ValueError, match="missing"):
        SelectObservation(env, "missing")


def test_time_limit_and_episode_statistics_check_env():
    env = gymnasium.wrappers.TimeLimit(gymnasium.make("CartPole-v1"), 7)
    env = gymnasium.wrappers.RecordEpisodeStatistics(env)
    check_env(env, skip_render_check=True)



class _GridEnv(gymnasium.Env):
    """Two steps of a 2x2 grid with three channels of category indices, chosen by hand."""

    frames = [np.array([[[0, 1, 0], [2, 0, 1]], [[1, 1, 0], [0, 0, 0]]], np.uint8),
              np.array([[[2, 0, 1], [1, 1, 1]], [[0, 0, 0], [2, 1, 0]]], np.uint8)]

    def __init__(self):
        self.observation_space = gymnasium.spaces.Box(0, 255, (2, 2, 3), np.uint8)
        self.action_space = gymnasium.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.frames[0], {}

    def step(self, action):
        self.t = 1
        return self.frames[1], 0.0, True, False, {}


def test_one_hot_grid_matches_a_hand_made_encoding():
    env = OneHotGrid(_GridEnv(), (3, 2, 2))
    assert env.observation_space == gymnasium.spaces.Box(0.0, 1.0, (2 * 2 * 7,), np.float32)
    first, _ = env.reset(seed=0)
    second, *_ = env.step(0)
    # Cell by cell: 3 object slots, 2 colour slots, 2 state slots.
    expected_first = [[1, 0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 0, 0, 1], [0, 1, 0, 0, 1, 1, 0], [1, 0, 0, 1, 0, 1, 0]]
    expected_second = [[0, 0, 1, 1, 0, 0, 1], [0, 1, 0, 0, 1, 0, 1], [1, 0, 0, 1, 0, 1, 0], [0, 0, 1, 0, 1, 1, 0]]
    np.testing.assert_array_equal(first, np.array(expected_first, np.float32).reshape(-1))
    np.testing.assert_array_equal(second, np.array(expected_second, np.float32).reshape(-1))
    check_env(env, skip_render_check=True)


def test_one_hot_grid_rejects_values_beyond_the_counts_and_wrong_spaces():
    with pytest.raises(ValueError, match="below the category counts"):
        OneHotGrid(_GridEnv(), (2, 2, 2)).reset(seed=0)
    with pytest.raises(ValueError, match=r"Box of shape \[H, W, 2\]"):
        OneHotGrid(_GridEnv(), (3, 3))
