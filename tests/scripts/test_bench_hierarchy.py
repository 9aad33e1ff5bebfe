"""The hierarchy benchmark's statistics over seeds, against numbers worked out by hand."""

import pytest

from scripts.bench_hierarchy import gap_curves, mean_curve, summarise


def _runs():
    return {
        0: [{"step": 5, "return": 0.0}, {"step": 10, "return": 0.5, "level0/exploitation/gap": 0.2,
                                          "level1/exploitation/gap": -0.1, "level1/goal/reach_rate": 0.5}],
        1: [{"step": 5, "return": 1.0}, {"step": 10, "return": 0.0, "level0/exploitation/gap": 0.4,
                                          "level1/exploitation/gap": 0.3, "level1/goal/reach_rate": 0.0}],
    }


def test_summarise_gives_mean_spread_and_per_level_gaps():
    summary = summarise(_runs(), levels=2)
    assert summary["final_mean"] == pytest.approx(0.25)
    assert summary["final_std"] == pytest.approx(0.25)
    assert (summary["final_min"], summary["final_max"]) == (0.0, 0.5)
    assert summary["best_mean"] == pytest.approx(0.75)  # 0.5 for seed 0, 1.0 for seed 1
    assert summary["levels"][0] == pytest.approx({"gap": 0.3, "gap_std": 0.1})
    assert summary["levels"][1] == pytest.approx({"gap": 0.1, "gap_std": 0.2, "reach_rate": 0.25, "reach_rate_std": 0.25})


def test_mean_curve_has_min_max_band_per_step():
    curve = mean_curve(_runs())
    assert curve == [pytest.approx({"step": 5, "return": 0.5, "low": 0.0, "high": 1.0}),
                     pytest.approx({"step": 10, "return": 0.25, "low": 0.0, "high": 0.5})]


def test_gap_curves_follow_each_level_over_evaluations():
    curves = gap_curves({2: _runs()})
    assert list(curves) == ["2 levels: level 0", "2 levels: level 1"]
    assert curves["2 levels: level 1"] == [pytest.approx({"step": 10, "return": 0.1, "low": -0.1, "high": 0.3})]
