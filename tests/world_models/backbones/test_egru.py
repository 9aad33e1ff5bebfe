"""Tests of the EGRU backbone: the Heaviside pseudo-derivative, sparsity and the activity
regulariser against hand values, one step against hand-computed equations, scan equals a step
loop (float32 and float64), resets, gradients for every parameter, jit/vmap and the sown values."""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from backbone_cases import (
    assert_every_gradient_finite_and_nonzero,
    resets_with_runs,
    scan_from_initial_state,
    step_loop,
)
from world_models.backbones.egru import (
    EGRU,
    activity_regularizer,
    heaviside_event,
    output_sparsity,
    pseudo_derivative,
)

LENGTH, BATCH, INPUTS, FEATURES = 9, 3, 4, 6


def make_resets() -> jnp.ndarray:
    return resets_with_runs(LENGTH, BATCH)


def apply_scan(params, carry, xs, resets):
    return EGRU(FEATURES).apply(params, carry, xs, resets, method=EGRU.scan)


@functools.lru_cache
def setup_case(dtype):
    """Inputs, parameters with non-zero learned initial ``(c, y)`` and a non-initial carry.

    Inputs are scaled so that, over the sequence, some units emit events and many others sit
    inside the pseudo-derivative window.
    """
    key_x, key_params, key_initial, key_carry = jax.random.split(jax.random.key(0), 4)
    xs = 1.5 * jax.random.normal(key_x, (LENGTH, BATCH, INPUTS), dtype)
    resets = make_resets()
    init = jax.jit(lambda key: EGRU(FEATURES).init(key, xs, resets, method=scan_from_initial_state))
    params = init(key_params)["params"]
    key_cell, key_output = jax.random.split(key_initial)
    params["initial_cell"] = 0.3 * jax.random.normal(key_cell, (FEATURES,))
    params["initial_output"] = 0.5 * jax.random.uniform(key_output, (FEATURES,))
    params = jax.tree.map(lambda leaf: leaf.astype(dtype), {"params": params})
    carry = tuple(
        0.4 * jax.random.normal(key, (BATCH, FEATURES), dtype)
        for key in jax.random.split(key_carry)
    )
    return xs, resets, params, carry


def assert_scan_matches_steps(dtype, tolerance):
    xs, resets, params, carry = setup_case(dtype)
    loop_carry, loop_ys = step_loop(EGRU(FEATURES), params, carry, xs, resets)
    ys_of = jax.jit(apply_scan)
    middle, first_ys = ys_of(params, carry, xs[:4], resets[:4])
    final, second_ys = ys_of(params, middle, xs[4:], resets[4:])
    ys = jnp.concatenate([first_ys, second_ys])
    assert ys.dtype == dtype
    np.testing.assert_allclose(ys, loop_ys, rtol=tolerance, atol=tolerance)
    chex.assert_trees_all_close(final, loop_carry, rtol=tolerance, atol=tolerance)
    sparsity = float(output_sparsity(ys))
    assert 0.0 < sparsity < 1.0  # the case really mixes events and silent units


def test_pseudo_derivative_matches_formula():
    x = jnp.array([-2.0, -0.5, -0.1, 0.3, 0.9, 1.5, 0.25])
    gradient = jax.vmap(jax.grad(heaviside_event), in_axes=(0, None, None))
    # gamma * max(0, 1 - eps * |x|) with gamma=0.3, eps=1
    expected = [0.0, 0.15, 0.27, 0.21, 0.03, 0.0, 0.225]
    np.testing.assert_allclose(gradient(x, 0.3, 1.0), expected, atol=1e-7)
    # a narrower window: eps=2 halves the support
    expected = [0.0, 0.0, 0.24, 0.12, 0.0, 0.0, 0.15]
    np.testing.assert_allclose(gradient(x, 0.3, 2.0), expected, atol=1e-7)
    np.testing.assert_allclose(pseudo_derivative(x, 0.3, 2.0), gradient(x, 0.3, 2.0), atol=1e-7)
    events = heaviside_event(jnp.array([-1.0, 0.0, 0.2]), 0.3, 1.0)
    np.testing.assert_array_equal(events, [0.0, 0.0, 1.0])  # no event exactly at the threshold


