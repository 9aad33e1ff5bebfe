"""The value map's grid exploration and distances against an independent breadth-first search over
the grid's free cells, and its summary on hand-made estimates."""

from collections import deque

import gymnasium as gym
import jax
import numpy as np
import pytest

import envs  # noqa: F401  (registers hmbrl/GridFourRooms-v0)
from agents.spaces import ActionLayout
from agents.value_map import (BAND_EDGES, CellGraph, distances_to_reward, entries, explore_cells, goal_progress,
                              success_from_cells, summarise, TopGoals)
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
    predecessor, action = entries(graph)  # every cell, the start included, is entered by a real step
    np.testing.assert_array_equal(graph.successors[predecessor, action], np.arange(len(graph.cells)))


def test_a_cell_that_cannot_reach_the_reward_is_infinitely_far():
    # two cells and a rewarded step from cell 0; cell 1 only loops on itself
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


def test_goal_progress_is_counted_in_steps_nearer_the_reward():
    distance = np.array([4.0, 9.0, 1.0, 6.0, np.inf])
    targets = np.array([2, 3, 2, 4, 0])  # cell 3's goal cannot reach the reward: not counted
    counted = np.isfinite(distance)
    assert goal_progress(distance, targets, counted) == pytest.approx({"progress": (3 + 3 + 0) / 3, "nearer": 2 / 3})
    assert goal_progress(distance, targets, np.array([False, False, False, True, False])) is None


def test_summary_with_goals_reports_both_kinds_overall_and_per_band():
    distance = np.array([1.0, 3.0, 7.0, 8.0])
    own, random_code = np.array([0, 0, 1, 0]), np.array([3, 2, 3, 3])
    reached = np.array([True, False, True, True])
    summary = summarise(np.zeros(4), np.zeros(4), distance, TopGoals(own, random_code, reached))
    assert summary["goals"]["worker_reached"] == 0.75
    assert summary["goals"]["level1"] == pytest.approx({"progress": (0 + 2 + 4 + 7) / 4, "nearer": 0.75})
    assert summary["goals"]["random_code"] == pytest.approx({"progress": (-7 - 4 - 1 + 0) / 4, "nearer": 0.0})
    assert summary["goals"]["distinct_goal_cells"] == 2
    bands = {band["from"]: band for band in summary["bands"]}
    assert bands[5]["goal_progress"] == pytest.approx({"progress": 5.5, "nearer": 1.0})
    assert bands[2]["worker_reached"] == 0.0 and bands[5]["worker_reached"] == 1.0
    assert "goals" not in summarise(np.zeros(4), np.zeros(4), distance)



def test_each_cell_is_entered_from_a_neighbour_by_the_step_that_leads_there():
    # 0 -> 1 by action 1, 1 -> 2 by action 0, 2 -> 1 by action 1; nothing enters 0
    graph = CellGraph([(0,), (1,), (2,)], np.zeros((3, 1)), np.array([[-1, 1], [2, 1], [-1, 1]]), np.zeros((3, 2)))
    predecessor, action = entries(graph)
    np.testing.assert_array_equal(predecessor, [0, 0, 1])
    np.testing.assert_array_equal(action, [0, 1, 0])
    for cell in (1, 2):
        assert graph.successors[predecessor[cell], action[cell]] == cell


class ShortestPathAgent:
    """Stands in for a trained agent: its greedy action steps to the neighbour nearest the reward
    (the rewarded step where there is one), looked up in the map by the observation; ``lazy`` cells
    take action 0 instead."""

    def __init__(self, graph, distance, lazy=()):
        self.graph, self.distance, self.lazy, self.greedy_seen = graph, distance, set(lazy), set()
        self.action_layout = ActionLayout(dim=graph.successors.shape[1], discrete=True)
        self.obs_layout = type("Layout", (), {"to_dict": staticmethod(lambda obs: {"obs": obs})})()

    def initial_policy_state(self, state, count):
        return None

    def policy_step(self, state, policy_state, obs, is_first, key, greedy=False):
        self.greedy_seen.add(greedy)
        cells = [int(np.flatnonzero((self.graph.observations == row).all(1))[0]) for row in obs["obs"]]
        actions = []
        for cell in cells:
            after = np.where(self.graph.successors[cell] >= 0, self.distance[self.graph.successors[cell]], np.inf)
            after[self.graph.rewards[cell] > 0] = 0
            actions.append(0 if cell in self.lazy else int(np.argmin(after)))
        return np.eye(self.action_layout.dim)[actions], policy_state


def test_success_from_cells_follows_the_policy_from_every_cell_until_its_episode_ends():
    make = lambda: gym.make("hmbrl/GridFourRooms-v0", size=9, doors=(1, 6, 2, 5), max_episode_steps=8)  # noqa: E731
    env = make().unwrapped
    interior = env.size - 2
    graph = explore_cells(make, "obs", (interior, interior), lambda observation: {"obs": observation})
    distance = distances_to_reward(graph)
    key = jax.random.PRNGKey(0)
    shortest = ShortestPathAgent(graph, distance)
    runs = success_from_cells(shortest, None, make, graph, key)
    assert shortest.greedy_seen == {True}
    # the shortest way from every cell within the 8-step limit, and no success beyond it
    expected = np.where(distance <= 8, distance, np.nan)
    np.testing.assert_array_equal(runs.steps, expected)
    assert np.isnan(runs.steps).any() and np.isfinite(runs.steps).any()
    assert (distance[runs.last_cells[np.isfinite(runs.steps)]] == 1).all()  # the last cell before the reward
    stuck = ShortestPathAgent(graph, distance, lazy=range(len(graph.cells)))
    lazy = success_from_cells(stuck, None, make, graph, key, greedy=False)
    assert stuck.greedy_seen == {False}
    expected, last = np.full(len(graph.cells), np.nan), np.zeros(len(graph.cells), int)
    for start in range(len(graph.cells)):  # action 0 over and over, walked along the map
        cell = start
        for step in range(1, 9):
            if graph.rewards[cell, 0] > 0:
                expected[start] = step
                break
            cell = graph.successors[cell, 0] if step < 8 else cell  # the eighth step ends the episode
        last[start] = cell
    assert np.isfinite(expected).any() and np.isnan(expected).any()
    np.testing.assert_array_equal(lazy.steps, expected)
    np.testing.assert_array_equal(lazy.last_cells, last)
