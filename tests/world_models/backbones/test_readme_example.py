"""The README's "Use a backbone in your own code" example runs, and its scan equals its step loop.

The body of ``test_readme_example`` up to the asserts is the README's code block, verbatim
(imports included): change both together.
"""

import numpy as np


def test_readme_example():
    import jax
    import jax.numpy as jnp
    import optax
    from world_models.backbones import S5, ssm_param_labels
    T, B, D = 32, 4, 8
    model = S5(features=16, state_size=8, layers=2)
    xs = jax.random.normal(jax.random.PRNGKey(0), (T, B, D))  # time-major [T, B, D]
    resets = jnp.zeros((T, B), bool).at[0].set(True).at[20, 1].set(True)  # episode starts

    def observe(m, xs, resets):  # training: the whole sequence in one scan
        return m.scan(m.initial_state(xs.shape[1]), xs, resets)
    params = model.init(jax.random.PRNGKey(1), xs, resets, method=observe)
    carry, ys = model.apply(params, xs, resets, method=observe)  # ys: [T, B, 16]

    # acting: one jitted step per environment step, the carry passed along
    step = jax.jit(lambda p, state, x, reset: model.apply(p, state, x, reset, method=model.step))
    state = model.apply(params, B, method=model.initial_state)
    for t in range(T):
        state, y = step(params, state, xs[t], resets[t])  # y: [B, 16]

    labels = ssm_param_labels(params)  # "ssm": S5's Lambda, B and Delta (own rate, no decay)
    optimizer = optax.multi_transform({"ssm": optax.adam(1e-4), "regular": optax.adamw(1e-3)}, labels)
    grads = jax.grad(lambda p: jnp.mean(model.apply(p, xs, resets, method=observe)[1] ** 2))(params)
    updates, opt_state = optimizer.update(grads, optimizer.init(params), params)
    params = optax.apply_updates(params, updates)

    assert ys.shape == (T, B, 16) and y.shape == (B, 16)
    np.testing.assert_allclose(y, ys[-1], rtol=1e-5, atol=1e-5)
    for scanned, stepped in zip(jax.tree.leaves(carry), jax.tree.leaves(state), strict=True):
        assert scanned.shape == stepped.shape == (B, 4)  # P' = state_size / 2 complex modes
        np.testing.assert_allclose(scanned, stepped, rtol=1e-5, atol=1e-5)
    ssm_labels = [name for name in jax.tree.leaves(labels) if name == "ssm"]
    assert len(ssm_labels) == 2 * 4  # Lambda_re_log, Lambda_im, B, log_step per layer
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params))
