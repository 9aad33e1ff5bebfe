"""Inputs shared by the backbone tests (imported by them; not a test module)."""

import jax.numpy as jnp
import numpy as np


def resets_with_runs(length: int, batch: int) -> jnp.ndarray:
    """Resets ``[T, B]``: element 0 restarts at t=0 and at t=3,4,5 (three in a row), element 1 at
    t=6 and t=7, the rest never."""
    resets = np.zeros((length, batch), bool)
    resets[[0, 3, 4, 5], 0] = True
    resets[[6, 7], 1] = True
    return jnp.asarray(resets)
