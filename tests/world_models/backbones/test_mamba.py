"""Tests of the Mamba backbone: scan equals a step loop (both scan implementations, float32 and
float64), the chunked selective scan equals the whole-sequence one (values, carries and
gradients), resets cut all dependence on the past (convolution window included), gradients reach
every parameter, jit/vmap, and the initialisation maths."""

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
    resets_with_runs,
    run_scan,
    scan_from_initial_state,
    step_loop,
)
from world_models.backbones.mamba import Mamba, causal_conv_sequence, episode_starts
from world_models.backbones.mamba_scan import (
    SelectionTerms,
    chunked_selective_scan,
    selective_scan,
    stepwise_selective_scan,
)
from world_models.backbones.mamba_init import a_log_init, dt_bias_init, inverse_softplus

LENGTH, BATCH, INPUTS, FEATURES, STATE = 9, 3, 5, 8, 4


def make_model(scan_impl: str = "sequential", chunk_size: int = 0) -> Mamba:
    return Mamba(
        features=FEATURES,
        layers=2,
        state_size=STATE,
        expand=2,
        conv_width=4,
        scan_impl=scan_impl,
        chunk_size=chunk_size,
    )


def make_resets() -> jnp.ndarray:
    return resets_with_runs(LENGTH, BATCH)


def random_carry(key, model: Mamba, params):
    """A carry unlike the initial state, as if left by a previous call."""
    carry = jax.jit(lambda params: model.apply(params, BATCH, method=Mamba.initial_state))(params)
    leaves, treedef = jax.tree.flatten(carry)
    keys = jax.random.split(key, len(leaves))
    noise = [jax.random.normal(key, leaf.shape) for key, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, noise)


@functools.lru_cache
def setup_case(dtype):
    key_x, key_params, key_carry = jax.random.split(jax.random.key(0), 3)
    xs = jax.random.normal(key_x, (LENGTH, BATCH, INPUTS), dtype)
    resets = make_resets()
    params = init_with_learned_initial_states(
        key_params, make_model(), xs, resets, "mixers", "initial_ssm"
    )
    params = jax.tree.map(lambda leaf: leaf.astype(dtype), params)
    carry = random_carry(key_carry, make_model(), params)
    carry = jax.tree.map(lambda leaf: leaf.astype(dtype), carry)
    return xs, resets, params, carry


def assert_scan_matches_steps(dtype, tolerance):
    xs, resets, params, carry = setup_case(dtype)
    loop_carry, loop_ys = step_loop(make_model(), params, carry, xs, resets)
    results = {}
    for impl in ("sequential", "associative"):
        # two calls, so the carry (conv window included) crosses a call boundary, the first
        # call shorter than the window (length 2 < W - 1 = 3)
        final, chunks = carry, []
        for start, stop in [(0, 2), (2, LENGTH)]:
            chunk = slice(start, stop)
            final, chunk_ys = run_scan(make_model(impl), params, final, xs[chunk], resets[chunk])
            chunks.append(chunk_ys)
        ys = jnp.concatenate(chunks)
        assert ys.dtype == dtype
        np.testing.assert_allclose(ys, loop_ys, rtol=tolerance, atol=tolerance)
        chex.assert_trees_all_close(final, loop_carry, rtol=tolerance, atol=tolerance)
        results[impl] = ys
    np.testing.assert_allclose(
        results["sequential"], results["associative"], rtol=tolerance, atol=tolerance
    )


def test_scan_matches_step_loop_float32():
    assert_scan_matches_steps(jnp.float32, 1e-4)


def test_scan_matches_step_loop_float64():
    with jax.enable_x64(True):
        assert_scan_matches_steps(jnp.float64, 1e-10)
    assert jnp.zeros(()).dtype == jnp.float32  # x64 did not leak out of the context


