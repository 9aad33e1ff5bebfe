"""What the hierarchy gates of issue 15 count, as pure numpy functions over arrays.

The gates (``agents.gates`` runs the agent to fill these arrays; ``scripts.hierarchy_gates`` is the
command): level 0's model decodes the cell; the worker reaches goals from its own replay at least
twice as often as shuffled ones; the level-1 codebook is used and its goals cover the visited cells.
Nothing here knows the agent, so each count is tested on hand-made arrays.

Shapes: ``N`` steps or visited states, ``D`` observation size made of one-hot groups of sizes
``groups`` (``G`` of them), ``K`` steps a goal is held, ``P`` (start, goal) pairs, ``M`` decoded
goals, ``F`` goal features. A *cell* is one integer per step: the group indices raveled together.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

DECODING_THRESHOLD = 0.95  # share of steps whose decoded cell is exactly right
REACH_RATIO = 2.0  # own-goal reach over shuffled-goal reach
PERPLEXITY_THRESHOLD = 30.0  # codes in use, as if used equally often
COVERAGE_THRESHOLD = 0.5  # share of visited cells some decoded goal lands on


class Gate(NamedTuple):
    """One gate's verdict: ``passed`` is None where it could not be measured (``note`` says why)."""

    key: str  # short and stable, for JSON: decoding, reach, perplexity, coverage
    name: str
    value: float | None
    threshold: str
    passed: bool | None
    details: dict
    note: str = ""


def group_indices(values: np.ndarray, groups: Sequence[int]) -> np.ndarray:
    """``[..., D] -> [..., G]``: the argmax within each one-hot group (``sum(groups) == D``)."""
    if sum(groups) != values.shape[-1]:
        raise ValueError(f"groups {tuple(groups)} add up to {sum(groups)}, not the observation size {values.shape[-1]}")
    parts = np.split(values, np.cumsum(groups)[:-1], axis=-1)
    return np.stack([np.argmax(part, -1) for part in parts], -1)


def cell_ids(indices: np.ndarray, groups: Sequence[int]) -> np.ndarray:
    """``[..., G] -> [...]``: one integer per combination of group indices."""
    return np.ravel_multi_index(tuple(np.moveaxis(indices, -1, 0)), tuple(groups))


def decoding_accuracy(decoded: np.ndarray, observed: np.ndarray, groups: Sequence[int],
                      mask: np.ndarray | None = None) -> float:
    """Share of (masked) steps ``[N]`` where every group's argmax of ``decoded [N, D]`` equals the
    observed one: the model names the exact cell, not a neighbour."""
    exact = np.all(group_indices(decoded, groups) == group_indices(observed, groups), -1)
    mask = np.ones(exact.shape, bool) if mask is None else np.asarray(mask, bool)
    return float(exact[mask].mean()) if mask.any() else float("nan")


def reach_rate(similarities: np.ndarray, threshold: float, alive: np.ndarray | None = None) -> float:
    """Share of pairs whose best similarity over the steps ``[K, P]`` where they were ``alive`` (the
    episode had not ended) reaches ``threshold``: the agent's own reach count (``goal.reach_threshold``)."""
    alive = np.ones(similarities.shape, bool) if alive is None else np.asarray(alive, bool)
    best = np.where(alive, similarities, -np.inf).max(0)
    return float(np.mean(best >= threshold))


def cell_reach_rate(cells: np.ndarray, goal_cells: np.ndarray, alive: np.ndarray | None = None) -> float:
    """Share of pairs whose cell ``[K, P]`` equals the goal's cell ``[P]`` at some alive step: reach
    by the ground truth, whatever the similarity threshold."""
    return float(np.mean(entered_cells(cells, goal_cells, alive)))


def entered_cells(cells: np.ndarray, goal_cells: np.ndarray, alive: np.ndarray | None = None) -> np.ndarray:
    """``[P]``: whether each pair's cell ``[K, P]`` equalled its goal's cell ``[P]`` at some step
    where its episode still ran (``alive [K, P]``)."""
    alive = np.ones(cells.shape, bool) if alive is None else np.asarray(alive, bool)
    return np.any((cells == goal_cells[None]) & alive, 0)


def reach_gate_passes(own: float, shuffled: float, ratio: float = REACH_RATIO) -> bool:
    """Own goals reached at least ``ratio`` times as often as shuffled ones, and some reached at all
    (0 >= 2 x 0 would otherwise pass a worker that reaches nothing)."""
    return own > 0 and own >= ratio * shuffled


