"""Event encoder: one embedding per environment step from that step's raw event stream.

Glossary: ``M`` streams (every leading index flattened, e.g. ``T * B``), ``N`` rows of a padded
stream (``max_events``), ``F`` per-event features (``EVENT_FEATURES``), ``H`` backbone width,
``E`` embedding size (``units``).

An event-stream observation is ``[N, 4]`` rows ``(x, y, t, p)`` (``t`` seconds since the step
began, ``p`` +-1), zero-padded past its scalar ``count`` (the event camera's ``events``
representation). Each step's stream runs through a sequence backbone started afresh (EventS5 by
default: every event is integrated over its own interval since the previous event); the embedding is
the backbone's output at the last real event (``readout: last``) or its mean over the real events
(``mean``). An event's pixel enters as two scalar coordinates or, with ``position: embedding``, as
a learned vector per pixel and polarity (as Event-SSM embeds events). Backbones are causal, so
outputs before ``count`` never see the padding: the embedding equals the backbone run on the
unpadded stream. Chunks of ``chunk_size`` rows past the largest count in the batch are skipped (``lax.cond``), so a batch costs what its fullest stream holds, rounded up
to a chunk, not ``max_events``. Each computed chunk is rematerialised in the backward pass
(``jax.checkpoint``): without it the gradient still paid for every chunk (64 events in 1024 rows
trained at 6.9k events/s, against 72k with it and 95k for 64 rows; 2-core CPU).

The world model reconstructs a cheap summary of the stream instead of the events: the per-polarity
count frame ``[H, W, 2]`` (``count_frame``), in symlog space.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from world_models.backbones import BACKBONES
from world_models.backbones.event_s5 import pool_events
from world_models.distributions import symlog

EVENT_FEATURES = 5  # x, y in [-1, 1]; polarity; time in the step in [0, 1]; symlog of the interval
READOUTS = ("last", "mean")
POSITIONS = ("coordinates", "embedding")


class EventStream(NamedTuple):
    """What the encoder must know of an event-stream observation key.

    ``max_events`` rows ``(x, y, t, p)``; ``count_key`` the observation key of its fill count;
    ``width``, ``height`` the sensor size in pixels; ``duration`` the seconds one step spans.
    """

    max_events: int
    count_key: str
    width: int
    height: int
    duration: float


def valid_mask(count: jax.Array, max_events: int) -> jax.Array:
    """``count [...]`` -> ``[..., N]`` booleans, true for the rows before ``count``."""
    return jnp.arange(max_events) < count[..., None]


def event_features(
    events: jax.Array, count: jax.Array, stream: EventStream, time_scale: float
) -> tuple[jax.Array, jax.Array]:
    """Per-event inputs and intervals of padded streams.

    Args:
      events: ``[..., N, 4]`` rows ``(x, y, t, p)``, time-sorted within each stream.
      count: ``[...]`` rows filled.
      stream: sizes used to normalise positions and times.
      time_scale: intervals are given in units of ``duration / time_scale``.

    Returns:
      ``features [..., N, F]`` (x, y scaled to [-1, 1], p, t / duration, symlog of the scaled
      interval) and ``dt [..., N]``: the scaled time since the previous event of the stream (the
      first event's since the step began; causal). Both are zero past ``count``.
    """
    chex.assert_axis_dimension(events, -1, 4)
    x, y, t, polarity = (events[..., column] for column in range(4))
    previous = jnp.concatenate([jnp.zeros_like(t[..., :1]), t[..., :-1]], axis=-1)
    valid = valid_mask(count, events.shape[-2])
    dt = jnp.where(valid, jnp.maximum(t - previous, 0.0) * (time_scale / stream.duration), 0.0)
    features = jnp.stack(
        [
            2.0 * x / max(stream.width - 1, 1) - 1.0,
            2.0 * y / max(stream.height - 1, 1) - 1.0,
            polarity,
            t / stream.duration,
            symlog(dt),
        ],
        axis=-1,
    )
    return jnp.where(valid[..., None], features, 0.0), dt


def pixel_index(events: jax.Array, stream: EventStream) -> jax.Array:
    """``events [..., N, 4]`` -> ``[..., N]`` int32: ``(y * W + x) * 2`` plus 1 for OFF events, the
    flat index of each event's pixel and polarity in an ``[H, W, 2]`` frame."""
    x = jnp.clip(events[..., 0].astype(jnp.int32), 0, stream.width - 1)
    y = jnp.clip(events[..., 1].astype(jnp.int32), 0, stream.height - 1)
    return (y * stream.width + x) * 2 + (events[..., 3] < 0)


def count_frame(events: jax.Array, count: jax.Array, stream: EventStream) -> jax.Array:
    """Per-pixel event counts ``[..., H, W, 2]`` (channel 0 ON, 1 OFF) of the rows before ``count``:
    what ``envs.event_camera.events_to_frame`` gives, unsaturated and float32."""
    lead, rows = events.shape[:-2], events.shape[-2]
    flat_events = events.reshape((-1, rows, 4))
    valid = valid_mask(count.reshape(-1), rows).astype(jnp.float32)
    index = pixel_index(flat_events, stream)
    size = stream.height * stream.width * 2
    frames = jax.vmap(lambda i, w: jnp.zeros(size, jnp.float32).at[i].add(w))(index, valid)
    return frames.reshape(lead + (stream.height, stream.width, 2))


class EventEncoder(nn.Module):
    """Embeds each step's event stream: ``events [..., N, 4]``, ``count [...]`` -> ``[..., E]``.

    Attributes:
      stream: the observation's sizes (``EventStream``).
      backbone: a name in ``world_models.backbones.BACKBONES``; time-aware ones (``event_s5``) get
        each event's interval as ``dt``, the others see it only as a feature.
      backbones: constructor arguments besides ``features`` by backbone name; the chosen
        ``backbone``'s entry is used (so a config can switch backbones with one key).
      features: H, the backbone width. units: E, the embedding size.
      readout: ``last`` (the output at the last real event) or ``mean`` (over the real events; with
        ``pool_stride`` > 1, over the second backbone's outputs).
      chunk_size: rows per chunk; chunks past the batch's largest count are skipped.
      time_scale: a step's duration in backbone time units (Delta is initialised in [1e-3, 1e-1]).
      pool_stride: 1, or S > 1 for long streams: a second backbone of the same kind reads the first
        one's outputs at every S-th real event (``pool_events``, ``last``, intervals summed), so it
        runs over ``ceil(count / S)`` elements, as Event-SSM pools between layers.
      position: how an event's pixel enters the backbone. ``coordinates``: x and y as two scalar
        features, so the backbone's linear state can only sum them; ``embedding``: a learned vector
        per pixel and polarity (Event-SSM's input), added to the projected features, so the state
        becomes a learned projection of where events fell (``height * width * 2 * features`` parameters).
    """

    stream: EventStream
    backbone: str = "event_s5"
    backbones: Mapping[str, Mapping[str, Any]] | None = None
    features: int = 64
    units: int = 256
    readout: str = "last"
    chunk_size: int = 64
    time_scale: float = 100.0
    pool_stride: int = 1
    position: str = "coordinates"

    def setup(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"event encoder backbone must be one of {sorted(BACKBONES)}, got {self.backbone!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"event encoder readout must be one of {READOUTS}, got {self.readout!r}")
        if self.chunk_size < 1:
            raise ValueError(f"event encoder chunk_size must be positive, got {self.chunk_size}")
        if self.pool_stride < 1:
            raise ValueError(f"event encoder pool_stride must be a positive int, got {self.pool_stride}")
        if self.position not in POSITIONS:
            raise ValueError(f"event encoder position must be one of {POSITIONS}, got {self.position!r}")
        if self.position == "embedding":
            self.pixel_embedding = nn.Embed(self.stream.height * self.stream.width * 2, self.features)
            self.event_projection = nn.Dense(self.features)
        kwargs = dict((self.backbones or {}).get(self.backbone, {}))
        self.core = BACKBONES[self.backbone](features=self.features, **kwargs)
        if self.pool_stride > 1:
            self.pooled_core = BACKBONES[self.backbone](features=self.features, **kwargs)
        # The embedding of a step without events: no backbone output exists to read.
        self.empty = self.param("empty", nn.initializers.zeros, (self.features,))
        self.head = nn.Dense(self.units)
        self.norm = nn.LayerNorm(epsilon=1e-3)

    def run_core(self, xs: jax.Array, dt: jax.Array, pooled: bool = False) -> jax.Array:
        """The backbone (``pooled``: the second one, after pooling) over streams from its initial
        state: ``xs [N, M, F]``, ``dt [N, M]`` -> ``ys [N, M, H]`` (time-major, one independent
        stream per column)."""
        core = self.pooled_core if pooled else self.core
        carry = core.initial_state(xs.shape[1])
        resets = jnp.zeros(dt.shape, bool)
        if "dt" in inspect.signature(core.scan).parameters:
            return core.scan(carry, xs, resets, dt)[1]
        return core.scan(carry, xs, resets)[1]

    def backbone_inputs(self, features: jax.Array, index: jax.Array) -> jax.Array:
        """The first backbone's inputs ``[..., F or H]`` of events' ``features [..., F]`` and pixel
        ``index [...]`` (``pixel_index``): the features themselves, or with ``position: embedding``
        their projection plus the learned vector of the event's pixel and polarity. Computed chunk by
        chunk, so rows past the batch's largest count cost nothing; padding rows get some input, but
        only outputs before the count are read and the backbone is causal."""
        if self.position == "embedding":
            return self.event_projection(features) + self.pixel_embedding(index)
        return features

    def project(self, pooled: jax.Array) -> jax.Array:
        """Backbone readout ``[..., H]`` -> embedding ``[..., E]`` (Dense with bias, LayerNorm, SiLU)."""
        return jax.nn.silu(self.norm(self.head(pooled)))

    def __call__(self, events: jax.Array, count: jax.Array) -> jax.Array:
        lead, rows = events.shape[:-2], events.shape[-2]
        count = count.reshape(-1).astype(jnp.int32)
        flat_events = events.reshape((-1, rows, 4))
        features, dt = event_features(flat_events, count, self.stream, self.time_scale)
        index = pixel_index(flat_events, self.stream)
        ys = self._chunked(jnp.swapaxes(features, 0, 1), dt.T, jnp.max(count), index=index.T)  # [N, M, H]
        if self.pool_stride > 1:  # the second backbone reads every pool_stride-th real output
            ys, pooled_dt = pool_events(ys, dt.T, self.pool_stride, "last", count)
            count = -(-count // self.pool_stride)
            ys = self._chunked(ys, pooled_dt, jnp.max(count), pooled=True)  # [W, M, H]
        rows = ys.shape[0]
        if self.readout == "last":
            last = jnp.clip(count - 1, 0, rows - 1)
            pooled = jnp.take_along_axis(ys, last[None, :, None], axis=0)[0]
        else:
            valid = valid_mask(count, rows).T[..., None]
            pooled = jnp.sum(ys * valid, 0) / jnp.maximum(count, 1)[:, None]
        pooled = jnp.where((count > 0)[:, None], pooled, self.empty)
        return self.project(pooled).reshape(lead + (self.units,))

    def _chunked(self, xs: jax.Array, dt: jax.Array, active: jax.Array, pooled: bool = False,
                 index: jax.Array | None = None) -> jax.Array:
        """``run_core`` chunk by chunk, the carry handed on; chunks from row ``active`` on are not
        computed (their outputs are zeros, never read), in the backward pass neither (the computed
        chunks are rematerialised there). ``xs [N, M, F]``, ``dt [N, M]``; for the first backbone
        ``index [N, M]``, each row's pixel index, and ``xs`` go through ``backbone_inputs`` per chunk."""
        core = self.pooled_core if pooled else self.core
        rows, streams = dt.shape
        chunk = min(self.chunk_size, rows)
        chunks = -(-rows // chunk)
        padding = chunks * chunk - rows
        pad = lambda array: jnp.concatenate([array, jnp.zeros((padding,) + array.shape[1:], array.dtype)])
        xs, dt = pad(xs), pad(dt)
        index = pad(index) if index is not None else jnp.zeros((chunks * chunk, streams), jnp.int32)
        prepare = (lambda xs, index: xs) if pooled else self.backbone_inputs
        resets = jnp.zeros((chunk, streams), bool)
        time_aware = "dt" in inspect.signature(core.scan).parameters
        if self.is_initializing():  # create every parameter before lax.scan traces
            self.run_core(prepare(xs[:1], index[:1]), dt[:1], pooled)

        def run(carry, chunk_xs, chunk_dt, chunk_index):
            chunk_xs = prepare(chunk_xs, chunk_index)
            if time_aware:
                return core.scan(carry, chunk_xs, resets, chunk_dt)
            return core.scan(carry, chunk_xs, resets)

        def body(carry, inputs):
            number, chunk_xs, chunk_dt, chunk_index = inputs
            skip = lambda carry: (carry, jnp.zeros((chunk, streams, self.features), chunk_xs.dtype))
            return jax.lax.cond(number * chunk < active, jax.checkpoint(run), lambda c, *_: skip(c), carry, chunk_xs,
                                chunk_dt, chunk_index)

        split = lambda array: array.reshape((chunks, chunk) + array.shape[1:])
        carry = core.initial_state(streams)
        _, ys = jax.lax.scan(body, carry, (jnp.arange(chunks), split(xs), split(dt), split(index)))
        return ys.reshape((chunks * chunk, streams, self.features))[:rows]
