"""The one update rule every trainable part goes through, and the small maths they share.

A trainable part (world model, actor, critic, goal autoencoder, ensemble) offers ``init(key)``, a
``loss(params, ...) -> (loss, aux)`` and an ``optimizer`` built by ``make_optimizer`` from its config
section; ``gradient_step`` turns one loss into one optimiser step and reports the gradient norm.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax


def make_optimizer(lr: float, grad_clip: float, eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam after clipping the global gradient norm to ``grad_clip``."""
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(lr, eps=eps))


def apply_gradients(
    optimizer: optax.GradientTransformation, grads: Any, params: Any, opt_state: Any
) -> tuple[Any, Any, jax.Array]:
    """``(new params, new optimiser state, global norm of grads)``."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)


def gradient_step(
    loss: Callable[..., tuple[jax.Array, Any]],
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    *args: Any,
) -> tuple[Any, Any, jax.Array, Any, jax.Array]:
    """One optimiser step on ``loss(params, *args) -> (loss, aux)``:
    ``(new params, new optimiser state, loss, aux, gradient norm)``."""
    (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(params, *args)
    params, opt_state, grad_norm = apply_gradients(optimizer, grads, params, opt_state)
    return params, opt_state, value, aux, grad_norm


def masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Mean of ``values`` over the entries where ``mask`` (broadcast from the left) is 1."""
    if mask is None:
        return values.mean()
    mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim)), values.shape)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def select_rows(condition: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``condition [N]`` holds, ``old`` elsewhere, for every leaf ``[N, ...]``."""
    return jax.tree.map(
        lambda n, o: jnp.where(condition.reshape(condition.shape + (1,) * (n.ndim - 1)), n, o), new, old
    )