def test_sparsity_and_regulariser_hand_values():
    outputs = jnp.array([[0.0, 1.2, 0.0, 0.0], [0.5, 0.0, 0.0, 0.7]])
    np.testing.assert_allclose(output_sparsity(outputs), 5 / 8)
    c_tilde = jnp.array([[0.5, 0.1], [0.9, -0.6]])
    threshold = jnp.array([0.3, 0.4])
    # events where c~ > theta: 0.5 > 0.3 and 0.9 > 0.3 -> rate 2/4
    np.testing.assert_allclose(activity_regularizer(c_tilde, threshold, 0.3, 1.0), 0.5)
    # gradient = pseudo-derivative / count = 0.3 * max(0, 1 - |c~ - theta|) / 4, with
    # c~ - theta = [[0.2, -0.3], [0.6, -1.0]] (the last one just outside the window)
    grad = jax.grad(activity_regularizer)(c_tilde, threshold, 0.3, 1.0)
    np.testing.assert_allclose(grad, [[0.06, 0.0525], [0.03, 0.0]], rtol=1e-5, atol=1e-7)
    threshold_grad = jax.grad(activity_regularizer, argnums=1)(c_tilde, threshold, 0.3, 1.0)
    np.testing.assert_allclose(threshold_grad, [-0.09, -0.0525], rtol=1e-5)