# resets_with_runs at T=9: element 0 restarts at t=0, 3, 4, 5 and element 1 at t=6, 7. Chunks of 3
# start exactly at resets (t=3, 6); chunks of 4 cut the run 3-5 and leave a partial last chunk
# (t=8, then 3 padded steps); chunks of 1 make every step a boundary; 12 > T is one whole chunk.
CHUNK_SIZES = [1, 3, 4, LENGTH + 3]


@functools.lru_cache
def chunked_results(impl: str, chunk_size: int):
    """Final carry, outputs, every step's carry and the gradients (params, carry, inputs) of a
    non-linear sum of all three, in float64, for one ``chunk_size`` (0: the whole sequence)."""
    xs, resets, params, carry = setup_case(jnp.float64)
    model = make_model(impl, chunk_size)

    def outputs(params, carry, xs):
        final, ys = model.apply(params, carry, xs, resets, method=Mamba.scan)
        carries, _ = model.apply(params, carry, xs, resets, True, method=Mamba.scan)
        return final, ys, carries

    def loss(params, carry, xs):
        leaves = jax.tree.leaves(outputs(params, carry, xs))
        return sum(jnp.sum(jnp.sin(leaf)) for leaf in leaves)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, carry, xs)
    return jax.jit(outputs)(params, carry, xs) + (grads,)


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("impl", ["sequential", "associative"])
def test_chunked_scan_equals_whole_sequence(impl, chunk_size):
    with jax.enable_x64(True):
        expected, chunked = chunked_results(impl, 0), chunked_results(impl, chunk_size)
    names = ("final carry", "outputs", "carries", "gradients")
    for name, want, got in zip(names, expected, chunked):
        chex.assert_trees_all_equal_shapes_and_dtypes(got, want)
        chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-10, custom_message=name)
    grads = [np.asarray(grad) for grad in jax.tree.leaves(chunked[3])]
    assert all(np.any(grad != 0) for grad in grads)  # every parameter, the carry and the inputs
    assert all(grad.dtype == np.float64 for grad in grads)


@pytest.mark.parametrize("return_states", [False, True])
@pytest.mark.parametrize("impl", ["sequential", "associative"])
def test_selective_scan_solvers_agree(impl, return_states):
    """Pure functions, T=5: chunks of 4 (a reset at the last step, inside the partial chunk, then
    three padded steps) and the stepwise scan equal the whole-sequence reference, gradients
    included."""
    length, batch, inner, state = 5, 2, 3, 2
    keys = jax.random.split(jax.random.key(7), 6)
    terms = SelectionTerms(
        dt=jax.nn.softplus(jax.random.normal(keys[0], (length, batch, inner))),
        x=jax.random.normal(keys[1], (length, batch, inner)),
        b_input=jax.random.normal(keys[2], (length, batch, state)),
        c_output=jax.random.normal(keys[3], (length, batch, state)),
    )
    h0, h_init = jax.random.normal(keys[4], (2, batch, state, inner))
    a, d = -jnp.arange(1.0, 1.0 + inner * state).reshape(state, inner) / 4, jnp.ones(inner)
    resets = jnp.zeros((length, batch), bool).at[4, 0].set(True).at[2, 1].set(True)

    def whole(*args):
        ys, states = selective_scan(*args, impl=impl)
        return ys, states if return_states else states[-1]

    solvers = {
        "chunked": functools.partial(
            chunked_selective_scan, chunk_size=4, impl=impl, return_states=return_states
        ),
        "stepwise": functools.partial(stepwise_selective_scan, return_states=return_states),
    }

    def outputs_and_grads(solver):
        def loss(terms, h0, h_init, a):
            ys, states = solver(terms, h0, resets, h_init, a, d)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.sin(states))

        grads = jax.grad(loss, argnums=(0, 1, 2, 3))(terms, h0, h_init, a)
        return solver(terms, h0, resets, h_init, a, d), grads

    expected = outputs_and_grads(whole)
    for name, solver in solvers.items():
        got = outputs_and_grads(solver)
        chex.assert_trees_all_equal_shapes(got, expected)
        chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-6, custom_message=name)


