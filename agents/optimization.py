"""The one update rule every trainable part goes through, and the small maths they share.

A trainable part (world model, actor, critic, goal autoencoder, ensemble) offers ``init(key)``, a
``loss(params, ...) -> (loss, aux)`` and an ``optimizer`` built by ``make_optimizer`` from its config
section. Its state is a ``TrainState`` (parameters and optimiser state, arrays only: the optimiser
itself stays with the part, so that states stack over seeds and checkpoint as plain trees), and
``gradient_step`` turns one loss into one optimiser step on it and reports the gradient norm.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from world_models.optimizer import make_optimizer  # the one builder, shared with the world models


@struct.dataclass
class TrainState:
    """One trainable part's parameters and its optimiser's state."""

    params: Any
    opt_state: Any

    @classmethod
    def create(cls, optimizer: optax.GradientTransformation, params: Any) -> "TrainState":
        return cls(params=params, opt_state=optimizer.init(params))


class GradientStep(NamedTuple):
    """The outcome of one optimiser step on one loss."""

    state: TrainState
    loss: jax.Array
    aux: Any
    grads: Any

    @property
    def grad_norm(self) -> jax.Array:
        """Global norm of the gradients. A property, so that it is traced where a caller records it:
        moving it changes the compiled program's order, and with it the bits of the parameters."""
        return optax.tree.norm(self.grads)


def apply_gradients(optimizer: optax.GradientTransformation, grads: Any, params: Any, opt_state: Any
                    ) -> tuple[Any, Any]:
    """``(new params, new optimiser state)``."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def gradient_step(loss: Callable[..., tuple[jax.Array, Any]], optimizer: optax.GradientTransformation,
                  state: TrainState, *args: Any) -> GradientStep:
    """One optimiser step on ``loss(state.params, *args) -> (loss, aux)``."""
    (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(state.params, *args)
    params, opt_state = apply_gradients(optimizer, grads, state.params, state.opt_state)
    return GradientStep(TrainState(params, opt_state), value, aux, grads)


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
