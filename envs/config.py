"""`EnvConfig`: the ``env:`` section of a run config, one field per key.

The YAML section maps 1:1 onto these dataclasses; ``event_camera:`` is the nested
`EventCameraConfig`. `EnvConfig.from_dict` rejects unknown keys and names the valid ones, so a
typo in a config file fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

REPRESENTATIONS = ("frame", "voxel", "events", "integrated")


class EnvConfigError(ValueError):
    """An ``env:`` key or value that is not valid; the message says which and what would be."""


@dataclasses.dataclass(frozen=True)
class EventCameraConfig:
    """Parameters of the simulated event camera (ESIM / v2e model); see `envs.event_camera`.

    The image size is the parent `EnvConfig.image_size`. Rates are per pixel: ``shot_noise_rate`` in
    events per pixel per second, ``leak_rate`` in Hz. ``frame_interval`` is the simulated time in
    seconds between two observations (one agent step). ``background_filter_time`` > 0 keeps only
    events that a neighbouring pixel's event preceded by less than that many seconds (a denoiser,
    `envs.event_filter`; 0: off). ``integration_time`` is the time constant in
    seconds of the ``integrated`` representation's leak; ``inf`` (``.inf`` in YAML and ``--set``)
    turns the leak off. ``extra_representations`` are other representations of the same events
    added to the observation, a ``Dict`` then (see `envs.event_camera.EventCamera`).
    """

    representation: str = "frame"
    contrast_pos: float = 0.2
    contrast_neg: float = 0.2
    threshold_sigma: float = 0.0
    refractory_period: float = 0.0
    shot_noise_rate: float = 0.0
    background_filter_time: float = 0.0
    leak_rate: float = 0.0
    log_eps: float = 1e-3
    voxel_bins: int = 5
    max_events: int = 4096
    frame_interval: float = 1.0 / 30.0
    integration_time: float = 1.0
    extra_representations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise EnvConfigError(
                f"env.event_camera.representation={self.representation!r}; choose one of {REPRESENTATIONS}"
            )
        _require(self.contrast_pos > 0 and self.contrast_neg > 0, "event_camera contrasts must be > 0")
        _require(self.log_eps > 0, "event_camera.log_eps must be > 0")
        object.__setattr__(self, "extra_representations", tuple(self.extra_representations))
        for name in self.extra_representations:
            if name not in REPRESENTATIONS or name == self.representation:
                raise EnvConfigError(
                    f"env.event_camera.extra_representations has {name!r}; each must be one of {REPRESENTATIONS} "
                    f"other than the representation ({self.representation!r})"
                )
        _require(len(set(self.extra_representations)) == len(self.extra_representations),
                 "env.event_camera.extra_representations lists a representation twice")
        _require(self.frame_interval > 0, "event_camera.frame_interval must be > 0")
        _require(self.integration_time > 0, "event_camera.integration_time must be > 0 (seconds)")
        _require(self.voxel_bins >= 2, "event_camera.voxel_bins must be >= 2")
        _require(self.max_events >= 1, "event_camera.max_events must be >= 1")
        for name in ("threshold_sigma", "refractory_period", "shot_noise_rate", "background_filter_time", "leak_rate"):
            _require(getattr(self, name) >= 0, f"event_camera.{name} must be >= 0")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> EventCameraConfig:
        _check_keys(cls, mapping, "env.event_camera")
        return cls(**mapping)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """How `envs.make_env` builds and wraps an environment.

    ``time_limit`` counts underlying environment steps (0 keeps the env's own limit);
    ``image_size`` is ``(height, width)`` for pixel and event observations; ``kwargs`` go to the
    environment's constructor (``gymnasium.make`` keyword arguments, or ``suite.load`` for ``dmc:``).
    """

    action_repeat: int = 1
    time_limit: int = 0
    pixels: bool = False
    image_size: tuple[int, int] = (64, 64)
    grayscale: bool = False
    rescale_actions: bool = True
    kwargs: dict = dataclasses.field(default_factory=dict)
    event_camera: EventCameraConfig = dataclasses.field(default_factory=EventCameraConfig)

    def __post_init__(self) -> None:
        # YAML gives lists and plain dicts; normalise so equal configs compare equal.
        object.__setattr__(self, "image_size", tuple(int(side) for side in self.image_size))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        if isinstance(self.event_camera, Mapping):
            object.__setattr__(self, "event_camera", EventCameraConfig.from_dict(self.event_camera))
        _require(self.action_repeat >= 1, "env.action_repeat must be >= 1")
        _require(self.time_limit >= 0, "env.time_limit must be >= 0 (0 keeps the env's own limit)")
        _require(
            len(self.image_size) == 2 and min(self.image_size) > 0,
            f"env.image_size must be two positive ints (height, width), got {self.image_size}",
        )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> EnvConfig:
        """Build from the YAML ``env:`` section; unknown keys raise `EnvConfigError` naming them."""
        _check_keys(cls, mapping, "env")
        values = dict(mapping)
        if "event_camera" in values and isinstance(values["event_camera"], Mapping):
            values["event_camera"] = EventCameraConfig.from_dict(values["event_camera"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples) that `from_dict` turns back into an equal config."""
        values = dataclasses.asdict(self)
        values["image_size"] = list(self.image_size)
        return values


def as_env_config(config: EnvConfig | Mapping[str, Any] | None) -> EnvConfig:
    """Accept an `EnvConfig`, its dict form or ``None`` (defaults)."""
    if config is None:
        return EnvConfig()
    if isinstance(config, EnvConfig):
        return config
    if isinstance(config, Mapping):
        return EnvConfig.from_dict(config)
    raise TypeError(f"config must be an EnvConfig, a mapping or None, got {type(config).__name__}")


def _check_keys(cls: type, mapping: Mapping[str, Any], section: str) -> None:
    valid = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(mapping) - set(valid))
    if unknown:
        raise EnvConfigError(f"unknown key(s) {unknown} in {section}; valid keys are {valid}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise EnvConfigError(message)
