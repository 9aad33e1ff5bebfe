"""The evaluation scalars, against numbers worked out by hand."""

import pytest

from agents.evaluation import return_scalars


def test_success_rate_is_the_fraction_of_episodes_with_a_positive_return():
    # mean 0.375; squared deviations 0.140625, 0.390625, 0.140625, 0.015625: variance 0.171875
    assert return_scalars([0.0, 1.0, 0.0, 0.5]) == pytest.approx(
        {"eval/return_mean": 0.375, "eval/return_std": 0.171875 ** 0.5, "eval/success_rate": 0.5})
    assert return_scalars([-1.0, 0.0])["eval/success_rate"] == 0.0  # a penalty or nothing is no success
