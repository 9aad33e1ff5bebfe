"""Tests of the S5 backbone: scan equals a step loop (both scan implementations, float32 and
float64, resets in a row, non-zero learned initial state), resets cut all dependence on the past,
gradients reach every parameter, jit/vmap, and SSM parameter labels in a real optax step."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from backbone_cases import (
    assert_every_gradient_finite_and_nonzero,
    init_with_learned_initial_states,
    resets_with_runs,
    run_scan,
    scan_from_initial_state,
    step_loop,
)
from world_models.backbones.s5 import MAX_EIGENVALUE_REAL, S5, S5Layer, ssm_param_labels

LENGTH, BATCH, INPUTS, FEATURES, STATE, BLOCKS = 9, 3, 5, 8, 8, 2


def make_model(scan_impl: str = "sequential", **overrides) -> S5:
    settings = dict(
        features=FEATURES, state_size=STATE, layers=2, blocks=BLOCKS, scan_impl=scan_impl
    )
    return S5(**{**settings, **overrides})


def make_resets() -> jnp.ndarray:
    return resets_with_runs(LENGTH, BATCH)


def random_carry(key, model: S5, params):
    """A carry unlike the initial state, as if left by a previous call."""
    carry = model.apply(params, BATCH, method=S5.initial_state)
    keys = jax.random.split(key, len(carry))
    return tuple(
        (jax.random.normal(k, state.shape + (2,)) @ jnp.array([1.0, 1j])).astype(state.dtype)
        for k, state in zip(keys, carry)
    )


@functools.cache
def float32_case(overrides: tuple) -> tuple:
    """Inputs, resets, parameters and a random carry for one model setting (built once)."""
    model = make_model(**dict(overrides))
    key_x, key_params, key_carry = jax.random.split(jax.random.key(0), 3)
    xs = jax.random.normal(key_x, (LENGTH, BATCH, INPUTS))
    resets = make_resets()
    params = init_with_learned_initial_states(key_params, model, xs, resets, "ssms", "initial")
    return xs, resets, params, random_carry(key_carry, model, params)


def setup_case(dtype, **overrides):
    """``float32_case`` cast to ``dtype`` (complex states to the matching complex dtype)."""
    xs, resets, params, carry = float32_case(tuple(sorted(overrides.items())))
    params = jax.tree.map(lambda leaf: leaf.astype(dtype), params)
    carry = tuple(state.astype(jnp.result_type(dtype, jnp.complex64)) for state in carry)
    return xs.astype(dtype), resets, params, carry


def assert_scan_matches_steps(dtype, tolerance, **overrides):
    xs, resets, params, carry = setup_case(dtype, **overrides)
    loop_carry, loop_ys = step_loop(make_model(**overrides), params, carry, xs, resets)
    results = {}
    for impl in ("sequential", "associative"):
        model = make_model(impl, **overrides)
        results[impl] = run_scan(model, params, carry, xs, resets)
        scan_carry, scan_ys = results[impl]
        assert scan_ys.dtype == dtype
        np.testing.assert_allclose(scan_ys, loop_ys, rtol=tolerance, atol=tolerance)
        for scanned, looped in zip(scan_carry, loop_carry):
            np.testing.assert_allclose(scanned, looped, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(
        results["sequential"][1], results["associative"][1], rtol=tolerance, atol=tolerance
    )


def test_scan_matches_step_loop_float32():
    assert_scan_matches_steps(jnp.float32, 1e-4)


def test_scan_matches_step_loop_float64():
    with jax.enable_x64(True):
        assert_scan_matches_steps(jnp.float64, 1e-10)
    assert jnp.zeros(()).dtype == jnp.float32  # x64 did not leak out of the context


@pytest.mark.parametrize(
    "overrides",
    [
        dict(activation="gelu", conj_sym=False, blocks=1, layers=1),
        dict(activation="glu", discretization="bilinear", layers=1),
        dict(activation="half_glu2", clip_eigs=True, blocks=4, layers=1),
    ],
)
def test_scan_matches_step_loop_variants(overrides):
    assert_scan_matches_steps(jnp.float32, 1e-4, **overrides)


@pytest.mark.parametrize("impl", ["sequential", "associative"])
def test_reset_cuts_dependence_on_the_past(impl):
    xs, resets, params, carry = setup_case(jnp.float32)
    model = make_model(impl)
    _, ys = run_scan(model, params, carry, xs, resets)
    # element 0 restarts at t=5 (last of three resets in a row): change its inputs before that,
    # and change every element's carried-in state
    changed_xs = xs.at[:5, 0].set(jax.random.normal(jax.random.key(9), (5, INPUTS)))
    changed_carry = tuple(state * 3.0 + 1.0 for state in carry)
    _, changed_ys = run_scan(model, params, changed_carry, changed_xs, resets)
    np.testing.assert_allclose(changed_ys[5:, 0], ys[5:, 0], atol=1e-6)
    assert not np.allclose(changed_ys[:5, 0], ys[:5, 0])  # the change itself did reach the outputs
    # element 1 restarts at t=6 and t=7: the carried-in state is forgotten from there on
    np.testing.assert_allclose(changed_ys[6:, 1], ys[6:, 1], atol=1e-6)
    assert not np.allclose(changed_ys[:6, 1], ys[:6, 1])
    assert not np.allclose(changed_ys[-1, 2], ys[-1, 2])  # element 2 never restarts


@pytest.mark.parametrize("impl", ["sequential", "associative"])
def test_gradients_reach_every_parameter(impl):
    xs, resets, params, _ = setup_case(jnp.float32)
    model = make_model(impl)
    weights = jax.random.normal(jax.random.key(5), (LENGTH, BATCH, FEATURES))

    def loss(params):
        carry, ys = model.apply(params, xs, resets, method=scan_from_initial_state)
        return jnp.sum(weights * ys) + sum(jnp.sum(jnp.abs(state) ** 2) for state in carry)

    grads = jax.jit(jax.grad(loss))(params)
    assert len(jax.tree.leaves(grads)) == len(jax.tree.leaves(params))
    assert_every_gradient_finite_and_nonzero(grads)


def test_shapes_jit_and_vmap():
    xs, resets, params, carry = setup_case(jnp.float32)
    model = make_model()
    scan = lambda carry, xs, resets: model.apply(params, carry, xs, resets, method=S5.scan)
    eager_carry, eager_ys = scan(carry, xs, resets)
    jit_carry, jit_ys = jax.jit(scan)(carry, xs, resets)
    chex.assert_shape(eager_ys, (LENGTH, BATCH, FEATURES))
    chex.assert_shape(list(eager_carry), [(BATCH, STATE // 2)] * 2)  # conjugate symmetry: P/2
    assert eager_carry[0].dtype == jnp.complex64
    np.testing.assert_allclose(jit_ys, eager_ys, rtol=1e-5, atol=1e-5)
    # vmap over independent sequences: [N, T, B, D]
    many_xs = jnp.stack([xs, 2.0 * xs])
    many_carry = jax.tree.map(lambda state: jnp.stack([state, state]), carry)
    many_resets = jnp.stack([resets, resets])
    _, many_ys = jax.jit(jax.vmap(scan))(many_carry, many_xs, many_resets)
    chex.assert_shape(many_ys, (2, LENGTH, BATCH, FEATURES))
    np.testing.assert_allclose(many_ys[0], eager_ys, rtol=1e-5, atol=1e-5)
    doubled_ys = jax.jit(scan)(carry, 2.0 * xs, resets)[1]
    np.testing.assert_allclose(many_ys[1], doubled_ys, rtol=1e-5, atol=1e-5)


def test_full_state_without_conjugate_symmetry_and_return_carries():
    model = make_model(conj_sym=False)
    xs, resets, params, _ = setup_case(jnp.float32, conj_sym=False)
    initial = model.apply(params, BATCH, method=S5.initial_state)
    carries, ys = model.apply(params, initial, xs, resets, True)
    chex.assert_shape(list(carries), [(LENGTH, BATCH, STATE)] * 2)
    last_carry, last_ys = model.apply(params, xs, resets, method=scan_from_initial_state)
    for every, last in zip(carries, last_carry):
        np.testing.assert_allclose(every[-1], last)
    np.testing.assert_allclose(ys, last_ys)


def test_initial_state_is_learned_and_broadcast():
    xs, resets, params, _ = setup_case(jnp.float32)
    carry = make_model().apply(params, 4, method=S5.initial_state)
    chex.assert_shape(list(carry), [(4, STATE // 2)] * 2)
    stored = params["params"]["ssms_0"]["initial"]
    np.testing.assert_allclose(carry[0][2], stored[:, 0] + 1j * stored[:, 1])
    assert np.any(np.abs(carry[0]) > 0)


def test_eigenvalues_stay_stable_and_clip():
    layer = S5Layer(features=4, state_size=4, clip_eigs=True)
    params = layer.init(jax.random.key(0), 1, method=S5Layer.initial_state)
    params["params"]["Lambda_re_log"] = jnp.array([-20.0, 0.0])  # Re = -2e-9 (clipped), -1
    eigenvalues = layer.apply(params, method=S5Layer.eigenvalues)
    np.testing.assert_allclose(eigenvalues.real, [MAX_EIGENVALUE_REAL, -1.0], rtol=1e-6)
    unclipped = S5Layer(features=4, state_size=4).apply(params, method=S5Layer.eigenvalues)
    assert np.all(unclipped.real < 0) and unclipped.real[0] > MAX_EIGENVALUE_REAL


def test_layer_zoh_step_by_hand():
    """One layer, one state mode, zero input weight: the state decays by exp(Lambda Delta)."""
    layer = S5Layer(features=2, state_size=2, conj_sym=True)
    params = layer.init(jax.random.key(0), 1, method=S5Layer.initial_state)
    params["params"].update(
        Lambda_re_log=jnp.log(jnp.array([0.5])),
        Lambda_im=jnp.array([2.0]),
        log_step=jnp.log(jnp.array([0.1])),
        B=jnp.zeros((1, 2, 2)),
        C=jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]),  # y = 2 (Re x, -Im x)
        D=jnp.zeros(2),
    )
    state = jnp.array([1.0 + 0j])[None]
    state, y = layer.apply(params, state, jnp.ones((1, 2)), jnp.array([False]), method=S5Layer.step)
    expected = np.exp((-0.5 + 2j) * 0.1)
    np.testing.assert_allclose(state[0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(y[0], [2 * expected.real, -2 * expected.imag], rtol=1e-6)


def test_ssm_param_labels_in_a_multi_transform_step():
    xs, resets, params, _ = setup_case(jnp.float32)
    model = make_model()
    labels = ssm_param_labels(params)
    assert jax.tree.structure(labels) == jax.tree.structure(params)
    layer_labels = labels["params"]["ssms_1"]
    assert {name for name, label in layer_labels.items() if label == "ssm"} == {
        "Lambda_re_log",
        "Lambda_im",
        "B",
        "log_step",
    }
    assert labels["params"]["input_proj"]["kernel"] == "regular"
    optimizer = optax.multi_transform(
        {"ssm": optax.adam(1e-3), "regular": optax.adamw(1e-2, weight_decay=1e-4)}, labels
    )
    opt_state = optimizer.init(params)

    @jax.jit
    def loss_and_grad(params):
        def loss(params):
            _, ys = model.apply(params, xs, resets, method=scan_from_initial_state)
            return jnp.mean(ys**2)

        return jax.value_and_grad(loss)(params)

    loss, grads = loss_and_grad(params)
    updates, opt_state = jax.jit(optimizer.update)(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    # Adam's first step moves each parameter by about its learning rate
    moved = jax.tree.map(lambda new, old: float(jnp.max(jnp.abs(new - old))), new_params, params)
    for path, amount in jax.tree_util.tree_leaves_with_path(moved):
        label = labels
        for key in path:
            label = label[key.key]
        if label == "ssm":
            assert 5e-4 < amount < 1.1e-3, jax.tree_util.keystr(path)
        else:
            assert 5e-3 < amount < 1.1e-2, jax.tree_util.keystr(path)
    assert loss_and_grad(new_params)[0] < loss


def test_ssm_param_labels_only_inside_s5_layers():
    zeros = jnp.zeros(2)
    layer = {name: zeros for name in ("Lambda_re_log", "Lambda_im", "B", "C", "D", "log_step", "initial")}
    params = {"world_model": {"core": {"ssms_0": layer}, "head": {"B": zeros, "kernel": zeros}}}
    labels = ssm_param_labels(params)
    assert labels["world_model"]["head"] == {"B": "regular", "kernel": "regular"}
    assert {name for name, label in labels["world_model"]["core"]["ssms_0"].items() if label == "ssm"} == {
        "Lambda_re_log", "Lambda_im", "B", "log_step"}


def test_invalid_settings_raise():
    xs, resets = jnp.zeros((2, 1, INPUTS)), jnp.zeros((2, 1), bool)
    for overrides in (dict(activation="relu"), dict(discretization="async"), dict(state_size=6)):
        model = make_model(**overrides)
        with pytest.raises(ValueError):
            model.init(jax.random.key(0), xs, resets, method=scan_from_initial_state)
