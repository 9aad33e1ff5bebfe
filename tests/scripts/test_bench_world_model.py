"""The world-model probe's per-entry R^2, against numbers worked out by hand, and its output."""

import json
import math

import numpy as np
import pytest

from scripts.bench_world_model import format_r2, main
from agents.state_probe import entry_r2


def test_world_model_probe_scores_each_entry_on_its_own():
    # entry 0 wide and exact, entry 1 narrow and predicted by its mean: a pooled R^2 would be near 1
    target = np.asarray([[0.0, 0.01], [10.0, -0.01], [-10.0, 0.01], [0.0, -0.01]])  # [N=4, D=2]
    prediction = target.copy()
    prediction[:, 1] = 0.0
    assert entry_r2(prediction, target) == [pytest.approx(1.0), pytest.approx(0.0, abs=1e-6)]


def test_an_entry_that_never_varies_has_no_r2():
    # an unvisited cell of a one-hot grid: always 0, so any error would give an R^2 of minus millions
    target = np.asarray([[1.0, 0.0], [-1.0, 0.0]])
    assert entry_r2(target + 0.5, target) == [pytest.approx(0.75), None]  # 1 - (2 x 0.25) / 2
    assert format_r2([0.5, None]) == "0.500, -"
    assert format_r2([None] * 6 + [0.2, 0.4, 0.9]) == "min 0.200 / median 0.400 / max 0.900 over 3 of 9 entries"


def test_r2_is_reported_after_each_update_count(tmp_path):
    main(["--env", "CartPole-v1", "--config", "debug", "--steps", "300", "--updates", "4", "2",
          "--variants", "mse", "--out", str(tmp_path / "wm")])
    marks = json.loads((tmp_path / "wm.json").read_text())["results"]["mse"]
    assert [mark["updates"] for mark in marks] == [2, 4]
    assert all(len(mark["r2_per_entry"]["obs"]) == 4 and math.isfinite(mark["kl"]) for mark in marks)
