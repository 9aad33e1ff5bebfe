"""A simulated event camera (the ESIM / v2e pixel model) over an environment's rgb_array renders.

Glossary: ``H, W`` image height and width; ``P = H * W`` pixels; ``N`` events; ``B`` voxel bins.

Pixel model (Rebecq et al. 2018, ESIM; Hu et al. 2021, v2e). Each pixel tracks ``L = log(I + eps)``
of its luminance ``I`` in [0, 1] and a reference level. Between two frames ``L`` moves linearly in
time; whenever ``L - reference`` crosses ``+C+`` (ON) or ``-C-`` (OFF) the pixel emits an event
stamped with the time of the crossing and moves its reference one threshold. A change ``D`` from the
reference therefore gives ``floor(|D| / C)`` events. Non-idealities, all drawn from one seeded
``numpy.random.Generator``:

- threshold mismatch: per-pixel ``C ~ N(C, threshold_sigma)``, clipped to ``MIN_CONTRAST``, drawn
  when the simulator is seeded (or first reset) and kept across episodes, like a physical sensor;
- refractory period: an event closer than ``refractory_period`` to its pixel's previous *emitted*
  event is dropped; the reference still moves (as in ESIM), so the pixel does not fire later;
- leak: the reference falls by ``leak_rate * C+`` per second, so a static pixel fires ON events at
  ``leak_rate`` Hz; initial references get a random phase so leak events are not synchronised (v2e);
- shot noise: Poisson events at ``shot_noise_rate`` per pixel per second, random polarity, uniform
  times; they are spurious outputs, so they move no reference and start no refractory period.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium
import numpy as np

from envs.config import EnvConfigError, EventCameraConfig
from envs.event_filter import BackgroundActivityFilter
from envs.wrappers import resize_frame

MIN_CONTRAST = 0.01  # floor of mismatched thresholds: a zero threshold would fire without bound
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as v2e and ESIM use
_SEED_TAG = 0x65766E74  # keeps the simulator's random stream apart from the env's for equal seeds
_RANK_TOLERANCE = 1e-9  # absorbs float error in refractory event-rank arithmetic
# Settings beyond these cannot be simulated on one machine: refused before anything is allocated.
MAX_VOXEL_BINS = 256
MAIN_KEY = "obs"  # a Box main representation's entry beside extras (the agent's key of a lone Box too)
MAX_EVENTS_ROWS = 1_000_000
MAX_SHOT_NOISE_RATE = 10_000.0  # events per pixel per second
EVENT_BYTES = 64  # one event while simulated: its fields and the float64 temporaries of the crossing maths
MAX_FRAME_EVENT_BYTES = 2 * 2**30  # the worst frame's events must fit in this


def worst_case_events(config: EventCameraConfig, image_size: tuple[int, int]) -> int:
    """Events of one frame in the worst case: every pixel swings across the whole log range
    ``log(1 + eps) - log(eps)`` at the smallest threshold, plus the expected shot noise."""
    pixels = int(np.prod(image_size))
    smallest = min(config.contrast_pos, config.contrast_neg)
    if config.threshold_sigma > 0:
        smallest = min(smallest, MIN_CONTRAST)  # mismatched thresholds are clipped there
    log_range = np.log1p(config.log_eps) - np.log(config.log_eps)
    noise = config.shot_noise_rate * config.frame_interval
    return int(pixels * (np.ceil(log_range / smallest) + noise))


def check_event_camera_bounds(config: EventCameraConfig, image_size: tuple[int, int]) -> None:
    """Refuse settings that would exhaust memory (each names the setting to change)."""
    limits = (
        (min(config.contrast_pos, config.contrast_neg) >= MIN_CONTRAST,
         f"env.event_camera.contrast_pos and contrast_neg must be >= {MIN_CONTRAST} (got "
         f"{config.contrast_pos}, {config.contrast_neg}): smaller thresholds fire without practical bound"),
        (config.voxel_bins <= MAX_VOXEL_BINS,
         f"env.event_camera.voxel_bins must be <= {MAX_VOXEL_BINS}, got {config.voxel_bins}"),
        (config.max_events <= MAX_EVENTS_ROWS,
         f"env.event_camera.max_events must be <= {MAX_EVENTS_ROWS:,}, got {config.max_events:,}"),
        (config.shot_noise_rate <= MAX_SHOT_NOISE_RATE,
         f"env.event_camera.shot_noise_rate must be <= {MAX_SHOT_NOISE_RATE:g}, got {config.shot_noise_rate:g}"),
    )
    for holds, message in limits:
        if not holds:
            raise EnvConfigError(message)
    events = worst_case_events(config, image_size)
    if events * EVENT_BYTES > MAX_FRAME_EVENT_BYTES:
        raise EnvConfigError(
            f"the event camera could emit {events:,} events in one frame (about "
            f"{events * EVENT_BYTES / 2**30:.1f} GiB to simulate, more than {MAX_FRAME_EVENT_BYTES / 2**30:g} GiB) "
            f"at env.image_size={list(image_size)} and contrast {min(config.contrast_pos, config.contrast_neg)}: "
            "raise env.event_camera.contrast_pos/contrast_neg or lower env.image_size"
        )


class Events(NamedTuple):
    """Events sorted by time: ``x`` column and ``y`` row (int32), ``t`` seconds (float64),
    ``p`` polarity (int8, +1 ON, -1 OFF); every field has shape ``(N,)``."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    @classmethod
    def empty(cls) -> Events:
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int8))

    @property
    def count(self) -> int:
        return int(self.t.shape[0])