def test_single_step_matches_hand_computation():
    """Two units, one input: unit 0 crosses its threshold, unit 1 stays silent."""
    logit = lambda p: math.log(p / (1 - p))
    params = {
        "params": {
            # columns: update (u0, u1), reset (r0, r1), candidate (g0, g1)
            "input_gates": {
                "kernel": jnp.array([[0.5, -0.5, 1.0, 1.0, 2.0, 0.1]]),
                "bias": jnp.zeros(6),
            },
            "recurrent_gates": {
                "kernel": jnp.array([[0.25, 0.0, -0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
            },
            "recurrent_candidate": {"kernel": jnp.array([[1.0, 0.5], [0.0, 0.0]])},
            "threshold_logit": jnp.array([logit(0.3), logit(0.5)]),
            "initial_cell": jnp.zeros(2),
            "initial_output": jnp.zeros(2),
        }
    }
    carry = (jnp.array([[0.2, -0.1]]), jnp.array([[0.4, 0.0]]))
    x, reset = jnp.array([[1.0]]), jnp.array([False])
    (cell, output), y = EGRU(2).apply(params, carry, x, reset, method=EGRU.step)

    sigmoid = lambda v: 1 / (1 + math.exp(-v))
    update0, reset0 = sigmoid(0.5 + 0.4 * 0.25), sigmoid(1.0 - 0.4 * 0.5)
    candidate0 = math.tanh(2.0 + reset0 * 0.4 * 1.0)
    c_tilde0 = update0 * 0.2 + (1 - update0) * candidate0  # 0.476 > 0.3: an event
    update1 = sigmoid(-0.5)
    candidate1 = math.tanh(0.1 + reset0 * 0.4 * 0.5)
    c_tilde1 = update1 * -0.1 + (1 - update1) * candidate1  # 0.108 < 0.5: silent
    assert c_tilde0 > 0.3 and c_tilde1 < 0.5
    np.testing.assert_allclose(cell[0], [c_tilde0 - 0.3, c_tilde1], rtol=1e-5)
    np.testing.assert_allclose(output[0], [c_tilde0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(y, output)


def test_scan_matches_step_loop_float32():
    assert_scan_matches_steps(jnp.float32, 1e-5)


def test_scan_matches_step_loop_float64():
    with jax.enable_x64(True):
        assert_scan_matches_steps(jnp.float64, 1e-12)
    assert jnp.zeros(()).dtype == jnp.float32  # x64 did not leak out of the context


def test_reset_cuts_dependence_on_the_past():
    xs, resets, params, carry = setup_case(jnp.float32)
    changed_xs = xs.at[:5, 0].add(3.0).at[:7, 1].add(-2.0)
    changed_carry = jax.tree.map(lambda leaf: leaf + 1.0, carry)
    _, ys = jax.jit(apply_scan)(params, carry, xs, resets)
    _, changed_ys = jax.jit(apply_scan)(params, changed_carry, changed_xs, resets)
    np.testing.assert_allclose(changed_ys[5:, 0], ys[5:, 0], atol=1e-6)
    np.testing.assert_allclose(changed_ys[7:, 1], ys[7:, 1], atol=1e-6)
    assert not np.allclose(changed_ys[:5, 0], ys[:5, 0])


def test_gradients_reach_every_parameter():
    xs, resets, params, carry = setup_case(jnp.float32)
    weights = jax.random.normal(jax.random.key(3), (LENGTH, BATCH, FEATURES))

    def loss(params):
        _, ys = apply_scan(params, carry, xs, resets)
        return jnp.sum(ys * weights)

    grads = jax.jit(jax.grad(loss))(params)
    assert_every_gradient_finite_and_nonzero(grads)


def test_sown_values_and_regulariser_gradient():
    xs, resets, params, carry = setup_case(jnp.float32)

    def sown(params):
        (_, ys), state = EGRU(FEATURES).apply(
            params, carry, xs, resets, method=EGRU.scan, mutable=["intermediates"]
        )
        return ys, state["intermediates"]

    ys, intermediates = jax.jit(sown)(params)
    (sparsity,), (activity,) = intermediates["sparsity"], intermediates["activity"]
    np.testing.assert_allclose(sparsity, jnp.mean(ys == 0))
    # outputs are zero exactly where there is no event
    np.testing.assert_allclose(activity, 1.0 - sparsity, rtol=1e-6)

    grads = jax.jit(jax.grad(lambda params: sown(params)[1]["activity"][0]))(params)
    assert_every_gradient_finite_and_nonzero(grads)

    # step sows the same quantities for one step
    _, state = EGRU(FEATURES).apply(
        params, carry, xs[0], resets[0], method=EGRU.step, mutable=["intermediates"]
    )
    assert set(state["intermediates"]) == {"sparsity", "activity"}
    chex.assert_shape(state["intermediates"]["activity"][0], ())


def test_init_returns_parameters_only_and_thresholds_in_range():
    xs, resets = jnp.zeros((2, 1, INPUTS)), jnp.zeros((2, 1), bool)
    variables = jax.jit(lambda key: EGRU(64).init(key, xs, resets, method=scan_from_initial_state))(
        jax.random.key(1)
    )
    assert set(variables) == {"params"}
    threshold = jax.nn.sigmoid(variables["params"]["threshold_logit"])
    assert np.all(threshold > 0.0) and np.all(threshold < 1.0)
    assert 0.15 < float(threshold.mean()) < 0.45 and float(threshold.std()) > 0.05


def test_jit_and_vmap_shapes():
    xs, resets, params, carry = setup_case(jnp.float32)
    final, ys = apply_scan(params, carry, xs, resets)
    jit_final, jit_ys = jax.jit(apply_scan)(params, carry, xs, resets)
    np.testing.assert_allclose(jit_ys, ys, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(jit_final, final, rtol=1e-5, atol=1e-5)
    chex.assert_shape(ys, (LENGTH, BATCH, FEATURES))
    chex.assert_shape(list(final), (BATCH, FEATURES))

    stacked = lambda tree: jax.tree.map(lambda leaf: jnp.stack([leaf, 2.0 * leaf]), tree)
    resets_pair = jnp.stack([resets, ~resets])
    vmapped = jax.jit(jax.vmap(apply_scan, in_axes=(None, 0, 0, 0)))
    _, vmapped_ys = vmapped(params, stacked(carry), stacked(xs), resets_pair)
    chex.assert_shape(vmapped_ys, (2, LENGTH, BATCH, FEATURES))
    doubled_carry = jax.tree.map(lambda leaf: 2.0 * leaf, carry)
    _, second_ys = jax.jit(apply_scan)(params, doubled_carry, 2.0 * xs, ~resets)
    np.testing.assert_allclose(vmapped_ys[0], ys, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(vmapped_ys[1], second_ys, rtol=1e-5, atol=1e-5)
