"""What the agent can observe and do: routing of observation keys and conversion of actions.

Observations become dicts. A ``Box`` space is the single key ``obs``; a ``Dict`` of ``Box``es keeps
its keys. Image-like entries (``H x W x C``, uint8 or float, such as an event camera's voxel grid)
go to the CNN encoder, 1-D entries (and scalars, seen as ``(1,)``) to the MLP encoder;
``cnn_keys``/``mlp_keys`` regular expressions narrow that; the decoder's own patterns (default: the
encoder's) choose what the world model reconstructs, so a key can be a reconstruction target only
(an event camera's integrated image beside the raw events it encodes) or an input only. An event stream, a float ``[N, 4]``
entry of rows ``(x, y, t, p)`` beside a scalar integer entry ``count`` (the event camera's
``events`` representation), goes to the event encoder (``world_models.event_encoder``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from world_models.event_encoder import EventStream

SINGLE_KEY = "obs"
EVENT_COUNT_KEY = "count"  # the entry that says how many rows of an event stream are filled


class SpaceError(ValueError):
    """An observation or action space the agent cannot handle; the message names it."""


@dataclass(frozen=True)
class ObsLayout:
    """Which observation key goes to which encoder, and its per-step shape and dtype.

    ``event_streams`` maps an event-stream key to its sizes and count key; ``shapes`` holds every
    routed key's per-step shape (event streams ``(N, 4)``, their counts ``()``). ``decoder_only``
    keys are reconstruction targets the encoder does not read; ``encoder_only`` keys (an event
    stream's key: its count frame) are read and not reconstructed.
    """

    mlp_shapes: dict[str, tuple[int, ...]]
    cnn_shapes: dict[str, tuple[int, int, int]]
    dtypes: dict[str, np.dtype]
    is_dict: bool
    event_streams: dict[str, EventStream] = field(default_factory=dict)
    # Float images of 2 non-negative channels: ON/OFF event count frames (only how they are displayed
    # depends on it; a voxel grid of time bins is signed).
    count_frames: frozenset[str] = frozenset()
    decoder_only: frozenset[str] = frozenset()
    encoder_only: frozenset[str] = frozenset()

    @property
    def decoded_images(self) -> tuple[str, ...]:
        """The image keys the world model reconstructs."""
        return tuple(key for key in self.cnn_shapes if key not in self.encoder_only)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {**self.mlp_shapes, **self.cnn_shapes}
        for key, stream in self.event_streams.items():
            shapes[key], shapes[stream.count_key] = (stream.max_events, 4), ()
        return shapes

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.shapes)

    def to_dict(self, obs) -> dict[str, np.ndarray]:
        """A batched observation of a vector env (leading axis N) -> dict of the routed keys."""
        obs = dict(obs) if self.is_dict else {SINGLE_KEY: obs}
        out = {}
        for key, shape in self.mlp_shapes.items():
            value = np.asarray(obs[key], np.float32)
            out[key] = value.reshape(value.shape[:1] + shape)
        for key in self.cnn_shapes:
            out[key] = np.asarray(obs[key], self.dtypes[key])
        for key, stream in self.event_streams.items():
            out[key] = np.asarray(obs[key], np.float32)
            out[stream.count_key] = np.asarray(obs[stream.count_key], np.int32).reshape(-1)
        return out


def _is_image(space: gym.spaces.Box) -> bool:
    return len(space.shape) == 3 and (space.dtype == np.uint8 or np.issubdtype(space.dtype, np.floating))


def _event_stream(key: str, entries: dict[str, gym.Space]) -> EventStream | None:
    """The event stream ``entries[key]`` describes, if it is one: a float ``[N, 4]`` Box of rows
    ``(x, y, t, p)`` whose upper bounds give the sensor size and step duration, beside a scalar
    integer Box ``count``."""
    space, count = entries[key], entries.get(EVENT_COUNT_KEY)
    if not (isinstance(space, gym.spaces.Box) and isinstance(count, gym.spaces.Box)):
        return None
    if len(space.shape) != 2 or space.shape[1] != 4 or not np.issubdtype(space.dtype, np.floating):
        return None
    if count.shape not in ((), (1,)) or not np.issubdtype(count.dtype, np.integer):
        return None
    width, height, duration = (float(np.max(space.high[:, column])) for column in range(3))
    if not all(np.isfinite((width, height, duration))) or duration <= 0:
        return None
    return EventStream(int(space.shape[0]), EVENT_COUNT_KEY, int(width) + 1, int(height) + 1, duration)


def _is_vector(space: gym.spaces.Box) -> bool:
    return len(space.shape) <= 1


def observation_layout(
    space: gym.Space, mlp_keys: str = ".*", cnn_keys: str = ".*",
    decoder_mlp_keys: str | None = None, decoder_cnn_keys: str | None = None,
) -> ObsLayout:
    """Route every entry of ``space`` to the MLP or the CNN encoder and decoder.

    An entry matching the encoder's pattern (``mlp_keys``, ``cnn_keys``) is read, one matching the
    decoder's (``decoder_mlp_keys``, ``decoder_cnn_keys``; None: the encoder's) is reconstructed;
    an event stream is always read, and its count frame reconstructed unless ``decoder_cnn_keys``
    is given and does not match its key. Entries matching neither are dropped.

    Raises:
      SpaceError: for a space that is neither ``Box`` nor ``Dict`` of ``Box``, an entry that fits
        neither encoder, or when nothing at all is encoded.
    """
    stream_patterns = decoder_cnn_keys  # an event stream is read whatever cnn_keys say
    decoder_mlp_keys = mlp_keys if decoder_mlp_keys is None else decoder_mlp_keys
    decoder_cnn_keys = cnn_keys if decoder_cnn_keys is None else decoder_cnn_keys
    encoded = lambda entry, key: re.fullmatch(cnn_keys if _is_image(entry) else mlp_keys, key) is not None
    decoded = lambda entry, key: re.fullmatch(decoder_cnn_keys if _is_image(entry) else decoder_mlp_keys, key) is not None
    entries, is_dict = _entries(space)
    mlp_shapes, cnn_shapes, dtypes, event_streams = {}, {}, {}, {}
    decoder_only, encoder_only = set(), set()
    streams = {key: _event_stream(key, entries) for key in entries}
    counts = {stream.count_key for stream in streams.values() if stream}
    for key, entry in entries.items():
        if not isinstance(entry, gym.spaces.Box):
            raise SpaceError(f"observation entry {key!r} has space {entry}; only Box entries are supported")
        if streams[key]:
            event_streams[key] = streams[key]
            dtypes[key], dtypes[EVENT_COUNT_KEY] = np.dtype(np.float32), np.dtype(np.int32)
            if stream_patterns is not None and re.fullmatch(stream_patterns, key) is None:
                encoder_only.add(key)
        elif key in counts:
            continue  # read with its event stream
        elif (_is_image(entry) or _is_vector(entry)) and not (encoded(entry, key) or decoded(entry, key)):
            continue  # excluded by the user's key patterns
        elif _is_image(entry) or _is_vector(entry):
            if _is_image(entry):
                cnn_shapes[key] = tuple(entry.shape)
                dtypes[key] = np.dtype(np.uint8) if entry.dtype == np.uint8 else np.dtype(np.float32)
            else:
                mlp_shapes[key] = tuple(entry.shape) or (1,)
                dtypes[key] = np.dtype(np.float32)
            if not encoded(entry, key):
                decoder_only.add(key)
            elif not decoded(entry, key):
                encoder_only.add(key)
        else:
            raise SpaceError(
                f"observation entry {key!r} with space {entry} fits neither encoder: images must be "
                "H x W x C uint8 or float (CNN), vectors 1-D (MLP), event streams float [N, 4] beside "
                f"a scalar integer {EVENT_COUNT_KEY!r} (event encoder). Exclude it with "
                "encoder.mlp_keys / encoder.cnn_keys, or reshape it with a wrapper."
            )
    count_frames = frozenset(key for key, shape in cnn_shapes.items() if dtypes[key] != np.uint8 and shape[-1] == 2
                             and bool(np.all(entries[key].low >= 0)))
    layout = ObsLayout(mlp_shapes, cnn_shapes, dtypes, is_dict, event_streams, count_frames,
                       frozenset(decoder_only), frozenset(encoder_only))
    _check_routing(layout, space, mlp_keys, cnn_keys)
    return layout


def _entries(space: gym.Space) -> tuple[dict[str, gym.Space], bool]:
    """The entries of an observation space by key (a single ``Box`` under ``SINGLE_KEY``), and
    whether it is a ``Dict``."""
    if isinstance(space, gym.spaces.Dict):
        return dict(space.spaces), True
    if isinstance(space, gym.spaces.Box):
        return {SINGLE_KEY: space}, False
    raise SpaceError(
        f"observation space {space} is not supported: use a Box, or a Dict of Boxes "
        "(wrap discrete observations, e.g. with gymnasium.wrappers.FlattenObservation after one-hot)"
    )


def _check_routing(layout: ObsLayout, space: gym.Space, mlp_keys: str, cnn_keys: str) -> None:
    """At most one event stream, something encoded at all, and images of one height and width."""
    if len(layout.event_streams) > 1:
        raise SpaceError(f"at most one event stream per observation, got {sorted(layout.event_streams)}")
    read = set(layout.mlp_shapes) | set(layout.cnn_shapes) | set(layout.event_streams)
    if not read - layout.decoder_only:
        raise SpaceError(
            f"no observation entry of {space} matches encoder.mlp_keys={mlp_keys!r} or "
            f"encoder.cnn_keys={cnn_keys!r}"
        )
    if len({shape[:2] for shape in layout.cnn_shapes.values()}) > 1:
        raise SpaceError(f"image entries must share height and width, got {layout.cnn_shapes}")


@dataclass(frozen=True)
class ActionLayout:
    """Actions as the agent sees them: one-hot vectors or vectors in ``[-1, 1]``."""

    dim: int
    discrete: bool
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """Agent actions ``[N, A]`` -> environment actions ``[N]`` (ints) or ``[N, A]`` (rescaled)."""
        if self.discrete:
            return np.argmax(action, -1)
        action = np.clip(action, -1.0, 1.0)
        return (self.low + (action + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)

    def random(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        """Uniform random agent actions ``[batch, A]``."""
        if self.discrete:
            return np.eye(self.dim, dtype=np.float32)[rng.integers(0, self.dim, batch)]
        return rng.uniform(-1.0, 1.0, (batch, self.dim)).astype(np.float32)


def action_layout(space: gym.Space) -> ActionLayout:
    """Supported: ``Discrete`` and bounded 1-D ``Box`` spaces."""
    if isinstance(space, gym.spaces.Discrete):
        if space.start != 0:
            raise SpaceError(f"action space {space} must start at 0")
        return ActionLayout(int(space.n), True)
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) != 1:
            raise SpaceError(f"action space {space} must be 1-D; flatten it with a wrapper")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise SpaceError(f"action space {space} must be bounded (finite low and high)")
        return ActionLayout(int(space.shape[0]), False, space.low.astype(np.float32), space.high.astype(np.float32))
    raise SpaceError(
        f"action space {space} is not supported: use Discrete or a bounded 1-D Box "
        "(MultiDiscrete and Tuple spaces need a wrapper)"
    )


def replay_spec(obs_layout: ObsLayout, action_dim: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    """What replay stores per step: the observation entries, the previous action, reward and flags."""
    spec = {key: (shape, obs_layout.dtypes[key]) for key, shape in obs_layout.shapes.items()}
    spec.update(
        prev_action=((action_dim,), np.float32),
        reward=((), np.float32),
        is_first=((), bool),
        is_terminal=((), bool),
    )
    return spec