def luminance(frame: np.ndarray) -> np.ndarray:
    """``(H, W)`` float64 luminance in [0, 1] of a uint8 (0..255) or float (0..1) gray/RGB(A) frame."""
    frame = np.asarray(frame)
    scale = 1.0 / 255.0 if frame.dtype == np.uint8 else 1.0
    if frame.ndim == 3 and frame.shape[-1] >= 3:
        # A weighted sum of channel planes: faster than a matmul over a length-3 axis.
        weights = LUMA_WEIGHTS * scale
        values = frame[..., 0] * weights[0] + frame[..., 1] * weights[1] + frame[..., 2] * weights[2]
    else:
        values = (frame[..., 0] if frame.ndim == 3 else frame) * scale
    return np.clip(values, 0.0, 1.0, dtype=np.float64)


class EventSimulator:
    """Events from a stream of frames (pure numpy): `reset` with the first frame, then `step`."""

    def __init__(
        self,
        contrast_pos: float = 0.2,
        contrast_neg: float = 0.2,
        threshold_sigma: float = 0.0,
        refractory_period: float = 0.0,
        shot_noise_rate: float = 0.0,
        leak_rate: float = 0.0,
        log_eps: float = 1e-3,
        seed: Any = None,
    ):
        self.contrast_pos = contrast_pos
        self.contrast_neg = contrast_neg
        self.threshold_sigma = threshold_sigma
        self.refractory_period = refractory_period
        self.shot_noise_rate = shot_noise_rate
        self.leak_rate = leak_rate
        self.log_eps = log_eps
        self._rng = np.random.default_rng(seed)
        self._thresholds: tuple[np.ndarray, np.ndarray] | None = None
        self._shape: tuple[int, int] | None = None

    @classmethod
    def from_config(cls, config: EventCameraConfig, seed: Any = None) -> EventSimulator:
        return cls(
            contrast_pos=config.contrast_pos,
            contrast_neg=config.contrast_neg,
            threshold_sigma=config.threshold_sigma,
            refractory_period=config.refractory_period,
            shot_noise_rate=config.shot_noise_rate,
            leak_rate=config.leak_rate,
            log_eps=config.log_eps,
            seed=seed,
        )

    @property
    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel ``(C+, C-)``, each ``(H, W)``; available after `reset`."""
        self._require_reset()
        return tuple(c.reshape(self._shape) for c in self._thresholds)

    def reset(self, frame: np.ndarray, time: float = 0.0, seed: Any = None) -> None:
        """Set every reference to the frame's log intensity (no events); ``seed`` re-seeds."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._thresholds = None
        log_frame = self._log(frame)
        if self._thresholds is None or self._shape != log_frame.shape:
            self._shape = log_frame.shape
            self._thresholds = self._draw_thresholds(log_frame.size)
        self._log_frame = log_frame.ravel()
        self._reference = self._log_frame.copy()
        if self.leak_rate > 0:
            self._reference -= self._rng.uniform(size=self._reference.size) * self._thresholds[0]
        self._last_emitted = np.full(self._reference.size, -np.inf)
        self._time = float(time)

    def step(self, frame: np.ndarray, time: float) -> Events:
        """Events between the previous frame and ``frame`` at ``time`` (> previous), sorted by time."""
        self._require_reset()
        duration = float(time) - self._time
        if duration <= 0:
            raise ValueError(f"frame time {time} must be after the previous one ({self._time})")
        log_frame = self._log(frame)
        if log_frame.shape != self._shape:
            raise ValueError(f"frame shape {log_frame.shape} differs from the reset frame's {self._shape}")
        log_frame = log_frame.ravel()
        pixels, times, polarities = self._threshold_crossings(log_frame, duration)
        noise = self._shot_noise(duration)
        self._log_frame, self._time = log_frame, float(time)
        return self._sorted_events(
            np.concatenate([pixels, noise[0]]),
            np.concatenate([times, noise[1]]),
            np.concatenate([polarities, noise[2]]),
        )

    def _threshold_crossings(self, log_frame: np.ndarray, duration: float) -> tuple[np.ndarray, ...]:
        """Crossing events of the linear path from the last frame to ``log_frame``; moves references."""
        contrast_pos, contrast_neg = self._thresholds
        start = self._log_frame - self._reference  # in (-C-, C+) by construction
        if self.leak_rate > 0:
            # The reference drifts down linearly over the interval, so leak crossings are interpolated too.
            self._reference -= self.leak_rate * contrast_pos * duration
        end = log_frame - self._reference
        # Only the few pixels past a threshold get counts: most of a frame is usually static.
        on_pixels = np.flatnonzero(end >= contrast_pos)
        off_pixels = np.flatnonzero(end <= -contrast_neg)
        on_counts = self._count_and_move_reference(on_pixels, log_frame, end, contrast_pos, +1)
        off_counts = self._count_and_move_reference(off_pixels, log_frame, end, contrast_neg, -1)
        parts = [
            self._crossing_events(on_pixels, on_counts, contrast_pos, +1, start, end, duration),
            self._crossing_events(off_pixels, off_counts, contrast_neg, -1, start, end, duration),
        ]
        return tuple(np.concatenate(arrays) for arrays in zip(*parts))

    def _count_and_move_reference(
        self, pixels: np.ndarray, log_frame: np.ndarray, end: np.ndarray, contrast: np.ndarray, sign: int
    ) -> np.ndarray:
        """Crossings ``floor(|end| / C)`` of ``pixels``; moves their references one C per crossing."""
        contrast = contrast[pixels]
        counts = np.floor(sign * end[pixels] / contrast)
        # Rounding can leave the next residual (computed exactly like this) a full threshold from the
        # reference; count that crossing now, or the next frame would see a crossing with no change.
        moved = self._reference[pixels] + sign * counts * contrast
        counts += sign * (log_frame[pixels] - moved) >= contrast
        self._reference[pixels] += sign * counts * contrast
        return counts.astype(np.int64)

    def _crossing_events(
        self, active: np.ndarray, counts: np.ndarray, contrast: np.ndarray, sign: int, start: np.ndarray,
        end: np.ndarray, duration: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pixel, time, polarity)`` of the k-th crossings, k = 1..counts, of ``active`` pixels."""
        pixel = np.repeat(active, counts)
        # Rank k of each event within its pixel: 1, 2, ..., counts[pixel].
        rank = np.arange(pixel.size) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        slope = (end - start)[pixel]
        fraction = np.minimum((sign * rank * contrast[pixel] - start[pixel]) / slope, 1.0)
        # A residual a rounding error below the threshold crosses it just after the previous frame;
        # keep such times strictly inside (t0, t1].
        times = np.maximum(self._time + fraction * duration, np.nextafter(self._time, np.inf))
        if self.refractory_period > 0 and pixel.size:
            keep = self._refractory_keep(pixel, rank, times, contrast[pixel] / np.abs(slope) * duration)
            pixel, times = pixel[keep], times[keep]
        return pixel, times, np.full(pixel.size, sign, np.int8)

    def _refractory_keep(
        self, pixel: np.ndarray, rank: np.ndarray, times: np.ndarray, spacing: np.ndarray
    ) -> np.ndarray:
        """Mask of events at least ``refractory_period`` after their pixel's previous emitted one.

        A pixel's crossings in one interval are equally spaced (linear path), so the kept ones are
        the first that clears the previous emitted event, then every m-th, m = ceil(R / spacing).
        """
        period = self.refractory_period
        first_time = times - (rank - 1) * spacing
        wait = (self._last_emitted[pixel] + period - first_time) / spacing - _RANK_TOLERANCE
        first_kept = np.maximum(1, np.ceil(np.nan_to_num(wait, neginf=0.0)) + 1)
        every = np.maximum(1, np.ceil(period / spacing - _RANK_TOLERANCE))
        keep = (rank >= first_kept) & ((rank - first_kept) % every == 0)
        kept_pixel, kept_times = pixel[keep], times[keep]
        # Events are grouped by pixel in rank order, so a group's last entry is its latest event.
        is_last = np.append(kept_pixel[1:] != kept_pixel[:-1], True) if kept_pixel.size else kept_pixel
        self._last_emitted[kept_pixel[is_last]] = kept_times[is_last]
        return keep

    def _shot_noise(self, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Poisson events: uniform pixels, uniform times in the interval, random polarity."""
        if self.shot_noise_rate == 0:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int8)
        size = self._log_frame.size
        count = self._rng.poisson(self.shot_noise_rate * duration * size)
        pixel = self._rng.integers(0, size, count)
        times = self._time + (1.0 - self._rng.uniform(size=count)) * duration  # in (t0, t1]
        polarity = (self._rng.integers(0, 2, count) * 2 - 1).astype(np.int8)
        return pixel, times, polarity

    def _sorted_events(self, pixel: np.ndarray, times: np.ndarray, polarity: np.ndarray) -> Events:
        order = np.argsort(times, kind="stable")
        pixel = pixel[order]
        width = self._shape[1]
        return Events(
            x=(pixel % width).astype(np.int32),
            y=(pixel // width).astype(np.int32),
            t=times[order],
            p=polarity[order],
        )

    def _draw_thresholds(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        def draw(mean: float) -> np.ndarray:
            if self.threshold_sigma == 0:
                return np.full(size, float(mean))
            return np.maximum(self._rng.normal(mean, self.threshold_sigma, size), MIN_CONTRAST)

        return draw(self.contrast_pos), draw(self.contrast_neg)

    def _log(self, frame: np.ndarray) -> np.ndarray:
        return np.log(luminance(frame) + self.log_eps)

    def _require_reset(self) -> None:
        if self._shape is None:
            raise RuntimeError("call EventSimulator.reset(first_frame) before step()")


def events_to_frame(events: Events, image_size: tuple[int, int]) -> np.ndarray:
    """Per-pixel counts ``(H, W, 2)`` float32: channel 0 ON, channel 1 OFF. Float, not uint8: they are
    counts, and by the usual convention a uint8 image is brightness (an agent would scale it by 1/255)."""
    height, width = image_size
    # Index straight into the (H, W, 2) layout: transposing a (2, H, W) count array costs more.
    flat = (events.y.astype(np.int64) * width + events.x) * 2 + (events.p < 0)
    counts = np.bincount(flat, minlength=2 * height * width).reshape(height, width, 2)
    return counts.astype(np.float32)


def events_to_voxel(
    events: Events, image_size: tuple[int, int], bins: int, t_start: float, t_end: float
) -> np.ndarray:
    """Voxel grid ``(H, W, B)`` float32: signed polarity spread over two neighbouring time bins.

    Bilinear in time (Zhu et al. 2019): an event at normalised time ``u = (B-1)(t-t0)/(t1-t0)``
    adds ``p * (1 - |u - b|)`` to bins ``b = floor(u)`` and ``floor(u) + 1``.
    """
    height, width = image_size
    position = (bins - 1) * (events.t - t_start) / (t_end - t_start)
    lower = np.clip(np.floor(position), 0, bins - 1).astype(np.int64)
    upper = np.minimum(lower + 1, bins - 1)
    weight_upper = np.clip(position - lower, 0.0, 1.0)
    base = (events.y.astype(np.int64) * width + events.x) * bins
    polarity = events.p.astype(np.float64)
    voxel = np.bincount(base + lower, polarity * (1.0 - weight_upper), minlength=height * width * bins)
    voxel += np.bincount(base + upper, polarity * weight_upper, minlength=height * width * bins)
    return voxel.reshape(height, width, bins).astype(np.float32)


def integrate_events(
    integral: np.ndarray, events: Events, t_start: float, t_end: float, time_constant: float
) -> np.ndarray:
    """The leaky integral of signed events ``(H, W, 1)`` float32 at ``t_end``, from ``integral`` at
    ``t_start``: that decayed by ``exp(-(t_end - t_start) / time_constant)``, plus each event's
    polarity decayed from its own time, ``p * exp(-(t_end - t) / time_constant)``.

    Without the leak, a pixel's integral times its contrast threshold is its log-brightness change
    since the integral was zero, as far as the thresholds quantise it: an image of what has changed
    since then, a high-pass filter of the scene (Scheerlinck et al. 2018). Unlike one step's counts
    it keeps showing where things are after they stop moving, for about ``time_constant`` seconds.
    """
    height, width = integral.shape[:2]
    weights = events.p * np.exp(-(t_end - events.t) / time_constant)
    flat = events.y.astype(np.int64) * width + events.x
    added = np.bincount(flat, weights=weights, minlength=height * width).reshape(height, width, 1)
    return (integral * np.exp(-(t_end - t_start) / time_constant) + added).astype(np.float32)


def events_to_array(events: Events, max_events: int, t_start: float) -> tuple[np.ndarray, int, int]:
    """``(max_events, 4)`` float32 rows ``(x, y, t - t_start, p)`` zero-padded, kept count, dropped count.

    On overflow the earliest ``max_events`` are kept (events are time-sorted).
    """
    kept = min(events.count, max_events)
    array = np.zeros((max_events, 4), np.float32)
    array[:kept, 0] = events.x[:kept]
    array[:kept, 1] = events.y[:kept]
    array[:kept, 2] = events.t[:kept] - t_start
    array[:kept, 3] = events.p[:kept]
    return array, kept, events.count - kept


def event_observation_space(config: EventCameraConfig, image_size: tuple[int, int]) -> gymnasium.Space:
    """The observation space of `EventCamera` for ``config.representation``; with
    ``extra_representations``, a ``Dict`` of the main one's entries (a ``Box`` one under ``obs``)
    and each extra's under its own name (``events`` as ``events`` and ``count``)."""
    main = representation_entries(config.representation, config, image_size)
    if not config.extra_representations:
        return main
    entries = dict(main.spaces) if isinstance(main, gymnasium.spaces.Dict) else {MAIN_KEY: main}
    for name in config.extra_representations:
        extra = representation_entries(name, config, image_size)
        entries.update(extra.spaces if isinstance(extra, gymnasium.spaces.Dict) else {name: extra})
    return gymnasium.spaces.Dict(entries)


def representation_entries(name: str, config: EventCameraConfig, image_size: tuple[int, int]) -> gymnasium.Space:
    """The space of one representation ``name`` of a step's events."""
    height, width = image_size
    if name == "frame":
        return gymnasium.spaces.Box(0, np.inf, (height, width, 2), np.float32)
    if name == "voxel":
        return gymnasium.spaces.Box(-np.inf, np.inf, (height, width, config.voxel_bins), np.float32)
    if name == "integrated":
        return gymnasium.spaces.Box(-np.inf, np.inf, (height, width, 1), np.float32)
    low = np.broadcast_to(np.array([0, 0, 0, -1], np.float32), (config.max_events, 4))
    high = np.broadcast_to(
        np.array([width - 1, height - 1, config.frame_interval, 1], np.float32), (config.max_events, 4)
    )
    return gymnasium.spaces.Dict(
        {
            "events": gymnasium.spaces.Box(low, high, (config.max_events, 4), np.float32),
            "count": gymnasium.spaces.Box(0, config.max_events, (), np.int32),
        }
    )


class EventCamera(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Observe the events between consecutive ``rgb_array`` renders instead of the env's observation.

    Frames are resized to ``image_size = (height, width)``; one step spans ``frame_interval`` seconds.
    Observations by ``config.representation``:

    - ``frame``: float32 ``(H, W, 2)`` ON/OFF counts, see `events_to_frame`;
    - ``voxel``: float32 ``(H, W, voxel_bins)``, see `events_to_voxel`;
    - ``integrated``: float32 ``(H, W, 1)``, the leaky integral of signed events since the episode's
      reset (time constant ``integration_time``), see `integrate_events`: a per-step representation
      that, unlike the others, shows where things are after they stop moving;
    - ``events``: ``{"events": float32 (max_events, 4) rows (x, y, t, p), t in seconds since the
      previous observation, zero-padded; "count": int32 rows filled}``.

    ``extra_representations`` adds other representations of the same events to a ``Dict``
    observation (a ``Box`` main one under ``obs``, each extra under its name): e.g. the raw
    ``events`` for the encoder beside their ``integrated`` image as the world model's
    reconstruction target (``decoder.cnn_keys``).

    ``background_filter_time`` > 0 passes each step's events through a `BackgroundActivityFilter`
    before any representation sees them.

    ``info`` has ``event_count`` (all events of the step that passed the filter, if one is on),
    ``event_rate`` (events/s) and ``events_dropped`` (events beyond ``max_events``, only non-zero for
    ``events``). `reset` sets the references from the first frame and returns the empty observation.
    """

    def __init__(
        self,
        env: gymnasium.Env,
        config: EventCameraConfig | None = None,
        image_size: tuple[int, int] = (64, 64),
        seed: int | None = None,
    ):
        if env.render_mode != "rgb_array":
            raise ValueError(f"EventCamera needs render_mode='rgb_array', the env has {env.render_mode!r}")
        config = config or EventCameraConfig()
        check_event_camera_bounds(config, tuple(image_size))
        gymnasium.utils.RecordConstructorArgs.__init__(
            self, config=config, image_size=tuple(image_size), seed=seed
        )
        gymnasium.Wrapper.__init__(self, env)
        self.config = config
        self.image_size = tuple(int(side) for side in image_size)
        self.simulator = EventSimulator.from_config(config, seed=_simulator_seed(seed))
        self.noise_filter = (BackgroundActivityFilter(config.background_filter_time, self.image_size)
                             if config.background_filter_time > 0 else None)
        self.observation_space = event_observation_space(config, self.image_size)
        self._steps = 0
        self._integral = np.zeros(self.image_size + (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        _, info = self.env.reset(seed=seed, options=options)
        self._steps = 0
        self._integral = np.zeros(self.image_size + (1,), np.float32)
        self.simulator.reset(self._frame(), time=0.0, seed=_simulator_seed(seed))
        if self.noise_filter is not None:
            self.noise_filter.reset()
        observation, dropped = self._observe(Events.empty(), t_start=0.0)
        return observation, self._info(info, 0, dropped)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        _, reward, terminated, truncated, info = self.env.step(action)
        t_start = self._steps * self.config.frame_interval
        self._steps += 1
        # Times are step * interval rather than a running sum, so they do not accumulate rounding.
        events = self.simulator.step(self._frame(), self._steps * self.config.frame_interval)
        if self.noise_filter is not None:
            events = self.noise_filter(events)
        observation, dropped = self._observe(events, t_start)
        return observation, reward, terminated, truncated, self._info(info, events.count, dropped)

    def _frame(self) -> np.ndarray:
        return resize_frame(self.env.render(), self.image_size)

    def _observe(self, events: Events, t_start: float) -> tuple[Any, int]:
        config = self.config
        if "integrated" in (config.representation, *config.extra_representations):  # once, whoever shows it
            t_end = t_start + config.frame_interval
            self._integral = integrate_events(self._integral, events, t_start, t_end, config.integration_time)
        observation, dropped = self._represent(config.representation, events, t_start)
        if not config.extra_representations:
            return observation, dropped
        entries = observation if isinstance(observation, dict) else {MAIN_KEY: observation}
        for name in config.extra_representations:
            extra, extra_dropped = self._represent(name, events, t_start)
            entries.update(extra if isinstance(extra, dict) else {name: extra})
            dropped = max(dropped, extra_dropped)
        return entries, dropped

    def _represent(self, name: str, events: Events, t_start: float) -> tuple[Any, int]:
        """One representation of the step's events and the events it dropped."""
        config = self.config
        if name == "frame":
            return events_to_frame(events, self.image_size), 0
        t_end = t_start + config.frame_interval
        if name == "voxel":
            return events_to_voxel(events, self.image_size, config.voxel_bins, t_start, t_end), 0
        if name == "integrated":
            return self._integral.copy(), 0
        array, kept, dropped = events_to_array(events, config.max_events, t_start)
        # Clamp float32 rounding of t just past frame_interval back into the declared bounds.
        array[:, 2] = np.minimum(array[:, 2], self.observation_space["events"].high[0, 2])
        return {"events": array, "count": np.asarray(kept, np.int32)}, dropped

    def _info(self, info: dict, count: int, dropped: int) -> dict:
        rate = count / self.config.frame_interval
        return {**info, "event_count": count, "event_rate": rate, "events_dropped": dropped}


def _simulator_seed(seed: int | None) -> list[int] | None:
    return None if seed is None else [int(seed), _SEED_TAG]
