"""The selective scan of Mamba (Gu & Dao 2023) as pure functions: whole-sequence and chunked.

Dimensions (time-major): T time, B batch, E inner channels, N state size, C ``chunk_size``.

The SSM is ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t`` and ``y_t = C_t h_t + D x_t``. Its
inputs (``SelectionTerms``) are all ``[T, B, E]`` or ``[T, B, N]``; only the discretised terms
and the states are ``[T, B, E, N]``. ``selective_scan`` builds those for the whole sequence at
once; ``chunked_selective_scan`` builds them one chunk of C steps at a time inside a
``lax.scan`` over chunks whose body is rematerialised (``jax.checkpoint``), so that neither the
forward nor the backward pass holds more than ``[C, B, E, N]`` of them (plus one ``[B, E, N]``
state per chunk, saved for the backward pass).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from world_models.backbones.scan import ScanImpl, linear_recurrence


class SelectionTerms(NamedTuple):
    """Input-dependent SSM terms over a sequence.

    ``dt`` (Delta, positive) and ``x``: ``[T, B, E]``; ``b_input`` and ``c_output``: ``[T, B, N]``.
    """

    dt: jax.Array
    x: jax.Array
    b_input: jax.Array
    c_output: jax.Array


def discretise(
    dt: jax.Array, x: jax.Array, b_input: jax.Array, a: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``decay = exp(dt A)`` and ``drive = dt x B``, both ``[..., E, N]``.

    Args: ``dt, x [..., E]``, ``b_input [..., N]``, ``a [E, N]`` (negative).
    """
    decay = jnp.exp(dt[..., None] * a)
    drive = (dt * x)[..., None] * b_input[..., None, :]
    return decay, drive


def ssm_output(states: jax.Array, c_output: jax.Array, x: jax.Array, d: jax.Array) -> jax.Array:
    """``C h + D x`` ``[..., E]`` from ``states [..., E, N]``, ``c_output [..., N]``, ``x [..., E]``
    and ``d [E]``."""
    return jnp.einsum("...en,...n->...e", states, c_output) + d * x


def selective_scan(
    terms: SelectionTerms,
    h0: jax.Array,
    resets: jax.Array,
    h_init: jax.Array,
    a: jax.Array,
    d: jax.Array,
    impl: ScanImpl = "auto",
) -> tuple[jax.Array, jax.Array]:
    """The whole sequence at once: ``(ys [T, B, E], states [T, B, E, N])``.

    Args:
      terms: ``SelectionTerms`` over ``T`` steps.
      h0: ``[B, E, N]`` state before the first step.
      resets: ``[T, B]``; where true, the state restarts from ``h_init [B, E, N]`` before the step.
      a: ``[E, N]``. d: ``[E]``. impl: ``scan_impl`` of ``linear_recurrence``.
    """
    decay, drive = discretise(terms.dt, terms.x, terms.b_input, a)
    states = linear_recurrence(decay, drive, h0, resets, h_init, impl)
    return ssm_output(states, terms.c_output, terms.x, d), states


def _pad_and_split(leaf: jax.Array, chunks: int, chunk_size: int) -> jax.Array:
    """``[T, ...]`` -> ``[chunks, chunk_size, ...]``, zeros (False) appended along time."""
    padding = chunks * chunk_size - leaf.shape[0]
    leaf = jnp.pad(leaf, [(0, padding)] + [(0, 0)] * (leaf.ndim - 1))
    return leaf.reshape((chunks, chunk_size) + leaf.shape[1:])


def chunked_selective_scan(
    terms: SelectionTerms,
    h0: jax.Array,
    resets: jax.Array,
    h_init: jax.Array,
    a: jax.Array,
    d: jax.Array,
    chunk_size: int,
    impl: ScanImpl = "auto",
    return_states: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """``selective_scan`` in chunks of ``chunk_size`` steps, equal to it up to rounding.

    ``chunk_size`` 0 or at least T runs ``selective_scan`` on the whole sequence. Otherwise T is
    padded to whole chunks with steps of ``dt = 0`` and no reset: their decay ``exp(0 A)`` is 1
    and their drive 0 exactly (for finite A), so the state passes through them unchanged and the
    last state is that of step T; their outputs are dropped. A reset inside a chunk is folded into
    its step by ``linear_recurrence`` as in the whole-sequence scan, so chunk boundaries need no
    special case.

    Args: as ``selective_scan``, and ``return_states``: whether to return every step's state.

    Returns:
      ``(ys [T, B, E], states)``: ``states [T, B, E, N]`` with ``return_states`` (this output
      materialises, one ``[B, E, N]`` per step), else only the last state ``[B, E, N]``.
    """
    length = resets.shape[0]
    if chunk_size <= 0 or chunk_size >= length:
        ys, states = selective_scan(terms, h0, resets, h_init, a, d, impl)
        return ys, states if return_states else states[-1]
    chunks = -(-length // chunk_size)
    split = lambda leaf: _pad_and_split(leaf, chunks, chunk_size)
    dtype = jnp.result_type(h0, h_init, a, *terms)

    @jax.checkpoint  # the backward pass recomputes one chunk's [C, B, E, N] terms at a time
    def chunk_step(state, inputs):
        chunk_terms, chunk_resets = inputs
        ys, states = selective_scan(chunk_terms, state, chunk_resets, h_init, a, d, impl)
        return states[-1].astype(dtype), (ys, states if return_states else None)

    last, (ys, states) = jax.lax.scan(
        chunk_step, h0.astype(dtype), (jax.tree.map(split, terms), split(resets))
    )
    merge = lambda leaf: leaf.reshape((-1,) + leaf.shape[2:])[:length]
    return merge(ys), merge(states) if return_states else last
