"""What the agent can observe and do: routing of observation keys and conversion of actions.

Observations become dicts. A ``Box`` space is the single key ``obs``; a ``Dict`` of ``Box``es keeps
its keys. Image-like entries (``H x W x C`` uint8) go to the CNN encoder, 1-D entries (and scalars,
seen as ``(1,)``) to the MLP encoder; ``cnn_keys``/``mlp_keys`` regular expressions narrow that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

SINGLE_KEY = "obs"


class SpaceError(ValueError):
    """An observation or action space the agent cannot handle; the message names it."""


@dataclass(frozen=True)
class ObsLayout:
    """Which observation key goes to which encoder, and its per-step shape and dtype."""

    mlp_shapes: dict[str, tuple[int, ...]]
    cnn_shapes: dict[str, tuple[int, int, int]]
    dtypes: dict[str, np.dtype]
    is_dict: bool

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.mlp_shapes) + tuple(self.cnn_shapes)

    def to_dict(self, obs) -> dict[str, np.ndarray]:
        """A batched observation of a vector env (leading axis N) -> dict of the routed keys."""
        obs = dict(obs) if self.is_dict else {SINGLE_KEY: obs}
        out = {}
        for key, shape in self.mlp_shapes.items():
            value = np.asarray(obs[key], np.float32)
            out[key] = value.reshape(value.shape[:1] + shape)
        for key in self.cnn_shapes:
            out[key] = np.asarray(obs[key], np.uint8)
        return out


def _is_image(space: gym.spaces.Box) -> bool:
    return len(space.shape) == 3 and space.dtype == np.uint8


def _is_vector(space: gym.spaces.Box) -> bool:
    return len(space.shape) <= 1


def observation_layout(
    space: gym.Space, mlp_keys: str = ".*", cnn_keys: str = ".*"
) -> ObsLayout:
    """Route every entry of ``space`` to the MLP or the CNN encoder.

    Raises:
      SpaceError: for a space that is neither ``Box`` nor ``Dict`` of ``Box``, an entry that fits
        neither encoder, or when nothing at all is routed.
    """
    if isinstance(space, gym.spaces.Dict):
        entries, is_dict = dict(space.spaces), True
    elif isinstance(space, gym.spaces.Box):
        entries, is_dict = {SINGLE_KEY: space}, False
    else:
        raise SpaceError(
            f"observation space {space} is not supported: use a Box, or a Dict of Boxes "
            "(wrap discrete observations, e.g. with gymnasium.wrappers.FlattenObservation after one-hot)"
        )
    mlp_shapes, cnn_shapes, dtypes = {}, {}, {}
    for key, entry in entries.items():
        if not isinstance(entry, gym.spaces.Box):
            raise SpaceError(f"observation entry {key!r} has space {entry}; only Box entries are supported")
        if _is_image(entry) and re.fullmatch(cnn_keys, key):
            cnn_shapes[key] = tuple(entry.shape)
            dtypes[key] = np.dtype(np.uint8)
        elif _is_vector(entry) and re.fullmatch(mlp_keys, key):
            mlp_shapes[key] = tuple(entry.shape) or (1,)
            dtypes[key] = np.dtype(np.float32)
        elif _is_image(entry) or _is_vector(entry):
            continue  # excluded by the user's key patterns
        else:
            raise SpaceError(
                f"observation entry {key!r} with space {entry} fits neither encoder: images must be "
                "uint8 H x W x C (CNN), vectors 1-D (MLP). Exclude it with encoder.mlp_keys / "
                "encoder.cnn_keys, or reshape it with a wrapper."
            )
    if not mlp_shapes and not cnn_shapes:
        raise SpaceError(
            f"no observation entry of {space} matches encoder.mlp_keys={mlp_keys!r} or "
            f"encoder.cnn_keys={cnn_keys!r}"
        )
    if len({shape[:2] for shape in cnn_shapes.values()}) > 1:
        raise SpaceError(f"image entries must share height and width, got {cnn_shapes}")
    return ObsLayout(mlp_shapes, cnn_shapes, dtypes, is_dict)


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
