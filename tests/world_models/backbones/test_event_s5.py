"""Tests of EventS5: unit intervals give S5 with ZOH, scan equals a step loop with random intervals
and resets (float32 and float64, both scan implementations), intervals act causally as elapsed
time, chunked processing equals one pass, and event pooling preserves time."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backbone_cases import (
    assert_every_gradient_finite_and_nonzero,
    init_with_learned_initial_states,
    run_scan,
    scan_from_initial_state,
    step_loop,
)
from world_models.backbones.event_s5 import EventS5, pool_events, pool_resets, window_sum
from world_models.backbones.s5 import S5, S5Layer

LENGTH, BATCH, INPUTS, FEATURES, STATE = 10, 2, 3, 8, 8
LAYERS = 1  # the stacking code is S5's, tested in test_s5.py; one layer keeps compiles short


def make_model(scan_impl: str = "sequential", **overrides) -> EventS5:
    settings = dict(
        features=FEATURES, state_size=STATE, layers=LAYERS, blocks=2, scan_impl=scan_impl
    )
    return EventS5(**{**settings, **overrides})


def make_resets() -> jnp.ndarray:
    """``[T, B]``: element 0 restarts at t=2,3 and t=7; element 1 at t=5,6,7 (three in a row)."""
    resets = np.zeros((LENGTH, BATCH), bool)
    resets[[2, 3, 7], 0] = True
    resets[[5, 6, 7], 1] = True
    return jnp.asarray(resets)


@functools.cache
def float32_case(overrides: tuple = ()) -> tuple:
    """Inputs, resets, intervals, parameters (non-zero learned initial states), a random carry."""
    model = make_model(**dict(overrides))
    key_x, key_dt, key_params, key_carry = jax.random.split(jax.random.key(0), 4)
    xs = jax.random.normal(key_x, (LENGTH, BATCH, INPUTS))
    dt = jax.random.uniform(key_dt, (LENGTH, BATCH), minval=0.1, maxval=5.0)
    resets = make_resets()
    params = init_with_learned_initial_states(
        key_params, model, xs, resets, "ssms", "initial", dt
    )
    shapes = model.apply(params, BATCH, method=EventS5.initial_state)
    keys = jax.random.split(key_carry, len(shapes))
    carry = tuple(
        (jax.random.normal(key, state.shape + (2,)) @ jnp.array([1.0, 1j])).astype(jnp.complex64)
        for key, state in zip(keys, shapes)
    )
    return xs, resets, dt, params, carry


def setup_case(dtype, **overrides):
    xs, resets, dt, params, carry = float32_case(tuple(sorted(overrides.items())))
    params = jax.tree.map(lambda leaf: leaf.astype(dtype), params)
    carry = tuple(state.astype(jnp.result_type(dtype, jnp.complex64)) for state in carry)
    return xs.astype(dtype), resets, dt.astype(dtype), params, carry


def scan_function(model: EventS5, params):
    return lambda carry, xs, resets, dt: model.apply(
        params, carry, xs, resets, dt, method=EventS5.scan
    )


def assert_scan_matches_steps(dtype, tolerance, **overrides):
    xs, resets, dt, params, carry = setup_case(dtype, **overrides)
    loop_carry, loop_ys = step_loop(make_model(**overrides), params, carry, xs, resets, dt)
    outputs = []
    for impl in ("sequential", "associative"):
        scan_carry, scan_ys = run_scan(make_model(impl, **overrides), params, carry, xs, resets, dt)
        assert scan_ys.dtype == dtype
        np.testing.assert_allclose(scan_ys, loop_ys, rtol=tolerance, atol=tolerance)
        for scanned, looped in zip(scan_carry, loop_carry):
            np.testing.assert_allclose(scanned, looped, rtol=tolerance, atol=tolerance)
        outputs.append(scan_ys)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=tolerance, atol=tolerance)


def test_scan_matches_step_loop_float32():
    assert_scan_matches_steps(jnp.float32, 1e-4)


def test_scan_matches_step_loop_float64():
    with jax.enable_x64(True):
        assert_scan_matches_steps(jnp.float64, 1e-10)
    assert jnp.zeros(()).dtype == jnp.float32  # x64 did not leak out of the context


def test_scan_matches_step_loop_async():
    assert_scan_matches_steps(jnp.float32, 1e-4, discretization="async", layers=1)


def test_unit_intervals_equal_s5_with_zoh():
    xs, resets, _, params, carry = setup_case(jnp.float32)
    s5 = S5(features=FEATURES, state_size=STATE, layers=LAYERS, blocks=2, discretization="zoh")
    s5_scan = lambda carry, xs, resets: s5.apply(params, carry, xs, resets, method=S5.scan)
    s5_carry, s5_ys = jax.jit(s5_scan)(carry, xs, resets)
    ones = jnp.ones(resets.shape)
    # the event variant "async" also reduces to ZOH at dt = 1
    for discretization, dt in (("zoh", ones), ("zoh", None), ("async", ones)):
        model = make_model("auto", discretization=discretization)
        event_carry, event_ys = run_scan(model, params, carry, xs, resets, dt)
        np.testing.assert_allclose(event_ys, s5_ys, rtol=1e-5, atol=1e-5)
        for event_state, s5_state in zip(event_carry, s5_carry):
            np.testing.assert_allclose(event_state, s5_state, rtol=1e-5, atol=1e-5)
    step = model.apply(params, carry, xs[0], resets[0], method=EventS5.step)  # dt defaults to ones
    np.testing.assert_allclose(step[1], s5_ys[0], rtol=1e-5, atol=1e-5)


def test_interval_is_elapsed_time():
    """Without input, one element of interval 2 decays the state like two of interval 1 (ZOH), and
    the ``dirac`` variant adds inputs with unit gain."""
    layer = S5Layer(features=4, state_size=8, blocks=2)
    params = layer.init(jax.random.key(0), 1, method=S5Layer.initial_state)
    params["params"]["D"] = jnp.zeros(4)
    state = jnp.exp(1j * jnp.arange(4.0))[None]
    no_reset = jnp.array([False])
    step = jax.jit(
        lambda state, u, dt: layer.apply(params, state, u, no_reset, dt, method=S5Layer.step)
    )
    silence = jnp.zeros((1, 4))
    once, _ = step(state, silence, jnp.array([2.0]))
    twice, _ = step(step(state, silence, jnp.array([1.0]))[0], silence, jnp.array([1.0]))
    np.testing.assert_allclose(once, twice, rtol=1e-5, atol=1e-6)
    dirac = S5Layer(features=4, state_size=8, blocks=2, discretization="dirac")
    u = jnp.ones((1, 4))
    kicked, _ = dirac.apply(
        params, jnp.zeros_like(state), u, no_reset, jnp.array([3.0]), method=S5Layer.step
    )
    b_tilde = params["params"]["B"][..., 0] + 1j * params["params"]["B"][..., 1]
    np.testing.assert_allclose(kicked[0], b_tilde @ u[0], rtol=1e-5, atol=1e-6)


def test_intervals_are_causal():
    """``dt[t]`` is the interval before element t: changing it changes nothing earlier."""
    xs, resets, dt, params, carry = setup_case(jnp.float32)
    model = make_model()
    _, ys = run_scan(model, params, carry, xs, resets, dt)
    _, changed = run_scan(model, params, carry, xs, resets, dt.at[6].multiply(3.0))
    np.testing.assert_allclose(changed[:6], ys[:6], atol=1e-6)
    assert not np.allclose(changed[6], ys[6])


@pytest.mark.parametrize("impl", ["sequential", "associative"])
def test_reset_cuts_dependence_on_the_past(impl):
    xs, resets, dt, params, carry = setup_case(jnp.float32)
    model = make_model(impl)
    _, ys = run_scan(model, params, carry, xs, resets, dt)
    changed_xs = xs.at[:7].multiply(-2.0)
    changed_dt = dt.at[:7].multiply(0.5)  # resets at t=7 in both elements
    changed_carry = tuple(2.0 * state + 1.0 for state in carry)
    _, changed_ys = run_scan(model, params, changed_carry, changed_xs, resets, changed_dt)
    np.testing.assert_allclose(changed_ys[7:], ys[7:], atol=1e-6)
    assert not np.allclose(changed_ys[:7], ys[:7])


@pytest.mark.parametrize("chunk_size", [3, 5, 16])
def test_chunked_equals_one_pass(chunk_size):
    xs, resets, dt, params, carry = setup_case(jnp.float32)
    model = make_model()
    one_carry, one_ys = run_scan(model, params, carry, xs, resets, dt)
    chunked = lambda carry, xs, resets, dt: model.apply(
        params, carry, xs, resets, dt, chunk_size, method=EventS5.scan_chunked
    )
    chunk_carry, chunk_ys = jax.jit(chunked)(carry, xs, resets, dt)
    chex.assert_shape(chunk_ys, (LENGTH, BATCH, FEATURES))
    np.testing.assert_allclose(chunk_ys, one_ys, rtol=1e-5, atol=1e-5)
    for chunk_state, one_state in zip(chunk_carry, one_carry):
        np.testing.assert_allclose(chunk_state, one_state, rtol=1e-5, atol=1e-5)


def test_chunked_gradients_with_remat_equal_one_pass():
    xs, resets, dt, params, carry = setup_case(jnp.float32)
    model = make_model()
    weights = jax.random.normal(jax.random.key(3), (LENGTH, BATCH, FEATURES))

    def loss(params, chunked: bool):
        if chunked:
            _, ys = model.apply(params, carry, xs, resets, dt, 4, True, method=EventS5.scan_chunked)
        else:
            _, ys = model.apply(params, carry, xs, resets, dt, method=EventS5.scan)
        return jnp.sum(weights * ys)

    grads = jax.jit(jax.grad(loss), static_argnums=1)
    chex.assert_trees_all_close(grads(params, True), grads(params, False), rtol=1e-4, atol=1e-4)


def test_gradients_reach_every_parameter_and_interval():
    xs, resets, dt, params, _ = setup_case(jnp.float32)
    model = make_model("associative")
    weights = jax.random.normal(jax.random.key(4), (LENGTH, BATCH, FEATURES))

    def loss(params, dt):
        _, ys = model.apply(params, xs, resets, dt, method=scan_from_initial_state)
        return jnp.sum(weights * ys)

    param_grads, dt_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, dt)
    assert_every_gradient_finite_and_nonzero({"params": param_grads, "dt": dt_grads})


def test_jit_vmap_and_shapes():
    xs, resets, dt, params, carry = setup_case(jnp.float32)
    model = make_model()
    scan = scan_function(model, params)
    _, ys = jax.jit(scan)(carry, xs, resets, dt)
    chex.assert_shape(ys, (LENGTH, BATCH, FEATURES))
    many_scans = jax.jit(jax.vmap(scan, in_axes=(None, None, None, 0)))  # a batch of time scales
    _, many_ys = many_scans(carry, xs, resets, jnp.stack([dt, 2 * dt]))
    chex.assert_shape(many_ys, (2, LENGTH, BATCH, FEATURES))
    np.testing.assert_allclose(many_ys[0], ys, rtol=1e-5, atol=1e-5)
    carries, _ = model.apply(params, carry, xs, resets, dt, True, method=EventS5.scan)
    chex.assert_shape(list(carries), [(LENGTH, BATCH, STATE // 2)] * LAYERS)
    with pytest.raises(ValueError):
        model.apply(params, carry, xs, resets, dt[:, :1], method=EventS5.scan)


def test_pool_events_last_by_hand():
    xs = jnp.arange(7.0).reshape(7, 1, 1)  # feature = element index
    dt = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])[:, None]
    pooled_xs, pooled_dt = pool_events(xs, dt, stride=3)
    chex.assert_shape(pooled_xs, (3, 1, 1))
    np.testing.assert_allclose(pooled_xs[:, 0, 0], [2.0, 5.0, 6.0])  # last of each window
    np.testing.assert_allclose(pooled_dt[:, 0], [6.0, 15.0, 7.0])  # summed over each window
    np.testing.assert_allclose(pooled_dt.sum(), dt.sum())  # total time kept
    # each pooled interval is the time since the previous kept element
    times = jnp.cumsum(dt[:, 0])
    np.testing.assert_allclose(jnp.cumsum(pooled_dt[:, 0]), times[jnp.array([2, 5, 6])])


def test_pool_events_mean_by_hand():
    xs = jnp.arange(10.0).reshape(5, 1, 2)
    dt = jnp.ones((5, 1))
    pooled_xs, pooled_dt = pool_events(xs, dt, stride=2, mode="mean")
    np.testing.assert_allclose(pooled_xs[:, 0], [[1.0, 2.0], [5.0, 6.0], [8.0, 9.0]])
    np.testing.assert_allclose(pooled_dt[:, 0], [2.0, 2.0, 1.0])


def test_pool_events_with_counts_ignores_the_padding_by_hand():
    # two columns of 7 rows, 5 and 2 of them real; the padding holds large numbers that must not show
    xs = jnp.stack([jnp.array([0.0, 1, 2, 3, 4, 99, 99]), jnp.array([10.0, 11, 99, 99, 99, 99, 99])], 1)[..., None]
    dt = jnp.stack([jnp.array([1.0, 2, 3, 4, 5, 50, 50]), jnp.array([1.0, 1, 50, 50, 50, 50, 50])], 1)
    count = jnp.array([5, 2])
    pooled_xs, pooled_dt = pool_events(xs, dt, stride=3, count=count)
    np.testing.assert_allclose(pooled_xs[:2, 0, 0], [2.0, 4.0])  # column 0: windows end at rows 2 and 4
    np.testing.assert_allclose(pooled_xs[:1, 1, 0], [11.0])  # column 1: its one window ends at row 1
    np.testing.assert_allclose(pooled_dt[:2, 0], [6.0, 9.0])
    np.testing.assert_allclose(pooled_dt[:, 1], [2.0, 0.0, 0.0])
    mean_xs, _ = pool_events(xs, dt, stride=3, mode="mean", count=count)
    np.testing.assert_allclose(mean_xs[:2, 0, 0], [1.0, 3.5])
    np.testing.assert_allclose(mean_xs[:1, 1, 0], [10.5])
    # a count of every row is the plain pooling
    full = jnp.array([7, 7])
    for mode in ("last", "mean"):
        for got, expected in zip(pool_events(xs, dt, 3, mode, full), pool_events(xs, dt, 3, mode)):
            np.testing.assert_allclose(got, expected)


def test_pool_events_keeps_total_time_random():
    key_x, key_dt = jax.random.split(jax.random.key(7))
    xs = jax.random.normal(key_x, (37, 3, 4))
    dt = jax.random.uniform(key_dt, (37, 3))
    for stride in (1, 4, 37, 50):
        pooled_xs, pooled_dt = pool_events(xs, dt, stride)
        chex.assert_shape(pooled_xs, (-(-37 // stride), 3, 4))
        np.testing.assert_allclose(pooled_dt.sum(0), dt.sum(0), rtol=1e-5)
    np.testing.assert_allclose(pool_events(xs, dt, 1)[0], xs)
    with pytest.raises(ValueError):
        pool_events(xs, dt, 0)


def test_pool_resets_and_window_sum():
    resets = jnp.array([[False], [True], [False], [False], [False], [True], [False]])
    np.testing.assert_array_equal(pool_resets(resets, 3)[:, 0], [True, True, False])
    np.testing.assert_allclose(window_sum(jnp.arange(5.0), 2), [1.0, 5.0, 4.0])
