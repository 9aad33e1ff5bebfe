"""A discrete four-rooms grid world with a sparse reward: the hierarchy's benchmark task.

The grid is ``size`` x ``size`` cells, its border a wall. A wall cross at row and column
``(size - 1) // 2`` splits the interior into four rooms, with one one-cell door in each of the four
wall segments. The agent starts in the outer corner of the lower-left room; the only reward, 1,
comes on reaching the far corner of the upper-right room, which ends the episode. Rows count down
from the top, so "lower" means a larger row.

Why 18 x 18 and not 13 x 13: with the start and goal in the outer corners, a monotone path through
the two doors on either side always exists, so the shortest path is the Manhattan distance between
the corners, ``2 * (size - 3)``: 20 steps at 13 x 13, whatever the doors (a search over every door
position, walls within a cell of the centre and every corner of the lower-left room as the start
found no route longer). Random actions also succeed far too often there (13 x 13, doors 3 9 3 9:
129 of 2,000 episodes, 6.5%). 30 steps needs ``size >= 18``; 18 x 18 is the nearest size that
meets both bounds of the issue, with each door three cells in from the outer wall. The wall cross
then sits half a cell off the centre: the lower-left room is 8 rows by 7 columns, the upper-right
one 7 by 8.

Calibration, measured by ``python -m scripts.calibrate_grid_rooms`` (defaults, seed 0): shortest
path 30 steps (BFS, bound >= 30); uniform random policy 6 successes in 2,000 episodes of 200 steps,
0.30% (bound <= 0.5%). The exact probability, from the distribution over cells pushed through 200
steps, is 0.285%, so 2,000 sampled episodes exceed 0.5% (11 or more successes) with probability
0.03 (binomial); seeds 1, 2, 3 gave 1, 10 and 4.

Registered as ``hmbrl/GridFourRooms-v0`` (200 steps per episode).
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

# Action index -> (row, column) change: up, down, left, right.
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)], np.int64)
CELL_PIXELS = 4  # rendered size of one cell


class Doors(NamedTuple):
    """Where the four doors are: a row in each half of the vertical wall, a column in each half of
    the horizontal wall."""

    upper_row: int  # upper-left <-> upper-right
    lower_row: int  # lower-left <-> lower-right
    left_column: int  # upper-left <-> lower-left
    right_column: int  # upper-right <-> lower-right


def default_doors(size: int) -> Doors:
    """Each door three cells in from the outer wall (or as far in as its wall segment allows)."""
    wall = (size - 1) // 2
    near, far = min(3, wall - 1), max(size - 4, wall + 1)
    return Doors(near, far, near, far)


def free_cells(size: int, doors: Doors) -> np.ndarray:
    """``[size, size]`` bool: True where the agent may stand. Raises ValueError on a bad layout."""
    if size < 5:
        raise ValueError(f"size must be at least 5 (four rooms of at least one cell), got {size}")
    wall = (size - 1) // 2
    low_range, high_range = (1, wall - 1), (wall + 1, size - 2)
    for name, value in doors._asdict().items():
        low, high = low_range if name in ("upper_row", "left_column") else high_range
        if not low <= value <= high:
            raise ValueError(f"door {name} must be in [{low}, {high}] for size {size}, got {value}")
    free = np.zeros((size, size), bool)
    free[1:-1, 1:-1] = True
    free[wall, :] = free[:, wall] = False
    free[doors.upper_row, wall] = free[doors.lower_row, wall] = True
    free[wall, doors.left_column] = free[wall, doors.right_column] = True
    return free


def move(free: np.ndarray, cells: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``cells [N, 2]`` after ``actions [N]``; a move into a wall leaves the cell unchanged.

    The one movement rule, shared by ``step`` and the vectorised random walk of the calibration.
    """
    candidates = cells + MOVES[actions]
    open_ = free[candidates[:, 0], candidates[:, 1]]
    return np.where(open_[:, None], candidates, cells)


