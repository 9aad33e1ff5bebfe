"""Gymnasium wrappers that Gymnasium itself lacks, plus the one place that applies bounded rescaling.

Reused from Gymnasium rather than rewritten: `gymnasium.wrappers.TimeLimit`,
`gymnasium.wrappers.RescaleAction` and `gymnasium.wrappers.RecordEpisodeStatistics`.
Written here: `PixelObservation` (Gymnasium's `ResizeObservation` needs OpenCV, which is not a
dependency; Pillow is) and `ActionRepeat` (Gymnasium only has the Atari-specific
`MaxAndSkipObservation`, which max-pools frames) and `SelectObservation` (minigrid's
`ImgObsWrapper` does the same for one key but lacks `RecordConstructorArgs`, so a wrapped env's
``spec.make()`` fails) and `OneHotGrid` (minigrid's `OneHotPartialObsWrapper` keeps a uint8 image,
which would be read as pixels) and `GoalSuccess` (``info["success"]`` for goal tasks that say it
only by their reward, such as MiniGrid) and `KeepSourceObservation` (the env's own observation in
``info`` once a camera replaces it, for probes).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium
import numpy as np
from gymnasium.wrappers import RescaleAction
from PIL import Image

__all__ = [
    "ActionRepeat",
    "KeepSourceObservation",
    "PixelObservation",
    "SelectObservation",
    "is_bounded_box",
    "rescale_to_unit",
    "resize_frame",
]


def resize_frame(frame: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 ``(H, W, 3)`` (or RGBA) render to ``image_size = (height, width)`` with Pillow."""
    frame = np.asarray(frame)[..., :3]
    height, width = image_size
    if frame.shape[:2] == (height, width):
        return np.ascontiguousarray(frame, dtype=np.uint8)
    image = Image.fromarray(frame.astype(np.uint8, copy=False))
    # Pillow's bilinear filter widens its support when shrinking, so downsampling is antialiased.
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


class PixelObservation(
    gymnasium.ObservationWrapper[np.ndarray, Any, Any], gymnasium.utils.RecordConstructorArgs
):
    """Replace observations by the ``rgb_array`` render, resized to ``(H, W)``.

    Observation: uint8 ``(H, W, 3)``, or ``(H, W, 1)`` with ``grayscale`` (ITU-R 601 luma, Pillow "L").
    """

    def __init__(self, env: gymnasium.Env, image_size: tuple[int, int] = (64, 64), grayscale: bool = False):
        if env.render_mode != "rgb_array":
            raise ValueError(
                f"PixelObservation needs render_mode='rgb_array', the env has {env.render_mode!r}"
            )
        gymnasium.utils.RecordConstructorArgs.__init__(self, image_size=tuple(image_size), grayscale=grayscale)
        gymnasium.ObservationWrapper.__init__(self, env)
        self.image_size = tuple(int(side) for side in image_size)
        self.grayscale = grayscale
        channels = 1 if grayscale else 3
        self.observation_space = gymnasium.spaces.Box(0, 255, (*self.image_size, channels), np.uint8)

    def observation(self, observation: Any) -> np.ndarray:
        frame = resize_frame(self.env.render(), self.image_size)
        if self.grayscale:
            frame = np.asarray(Image.fromarray(frame).convert("L"), dtype=np.uint8)[..., None]
        return frame


