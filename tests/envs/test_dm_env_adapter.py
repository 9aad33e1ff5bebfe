"""The dm_env <-> Gymnasium adapters: spec/space mapping, episode ends, dm_env's own contract."""

from __future__ import annotations

import unittest

import dm_env
import gymnasium
import numpy as np
import pytest
from dm_env import specs, test_utils
from gymnasium.utils.env_checker import check_env

from envs.dm_env_adapter import DmEnvToGymnasium, GymnasiumToDmEnv, space_to_spec, spec_to_space

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*unwrapped version"),
    pytest.mark.filterwarnings("ignore:.*Box observation space m"),
]


class GymnasiumToDmEnvContractTest(test_utils.EnvironmentTestMixin, unittest.TestCase):
    """dm_env's reusable checks over CartPole-v1, with episodes that really end."""

    def make_object_under_test(self) -> dm_env.Environment:
        return GymnasiumToDmEnv(gymnasium.make("CartPole-v1"), seed=0)

    def make_action_sequence(self):
        # Always pushing right tips the pole within ~10 steps, so LAST -> FIRST is exercised.
        for _ in range(60):
            yield np.int64(1)


class EndingEnv(dm_env.Environment):
    """Two-step episodes ending with a chosen discount; dict observations of mixed specs."""

    def __init__(self, final_discount: float):
        self.final_discount = final_discount
        self._steps = 0

    def reset(self) -> dm_env.TimeStep:
        self._steps = 0
        return dm_env.restart(self._observation())

    def step(self, action) -> dm_env.TimeStep:
        self._steps += 1
        if self._steps < 2:
            return dm_env.transition(1.0, self._observation())
        if self.final_discount == 0:
            return dm_env.termination(1.0, self._observation())
        return dm_env.truncation(1.0, self._observation(), discount=self.final_discount)

    def observation_spec(self):
        return {
            "position": specs.Array((2,), np.float64, name="position"),
            "level": specs.BoundedArray((), np.int32, 0, 5, name="level"),
        }

    def action_spec(self):
        return specs.DiscreteArray(3, name="action")

    def _observation(self) -> dict:
        return {"position": np.array([self._steps, 0.5]), "level": np.int32(self._steps)}


def test_spec_to_space():
    assert spec_to_space(specs.DiscreteArray(4)) == gymnasium.spaces.Discrete(4)
    box = spec_to_space(specs.BoundedArray((2,), np.float32, -1.0, [1.0, 2.0]))
    assert box == gymnasium.spaces.Box(np.float32(-1), np.array([1, 2], np.float32), (2,), np.float32)
    unbounded = spec_to_space(specs.Array((3,), np.float64))
    assert np.all(unbounded.low == -np.inf) and np.all(unbounded.high == np.inf) and unbounded.dtype == np.float64
    nested = spec_to_space({"a": specs.Array((), np.int32), "b": specs.DiscreteArray(2)})
    assert isinstance(nested, gymnasium.spaces.Dict) and set(nested.spaces) == {"a", "b"}


def test_space_to_spec_round_trips():
    for space in (
        gymnasium.spaces.Discrete(5),
        gymnasium.spaces.Box(-2.0, 3.0, (4,), np.float32),
        gymnasium.spaces.Box(0, 255, (3, 3, 1), np.uint8),
        gymnasium.spaces.Dict({"x": gymnasium.spaces.Box(-1.0, 1.0, (2,)), "n": gymnasium.spaces.Discrete(3)}),
    ):
        assert spec_to_space(space_to_spec(space)) == space


@pytest.mark.parametrize("discount, terminated", [(0.0, True), (1.0, False), (0.5, False)])
def test_last_step_discount_decides_terminated_or_truncated(discount, terminated):
    env = DmEnvToGymnasium(EndingEnv(discount))
    observation, _ = env.reset()
    assert env.observation_space.contains(observation)
    assert env.step(0)[2:4] == (False, False)
    observation, reward, is_terminated, is_truncated, info = env.step(0)
    assert (is_terminated, is_truncated) == (terminated, not terminated)
    assert reward == 1.0 and info["discount"] == discount
    assert env.observation_space.contains(observation)


def test_gymnasium_truncation_becomes_last_with_discount_one():
    env = GymnasiumToDmEnv(gymnasium.make("CartPole-v1", max_episode_steps=3), seed=0)
    env.reset()
    steps = [env.step(np.int64(step % 2)) for step in range(3)]
    assert [step.step_type for step in steps] == [dm_env.StepType.MID, dm_env.StepType.MID, dm_env.StepType.LAST]
    assert steps[-1].discount == 1.0


def test_round_trip_gives_the_same_episode():
    direct = gymnasium.make("CartPole-v1")
    dm = GymnasiumToDmEnv(gymnasium.make("CartPole-v1"))
    round_trip = DmEnvToGymnasium(dm, seed_fn=dm.reseed)
    actions = np.random.default_rng(0).integers(0, 2, 200)
    for seed in (3, 4):
        observation_direct, _ = direct.reset(seed=seed)
        observation_round, _ = round_trip.reset(seed=seed)
        np.testing.assert_array_equal(observation_direct, observation_round)
        for action in actions:
            expected, actual = direct.step(int(action)), round_trip.step(int(action))
            np.testing.assert_array_equal(expected[0], actual[0])
            assert expected[1:4] == actual[1:4]
            if expected[2] or expected[3]:
                break


def test_round_trip_check_env():
    dm = GymnasiumToDmEnv(gymnasium.make("CartPole-v1"))
    check_env(DmEnvToGymnasium(dm, seed_fn=dm.reseed), skip_render_check=True)


def test_reset_seed_without_seed_fn_is_an_error():
    env = DmEnvToGymnasium(EndingEnv(0.0))
    with pytest.raises(ValueError, match="seed_fn"):
        env.reset(seed=1)


def test_render_fn_enables_rgb_array():
    frame = np.zeros((4, 4, 3), np.uint8)
    env = DmEnvToGymnasium(EndingEnv(0.0), render_fn=lambda: frame)
    assert env.render_mode == "rgb_array" and env.render() is frame
    assert DmEnvToGymnasium(EndingEnv(0.0)).render_mode is None
