"""The event simulator against hand-derived numbers, and the `EventCamera` wrapper."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.config import EnvConfigError, EventCameraConfig
from envs.event_camera import (
    MIN_CONTRAST,
    EventCamera,
    Events,
    EventSimulator,
    events_to_array,
    events_to_frame,
    events_to_voxel,
    integrate_events,
    luminance,
)
from envs.registry import make_env

# check_env warns on every wrapped env and on unbounded Boxes (CartPole's, voxel grids): both expected.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*unwrapped version"),
    pytest.mark.filterwarnings("ignore:.*Box observation space m"),
]

EPS = 1e-3
DARK, BRIGHT = 0.1, 0.9
BAR_START, BAR_WIDTH = 2, 4


def bar_frame(step: int, height: int = 6, width: int = 16) -> np.ndarray:
    """Gray ``(H, W)`` float frame: a bright bar over columns [2 + step, 6 + step) on dark."""
    frame = np.full((height, width), DARK)
    frame[:, BAR_START + step : BAR_START + BAR_WIDTH + step] = BRIGHT
    return frame


def log_contrast() -> float:
    return float(np.log(BRIGHT + EPS) - np.log(DARK + EPS))


def run_bar(simulator: EventSimulator, steps: int, interval: float = 1.0) -> list[Events]:
    simulator.reset(bar_frame(0), time=0.0)
    return [simulator.step(bar_frame(step), step * interval) for step in range(1, steps + 1)]


def test_static_scene_gives_no_events():
    frame = np.random.default_rng(0).uniform(size=(8, 8, 3))
    simulator = EventSimulator(seed=0)
    simulator.reset(frame)
    assert all(simulator.step(frame, time).count == 0 for time in (0.1, 0.2, 0.3))


def test_moving_edge_gives_on_at_leading_and_off_at_trailing_edge():
    contrast_pos, contrast_neg = 0.2, 0.3
    simulator = EventSimulator(contrast_pos, contrast_neg, log_eps=EPS)
    # Bar columns that were bright at reset sit exactly at the bright reference, so the first
    # BAR_WIDTH steps have exactly floor(contrast / C) events per pixel on each edge.
    for step, events in enumerate(run_bar(simulator, steps=BAR_WIDTH - 1), start=1):
        on, off = events.p == 1, events.p == -1
        assert set(events.x[on]) == {BAR_START + BAR_WIDTH + step - 1}
        assert set(events.x[off]) == {BAR_START + step - 1}
        rows = 6
        assert on.sum() == rows * np.floor(log_contrast() / contrast_pos)  # 10 per pixel
        assert off.sum() == rows * np.floor(log_contrast() / contrast_neg)  # 7 per pixel


def test_crossing_times_are_linear_interpolations_inside_the_interval():
    contrast = 0.2
    simulator = EventSimulator(contrast, contrast, log_eps=EPS)
    events = run_bar(simulator, steps=2, interval=0.5)
    second = events[1]
    assert np.all(np.diff(second.t) >= 0)
    assert np.all((second.t > 0.5) & (second.t <= 1.0))
    pixel_on = (second.p == 1) & (second.y == 0)
    ranks = np.arange(1, pixel_on.sum() + 1)
    expected = 0.5 + 0.5 * ranks * contrast / log_contrast()
    np.testing.assert_allclose(second.t[pixel_on], expected, rtol=1e-12)


def test_residual_carries_over_between_frames():
    # A pixel ramping by 0.15 (log) per frame with C = 0.2 fires on frames 2, 3, 4, 6, ... not never.
    simulator = EventSimulator(0.2, 0.2, log_eps=EPS)
    levels = np.exp(np.log(0.05 + EPS) + 0.15 * np.arange(8)) - EPS
    simulator.reset(np.full((1, 1), levels[0]))
    counts = [simulator.step(np.full((1, 1), level), time).count for time, level in enumerate(levels[1:], 1)]
    assert counts == [int(np.floor(0.15 * k / 0.2)) - int(np.floor(0.15 * (k - 1) / 0.2)) for k in range(1, 8)]


def test_refractory_period_drops_events_closer_than_it():
    period = 0.25
    plain = run_bar(EventSimulator(0.2, 0.2, log_eps=EPS), steps=3)
    filtered = run_bar(EventSimulator(0.2, 0.2, refractory_period=period, log_eps=EPS), steps=3)
    spacing = 0.2 / log_contrast()  # ON events of one pixel are this far apart (interval 1 s)
    keep_every = int(np.ceil(period / spacing))
    for before, after in zip(plain, filtered):
        on_before = (before.p == 1).sum() // 6
        assert (after.p == 1).sum() // 6 == len(range(0, on_before, keep_every))
    events = Events(*(np.concatenate(field) for field in zip(*filtered)))
    for pixel in set(zip(events.x, events.y)):
        times = events.t[(events.x == pixel[0]) & (events.y == pixel[1])]
        assert np.all(np.diff(times) >= period - 1e-9)


def test_refractory_period_spans_frames():
    # One pixel fires once per frame, 0.1 s apart; a 0.25 s period keeps every third event.
    simulator = EventSimulator(0.2, 0.2, refractory_period=0.25, log_eps=EPS)
    levels = np.exp(np.log(0.05 + EPS) + 0.25 * np.arange(10)) - EPS
    simulator.reset(np.full((1, 1), levels[0]))
    batches = [simulator.step(np.full((1, 1), level), 0.1 * k) for k, level in enumerate(levels[1:], 1)]
    times = np.concatenate([batch.t for batch in batches])
    assert np.all(np.diff(times) >= 0.25 - 1e-9)
    assert len(times) == 3


def test_shot_noise_rate_and_bounds():
    rate, size, interval, steps = 4.0, 16, 0.1, 10
    simulator = EventSimulator(shot_noise_rate=rate, seed=0)
    frame = np.full((size, size), 0.5)
    simulator.reset(frame)
    events = [simulator.step(frame, interval * k) for k in range(1, steps + 1)]
    total = sum(e.count for e in events)
    expected = rate * size * size * interval * steps
    assert abs(total - expected) < 5 * np.sqrt(expected)
    for k, batch in enumerate(events):
        assert np.all((batch.t > interval * k) & (batch.t <= interval * (k + 1) + 1e-12))
        assert np.all(np.diff(batch.t) >= 0)
    polarities = np.concatenate([e.p for e in events])
    assert 0.4 < np.mean(polarities == 1) < 0.6


def test_leak_makes_static_pixels_fire_on_events_at_the_leak_rate():
    simulator = EventSimulator(leak_rate=5.0, seed=0)
    frame = np.full((4, 4), 0.5)
    simulator.reset(frame)
    events = [simulator.step(frame, 0.1 * k) for k in range(1, 21)]  # 2 seconds
    polarities = np.concatenate([e.p for e in events])
    assert np.all(polarities == 1)
    assert len(polarities) == 16 * 10  # 5 Hz for 2 s, whatever each pixel's random phase
    for k, batch in enumerate(events):
        assert np.all((batch.t > 0.1 * k) & (batch.t <= 0.1 * (k + 1) + 1e-12))
    # A pixel's leak events are exactly 1 / leak_rate apart.
    times = np.concatenate([e.t for e in events])
    pixel = np.concatenate([e.y * 4 + e.x for e in events])
    np.testing.assert_allclose(np.diff(times[pixel == 5]), 0.2, atol=1e-9)


def test_threshold_mismatch_is_positive_and_seeded():
    def thresholds(seed: int) -> tuple[np.ndarray, np.ndarray]:
        simulator = EventSimulator(0.2, 0.3, threshold_sigma=0.1, seed=seed)
        simulator.reset(np.zeros((32, 32)))
        return simulator.thresholds

    on, off = thresholds(0)
    assert on.shape == (32, 32) and np.all(on >= MIN_CONTRAST) and np.all(off >= MIN_CONTRAST)
    assert abs(on.mean() - 0.2) < 0.02 and abs(off.mean() - 0.3) < 0.02 and on.std() > 0.05
    np.testing.assert_array_equal(thresholds(0)[0], on)
    assert not np.array_equal(thresholds(1)[0], on)


def test_same_seed_same_events():
    def events(seed: int) -> Events:
        simulator = EventSimulator(threshold_sigma=0.05, shot_noise_rate=3.0, leak_rate=1.0, seed=seed)
        frames = [np.random.default_rng(step).uniform(size=(8, 8, 3)) for step in range(4)]
        simulator.reset(frames[0])
        batches = [simulator.step(frame, 0.1 * k) for k, frame in enumerate(frames[1:], 1)]
        return Events(*(np.concatenate(field) for field in zip(*batches)))

    first, again, other = events(3), events(3), events(4)
    for field_first, field_again in zip(first, again):
        np.testing.assert_array_equal(field_first, field_again)
    assert first.count != other.count or not np.array_equal(first.t, other.t)


def test_luminance_of_uint8_rgb():
    frame = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], np.uint8)
    np.testing.assert_allclose(luminance(frame), [[1.0, 0.0, 0.299]])


def test_representations_agree_with_the_events():
    events = Events(
        x=np.array([0, 1, 1], np.int32), y=np.array([0, 0, 0], np.int32),
        t=np.array([0.25, 0.5, 1.0]), p=np.array([1, -1, 1], np.int8),
    )
    frame = events_to_frame(events, (1, 2))
    np.testing.assert_array_equal(frame[0, :, 0], [1, 1])
    np.testing.assert_array_equal(frame[0, :, 1], [0, 1])
    voxel = events_to_voxel(events, (1, 2), bins=3, t_start=0.0, t_end=1.0)
    np.testing.assert_allclose(voxel[0, 0], [0.5, 0.5, 0.0])  # t = 0.25 lies between bins 0 and 1
    np.testing.assert_allclose(voxel[0, 1], [0.0, -1.0, 1.0])
    array, kept, dropped = events_to_array(events, max_events=2, t_start=0.0)
    assert (kept, dropped) == (2, 1)
    np.testing.assert_allclose(array, [[0, 0, 0.25, 1], [1, 0, 0.5, -1]])


class MovingBarEnv(gymnasium.Env):
    """Renders a bright bar that moves one column right per step; observations are unused."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str = "rgb_array"):
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Box(0, 16, (1,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)
        self._step = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._step = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self._step += 1
        return np.full(1, self._step, np.float32), 0.0, self._step >= 8, False, {}

    def render(self) -> np.ndarray:
        gray = (bar_frame(self._step, height=8, width=16) * 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)


def event_camera(representation: str, **overrides) -> EventCamera:
    config = EventCameraConfig(representation=representation, log_eps=EPS, **overrides)
    return EventCamera(MovingBarEnv(), config, image_size=(8, 16), seed=0)


def test_wrapper_observations_count_the_bar_events():
    env = event_camera("frame", contrast_pos=0.2, contrast_neg=0.3)
    observation, info = env.reset(seed=0)
    assert observation.sum() == 0 and info["event_count"] == 0
    observation, _, _, _, info = env.step(0)
    bright, dark = luminance(np.uint8(BRIGHT * 255)), luminance(np.uint8(DARK * 255))
    contrast = np.log(bright + EPS) - np.log(dark + EPS)
    on_per_pixel, off_per_pixel = np.floor(contrast / 0.2), np.floor(contrast / 0.3)
    np.testing.assert_array_equal(observation[:, BAR_START + BAR_WIDTH, 0], on_per_pixel)
    np.testing.assert_array_equal(observation[:, BAR_START, 1], off_per_pixel)
    assert info["event_count"] == observation.sum() == 8 * (on_per_pixel + off_per_pixel)
    assert info["event_rate"] == pytest.approx(info["event_count"] * 30.0)
    assert info["events_dropped"] == 0


def test_wrapper_voxel_preserves_signed_counts():
    env = event_camera("voxel", voxel_bins=4)
    env.reset(seed=0)
    voxel, _, _, _, info = env.step(0)
    assert voxel.shape == (8, 16, 4) and voxel.dtype == np.float32
    on_minus_off = np.sum(voxel)
    frame_env = event_camera("frame")
    frame_env.reset(seed=0)
    frame, *_ = frame_env.step(0)
    assert on_minus_off == pytest.approx(frame[..., 0].sum() - frame[..., 1].sum(), abs=1e-4)


def test_wrapper_events_overflow_keeps_earliest_and_reports_drops():
    env = event_camera("events", max_events=16)
    env.reset(seed=0)
    observation, _, _, _, info = env.step(0)
    assert info["event_count"] > 16
    assert observation["count"] == 16
    assert info["events_dropped"] == info["event_count"] - 16
    times = observation["events"][:, 2]
    assert np.all(np.diff(times) >= 0) and np.all((times > 0) & (times <= 1 / 30 + 1e-6))
    assert env.observation_space.contains(observation)


def test_wrapper_events_are_zero_padded():
    env = event_camera("events", max_events=4096)
    env.reset(seed=0)
    observation, _, _, _, info = env.step(0)
    count = int(observation["count"])
    assert count == info["event_count"] and info["events_dropped"] == 0
    assert not observation["events"][count:].any()


def test_integral_decays_the_old_value_and_each_event_from_its_own_time():
    events = Events(x=np.array([1, 1, 0], np.int32), y=np.zeros(3, np.int32), t=np.array([1.2, 1.7, 2.0]),
                    p=np.array([1, -1, -1], np.int8))
    before = np.array([[[2.0], [0.0]]], np.float32)  # (H=1, W=2, 1)
    after = integrate_events(before, events, t_start=1.0, t_end=2.0, time_constant=0.5)
    assert after.shape == (1, 2, 1) and after.dtype == np.float32
    # pixel 0: 2 decayed over 1 s, then an OFF event at the very end; pixel 1: ON 0.8 s and OFF 0.3 s before the end
    np.testing.assert_allclose(after[0, :, 0], [2 * np.exp(-2.0) - 1.0, np.exp(-1.6) - np.exp(-0.6)], rtol=1e-6)


def test_wrapper_integrated_is_the_quantised_brightness_change_since_reset():
    """Without leak (an infinite time constant), after k steps of the bar moving right the integral is
    -floor(contrast / C) where the bar was at reset and is no more, +floor(contrast / C) where it is
    now and was not, and 0 elsewhere, including pixels it crossed and left (they fired both ways)."""
    env = event_camera("integrated", contrast_pos=0.2, contrast_neg=0.2, integration_time=float("inf"))
    observation, _ = env.reset(seed=0)
    assert observation.shape == (8, 16, 1) and not observation.any()
    bright, dark = luminance(np.uint8(BRIGHT * 255)), luminance(np.uint8(DARK * 255))
    events_per_change = np.floor((np.log(bright + EPS) - np.log(dark + EPS)) / 0.2)
    was = np.zeros(16, bool)
    was[BAR_START:BAR_START + BAR_WIDTH] = True
    for step in range(1, 7):
        observation, *_ = env.step(0)
        now = np.zeros(16, bool)
        now[BAR_START + step:BAR_START + BAR_WIDTH + step] = True
        expected = events_per_change * (now.astype(float) - was.astype(float))
        np.testing.assert_allclose(observation[..., 0], np.broadcast_to(expected, (8, 16)), atol=1e-4,
                                   err_msg=f"step {step}")
    assert observation.any() and not env.reset()[0].any()  # a new episode starts from a zero integral
    np.testing.assert_allclose(env.step(0)[0][..., 0].sum(0), 8 * events_per_change * np.array(
        [0, 0, -1, 0, 0, 0, 1] + [0] * 9), atol=1e-4)  # and integrates only the new episode's events


def test_wrapper_integrated_leaks_with_its_time_constant():
    """Each step's integral equals the last one decayed over the step plus that step's events, each
    decayed from its own time: the same episode seen as raw events, integrated by hand."""
    integrated, raw = event_camera("integrated", integration_time=0.05), event_camera("events")
    integral = integrated.reset(seed=0)[0].astype(np.float64)
    raw.reset(seed=0)
    interval = 1 / 30
    for step in range(6):
        observation, *_ = integrated.step(0)
        stream, *_ = raw.step(0)
        integral = integral * np.exp(-interval / 0.05)
        for x, y, t, p in stream["events"][:int(stream["count"])]:
            integral[int(y), int(x), 0] += p * np.exp(-(interval - t) / 0.05)
        np.testing.assert_allclose(observation, integral, rtol=1e-4, atol=1e-5, err_msg=f"step {step}")
    assert np.abs(integral).max() > 0.1


@pytest.mark.parametrize("main, extras", [("events", ("integrated", "frame")), ("voxel", ("events", "integrated"))])
def test_extra_representations_equal_each_representation_alone(main, extras):
    """Extras come in a dict beside the main representation (a Box one under ``obs``) and equal
    what a camera of that representation alone gives on the same seed: with shot noise and
    threshold mismatch on, so the same events means the same random stream too."""
    noisy = dict(shot_noise_rate=20.0, threshold_sigma=0.03, integration_time=0.1, max_events=64)
    combined = event_camera(main, extra_representations=extras, **noisy)
    alone = {name: event_camera(name, **noisy) for name in (main, *extras)}
    check_env(combined, skip_render_check=True)
    named = lambda name, observation: observation if isinstance(observation, dict) else {
        "obs" if name == main else name: observation}
    observations = [combined.reset(seed=3)[0]]
    expected = [{key: value for name, env in alone.items() for key, value in named(name, env.reset(seed=3)[0]).items()}]
    for step in range(5):
        observations.append(combined.step(0)[0])
        expected.append({key: value for name, env in alone.items() for key, value in named(name, env.step(0)[0]).items()})
    assert set(observations[0]) == set(combined.observation_space.spaces) == set(expected[0])
    for step, (observation, wanted) in enumerate(zip(observations, expected)):
        for key in wanted:
            np.testing.assert_array_equal(observation[key], wanted[key], err_msg=f"{key} at step {step}")
    assert np.abs(observations[-1]["integrated"]).max() > 0 and observations[-1]["count"] > 0


def test_extra_representations_refuse_the_main_one_and_unknown_names():
    with pytest.raises(EnvConfigError, match="other than the representation"):
        EventCameraConfig(representation="events", extra_representations=["events"])
    with pytest.raises(EnvConfigError, match="one of"):
        EventCameraConfig(representation="events", extra_representations=["intgrated"])


@pytest.mark.parametrize("representation", ["frame", "voxel", "events", "integrated"])
def test_check_env_on_event_cartpole(representation):
    config = {"image_size": [32, 32], "event_camera": {"representation": representation, "max_events": 256}}
    env = make_env("event:CartPole-v1", config, seed=0)
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    total = sum(env.step(1)[4]["event_count"] for _ in range(8))  # constant push: cart and pole move
    assert total > 0


def test_check_env_with_noise_is_deterministic_under_seed():
    config = EventCameraConfig(shot_noise_rate=1.0, leak_rate=0.5, threshold_sigma=0.03, refractory_period=1e-3)
    env = EventCamera(MovingBarEnv(), config, image_size=(8, 16))
    check_env(env, skip_render_check=True)


def test_event_camera_needs_rgb_array_render():
    with pytest.raises(ValueError, match="rgb_array"):
        EventCamera(gymnasium.make("CartPole-v1"))


def test_changes_of_exact_threshold_multiples_leave_no_phantom_events():
    # Log steps of exactly k * C put residuals on the threshold up to float rounding; a static frame
    # afterwards must give no events (and no division by a zero slope).
    simulator = EventSimulator(0.2, 0.2, log_eps=EPS)
    base = np.log(np.linspace(0.01, 0.3, 4096) + EPS)
    intensity = lambda steps: np.exp(base + 0.2 * steps) - EPS  # noqa: E731
    simulator.reset(intensity(0).reshape(64, 64))
    with np.errstate(divide="raise", invalid="raise"):
        for time, steps in enumerate([3, 5, 1, 4], start=1):
            events = simulator.step(intensity(steps).reshape(64, 64), float(time))
            assert np.all((events.t > time - 1) & (events.t <= time))
        assert simulator.step(intensity(4).reshape(64, 64), 5.0).count == 0
