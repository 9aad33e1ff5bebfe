"""EventS5: S5 run event by event, each element integrated over its own time interval (Schöne et
al. 2024, "Scalable event-by-event processing of neuromorphic sensory signals with deep SSMs").

Dimensions (sequences are time-major):
  T elements (events or frames), B batch, D input features, H = ``features``, P' stored state size.

``dt[t]`` is the time since the previous element of the stream (causal, never the time to the next
one). Layer by layer the state decays over that interval, ``Lambda_bar_t = exp(Lambda Delta dt_t)``,
with Delta the learned step. ``discretization`` chooses the input gain:

- ``zoh`` (default): zero-order hold with step ``Delta dt_t``,
  ``gain = (Lambda_bar_t - 1) / Lambda``, so ``dt = 1`` everywhere is exactly S5 with ZOH;
- ``bilinear``: the bilinear transform with step ``Delta dt_t``;
- ``async``: the paper's event variant, ``gain = (exp(Lambda Delta) - 1) / Lambda`` (an event is an
  impulse, its weight does not grow with the silence before it);
- ``dirac``: unit gain.

The layers, parameters and maths are those of ``s5.py`` and ``s5_init.py``; this file adds the
interval argument, chunked processing of long streams, and event pooling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from world_models.backbones.s5 import S5, Carry

POOLING_MODES = ("last", "mean")


class EventS5(S5):
    """S5 whose every layer discretises each element with its own interval ``dt``.

    Same attributes, parameters and carry as ``S5`` (so S5 parameters load unchanged);
    ``discretization`` may also be ``async`` or ``dirac``.
    """

    discretizations = ("zoh", "bilinear", "async", "dirac")  # not a field

    def step(
        self,
        carry: Carry,
        x: jax.Array,
        reset: jax.Array,
        dt: jax.Array | None = None,
    ) -> tuple[Carry, jax.Array]:
        """One element: ``x [B, D]``, ``reset [B]``, ``dt [B]`` (None: ones)
        -> ``(carry, y [B, H])``."""
        check_intervals(dt, reset)
        return self._step(carry, x, reset, dt)

    def scan(
        self,
        carry: Carry,
        xs: jax.Array,
        resets: jax.Array,
        dt: jax.Array | None = None,
        return_carries: bool = False,
    ) -> tuple[Carry, jax.Array]:
        """A stream: ``xs [T, B, D]``, ``resets [T, B]``, ``dt [T, B]`` (None: ones)
        -> ``(carry, ys [T, B, H])``; ``return_carries`` as in ``S5.scan``."""
        check_intervals(dt, resets)
        return self._scan(carry, xs, resets, dt, return_carries)

    def scan_chunked(
        self,
        carry: Carry,
        xs: jax.Array,
        resets: jax.Array,
        dt: jax.Array | None = None,
        chunk_size: int = 256,
        remat: bool = False,
    ) -> tuple[Carry, jax.Array]:
        """``scan`` over a long stream in chunks of ``chunk_size`` elements, the carry handed from
        chunk to chunk; equal to one ``scan``. Shapes as in ``scan``.

        Only one chunk's intermediates (every layer's ``[chunk, B, P']`` states and activations)
        are live at a time; ``remat`` recomputes them in the backward pass, so training memory is
        also bounded by one chunk plus the carries. A trailing partial chunk runs on its own. For a
        stream that does not fit on the device at all, call ``scan`` chunk by chunk from the host,
        passing the carry on: that is the same computation.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        check_intervals(dt, resets)
        if dt is None:  # chunked alongside xs; multiplying Delta by 1 is exact
            dt = jnp.ones(resets.shape, xs.dtype)
        if self.is_initializing():  # create every parameter before lax.scan traces
            self._step(carry, xs[0], resets[0], dt[0])

        def run_chunk(carry, chunk):
            chunk_xs, chunk_resets, chunk_dt = chunk
            return self._scan(carry, chunk_xs, chunk_resets, chunk_dt, False)

        body = jax.checkpoint(run_chunk) if remat else run_chunk
        length, whole = xs.shape[0], xs.shape[0] // chunk_size * chunk_size
        outputs = []
        if whole:

            def split(array: jax.Array) -> jax.Array:
                return array[:whole].reshape((whole // chunk_size, chunk_size) + array.shape[1:])

            carry, ys = jax.lax.scan(body, carry, (split(xs), split(resets), split(dt)))
            outputs.append(ys.reshape((whole,) + ys.shape[2:]))
        if whole < length:
            carry, ys = body(carry, (xs[whole:], resets[whole:], dt[whole:]))
            outputs.append(ys)
        return carry, jnp.concatenate(outputs, axis=0)

    def __call__(self, carry, xs, resets, dt=None, return_carries: bool = False):
        return self.scan(carry, xs, resets, dt, return_carries)


def check_intervals(dt: jax.Array | None, resets: jax.Array) -> None:
    """Intervals must be ``None`` or shaped like the resets, ``[T, B]`` (or ``[B]`` for a step)."""
    if dt is not None and dt.shape != resets.shape:
        raise ValueError(f"dt must have the shape of resets {resets.shape}, got {dt.shape}")


def pool_events(
    xs: jax.Array, dt: jax.Array, stride: int, mode: str = "last", count: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Subsample a stream by ``stride`` while preserving its time: ``xs [T, B, ...]``, ``dt [T, B]``
    -> ``([W, B, ...], [W, B])`` with ``W = ceil(T / stride)`` windows of ``stride`` elements.

    Window ``w`` covers elements ``w*stride .. min((w+1)*stride, T) - 1`` (the last window may be
    shorter). Its interval is the sum of the window's intervals, so the pooled intervals add up to
    the same total time and each remains the time since the previous kept element (causal).

    - ``last``: keep the window's last element, ``xs[min((w+1)*stride, T) - 1]``; the other
      elements' features are dropped. Pool an SSM layer's *outputs* to keep their information: the
      output at the last element has already integrated the whole window. (Event-SSM's reference
      keeps the first element of each window; the last is the one whose interval sum is causal.)
    - ``mean``: the mean of the window's features.

    ``count [B]`` (optional) marks each column's rows from ``count`` on as padding: a window then
    ends at the column's last real row, its interval sums real rows only, and windows from
    ``ceil(count / stride)`` on are padding too (whatever they hold is not to be read). Without it
    every row is real.

    For resets of the same stream see ``pool_resets``.
    """
    if stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride}")
    if mode not in POOLING_MODES:
        raise ValueError(f"mode must be one of {POOLING_MODES}, got {mode!r}")
    if dt.shape != xs.shape[:2]:
        raise ValueError(f"dt must be [T, B] = {xs.shape[:2]}, got {dt.shape}")
    length = xs.shape[0]
    count = jnp.full(xs.shape[1:2], length) if count is None else jnp.minimum(count, length)
    valid = jnp.arange(length)[:, None] < count[None, :]  # [T, B]
    pooled_dt = window_sum(jnp.where(valid, dt, 0), stride)
    ends = jnp.arange(1, pooled_dt.shape[0] + 1)[:, None] * stride  # [W, 1]: one past each window
    per_row = lambda array: array.reshape(array.shape + (1,) * (xs.ndim - 2))  # [W or T, B] against xs
    if mode == "last":
        kept = jnp.clip(jnp.minimum(ends, count[None, :]) - 1, 0, length - 1)  # [W, B]
        return jnp.take_along_axis(xs, per_row(kept), axis=0), pooled_dt
    real = jnp.clip(jnp.minimum(ends, count[None, :]) - (ends - stride), 1, stride)  # real rows per window
    return window_sum(xs * per_row(valid).astype(xs.dtype), stride) / per_row(real).astype(xs.dtype), pooled_dt


def pool_resets(resets: jax.Array, stride: int) -> jax.Array:
    """``[T, B]`` -> ``[ceil(T / stride), B]``: a window restarts if any of its elements does.

    With ``pool_events(mode="last")`` the kept element then starts from the initial state; the
    intervals before the reset inside its window only decay that initial state.
    """
    return window_sum(resets.astype(jnp.int32), stride) > 0


def window_sum(values: jax.Array, stride: int) -> jax.Array:
    """Sum over consecutive windows of ``stride`` along axis 0, the last window zero-padded:
    ``[T, ...]`` -> ``[ceil(T / stride), ...]``."""
    windows = -(-values.shape[0] // stride)
    padding = jnp.zeros((windows * stride - values.shape[0],) + values.shape[1:], values.dtype)
    padded = jnp.concatenate([values, padding], axis=0)
    return padded.reshape((windows, stride) + values.shape[1:]).sum(axis=1)
