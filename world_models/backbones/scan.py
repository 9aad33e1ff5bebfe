"""Shared scan machinery for the sequence backbones.

Conventions used by every backbone (time-major):
  T: sequence length, B: batch, ...: any trailing state shape.
  ``resets[t]`` (``is_first``) means: start from the initial state *before* consuming ``xs[t]``.

This file imports jax only, so that each backbone file stays importable on its own.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp

ScanImpl = Literal["auto", "sequential", "associative"]
SCAN_IMPLS = ("auto", "sequential", "associative")


def _broadcast_flags(flags: jax.Array, like: jax.Array) -> jax.Array:
    """Reshape boolean flags ``[*lead]`` so that they broadcast against ``like`` ``[*lead, ...]``."""
    return flags.reshape(flags.shape + (1,) * (like.ndim - flags.ndim))


def where_reset(reset: jax.Array, initial: Any, carry: Any) -> Any:
    """Per batch element, replace ``carry`` by ``initial`` where ``reset`` is true.

    Args:
      reset: ``[B]`` booleans.
      initial, carry: pytrees whose leaves all have the leading batch axis ``B``.
    """
    return jax.tree.map(
        lambda init, value: jnp.where(_broadcast_flags(reset, value), init, value), initial, carry
    )


def resolve_scan_impl(impl: str) -> str:
    """``auto`` picks ``lax.scan`` on CPU (faster there) and the associative scan on accelerators."""
    if impl not in SCAN_IMPLS:
        raise ValueError(f"scan_impl must be one of {SCAN_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "sequential" if jax.default_backend() == "cpu" else "associative"
    return impl


def _compose(earlier: tuple[jax.Array, jax.Array], later: tuple[jax.Array, jax.Array]):
    """Associative operator of the affine maps ``h -> a*h + b``: apply ``earlier`` then ``later``."""
    a_earlier, b_earlier = earlier
    a_later, b_later = later
    return a_later * a_earlier, a_later * b_earlier + b_later


def linear_recurrence(
    a: jax.Array,
    b: jax.Array,
    h0: jax.Array,
    resets: jax.Array,
    h_init: jax.Array,
    impl: ScanImpl = "auto",
) -> jax.Array:
    """Solve ``h_t = a_t * h_{t-1} + b_t`` (element-wise) with episode resets.

    Where ``resets[t]`` is true, ``h_{t-1}`` is replaced by ``h_init`` before step ``t``. The reset
    is folded into each element, ``a_t <- 0`` and ``b_t <- b_t + a_t * h_init``, so that the binary
    operator stays the plain (associative) composition of affine maps.

    Args:
      a, b: ``[T, B, ...]`` coefficients (real or complex).
      h0: ``[B, ...]`` state before the first step.
      resets: ``[T, B]`` booleans.
      h_init: ``[B, ...]`` state to restart from (for example a learned initial state).
      impl: ``sequential`` (``lax.scan``), ``associative`` (``lax.associative_scan``) or ``auto``.

    Returns:
      ``[T, B, ...]`` states ``h_1 .. h_T``.
    """
    flags = _broadcast_flags(resets, a)
    b = jnp.where(flags, b + a * h_init[None], b)
    a = jnp.where(flags, jnp.zeros_like(a), a)
    if resolve_scan_impl(impl) == "sequential":

        def body(h, coefficients):
            a_t, b_t = coefficients
            h = a_t * h + b_t
            return h, h

        _, hs = jax.lax.scan(body, h0.astype(b.dtype), (a, b))
        return hs
    a_cum, b_cum = jax.lax.associative_scan(_compose, (a, b), axis=0)
    return a_cum * h0[None] + b_cum


def scan_steps(
    step: Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array]],
    carry: Any,
    xs: Any,
    resets: jax.Array,
) -> tuple[Any, Any]:
    """Run a backbone's ``step(carry, x, reset)`` over ``[T, B, ...]`` inputs with ``lax.scan``."""

    def body(carry, inputs):
        x, reset = inputs
        return step(carry, x, reset)

    return jax.lax.scan(body, carry, (xs, resets))
