"""The grid-rooms calibration: the exact random-success probability agrees with sampling it, and
the script writes what it prints."""

import json

import numpy as np

from envs.grid_rooms import GridFourRooms, random_success_rate
from scripts.calibrate_grid_rooms import exact_success_probability, main


def test_exact_probability_matches_the_sampled_rate_on_a_small_grid():
    env = GridFourRooms(size=7)
    exact = exact_success_probability(env, 60)
    sampled = random_success_rate(env, 20_000, 60, np.random.default_rng(0))
    assert 0.05 < exact < 0.95  # a grid where both are far from 0 and 1
    assert abs(sampled - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000)


def test_main_writes_the_json_it_prints(tmp_path, capsys):
    out = tmp_path / "calibration.json"
    result = main(["--size", "7", "--episodes", "50", "--steps", "10", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["shortest_path"] == 8 and result["doors"] == [2, 4, 2, 4]
    assert "shortest path: 8 steps" in capsys.readouterr().out
