"""The world-model probe's per-entry R^2, against numbers worked out by hand."""

import jax.numpy as jnp

from scripts.bench_world_model import entry_r2


def test_world_model_probe_scores_each_entry_on_its_own():
    # entry 0 wide and exact, entry 1 narrow and predicted by its mean: a pooled R^2 would be near 1
    target = jnp.asarray([[[0.0, 0.01]], [[10.0, -0.01]], [[-10.0, 0.01]], [[0.0, -0.01]]])  # [T=4, B=1, D=2]
    prediction = target.at[..., 1].set(0.0)
    assert jnp.allclose(entry_r2(prediction, target), jnp.asarray([1.0, 0.0]), atol=1e-6)
