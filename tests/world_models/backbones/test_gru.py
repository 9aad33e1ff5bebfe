"""The GRU backbone, dense (``blocks=1``) and block-diagonal (``blocks=G``).

Oracles: a verbatim copy of the dense GRU as it was before blocks existed (bit for bit), and a plain
numpy loop of G independent layer-normalised GRUs on the state's groups, all reading the whole input.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backbone_cases import resets_with_runs
from scripts.flop_count import count_flops
from world_models.backbones.gru import GRU
from world_models.backbones.scan import scan_steps

T, B, D = 9, 4, 5


class DenseGRUBeforeBlocks(nn.Module):
    """``world_models.backbones.gru.GRU`` before the ``blocks`` option, verbatim (one step)."""

    features: int

    def setup(self):
        self.gates = nn.Dense(3 * self.features, use_bias=False)
        self.norm = nn.LayerNorm(epsilon=1e-3)
        self.initial = self.param("initial", nn.initializers.zeros, (self.features,))

    def step(self, carry, x, reset):
        initial = jnp.broadcast_to(jnp.tanh(self.initial), (x.shape[0], self.features))
        carry = jnp.where(reset[:, None], initial, carry)
        parts = self.norm(self.gates(jnp.concatenate([carry, x], -1)))
        reset_gate, candidate, update = jnp.split(parts, 3, -1)
        candidate = jnp.tanh(jax.nn.sigmoid(reset_gate) * candidate)
        update = jax.nn.sigmoid(update - 1.0)
        carry = update * candidate + (1.0 - update) * carry
        return carry, carry


def inputs(seed=0):
    xs = jax.random.normal(jax.random.PRNGKey(seed), (T, B, D))
    return xs, resets_with_runs(T, B)


def scan_from_initial(module, xs, resets):
    return module.scan(module.initial_state(xs.shape[1]), xs, resets, return_carries=True)[1]


def step_method(module, carry, x, reset):
    return module.step(carry, x, reset)


@functools.lru_cache
def case(blocks, features=16, seed=1):
    """A GRU, its initial parameters plus noise (a non-zero learned initial state, norm scales away
    from 1), and the inputs. Jitted init: a few times cheaper than an eager one."""
    module = GRU(features=features, blocks=blocks)
    xs, resets = inputs()
    params = jax.jit(lambda key: module.init(key, xs, resets, method=scan_from_initial))(jax.random.PRNGKey(seed))
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 1), 8))
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(next(keys), p.shape, p.dtype), params)
    return module, params, xs, resets


def reference_steps(params, carry, xs, resets, blocks):
    """G independent GRUs in float64 numpy, one time step and one block at a time: block g has the
    kernel ``[H/G + D, 3H/G]`` over ``[its state group, the whole input]`` and its own layer norm."""
    p = jax.tree.map(lambda leaf: np.asarray(leaf, np.float64), params["params"])
    kernel, scale, bias = p["gates"]["kernel"], p["norm"]["scale"], p["norm"]["bias"]
    if blocks == 1:  # the dense layout: the same maths without the block axis
        kernel, scale, bias = kernel[None], scale[None], bias[None]
    size = kernel.shape[1] - xs.shape[-1]
    initial = np.tanh(p["initial"])
    carry, outputs = np.array(carry, np.float64), []
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))
    for x, reset in zip(np.asarray(xs, np.float64), np.asarray(resets)):
        carry = np.where(reset[:, None], initial, carry)
        new = np.empty_like(carry)
        for g in range(blocks):
            own = carry[:, g * size:(g + 1) * size]
            z = np.concatenate([own, x], -1) @ kernel[g]
            z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-3) * scale[g] + bias[g]
            r, c, u = np.split(z, 3, -1)
            c, u = np.tanh(sigmoid(r) * c), sigmoid(u - 1.0)
            new[:, g * size:(g + 1) * size] = u * c + (1.0 - u) * own
        carry = new
        outputs.append(carry)
    return np.stack(outputs)


def test_one_block_is_the_dense_gru_before_blocks_bit_for_bit():
    """Same parameter tree and values from the same key; same outputs and gradients, exactly."""
    xs, resets = inputs()
    carry = jax.random.normal(jax.random.PRNGKey(3), (B, 16))
    new, old = GRU(features=16), DenseGRUBeforeBlocks(features=16)
    params, old_params = (jax.jit(lambda key, m=m: m.init(key, carry, xs[0], resets[0], method=step_method))(
        jax.random.PRNGKey(1)) for m in (new, old))
    assert jax.tree.structure(params) == jax.tree.structure(old_params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(old_params)):
        np.testing.assert_array_equal(a, b)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero initial state for the reset rows

    def value_and_grad(module):
        run = lambda m: scan_steps(m.step, carry, xs, resets)[1]
        loss = lambda p: jnp.sum(module.apply(p, method=run) ** 3)
        return jax.jit(jax.value_and_grad(loss))(params)

    for a, b in zip(jax.tree.leaves(value_and_grad(new)), jax.tree.leaves(value_and_grad(old))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("blocks", [1, 4])
def test_scan_with_resets_equals_independent_gru_blocks(blocks):
    module, params, xs, resets = case(blocks)
    if blocks > 1:
        assert params["params"]["gates"]["kernel"].shape == (blocks, 16 // blocks + D, 3 * 16 // blocks)
        assert params["params"]["norm"]["scale"].shape == (blocks, 3 * 16 // blocks)
    ys = jax.jit(lambda p: module.apply(p, xs, resets, method=scan_from_initial))(params)
    initial = np.broadcast_to(np.tanh(params["params"]["initial"]), (B, 16))
    np.testing.assert_allclose(ys, reference_steps(params, initial, xs, resets, blocks), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("blocks", [1, 4])
def test_step_equals_independent_gru_blocks(blocks):
    module, params, xs, _ = case(blocks)
    carry = jax.random.normal(jax.random.PRNGKey(4), (B, 16))
    reset = jnp.array([True, False, False, True])
    new, y = jax.jit(lambda p: module.apply(p, carry, xs[0], reset, method=step_method))(params)
    expected = reference_steps(params, carry, xs[:1], reset[None], blocks)[0]
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(new, y)


def test_a_block_does_not_see_the_state_of_another_block():
    """The Jacobian of one step's new state by the old one is zero off the diagonal blocks, exactly."""
    blocks, features = 4, 16
    size = features // blocks
    module, params, xs, _ = case(blocks)
    carry = jax.random.normal(jax.random.PRNGKey(5), (features,))
    step = lambda c: module.apply(params, c[None], xs[0, :1], jnp.zeros(1, bool), method=step_method)[0][0]
    jacobian = np.asarray(jax.jit(jax.jacrev(step))(carry)).reshape(blocks, size, blocks, size)
    for g in range(blocks):
        for h in range(blocks):
            if g == h:
                assert np.all(np.abs(np.diagonal(jacobian[g, :, g, :])) > 1e-3)
            else:
                np.testing.assert_array_equal(jacobian[g, :, h, :], 0.0)