@pytest.mark.parametrize("impl, marker", [("sequential", "custom_vjp"), ("associative", "remat")])
def test_chunk_size_reaches_every_layer(impl, marker):
    """The chunked path is taken (per layer, one chunk scan with the written-out gradient, or
    rematerialised for the associative scan) only when the chunk is shorter than the sequence."""
    xs, resets, params, carry = setup_case(jnp.float32)

    def chunked_scans(chunk_size):
        model = make_model(impl, chunk_size)
        apply_scan = lambda carry, xs: model.apply(params, carry, xs, resets, method=Mamba.scan)
        return str(jax.make_jaxpr(apply_scan)(carry, xs)).count(marker)

    assert chunked_scans(4) == 2
    assert chunked_scans(0) == chunked_scans(LENGTH) == 0


@pytest.mark.parametrize("impl", ["sequential", "associative"])
def test_reset_cuts_dependence_on_the_past(impl):
    xs, resets, params, carry = setup_case(jnp.float32)
    model = make_model(impl)
    # element 0 restarts at t=5 (its last reset), element 1 at t=7: change everything before,
    # the carried-in state included; the three inputs just before would leak via the conv window
    changed_xs = xs.at[:5, 0].add(3.0).at[:7, 1].add(-2.0)
    changed_carry = jax.tree.map(lambda leaf: leaf + 1.0, carry)
    _, ys = run_scan(model, params, carry, xs, resets)
    _, changed_ys = run_scan(model, params, changed_carry, changed_xs, resets)
    np.testing.assert_allclose(changed_ys[5:, 0], ys[5:, 0], atol=1e-6)
    np.testing.assert_allclose(changed_ys[7:, 1], ys[7:, 1], atol=1e-6)
    assert not np.allclose(changed_ys[:5, 0], ys[:5, 0])  # the change is visible before the reset
    _, loop_ys = step_loop(model, params, changed_carry, changed_xs, resets)
    np.testing.assert_allclose(loop_ys[5:, 0], ys[5:, 0], atol=1e-5)


def test_conv_window_is_cleared_at_reset():
    """A reset between steps zeroes every tap that reaches before it; the carried window is used
    only while no reset has happened."""
    window = jnp.full((1, 3, 1), 100.0)  # [B, W-1, E]
    xs = jnp.arange(1.0, 6.0).reshape(5, 1, 1)
    resets = jnp.array([False, False, True, False, False])[:, None]
    kernel = jnp.ones((4, 1))
    outputs, windows = causal_conv_sequence(window, xs, resets, kernel, jnp.zeros(1))
    # t=0: 100*3 + 1, t=1: 100*2 + 1 + 2, t=2 (reset): 3, t=3: 3+4, t=4: 3+4+5
    np.testing.assert_allclose(outputs[:, 0, 0], [301.0, 203.0, 3.0, 7.0, 12.0])
    # the window after each step, oldest first: carried values until the reset clears them
    np.testing.assert_allclose(
        windows[:, 0, :, 0],
        [[100.0, 100.0, 1.0], [100.0, 1.0, 2.0], [0.0, 0.0, 3.0], [0.0, 3.0, 4.0], [3.0, 4.0, 5.0]],
    )
    np.testing.assert_array_equal(episode_starts(resets, 4)[:, 0], [-4, -4, 2, 2, 2])


@pytest.mark.parametrize("impl", ["sequential", "associative"])
def test_gradients_reach_every_parameter(impl):
    xs, resets, params, carry = setup_case(jnp.float32)
    model = make_model(impl)
    weights = jax.random.normal(jax.random.key(3), (LENGTH, BATCH, FEATURES))

    def loss(params):
        _, ys = model.apply(params, carry, xs, resets, method=Mamba.scan)
        return jnp.sum(ys * weights)

    grads = jax.jit(jax.grad(loss))(params)
    assert_every_gradient_finite_and_nonzero(grads)


