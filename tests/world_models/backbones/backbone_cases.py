"""Inputs shared by the backbone tests (imported by them; not a test module)."""

import jax
import jax.numpy as jnp
import numpy as np


def resets_with_runs(length: int, batch: int) -> jnp.ndarray:
    """Resets ``[T, B]``: element 0 restarts at t=0 and at t=3,4,5 (three in a row), element 1 at
    t=6 and t=7, the rest never."""
    resets = np.zeros((length, batch), bool)
    resets[[0, 3, 4, 5], 0] = True
    resets[[6, 7], 1] = True
    return jnp.asarray(resets)


def scan_from_initial_state(module, xs, resets, *per_step):
    """``module.scan`` from the module's initial state: the method ``init`` traces, and the way to
    run a whole sequence without a carry. ``per_step`` holds further ``[T, B]`` inputs (EventS5's
    ``dt``)."""
    return module.scan(module.initial_state(xs.shape[1]), xs, resets, *per_step)


def step_loop(model, params, carry, xs, resets, *per_step):
    """The reference every scan is checked against: a plain Python loop of ``model.step``."""
    step = jax.jit(
        lambda carry, *inputs: model.apply(params, carry, *inputs, method=type(model).step)
    )
    outputs = []
    for time in range(xs.shape[0]):
        carry, output = step(carry, xs[time], resets[time], *(inputs[time] for inputs in per_step))
        outputs.append(output)
    return carry, jnp.stack(outputs)


def run_scan(model, params, carry, xs, resets, *per_step):
    """``model.scan`` over the whole sequence, jitted."""
    scan = lambda carry, *inputs: model.apply(params, carry, *inputs, method=type(model).scan)
    return jax.jit(scan)(carry, xs, resets, *per_step)


def init_with_learned_initial_states(
    key, model, xs, resets, layer_prefix: str, initial_name: str, *per_step
):
    """Parameters whose learned initial state (``initial_name`` in every layer named
    ``layer_prefix``...) is random rather than zero, so tests see it carried through resets."""
    init = jax.jit(
        lambda key: model.init(key, xs, resets, *per_step, method=scan_from_initial_state)
    )
    params = init(key)["params"]
    for index, name in enumerate(sorted(name for name in params if name.startswith(layer_prefix))):
        noise = jax.random.normal(jax.random.fold_in(key, index), params[name][initial_name].shape)
        params[name][initial_name] = 0.5 * noise
    return {"params": params}


def assert_every_gradient_finite_and_nonzero(grads) -> None:
    """Every leaf of ``grads`` finite and not all zero, naming the first leaf that is not: a zero
    leaf is a parameter the loss never reaches."""
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        name = jax.tree_util.keystr(path)
        assert np.all(np.isfinite(grad)), f"non-finite gradient at {name}"
        assert np.any(grad != 0), f"zero gradient at {name}"
