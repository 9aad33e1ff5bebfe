"""Every registered backbone follows the shared interface, including ``return_carries``: the carry
after each step of ``scan`` equals the carry of a loop of ``step`` (what imagination starts from)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.loader import load_config
from world_models.backbones import BACKBONES

SMALL = load_config(["debug"])["backbones"]


def build(name):
    module = BACKBONES[name](features=8, **SMALL[name])
    xs = jax.random.normal(jax.random.PRNGKey(0), (7, 3, 5))
    resets = jnp.zeros((7, 3), bool).at[0].set(True).at[3, 1].set(True).at[4, 1].set(True)
    params = module.init(jax.random.PRNGKey(1), xs, resets,
                         method=lambda m, xs, r: m.scan(m.initial_state(xs.shape[1]), xs, r))
    # a non-zero learned initial state everywhere
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape, p.dtype), params)
    return module, params, xs, resets


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_scan_returns_the_carry_of_every_step(name):
    module, params, xs, resets = build(name)

    def run(m):
        carry = m.initial_state(xs.shape[1])
        carries, ys = m.scan(carry, xs, resets, return_carries=True)
        final, _ = m.scan(carry, xs, resets)
        step_carries = []
        for t in range(xs.shape[0]):
            carry, _ = m.step(carry, xs[t], resets[t])
            step_carries.append(carry)
        return carries, final, step_carries, ys

    carries, final, step_carries, ys = module.apply(params, method=run)
    assert ys.shape == (7, 3, 8)
    for t, expected in enumerate(step_carries):
        got = jax.tree.map(lambda leaf: leaf[t], carries)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(step_carries[-1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