class ActionRepeat(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Repeat each action ``repeat`` times, summing rewards; stop early at termination or truncation.

    The returned observation and info are those of the last underlying step.
    """

    def __init__(self, env: gymnasium.Env, repeat: int):
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        gymnasium.utils.RecordConstructorArgs.__init__(self, repeat=repeat)
        gymnasium.Wrapper.__init__(self, env)
        self.repeat = repeat

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        total_reward = 0.0
        for _ in range(self.repeat):
            observation, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if terminated or truncated:
                break
        return observation, total_reward, terminated, truncated, info


class KeepSourceObservation(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Copy the env's own observation into ``info["source_observation"]`` at every reset and step.

    Applied just inside a wrapper that replaces the observation by what a camera sees (pixels,
    events), so that the state the camera shows stays known: ``scripts.probe_state`` regresses it on
    the world model's latent state to ask whether the model recovered it from the images or events.
    The agent never sees it.
    """

    KEY = "source_observation"

    def __init__(self, env: gymnasium.Env):
        gymnasium.utils.RecordConstructorArgs.__init__(self)
        gymnasium.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        return observation, {**info, self.KEY: observation}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated, truncated, {**info, self.KEY: observation}


class GoalSuccess(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """``info["success"]`` (`envs.success`) for a task that pays a positive reward only on the step
    that reaches its goal and ends there (MiniGrid: ``1 - 0.9 * steps / max_steps``; lava ends an
    episode with 0): success is termination with a positive reward."""

    def __init__(self, env: gymnasium.Env):
        gymnasium.utils.RecordConstructorArgs.__init__(self)
        gymnasium.Wrapper.__init__(self, env)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated, truncated, {**info, "success": bool(terminated and float(reward) > 0)}


class SelectObservation(
    gymnasium.ObservationWrapper[Any, Any, Any], gymnasium.utils.RecordConstructorArgs
):
    """Keep one entry of a `Dict` observation (e.g. MiniGrid's ``"image"``, dropping its mission text)."""

    def __init__(self, env: gymnasium.Env, key: str):
        space = env.observation_space
        if not isinstance(space, gymnasium.spaces.Dict) or key not in space.spaces:
            raise ValueError(f"SelectObservation needs a Dict observation space with key {key!r}, got {space}")
        gymnasium.utils.RecordConstructorArgs.__init__(self, key=key)
        gymnasium.ObservationWrapper.__init__(self, env)
        self.key = key
        self.observation_space = space[key]

    def observation(self, observation: dict[str, Any]) -> Any:
        return observation[self.key]


class OneHotGrid(gymnasium.ObservationWrapper[Any, Any, Any], gymnasium.utils.RecordConstructorArgs):
    """A grid of category indices ``[H, W, C]`` (MiniGrid's object, colour and state per cell) as one
    flat float vector of one-hot cells, ``H * W * sum(counts)`` long.

    The indices are labels, not intensities: fed to a CNN as pixels they would be divided by 255
    and nearly vanish, so they are one-hot encoded for the MLP encoder instead.
    """

    def __init__(self, env: gymnasium.Env, counts: tuple[int, ...]):
        space = env.observation_space
        if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 3 or space.shape[2] != len(counts):
            raise ValueError(f"OneHotGrid needs a Box of shape [H, W, {len(counts)}], got {space}")
        gymnasium.utils.RecordConstructorArgs.__init__(self, counts=tuple(counts))
        gymnasium.ObservationWrapper.__init__(self, env)
        self.counts = tuple(int(c) for c in counts)
        self.offsets = np.cumsum((0,) + self.counts[:-1])
        height, width, _ = space.shape
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (height * width * sum(self.counts),), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        grid = np.asarray(observation, np.int64)
        if np.any(grid < 0) or np.any(grid >= np.array(self.counts)):
            raise ValueError(f"grid values must lie below the category counts {self.counts}, got max {grid.max()}")
        height, width, _ = grid.shape
        one_hot = np.zeros((height, width, sum(self.counts)), np.float32)
        rows, columns = np.indices((height, width))
        for channel, offset in enumerate(self.offsets):
            one_hot[rows, columns, offset + grid[..., channel]] = 1.0
        return one_hot.reshape(-1)


def is_bounded_box(space: gymnasium.Space) -> bool:
    """A float `Box` with finite bounds on every dimension (the kind that can be rescaled)."""
    return (
        isinstance(space, gymnasium.spaces.Box)
        and np.issubdtype(space.dtype, np.floating)
        and bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))
    )


def rescale_to_unit(env: gymnasium.Env) -> gymnasium.Env:
    """Expose a bounded Box action space as ``[-1, 1]`` (Gymnasium's `RescaleAction`); else unchanged."""
    space = env.action_space
    if not is_bounded_box(space):
        return env
    if np.all(space.low == -1.0) and np.all(space.high == 1.0):
        return env
    # Bounds in the space's own dtype: mixing float32 bounds into a float64 Box warns of overflow.
    return RescaleAction(env, np.full(space.shape, -1.0, space.dtype), np.full(space.shape, 1.0, space.dtype))
