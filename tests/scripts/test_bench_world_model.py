"""The world-model probe's per-entry R^2, against numbers worked out by hand, and its output."""

import json
import math

import jax.numpy as jnp

from scripts.bench_world_model import entry_r2, format_r2, main


def test_world_model_probe_scores_each_entry_on_its_own():
    # entry 0 wide and exact, entry 1 narrow and predicted by its mean: a pooled R^2 would be near 1
    target = jnp.asarray([[[0.0, 0.01]], [[10.0, -0.01]], [[-10.0, 0.01]], [[0.0, -0.01]]])  # [T=4, B=1, D=2]
    prediction = target.at[..., 1].set(0.0)
    assert jnp.allclose(entry_r2(prediction, target), jnp.asarray([1.0, 0.0]), atol=1e-6)


def test_an_entry_that_never_varies_has_no_r2():
    # an unvisited cell of a one-hot grid: always 0, so any error would give an R^2 of minus millions
    target = jnp.asarray([[[1.0, 0.0]], [[-1.0, 0.0]]])
    r2 = entry_r2(target + 0.5, target)
    assert math.isclose(float(r2[0]), 0.75, abs_tol=1e-6)  # 1 - (2 x 0.25) / 2 and math.isnan(float(r2[1]))
    assert format_r2([0.5, None]) == "0.500, -"
    assert format_r2([None] * 6 + [0.2, 0.4, 0.9]) == "min 0.200 / median 0.400 / max 0.900 over 3 of 9 entries"


def test_r2_is_reported_after_each_update_count(tmp_path):
    main(["--env", "CartPole-v1", "--config", "debug", "--steps", "300", "--updates", "4", "2",
          "--variants", "mse", "--out", str(tmp_path / "wm")])
    marks = json.loads((tmp_path / "wm.json").read_text())["results"]["mse"]
    assert [mark["updates"] for mark in marks] == [2, 4]
    assert all(len(mark["r2_per_entry"]["obs"]) == 4 and math.isfinite(mark["kl"]) for mark in marks)