class GridFourRooms(gym.Env):
    """Observation: one-hot of the row followed by one-hot of the column, over the interior
    (``2 * (size - 2)`` floats, norm always sqrt 2, so no cell stands out by magnitude). Actions:
    up, down, left, right. ``info["cell"]`` is the ``(row, column)`` tuple.

    ``reset(options={"cell": (row, column)})`` starts the episode in that free cell instead of the
    start corner: the env is deterministic given its cell, so a probe can replay any visited state
    (``scripts.hierarchy_gates``). ``one_hot_groups`` and ``cell_of_groups`` say how the observation
    names the cell."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 18, doors: tuple[int, int, int, int] | None = None,
                 render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if doors is not None and len(doors) != len(Doors._fields):
            raise ValueError(f"doors must be four positions {Doors._fields}, got {doors!r}")
        self.size = size
        self.doors = Doors(*doors) if doors is not None else default_doors(size)
        self.free = free_cells(size, self.doors)
        self.start = (size - 2, 1)
        self.goal = (1, size - 2)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2 * (size - 2),), np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self.cell = self.start
        self.one_hot_groups = (size - 2, size - 2)  # the observation: one-hot row, then one-hot column

    def cell_of_groups(self, indices) -> tuple[int, int]:
        """The cell whose observation is hot at ``indices`` (row, column) of its ``one_hot_groups``."""
        row, column = (int(index) for index in indices)
        return row + 1, column + 1  # the groups cover the interior, inside the border wall

    def _observation(self) -> np.ndarray:
        interior = self.size - 2
        observation = np.zeros(2 * interior, np.float32)
        observation[self.cell[0] - 1] = 1.0
        observation[interior + self.cell[1] - 1] = 1.0
        return observation

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cell = (options or {}).get("cell", self.start)
        cell = (int(cell[0]), int(cell[1]))
        if not (0 <= cell[0] < self.size and 0 <= cell[1] < self.size and self.free[cell]):
            raise ValueError(f"options['cell'] must be a free (row, column) of the {self.size}x{self.size} grid, "
                             f"got {cell}")
        self.cell = cell
        return self._observation(), {"cell": self.cell}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        row, column = move(self.free, np.array([self.cell]), np.array([int(action)]))[0]
        self.cell = (int(row), int(column))
        reached = self.cell == self.goal
        return self._observation(), float(reached), reached, False, {"cell": self.cell, "success": reached}

    def render(self) -> np.ndarray:
        image = np.zeros((self.size, self.size, 3), np.uint8)
        image[self.free] = 255
        image[self.goal] = (0, 170, 0)
        image[self.cell] = (200, 0, 0)
        return np.repeat(np.repeat(image, CELL_PIXELS, axis=0), CELL_PIXELS, axis=1)


def shortest_path(env: GridFourRooms) -> list[int]:
    """The actions of a shortest path from start to goal, by breadth-first search over cells."""
    previous: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {env.start: None}
    frontier = deque([env.start])
    while frontier:
        cell = frontier.popleft()
        if cell == env.goal:
            break
        for action, (d_row, d_column) in enumerate(MOVES.tolist()):
            neighbour = (cell[0] + d_row, cell[1] + d_column)
            if env.free[neighbour] and neighbour not in previous:
                previous[neighbour] = (cell, action)
                frontier.append(neighbour)
    if env.goal not in previous:
        raise ValueError("the goal cannot be reached from the start")
    actions, cell = [], env.goal
    while previous[cell] is not None:
        cell, action = previous[cell]
        actions.append(action)
    return actions[::-1]


def shortest_path_length(env: GridFourRooms) -> int:
    return len(shortest_path(env))


def random_success_rate(env: GridFourRooms, episodes: int, steps: int, rng: np.random.Generator) -> float:
    """Share of ``episodes`` in which uniform random actions reach the goal within ``steps``,
    all episodes walked at once in numpy with the env's own movement rule."""
    cells = np.tile(np.array(env.start), (episodes, 1))
    reached = np.zeros(episodes, bool)
    goal = np.array(env.goal)
    for _ in range(steps):
        cells = move(env.free, cells, rng.integers(0, len(MOVES), episodes))
        reached |= (cells == goal).all(axis=1)  # an episode ends there: later steps do not matter
    return float(reached.mean())