def episode_starts(is_first: np.ndarray) -> np.ndarray:
    """``[T, B]``: the step at which the episode holding each step of ``is_first [T, B]`` started (a
    later step ``t + k`` is in the same episode as ``t`` when its start is at or before ``t``)."""
    return np.maximum.accumulate(np.where(is_first, np.arange(is_first.shape[0])[:, None], 0), 0)


def sample_pairs(is_first: np.ndarray, horizon: int, count: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``count`` distinct (start time, column, offset k in ``1..horizon``) of ``is_first [T, B]``
    whose goal step ``t + k`` lies in the same episode: ``(time [P], column [P], offset [P])``."""
    length, columns = is_first.shape
    offsets = rng.integers(1, horizon + 1, (length, columns))
    started = episode_starts(is_first)  # no episode may start in (t, t + k]
    time, column = np.nonzero(np.arange(length)[:, None] + offsets < length)
    goal_time = time + offsets[time, column]
    same_episode = started[goal_time, column] <= time
    time, column = time[same_episode], column[same_episode]
    chosen = rng.permutation(len(time))[:count]
    return time[chosen], column[chosen], offsets[time[chosen], column[chosen]]


def sample_pairs_beyond(is_first: np.ndarray, nearest: int, horizon: int, count: int, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As ``sample_pairs``, with offsets in ``nearest + 1 .. horizon`` only: pairs whose goal lies
    farther ahead than ``nearest`` steps."""
    time, column, offset = sample_pairs(is_first, horizon, len(is_first) * is_first.shape[1], rng)
    beyond = offset > nearest
    return time[beyond][:count], column[beyond][:count], offset[beyond][:count]


def derangement(count: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation ``[count]`` that moves every index (count >= 2): each pair gets another
    pair's goal."""
    if count < 2:
        raise ValueError(f"shuffling goals needs at least 2 pairs, got {count}")
    order = rng.permutation(count)
    shuffled = np.empty(count, np.int64)
    shuffled[order] = np.roll(order, -1)  # a cycle through all pairs: no fixed point
    return shuffled


def similarity_matrix(goals: np.ndarray, states: np.ndarray) -> np.ndarray:
    """``[M, N]``: ``agents.goals.goal_similarity`` of every state ``[N, F]`` to every goal ``[M, F]``,
    as one matrix product (the broadcast form would hold ``M * N * F`` floats)."""
    goals, states = np.asarray(goals, np.float64), np.asarray(states, np.float64)
    norm = np.maximum(np.linalg.norm(goals, axis=-1)[:, None], np.linalg.norm(states, axis=-1)[None])
    return goals @ states.T / np.maximum(norm, 1e-6) ** 2


def nearest_states(goals: np.ndarray, states: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """``[M]``: the index of the state ``[N, F]`` most similar to each goal ``[M, F]``, ``chunk`` goals
    at a time (so that thousands of goals against thousands of states stay small)."""
    return np.concatenate([np.argmax(similarity_matrix(goals[start:start + chunk], states), 1)
                           for start in range(0, len(goals), chunk)])


def goal_coverage(nearest: np.ndarray, state_cells: np.ndarray) -> tuple[float, int, int]:
    """Each goal lands on the cell of its nearest visited state (``nearest [M]`` indexes
    ``state_cells [N]``): ``(share of visited cells some goal lands on, cells landed on, cells visited)``."""
    visited = np.unique(state_cells)
    mapped = np.unique(state_cells[nearest])
    return len(mapped) / len(visited), len(mapped), len(visited)


def codes_to_probe(codes: int, classes: int, visited: np.ndarray, samples: int, rng: np.random.Generator
                   ) -> np.ndarray:
    """Class indices ``[M, codes]`` of the codes whose goals the coverage gate decodes: every code if
    there are at most ``samples``, else ``samples`` random ones plus the distinct ``visited [N, codes]``."""
    if classes**codes <= samples:
        grid = np.meshgrid(*[np.arange(classes)] * codes, indexing="ij")
        return np.stack([axis.reshape(-1) for axis in grid], -1)
    drawn = rng.integers(0, classes, (samples, codes))
    return np.unique(np.concatenate([drawn, visited.reshape(-1, codes)]), axis=0)
