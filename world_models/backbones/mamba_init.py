"""Initialisation maths of the Mamba selective SSM (Gu & Dao 2023), as pure functions.

Shapes: E inner channels (``expand * features``), N state size, R the rank of the Delta projection,
W the convolution width. Every ``*_init`` returns a Flax initialiser
``(key, shape, dtype) -> array``.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def inverse_softplus(value: jax.Array) -> jax.Array:
    """``x`` such that ``softplus(x) = value`` (for ``value > 0``), written to stay accurate for
    small values: ``log(expm1(v)) = v + log(-expm1(-v))``."""
    return value + jnp.log(-jnp.expm1(-value))


def a_log_init() -> Initializer:
    """S4D-real initialisation ``A_log[e, n] = log(n + 1)``, so ``A = -exp(A_log) = -(1..N)``.

    The initialiser takes ``shape = (E, N)``; it is deterministic, the key is not used.
    """

    def init(key: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
        del key  # deterministic: every channel gets the same ladder of decay rates
        inner, state_size = shape
        ladder = jnp.arange(1, state_size + 1, dtype=dtype)
        return jnp.log(jnp.broadcast_to(ladder, (inner, state_size)))

    return init


def dt_bias_init(dt_min: float = 1e-3, dt_max: float = 1e-1, dt_floor: float = 1e-4) -> Initializer:
    """Delta projection bias ``inverse_softplus(dt)``, ``dt ~ logUniform[dt_min, dt_max]``.

    So ``softplus(bias)`` starts in ``[dt_min, dt_max]`` per channel; ``dt_floor`` guards the
    inverse softplus against a value that rounds to zero. Takes ``shape = (E,)``.
    """
    if not 0.0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        log_dt = jax.random.uniform(
            key, shape, dtype, minval=math.log(dt_min), maxval=math.log(dt_max)
        )
        dt = jnp.maximum(jnp.exp(log_dt), dt_floor)
        return inverse_softplus(dt)

    return init


def dt_kernel_init(dt_rank: int, dt_scale: float = 1.0) -> Initializer:
    """Kernel of the Delta projection ``(R, E)``: uniform in ``±dt_scale / sqrt(R)``, which keeps
    ``softplus`` near the bias-chosen ``dt`` at the start of training (the reference's "random")."""
    return symmetric_uniform_init(dt_scale * dt_rank**-0.5)


def conv_init(width: int) -> Initializer:
    """Depthwise causal convolution kernel ``(W, E)`` and bias ``(E,)``: uniform in
    ``±1/sqrt(W)``, the default of a depthwise ``Conv1d`` whose fan-in is its width."""
    return symmetric_uniform_init(width**-0.5)


def symmetric_uniform_init(bound: float) -> Initializer:
    """Uniform in ``[-bound, bound]``."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init
