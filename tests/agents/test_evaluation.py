"""The evaluation scalars, against numbers worked out by hand."""

import pytest

from agents.evaluation import evaluation_scalars
from envs.collector import Episode


def episodes(returns, successes):
    return [Episode(0, score, 10, success) for score, success in zip(returns, successes)]


def test_success_rate_comes_from_the_reported_successes_not_the_returns():
    # mean 0.375; squared deviations 0.140625, 0.390625, 0.140625, 0.015625: variance 0.171875
    scalars = evaluation_scalars(episodes([0.0, 1.0, 0.0, 0.5], [False, True, False, False]))
    assert scalars == pytest.approx(
        {"eval/return_mean": 0.375, "eval/return_std": 0.171875 ** 0.5, "eval/success_rate": 0.25})


def test_no_success_rate_where_the_environment_reports_none():
    assert "eval/success_rate" not in evaluation_scalars(episodes([500.0, 12.0], [None, None]))
