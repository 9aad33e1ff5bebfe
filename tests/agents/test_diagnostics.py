"""The critic calibration probe: the top level's value at each step against the return that followed."""

import types

import numpy as np

from agents.diagnostics import _LevelMeter, calibration_scalars


def top_meter(discount: float) -> _LevelMeter:
    level = types.SimpleNamespace(index=0, top=True, novelty_scale=0.0, actor_critic=types.SimpleNamespace(horizon=2, discount=discount),
                                  weighted_reward=lambda features, goal, task, continues=None: np.asarray(task, float))
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


def test_a_level_below_the_top_records_how_alike_its_consecutive_steps_are():
    """The "auto" reach threshold's data: similarity of each step's goal features to the step before,
    at the level's own ticks, never across an episode start; features ``[N=2, F=3]``, goal size 2."""
    level = types.SimpleNamespace(index=0, top=False, goal_size=2, novelty_scale=0.0,
                                  actor_critic=types.SimpleNamespace(horizon=2, discount=0.9),
                                  weighted_reward=lambda features, goal, task, continues=None: np.zeros(len(task)))
    meter = _LevelMeter(level, num_envs=2, env_discount=0.9)
    features = [np.array([[1.0, 0.0, 9.0], [1.0, 0.0, 9.0]]), np.array([[1.0, 1.0, 9.0], [0.0, 2.0, 9.0]]),
                np.array([[2.0, 2.0, 9.0], [5.0, 5.0, 9.0]])]
    firsts = [np.array([True, True]), np.array([False, False]), np.array([False, True])]
    ticks = [np.array([True, True]), np.array([True, False]), np.array([True, True])]
    for feature, first, tick in zip(features, firsts, ticks):
        record = {"is_first": first, "is_last": np.array([False, False]), "is_terminal": np.array([False, False]),
                  "reward": np.zeros(2)}
        meter.step(record, ticks=tick, opens=tick, features=feature, goal=np.zeros((2, 2)), imagined=np.zeros(2))
    # env 0: (1, 0) -> (1, 1): 1 / 2; (1, 1) -> (2, 2): 4 / 8. env 1: no tick at step 1, episode start at 2
    np.testing.assert_allclose(meter.one_step, [0.5, 0.5], rtol=1e-6)  # float32, as the agent computes it


def test_the_tops_novelty_expected_in_a_window_meets_the_novelty_of_the_states_reached():
    """Horizon 2, discount 0.5: the window opened at step t expects ``imagined`` and meets the novelty
    of the states at t + 1 and t + 2; a level without a novelty term keeps no such windows."""
    level = types.SimpleNamespace(index=1, top=True, novelty_scale=0.1,
                                  actor_critic=types.SimpleNamespace(horizon=2, discount=0.5),
                                  weighted_reward=lambda features, goal, task, continues=None: np.asarray(task, float))
    meter = _LevelMeter(level, num_envs=1, env_discount=0.5)
    expected, met = [9.0, 8.0, 7.0, 6.0], [0.0, 2.0, 4.0, 6.0]
    for t in range(4):
        record = {"is_first": np.array([t == 0]), "is_last": np.array([t == 3]), "is_terminal": np.array([False]),
                  "reward": np.zeros(1)}
        meter.step(record, ticks=np.array([True]), opens=np.array([True]), features=np.zeros((1, 1)), goal=None,
                   imagined=np.zeros(1), value=np.zeros(1), novelty=(np.array([expected[t]]), np.array([met[t]])))
    # windows from steps 0 and 1 close after two steps; the one from step 2 is cut by the episode's end
    np.testing.assert_allclose(meter.novelty_trackers[0].pairs, [(9.0, 2.0 + 0.5 * 4.0), (8.0, 4.0 + 0.5 * 6.0)])
    scalars = meter.scalars(reach_threshold=None)
    np.testing.assert_allclose(scalars["level1/exploitation/novelty_gap"], np.mean([9.0 - 4.0, 8.0 - 7.0]))
    np.testing.assert_allclose(scalars["level1/exploitation/novelty_real_return"], np.mean([4.0, 7.0]))
    assert not top_meter(discount=0.5).novelty_trackers
