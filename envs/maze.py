"""A continuous four-rooms maze with a sparse reward: a long-horizon task for the hierarchy.

A point moves in the unit square, split into four rooms by walls with one narrow door between each
pair of neighbouring rooms. It starts in the lower-left room; the only reward, 1, comes when it
reaches the goal disc in the upper-right room, which ends the episode. Reaching it takes at least
two door passages and about 60 well-aimed steps, so random exploration rarely gets there.

Registered as ``hmbrl/PointFourRooms-v0`` (400 steps per episode); ``python -m scripts.train --env
hmbrl/PointFourRooms-v0``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

# Walls as axis-aligned boxes (x0, y0, x1, y1): a cross through the centre with four doors.
_HALF = 0.01
_DOORS = ((0.2, 0.3), (0.7, 0.8))


def _walls() -> list[tuple[float, float, float, float]]:
    walls = []
    edges = [0.0, _DOORS[0][0], _DOORS[0][1], _DOORS[1][0], _DOORS[1][1], 1.0]
    for start, end in zip(edges[0::2], edges[1::2]):
        walls.append((0.5 - _HALF, start, 0.5 + _HALF, end))  # vertical wall, doors left open
        walls.append((start, 0.5 - _HALF, end, 0.5 + _HALF))  # horizontal wall
    return walls


class PointFourRooms(gym.Env):
    """Observation: ``[x, y]`` in ``[0, 1]^2``; action: a velocity in ``[-1, 1]^2`` times ``speed``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, speed: float = 0.03, goal: tuple[float, float] = (0.85, 0.85), goal_radius: float = 0.07,
                 start: tuple[float, float] = (0.15, 0.15), render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.speed, self.goal, self.goal_radius = speed, np.array(goal), goal_radius
        self.start = np.array(start)
        self.render_mode = render_mode
        self.walls = _walls()
        self.position = self.start.copy()

    def _blocked(self, point: np.ndarray) -> bool:
        if np.any(point < 0.0) or np.any(point > 1.0):
            return True
        return any(x0 <= point[0] <= x1 and y0 <= point[1] <= y1 for x0, y0, x1, y1 in self.walls)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = self.start + self.np_random.uniform(-0.05, 0.05, 2)
        return self.position.astype(np.float32), {}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        delta = self.speed * np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        # Move in small sub-steps so that a fast point cannot jump through a wall.
        for _ in range(4):
            candidate = self.position + delta / 4
            if self._blocked(candidate):
                break
            self.position = candidate
        reached = np.linalg.norm(self.position - self.goal) <= self.goal_radius
        return self.position.astype(np.float32), float(reached), bool(reached), False, {"success": bool(reached)}

    def render(self) -> np.ndarray:
        size = 64
        image = np.full((size, size, 3), 255, np.uint8)
        for x0, y0, x1, y1 in self.walls:
            image[size - int(np.ceil(y1 * size)): size - int(y0 * size), int(x0 * size): int(np.ceil(x1 * size))] = 0
        for centre, colour in ((self.goal, (0, 170, 0)), (self.position, (200, 0, 0))):
            column, row = int(centre[0] * (size - 1)), size - 1 - int(centre[1] * (size - 1))
            image[max(row - 2, 0): row + 3, max(column - 2, 0): column + 3] = colour
        return image
