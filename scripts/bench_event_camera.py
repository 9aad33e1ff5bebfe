"""Throughput of the event camera: frames/s and events/s per representation and image size.

Two sources: a synthetic moving scene (pre-rendered frames, so only simulation and encoding are
timed) and ``event:CartPole-v1`` (render, resize, simulation, encoding), the latter compared with
the bare CartPole step and with plain pixel observations at the same size.

    python -m scripts.bench_event_camera [--steps 300] [--sizes 64 128] [--out benchmarks/out/event_camera.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from envs.config import REPRESENTATIONS, EventCameraConfig
from envs.event_camera import EventCamera
from envs.registry import make_env

WARMUP_STEPS = 20


class SyntheticSceneEnv(gymnasium.Env):
    """Plays pre-rendered frames of a bright disc circling over a horizontal gradient."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, size: int, frames: int = 64, render_mode: str = "rgb_array"):
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Box(0, 1, (1,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)
        self._frames = synthetic_frames(size, frames)
        self._index = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._index = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self._index += 1
        return np.zeros(1, np.float32), 0.0, False, False, {}

    def render(self) -> np.ndarray:
        return self._frames[self._index % len(self._frames)]


def synthetic_frames(size: int, count: int) -> np.ndarray:
    """``(count, size, size, 3)`` uint8: a disc of radius size/8 on a circle of radius size/4."""
    rows, cols = np.mgrid[0:size, 0:size]
    background = 0.15 + 0.5 * cols / size
    frames = []
    for index in range(count):
        angle = 2 * np.pi * index / count
        centre_row = size / 2 + size / 4 * np.sin(angle)
        centre_col = size / 2 + size / 4 * np.cos(angle)
        disc = (rows - centre_row) ** 2 + (cols - centre_col) ** 2 < (size / 8) ** 2
        frames.append(np.where(disc, 0.95, background))
    return np.repeat((np.stack(frames) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def time_steps(env: gymnasium.Env, steps: int) -> dict[str, float]:
    """Seconds per step and events per step of ``steps`` actions (alternating), resets excluded."""
    env.reset(seed=0)
    for step in range(WARMUP_STEPS):  # first calls pay for imports, caches and pygame's window surface
        if any(env.step(step % 2)[2:4]):
            env.reset()
    events, elapsed, dropped = 0, 0.0, 0
    for step in range(steps):
        start = time.perf_counter()
        _, _, terminated, truncated, info = env.step(step % 2)
        elapsed += time.perf_counter() - start
        events += info.get("event_count", 0)
        dropped += info.get("events_dropped", 0)
        if terminated or truncated:
            env.reset()
    return {"step_s": elapsed / steps, "events_per_step": events / steps, "dropped_per_step": dropped / steps}


def cartpole_env(representation: str | None, size: int) -> gymnasium.Env:
    """CartPole with the event camera (``representation``), pixels (``"pixels"``) or bare (None)."""
    if representation is None:
        return make_env("CartPole-v1", seed=0)
    if representation == "pixels":
        return make_env("CartPole-v1", {"pixels": True, "image_size": [size, size]}, seed=0)
    config = {"image_size": [size, size], "event_camera": {"representation": representation}}
    return make_env("event:CartPole-v1", config, seed=0)


def run(sizes: list[int], steps: int) -> list[dict[str, Any]]:
    rows = []
    bare = time_steps(cartpole_env(None, 0), steps * 5)["step_s"]
    for size in sizes:
        for representation in REPRESENTATIONS:
            config = EventCameraConfig(representation=representation)
            synthetic = EventCamera(SyntheticSceneEnv(size), config, (size, size), seed=0)
            rows.append(_row("synthetic", size, representation, time_steps(synthetic, steps), None))
        pixels = time_steps(cartpole_env("pixels", size), steps)
        rows.append(_row("CartPole-v1", size, "pixels", pixels, bare))
        for representation in REPRESENTATIONS:
            timing = time_steps(cartpole_env(representation, size), steps)
            rows.append(_row("event:CartPole-v1", size, representation, timing, bare, pixels["step_s"]))
    rows.append(_row("CartPole-v1", 0, "bare", {"step_s": bare, "events_per_step": 0.0}, bare))
    return rows


def _row(
    scene: str, size: int, representation: str, timing: dict[str, float], bare_s: float | None,
    pixels_s: float | None = None,
) -> dict[str, Any]:
    step_s = timing["step_s"]
    return {
        "scene": scene,
        "size": size,
        "representation": representation,
        "us_per_step": step_s * 1e6,
        "frames_per_s": 1.0 / step_s,
        "events_per_frame": timing["events_per_step"],
        "events_per_s": timing["events_per_step"] / step_s,
        "dropped_per_frame": timing.get("dropped_per_step", 0.0),
        "x_bare_step": step_s / bare_s if bare_s else None,
        "x_pixels_step": step_s / pixels_s if pixels_s else None,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'scene':<18} {'size':>4} {'repr':<7} {'us/step':>9} {'frames/s':>9} {'events/frame':>12} " \
             f"{'events/s':>10} {'dropped/fr':>10} {'x bare':>7} {'x pixels':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = lambda value: f"{value:7.1f}" if value else f"{'-':>7}"  # noqa: E731
        lines.append(
            f"{row['scene']:<18} {row['size']:>4} {row['representation']:<7} {row['us_per_step']:9.1f} "
            f"{row['frames_per_s']:9.0f} {row['events_per_frame']:12.1f} {row['events_per_s']:10.0f} "
            f"{row['dropped_per_frame']:10.1f} {ratio(row['x_bare_step'])} {ratio(row['x_pixels_step']):>8}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per configuration")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square image sizes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/event_camera.json"))
    args = parser.parse_args()
    rows = run(args.sizes, args.steps)
    print(format_table(rows))
    print("x bare: step time / bare CartPole step; x pixels: / CartPole pixel-observation step (same size)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"numpy": np.__version__, "gymnasium": gymnasium.__version__, "cpus": os.cpu_count(),
            "machine": platform.platform(), "steps": args.steps}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