def test_gradients_are_finite_and_non_zero():
    module, params, xs, resets = case(4)
    loss = lambda p: jnp.sum(module.apply(p, xs, resets, method=scan_from_initial) ** 2)
    grads = jax.jit(jax.grad(loss))(params)
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(grad)), path
        assert np.any(grad != 0.0), path


def test_blocks_must_divide_the_features():
    xs, resets = inputs()
    with pytest.raises(ValueError, match="blocks=3 must be a positive divisor of its features=16"):
        jax.eval_shape(lambda key: GRU(features=16, blocks=3).init(key, xs, resets, method=scan_from_initial),
                       jax.random.PRNGKey(0))


def test_blocks_cut_the_recurrent_matmul_flops():
    """One step: ``2 B 3H (H/G + D)`` matmul FLOPs instead of ``2 B 3H (H + D)`` (no masked dense)."""
    features, width = 64, 8
    carry, x, reset = jnp.zeros((B, features)), jnp.zeros((B, width)), jnp.zeros(B, bool)
    for blocks in (1, 8):
        module = GRU(features=features, blocks=blocks)
        init = lambda key: module.init(key, carry, x, reset, method=step_method)
        params = jax.eval_shape(init, jax.random.PRNGKey(0))  # shapes suffice to count
        step = lambda p: module.apply(p, carry, x, reset, method=step_method)
        assert count_flops(step, params).total == 2 * B * 3 * features * (features // blocks + width)
