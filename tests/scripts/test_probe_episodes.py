"""The pure parts of ``scripts.probe_episodes`` against hand-computed numbers (the whole probe on a
trained run: test_train)."""

import numpy as np
import pytest

from scripts.probe_episodes import (correlation, discounted_returns, gradient_agreement, summarise, trace,
                                    value_by_bins)


def test_discounted_returns_run_to_the_episode_end():
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 0.0, 2.0]), 0.5), [1.5, 1.0, 2.0])


def test_value_by_bins_splits_at_the_quantiles():
    entry = np.arange(10.0)
    rows = value_by_bins(entry, 2.0 * entry, bins=2)
    assert [(row["low"], row["high"], row["steps"]) for row in rows] == [(0, 4, 5), (5, 9, 5)]
    assert [row["mean_value"] for row in rows] == [4.0, 14.0]
    assert value_by_bins(np.ones(5), np.arange(5.0), bins=3) is None  # a constant entry has no bins
    tied = value_by_bins(np.array([0.0] * 8 + [1.0, 2.0]), np.arange(10.0), bins=4)
    assert sum(row["steps"] for row in tied) == 10  # tied quantiles leave no step out


def test_correlation_is_none_where_nothing_varies():
    assert correlation(np.arange(4.0), -np.arange(4.0)) == pytest.approx(-1.0)
    assert correlation(np.ones(4), np.arange(4.0)) is None


def test_summary_fits_value_to_returns_of_terminated_episodes_only():
    def episode(rewards, values, ended):
        steps = len(rewards)
        return {"entries": {"obs": np.arange(steps, dtype=float)[:, None]}, "values": np.asarray(values, float),
                "rewards": np.asarray(rewards, float), "final": {"obs": np.array([9.0])}, "ended": ended}

    episodes = [episode([1, 1, 1], [2.0, 1.5, 1.0], "terminated"), episode([1, 1], [5.0, 5.0], "truncated")]
    report = summarise(episodes, bins=2, discount=0.5)
    assert [row["ended"] for row in report["episodes"]] == ["terminated", "truncated"]
    assert [row["return"] for row in report["episodes"]] == [3.0, 2.0]
    fit = report["value_vs_return"]
    assert fit["steps"] == 3 and fit["mean_return"] == pytest.approx((1.75 + 1.5 + 1.0) / 3)
    assert fit["correlation"] == pytest.approx(correlation(np.array([2.0, 1.5, 1.0]), np.array([1.75, 1.5, 1.0])))
    assert summarise(episodes, bins=2, discount=None)["value_vs_return"] is None  # a hierarchy: not fitted


def test_actions_are_compared_with_the_values_of_every_action():
    # entry 0..3; Q favours action 1 at the two high entries, action 0 at the two low ones
    values = np.array([[1.0, 0.0], [3.0, 1.0], [0.0, 2.0], [0.0, 4.0]])
    episode = {"entries": {"obs": np.arange(4.0)[:, None]}, "values": np.zeros(4), "rewards": np.ones(4),
               "final": {"obs": np.array([3.0])}, "ended": "truncated", "actions": np.array([0, 1, 1, 1]),
               "action_values": values, "action_errors": np.array([[0.1, 0.1], [1.0, 1.0], [0.1, 0.1], [0.1, 0.1]])}
    actions = summarise([episode], bins=2, discount=0.9, return_scale=4.0)["actions"]
    assert actions["steps"] == 4 and actions["agreement"] == 0.75  # step 1 took action 1, ranked second
    # step 1's gap of 2 is within 2 x hypot(1, 1) = 2.83 of noise: the other three are clear, and agree
    assert actions["clear_steps"] == 3 and actions["agreement_where_clear"] == 1.0
    assert actions["regret"] == pytest.approx(0.5) and actions["regret_over_return_scale"] == pytest.approx(0.125)
    assert actions["mean_abs_advantage"] == pytest.approx((0.5 + 1.0 + 1.0 + 2.0) / 4)
    assert actions["mean_standard_error"] == pytest.approx((0.1 + 1.0 + 0.1 + 0.1) / 4)
    low, high = actions["entries"]["obs"][0][1]["advantage_by_bins"]  # action 1's advantage: -0.5, -1 | 1, 2
    assert (low["mean_value"], high["mean_value"]) == (pytest.approx(-0.75), pytest.approx(1.5))
    taken = actions["entries"]["obs"][0][1]["taken_by_bins"]
    assert [row["mean_value"] for row in taken] == [0.5, 1.0]
    assert "actions" not in summarise([{k: v for k, v in episode.items() if not k.startswith("action")}],
                                      bins=2, discount=0.9)


def test_reward_head_is_compared_with_the_reward_that_arrived_with_each_observation():
    # the head's prediction at step t + 1 is of the reward of step t; an episode's last reward has none
    episode = {"entries": {"obs": np.zeros((5, 1))}, "values": np.zeros(5), "rewards": np.array([-4.0, -3.0, -2.0, -1.0, 9.0]),
               "predicted_rewards": np.array([-4.0, -3.0, -1.5, -1.5]), "policy_actions": np.zeros((5, 1)),
               "final": {"obs": np.zeros(1)}, "ended": "truncated"}
    head = summarise([episode], bins=2, discount=0.9)["reward_head"]
    assert head["steps"] == 4 and head["mean_abs_error"] == pytest.approx(1.0 / 4)
    assert head["mean_reward"] == pytest.approx(-2.5) and head["mean_predicted"] == pytest.approx(-2.5)
    low, high = head["by_reward_bins"]  # the head cannot tell the two best steps apart
    assert (low["mean_reward"], low["mean_predicted"], low["steps"]) == (-3.5, -3.5, 2)
    assert (high["mean_reward"], high["mean_predicted"], high["steps"]) == (-1.5, -1.5, 2)
    assert head["correlation"] == pytest.approx(correlation(episode["predicted_rewards"], episode["rewards"][:-1]))
    steps = trace([episode])[0]
    assert steps["rewards"] == episode["rewards"].tolist() and len(steps["predicted_rewards"]) == 4


def test_gradient_agreement_counts_clear_steps_with_the_best_value_on_one_side():
    gradient = np.array([2.0, -0.5, 1.0, -3.0, 5.0, 0.1])
    error = np.array([0.5, 0.5, 0.1, 0.1, 0.1, 0.1])
    toward = np.array([1.0, -0.5, -1.0, 0.0, 1.0, 2.0])  # step 3's best is the greedy value: no side
    clear = np.array([True, True, True, True, True, False])  # step 5's best is not clearly better
    agreement = gradient_agreement(gradient, error, toward, clear)
    # steps 0, 1, 2 and 4 count: 0, 1 and 4 point the right way (1 within 2 standard errors), 2 the wrong way
    assert agreement == {"gradient_steps": 4, "gradient_toward_best": pytest.approx(3 / 4),
                         "gradient_firmly_toward_best": pytest.approx(2 / 4)}
    assert gradient_agreement(gradient, error, toward, np.zeros(6, bool))["gradient_toward_best"] is None
