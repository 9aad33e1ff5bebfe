"""Controllability: the spread of outcomes across actions over their spread across start states."""

import jax.numpy as jnp
import numpy as np

from agents.controllability import spread_ratio


def test_spread_ratio_against_hand_computed_variances():
    # 2 starts x 2 actions x 1 entry: across actions var([0, 2]) = var([4, 6]) = 1; the action means
    # 1 and 5 vary across starts by 4, so the ratio is 1 / 4
    outcomes = jnp.array([[[0.0], [2.0]], [[4.0], [6.0]]])
    np.testing.assert_allclose(spread_ratio(outcomes), 0.25)


def test_spread_ratio_is_zero_when_the_action_changes_nothing():
    outcomes = jnp.repeat(jnp.arange(3.0).reshape(3, 1, 1), 4, axis=1)
    np.testing.assert_allclose(spread_ratio(outcomes), 0.0)