def test_jit_and_vmap_shapes():
    xs, resets, params, carry = setup_case(jnp.float32)
    model = make_model("sequential")
    apply_scan = lambda carry, xs, resets: model.apply(params, carry, xs, resets, method=Mamba.scan)
    final, ys = apply_scan(carry, xs, resets)
    jit_final, jit_ys = jax.jit(apply_scan)(carry, xs, resets)
    np.testing.assert_allclose(jit_ys, ys, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(jit_final, final, rtol=1e-5, atol=1e-5)
    chex.assert_shape(ys, (LENGTH, BATCH, FEATURES))
    for state in final:
        chex.assert_shape(state.conv_window, (BATCH, 3, 2 * FEATURES))
        chex.assert_shape(state.ssm, (BATCH, STATE, 2 * FEATURES))

    # vmap over an extra leading axis (for example ensemble members) equals separate calls
    stacked = lambda tree: jax.tree.map(lambda leaf: jnp.stack([leaf, 2.0 * leaf]), tree)
    resets_pair = jnp.stack([resets, ~resets])
    _, vmapped_ys = jax.jit(jax.vmap(apply_scan))(stacked(carry), stacked(xs), resets_pair)
    chex.assert_shape(vmapped_ys, (2, LENGTH, BATCH, FEATURES))
    _, second_ys = apply_scan(jax.tree.map(lambda leaf: 2.0 * leaf, carry), 2.0 * xs, ~resets)
    np.testing.assert_allclose(vmapped_ys[0], ys, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(vmapped_ys[1], second_ys, rtol=1e-5, atol=1e-5)

    step_carry, step_y = jax.jit(
        lambda carry, x, reset: model.apply(params, carry, x, reset, method=Mamba.step)
    )(carry, xs[0], resets[0])
    chex.assert_shape(step_y, (BATCH, FEATURES))
    chex.assert_trees_all_equal_shapes(step_carry, carry)


def test_initialisation():
    xs, resets = jnp.zeros((2, 1, INPUTS)), jnp.zeros((2, 1), bool)
    model = Mamba(features=32, layers=1, state_size=STATE, dt_min=1e-3, dt_max=1e-1)
    init = jax.jit(lambda key: model.init(key, xs, resets, method=scan_from_initial_state))
    mixer = init(jax.random.key(1))["params"]["mixers_0"]
    expected_a = -jnp.broadcast_to(jnp.arange(1.0, STATE + 1), (64, STATE))
    np.testing.assert_allclose(-jnp.exp(mixer["A_log"]), expected_a, rtol=1e-6)
    dt = jax.nn.softplus(mixer["dt_proj"]["bias"])
    assert np.all(dt >= 1e-3 * (1 - 1e-5)) and np.all(dt <= 1e-1 * (1 + 1e-5))
    chex.assert_shape(mixer["dt_proj"]["kernel"], (2, 64))  # dt_rank "auto" = ceil(32 / 16)
    np.testing.assert_array_equal(mixer["initial_ssm"], 0.0)
    np.testing.assert_array_equal(mixer["D"], 1.0)


def test_init_maths():
    values = jnp.array([1e-4, 1e-3, 0.05, 1.0, 10.0])
    np.testing.assert_allclose(jax.nn.softplus(inverse_softplus(values)), values, rtol=1e-5)
    bias = dt_bias_init(1e-3, 1e-1)(jax.random.key(0), (4096,))
    dt = jax.nn.softplus(bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    # log-uniform: about half of the samples lie below the geometric mean 1e-2
    assert 0.4 < float(jnp.mean(dt < 1e-2)) < 0.6
    expected_log = jnp.log(jnp.array([[1.0, 2, 3], [1, 2, 3]]))
    np.testing.assert_allclose(a_log_init()(None, (2, 3)), expected_log)
