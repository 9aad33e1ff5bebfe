"""The background-activity filter against an event-by-event loop, and on noise whose survival is known."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from envs.config import EnvConfigError, EventCameraConfig
from envs.event_camera import Events, EventCamera
from envs.event_filter import BackgroundActivityFilter


def loop_filter(steps: list[Events], filter_time: float, height: int, width: int) -> list[Events]:
    """The definition, one event at a time: kept if a neighbour's last event is less than
    ``filter_time`` older; every event, kept or not, becomes its pixel's last."""
    last: dict[tuple[int, int], float] = {}
    filtered = []
    for events in steps:
        keep = []
        for x, y, t in zip(events.x.tolist(), events.y.tolist(), events.t.tolist()):
            neighbours = [(x + dx, y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
            keep.append(any(t - last[n] < filter_time for n in neighbours if n in last))
            last[(x, y)] = t
        keep = np.asarray(keep, bool)
        filtered.append(Events(*(field[keep] for field in events)))
    return filtered


def random_steps(rng: np.random.Generator, steps: int, height: int, width: int, per_step: int) -> list[Events]:
    """Time-sorted events on a 1 ms grid (so ties occur), clustered in a few pixels so neighbours fire."""
    out = []
    for step in range(steps):
        count = int(rng.integers(0, per_step))
        t = np.sort(step * 0.01 + rng.integers(1, 11, count) * 0.001)
        out.append(Events(x=rng.integers(0, width, count).astype(np.int32),
                          y=rng.integers(0, height, count).astype(np.int32),
                          t=t, p=rng.choice(np.array([-1, 1], np.int8), count)))
    return out


@pytest.mark.parametrize("filter_time", [0.0025, 0.0155])
def test_the_filter_equals_the_event_by_event_definition_across_steps_ties_and_borders(filter_time):
    rng = np.random.default_rng(0)
    height, width = 5, 7  # small, so most events have neighbours that fired and many sit on a border
    steps = random_steps(rng, 30, height, width, 40)
    event_filter = BackgroundActivityFilter(filter_time, (height, width))
    got = [event_filter(events) for events in steps]
    expected = loop_filter(steps, filter_time, height, width)
    kept = sum(events.count for events in got)
    assert 0 < kept < sum(events.count for events in steps)
    for mine, reference in zip(got, expected):
        for field, reference_field in zip(mine, reference):
            np.testing.assert_array_equal(field, reference_field)
            assert field.dtype == reference_field.dtype


def test_reset_forgets_the_previous_episode():
    event_filter = BackgroundActivityFilter(0.01, (4, 4))
    first = Events(np.array([1], np.int32), np.array([1], np.int32), np.array([0.005]), np.array([1], np.int8))
    neighbour = Events(np.array([2], np.int32), np.array([1], np.int32), np.array([0.008]), np.array([1], np.int8))
    assert event_filter(first).count == 0  # nothing fired before it
    event_filter(first)
    assert event_filter(neighbour).count == 1  # 3 ms after its neighbour
    event_filter.reset()
    event_filter(first)  # the clock restarts at 0 with each episode
    event_filter.reset()
    assert event_filter(neighbour).count == 0


def test_shot_noise_survives_as_often_as_a_neighbour_fires_within_the_filter_time():
    """Poisson noise at rate r per pixel: an interior event survives with probability
    1 - exp(-8 r T), the chance that one of its 8 neighbours fired in the T seconds before it."""
    rng = np.random.default_rng(1)
    height = width = 40
    rate, step, filter_time = 20.0, 0.05, 0.004
    event_filter = BackgroundActivityFilter(filter_time, (height, width))
    interior_in, interior_kept = 0, 0
    for index in range(200):
        count = rng.poisson(rate * step * height * width)
        t = np.sort(index * step + rng.uniform(0, step, count))
        events = Events(rng.integers(0, width, count).astype(np.int32), rng.integers(0, height, count).astype(np.int32),
                        t, np.ones(count, np.int8))
        kept = event_filter(events)
        if index < 2:  # the memory needs filter_time of history
            continue
        interior = lambda e: (e.x > 0) & (e.x < width - 1) & (e.y > 0) & (e.y < height - 1)
        interior_in += int(interior(events).sum())
        interior_kept += int(interior(kept).sum())
    expected = 1 - math.exp(-8 * rate * filter_time)
    assert interior_kept / interior_in == pytest.approx(expected, abs=0.01)  # ~64k events: std 0.002


class MovingBar(gym.Env):
    """A dark vertical bar moving one pixel to the right a step over a light background."""

    metadata = {"render_modes": ["rgb_array"]}
    render_mode = "rgb_array"
    observation_space = gym.spaces.Box(0.0, 1.0, (1,))
    action_space = gym.spaces.Discrete(1)

    def reset(self, *, seed=None, options=None):
        self.position = 4
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.position += 1
        return np.zeros(1, np.float32), 0.0, False, self.position >= 24, {}

    def render(self):
        frame = np.full((32, 32, 3), 220, np.uint8)
        frame[4:28, self.position:self.position + 2] = 20
        return frame


def test_the_camera_keeps_a_moving_edge_and_drops_most_noise():
    noisy = dict(shot_noise_rate=20.0, frame_interval=0.05, threshold_sigma=0.0)

    def events_per_step(config):
        camera = EventCamera(MovingBar(), config, image_size=(32, 32), seed=0)
        camera.reset(seed=0)
        return np.mean([camera.step(0)[-1]["event_count"] for _ in range(15)])

    clean = events_per_step(EventCameraConfig(frame_interval=0.05))
    clean_filtered = events_per_step(EventCameraConfig(frame_interval=0.05, background_filter_time=0.002))
    noise_only = events_per_step(EventCameraConfig(**noisy)) - clean
    noisy_filtered = events_per_step(EventCameraConfig(**noisy, background_filter_time=0.002))
    assert clean_filtered > 0.9 * clean  # a bar's edge fires its whole column at once
    assert noise_only > clean
    # 1 - exp(-8 * 20 Hz * 2 ms) = 27% of the noise survives
    assert noisy_filtered < clean + 0.35 * noise_only


def test_a_negative_filter_time_is_refused():
    with pytest.raises(EnvConfigError, match="background_filter_time"):
        EventCameraConfig(background_filter_time=-0.001)
    with pytest.raises(ValueError, match="filter_time"):
        BackgroundActivityFilter(0.0, (4, 4))
