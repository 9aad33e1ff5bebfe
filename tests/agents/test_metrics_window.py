"""The log window's means: plain metrics over updates, weighted ones over the steps they averaged."""

import pytest

from agents.metrics_window import Counters, MetricsWindow


def test_a_weighted_metric_averages_over_its_steps_and_its_weight_is_not_written():
    window = MetricsWindow(Counters())
    window.add({"loss": 1.0, "head/on_rewarded": 0.0, "head/on_rewarded#weight": 0.0})  # no rewarded step
    window.add({"loss": 3.0, "head/on_rewarded": 0.5, "head/on_rewarded#weight": 2.0})
    window.add({"loss": 2.0, "head/on_rewarded": 0.8, "head/on_rewarded#weight": 1.0})
    scalars = window.summary(Counters())
    assert scalars["loss"] == pytest.approx(2.0)
    assert scalars["head/on_rewarded"] == pytest.approx((0.5 * 2 + 0.8 * 1) / 3)
    assert not any(name.endswith("#weight") for name in scalars)


def test_a_weighted_metric_with_no_steps_in_the_window_is_not_written():
    window = MetricsWindow(Counters())
    window.add({"loss": 1.0, "head/on_rewarded": 0.0, "head/on_rewarded#weight": 0.0})
    assert "head/on_rewarded" not in window.summary(Counters()) and "loss" in window.summary(Counters())
