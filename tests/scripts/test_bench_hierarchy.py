"""The hierarchy benchmark's statistics over seeds, against numbers worked out by hand."""

import pytest

import json

from scripts.bench_hierarchy import evaluation_rows, gap_curves, mean_curve, summarise


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
    assert summary["train_mean"] is None  # no training returns in these rows
    assert summary["levels"][0] == pytest.approx({"gap": 0.3, "gap_std": 0.1, "gap_all_evaluations": 0.3})
    assert summary["levels"][1] == pytest.approx({"gap": 0.1, "gap_std": 0.2, "reach_rate": 0.25, "reach_rate_std": 0.25,
                                                  "gap_all_evaluations": 0.1})


def test_mean_curve_has_min_max_band_per_step():
    curve = mean_curve(_runs())
    assert curve == [pytest.approx({"step": 5, "return": 0.5, "low": 0.0, "high": 1.0}),
                     pytest.approx({"step": 10, "return": 0.25, "low": 0.0, "high": 0.5})]


def test_gap_curves_follow_each_level_over_evaluations():
    curves = gap_curves({2: _runs()})
    assert list(curves) == ["2 levels: level 0", "2 levels: level 1"]
    assert curves["2 levels: level 1"] == [pytest.approx({"step": 10, "return": 0.1, "low": -0.1, "high": 0.3})]


def test_evaluation_rows_average_the_training_episodes_between_evaluations(tmp_path):
    rows = [{"step": 4, "episode/return": 1.0}, {"step": 6, "episode/return": 0.0},
            {"step": 8, "eval/return_mean": 0.5, "eval/elapsed_seconds": 3.0, "level0/exploitation/gap": 0.1,
             "level0/world_model/loss": 2.0},
            {"step": 12, "eval/return_mean": 0.0, "eval/elapsed_seconds": 5.0},
            {"step": 14, "episode/return": 0.25, "level0/world_model/loss": 1.0},
            {"step": 16, "episode/return": 0.75, "eval/return_mean": 1.0, "eval/elapsed_seconds": 7.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    assert evaluation_rows(tmp_path) == [
        {"step": 8, "seconds": 3.0, "return": 0.5, "train_return": 0.5, "level0/exploitation/gap": 0.1},
        {"step": 12, "seconds": 5.0, "return": 0.0, "train_return": None},
        {"step": 16, "seconds": 7.0, "return": 1.0, "train_return": 0.5},
    ]


def test_summarise_averages_training_returns_over_the_whole_run():
    runs = {0: [{"step": 5, "return": 0.0, "train_return": 0.2}, {"step": 10, "return": 0.0, "train_return": 0.4}],
            1: [{"step": 5, "return": 0.0, "train_return": None}, {"step": 10, "return": 0.0, "train_return": 0.0}]}
    summary = summarise(runs, levels=1)
    assert summary["train_mean"] == pytest.approx(0.15)  # seed 0: 0.3, seed 1: 0.0
    assert summary["train_std"] == pytest.approx(0.15)
