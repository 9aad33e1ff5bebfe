"""The value map's grid exploration and distances against an independent breadth-first search over
the grid's free cells, and its summary on hand-made estimates."""

from collections import deque

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers hmbrl/GridFourRooms-v0)
from agents.value_map import BAND_EDGES, distances_to_reward, explore_cells, summarise
from envs.grid_rooms import MOVES, shortest_path_length


def grid_distances_to_goal(env) -> dict:
    """Steps from every free cell to the goal, searched outwards from the goal over the free cells."""
    distance, frontier = {env.goal: 0}, deque([env.goal])
    while frontier:
        cell = frontier.popleft()
        for d_row, d_column in MOVES.tolist():
            neighbour = (cell[0] + d_row, cell[1] + d_column)
            if env.free[neighbour] and neighbour not in distance:
                distance[neighbour] = distance[cell] + 1
                frontier.append(neighbour)
    return distance


@pytest.mark.parametrize("kwargs", [{}, {"size": 9, "doors": (1, 6, 2, 5)}])
def test_cells_and_distances_match_a_search_over_the_grid(kwargs):
    make = lambda: gym.make("hmbrl/GridFourRooms-v0", **kwargs)  # noqa: E731
    env = make().unwrapped
    interior = env.size - 2
    graph = explore_cells(make, "obs", (interior, interior), lambda observation: {"obs": observation})
    expected = grid_distances_to_goal(env)
    # every free cell but the goal (stepping into it ends the episode), the start first
    assert graph.cells[0] == env.start and len(graph.cells) == int(env.free.sum()) - 1
    assert set(graph.cells) == set(expected) - {env.goal}
    distance = distances_to_reward(graph)
    assert {cell: int(d) for cell, d in zip(graph.cells, distance)} == {cell: expected[cell] for cell in graph.cells}
    assert distance[0] == shortest_path_length(env)
    assert graph.rewards.sum() == 2  # the goal's two free neighbours, one move each


def test_a_cell_that_cannot_reach_the_reward_is_infinitely_far():
    # two cells and a rewarded step from cell 0; cell 1 only loops on itself
    from agents.value_map import CellGraph
    graph = CellGraph([(0,), (1,)], np.zeros((2, 1)), np.array([[-1, 1], [1, 1]]), np.array([[1.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(distances_to_reward(graph), [1, np.inf])


def test_summary_correlations_spreads_and_bands():
    distance = np.array([1, 3, 3, 7, 25, 60, np.inf])
    value = -distance.copy()
    value[-1] = 5.0  # unreachable: left out of every statistic
    imagined = np.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 9.0])
    summary = summarise(value, imagined, distance)
    assert summary["cells"] == 7 and summary["cells_reaching_reward"] == 6
    assert summary["value_rank_correlation"] == pytest.approx(1.0)
    assert 0 < summary["imagined_rank_correlation"] < 1
    assert summary["value_spread"] == pytest.approx(np.subtract(*np.percentile(-distance[:6], [95, 5])))
    bands = {band["from"]: band for band in summary["bands"]}
    assert set(bands) == {1, 2, 5, 20, 40} and set(bands) <= set(BAND_EDGES)
    assert bands[2]["cells"] == 2 and bands[2]["imagined_return"] == pytest.approx(0.25)
    assert bands[2]["imagines_reward"] == pytest.approx(0.5) and bands[40]["below"] is None
    flat = summarise(np.zeros(6), np.zeros(6), distance[:6])
    assert flat["value_rank_correlation"] is None and flat["value_spread"] == 0.0
