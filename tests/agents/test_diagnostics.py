"""The critic calibration probe: the top level's value at each step against the return that followed."""

import types

import numpy as np

from agents.diagnostics import _LevelMeter, calibration_scalars


def top_meter(discount: float) -> _LevelMeter:
    level = types.SimpleNamespace(index=0, top=True, actor_critic=types.SimpleNamespace(horizon=2, discount=discount),
                                  weighted_reward=lambda features, goal, task: np.asarray(task, float))
    return _LevelMeter(level, num_envs=1, env_discount=discount)


def play(meter: _LevelMeter, rewards: list[float], values: list[float], terminal: bool) -> None:
    """One episode: the first record starts it, each later one brings the reward of the step before."""
    steps = len(rewards)
    for t in range(steps + 1):
        last = t == steps
        record = {"is_first": np.array([t == 0]), "is_last": np.array([last]),
                  "is_terminal": np.array([last and terminal]),
                  "reward": np.array([0.0 if t == 0 else rewards[t - 1]])}
        meter.step(record, ticks=np.array([True]), opens=np.array([True]), features=np.zeros((1, 1)), goal=None,
                   imagined=np.zeros(1), value=np.array([values[t] if t < steps else -1.0]))


def test_value_meets_the_discounted_return_of_a_terminated_episode():
    meter = top_meter(discount=0.5)
    play(meter, rewards=[1.0, 1.0, 1.0], values=[3.0, 2.0, 0.0], terminal=True)
    # Real returns from each state: 1 + 0.5 + 0.25, 1 + 0.5, 1.
    np.testing.assert_allclose(meter.calibrations[0].pairs, [(3.0, 1.75), (2.0, 1.5), (0.0, 1.0)])
    scalars = meter.scalars(reach_threshold=0.9)
    np.testing.assert_allclose(scalars["level0/critic/terminal_value_error"], np.mean([1.25, 0.5, -1.0]))
    np.testing.assert_allclose(scalars["level0/critic/terminal_value_corr"],
                               np.corrcoef([3.0, 2.0, 0.0], [1.75, 1.5, 1.0])[0, 1])


def test_an_episode_cut_by_a_time_limit_is_not_scored():
    """After a time limit the real return is unknown: no pairs, no scalar."""
    meter = top_meter(discount=0.5)
    play(meter, rewards=[1.0, 1.0], values=[5.0, 5.0], terminal=False)
    assert meter.calibrations[0].pairs == []
    assert "level0/critic/terminal_value_error" not in meter.scalars(reach_threshold=0.9)


def test_constant_values_give_an_error_but_no_correlation():
    pairs = np.array([[2.0, 1.0], [2.0, 3.0]])
    assert calibration_scalars(pairs, "level1") == {"level1/critic/terminal_value_error": 0.0}
    assert calibration_scalars(np.zeros((0, 2)), "level1") == {}
