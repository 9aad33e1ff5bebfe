"""The pure parts of ``scripts.probe_episodes`` against hand-computed numbers (the whole probe on a
trained run: test_train)."""

import numpy as np
import pytest

from scripts.probe_episodes import correlation, discounted_returns, summarise, value_by_bins


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
