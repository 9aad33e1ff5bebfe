"""Does the top level see the way to the reward? Its value and imagined return in every cell.

A level that has found a sparse reward can only steer towards it if its estimates rise as the
reward gets nearer. On an environment whose cells can be enumerated (one-hot cell observations and
``reset(options={"cell": ...})``, as ``agents.gates`` needs) this module

1. maps the environment by stepping every action from every cell reachable from the start
   (``explore_cells``), which gives each cell's distance to the reward in steps, by breadth-first
   search backwards from the transitions that paid (``distances_to_reward``);
2. starts the agent in every reachable cell and reads the top level's critic value
   (``HierarchicalAgent.top_task_value``) and the task return it imagines over its horizon with its
   current policy (``imagined_returns``, no bootstrap) (``cell_estimates``);
3. summarises (``summarise``) how the estimates follow the distance: their rank correlation with
   minus the distance (1: they rise all the way to the reward) and their spread (a correlation over
   estimates that differ by a thousandth is noise), and per distance band the mean
   value, the mean imagined return and the share of cells from which the top imagines reaching the
   reward at all (imagined return above ``IMAGINES_REWARD``).

A critic that gives every cell the same value, or a model that imagines reward far from it, shows as
a correlation near 0 (measured on the hierarchy benchmark's arms C and D, README).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, NamedTuple

import gymnasium as gym
import jax
import numpy as np
from scipy.stats import spearmanr

from agents import probes
from agents.hierarchical_agent import HierarchicalAgent, HierarchicalTrainState

# Distance bands, in environment steps to the nearest reward: [1, 2), [2, 5), [5, 10), ...
BAND_EDGES = (1, 2, 5, 10, 20, 40)
IMAGINES_REWARD = 0.1  # an imagined task return above this: the top sees the reward within its horizon


class CellGraph(NamedTuple):
    """The reachable cells (``cells[i]`` as ``cell_of_groups`` names it, the start first), their one
    observation each, and per cell and action the next cell's index (-1 where the step ended the
    episode) and the reward the step paid: ``successors``, ``rewards`` ``[cells, actions]``."""

    cells: list[Any]
    observations: np.ndarray
    successors: np.ndarray
    rewards: np.ndarray


def explore_cells(make_env: Callable[[], gym.Env], obs_key: str, groups: tuple[int, ...],
                  to_dict: Callable[[np.ndarray], dict[str, np.ndarray]], max_cells: int = 100_000) -> CellGraph:
    """Breadth-first over the cells reachable from the env's start by its discrete actions: every
    action is stepped once from each cell (the env must be deterministic given its cell). ``to_dict``
    turns stacked observations into the agent's keys (``ObsLayout.to_dict``)."""
    env = make_env()
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError(f"the value map steps every action from every cell: it needs discrete actions, "
                             f"got {env.action_space}")
        actions = int(env.action_space.n)
        unwrapped = env.unwrapped

        def cell_of(observation) -> Any:
            indices = probes.group_indices(np.asarray(to_dict(observation[None])[obs_key])[0], groups)
            return unwrapped.cell_of_groups(indices)

        first, _ = env.reset(seed=0)
        cells, observations, index = [cell_of(first)], [first], {}
        index[cells[0]] = 0
        successors, rewards = [], []
        frontier = deque([0])
        while frontier:
            current = frontier.popleft()
            row, paid = np.full(actions, -1), np.zeros(actions)
            for action in range(actions):
                env.reset(options={"cell": cells[current]})
                observation, reward, terminated, truncated, _ = env.step(action)
                paid[action] = reward
                if terminated or truncated:
                    continue
                cell = cell_of(observation)
                if cell not in index:
                    if len(cells) >= max_cells:
                        raise ValueError(f"more than {max_cells} reachable cells: the value map is for small grids")
                    index[cell] = len(cells)
                    cells.append(cell)
                    observations.append(observation)
                    frontier.append(index[cell])
                row[action] = index[cell]
            successors.append(row)
            rewards.append(paid)
    finally:
        env.close()
    return CellGraph(cells, np.stack(observations), np.stack(successors), np.stack(rewards))


def distances_to_reward(graph: CellGraph) -> np.ndarray:
    """Per cell, the fewest steps to a step that pays a positive reward (1: one step away; ``inf``
    where none can be reached), by breadth-first search backwards along the transitions."""
    distance = np.full(len(graph.cells), np.inf)
    predecessors: list[list[int]] = [[] for _ in graph.cells]
    for cell, row in enumerate(graph.successors):
        for successor in row[row >= 0]:
            predecessors[successor].append(cell)
    paying = np.flatnonzero((graph.rewards > 0).any(1))
    distance[paying] = 1
    frontier = deque(paying.tolist())
    while frontier:
        cell = frontier.popleft()
        for predecessor in predecessors[cell]:
            if distance[predecessor] == np.inf:
                distance[predecessor] = distance[cell] + 1
                frontier.append(predecessor)
    return distance


def cell_estimates(agent: HierarchicalAgent, state: HierarchicalTrainState, observations: dict[str, np.ndarray],
                   key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """The top level's critic value and imagined task return ``[N]`` each at an episode start in
    each of ``observations [N, ...]`` (the first step ticks every level)."""
    count = len(next(iter(observations.values())))
    policy_key, imagine_key = jax.random.split(key)
    policy_state = agent.initial_policy_state(state, count)
    _, policy_state = agent.policy_step(state, policy_state, observations, np.ones(count, bool), policy_key)
    value = np.asarray(agent.top_task_value(state, policy_state))
    imagined = np.asarray(agent.imagined_returns(state, policy_state, imagine_key))[-1]
    return value, imagined


def _rank_correlation(estimates: np.ndarray, distance: np.ndarray) -> float | None:
    """Spearman's rho of the estimates with minus the distance; None where either is constant."""
    if len(estimates) < 3 or np.ptp(estimates) == 0 or np.ptp(distance) == 0:
        return None
    return float(spearmanr(estimates, -distance).statistic)


def summarise(value: np.ndarray, imagined: np.ndarray, distance: np.ndarray) -> dict:
    """Rank correlations with minus the distance, and per distance band the cells, mean value, mean
    imagined return and share of cells whose imagined return exceeds ``IMAGINES_REWARD``."""
    reachable = np.isfinite(distance)
    bands = []
    edges = [*BAND_EDGES, np.inf]
    for low, high in zip(edges[:-1], edges[1:]):
        in_band = reachable & (distance >= low) & (distance < high)
        if in_band.any():
            bands.append({"from": int(low), "below": None if high == np.inf else int(high), "cells": int(in_band.sum()),
                          "value": float(value[in_band].mean()), "imagined_return": float(imagined[in_band].mean()),
                          "imagines_reward": float((imagined[in_band] > IMAGINES_REWARD).mean())})
    return {"cells": int(len(distance)), "cells_reaching_reward": int(reachable.sum()),
            "value_rank_correlation": _rank_correlation(value[reachable], distance[reachable]),
            "imagined_rank_correlation": _rank_correlation(imagined[reachable], distance[reachable]),
            "value_spread": _spread(value[reachable]), "imagined_spread": _spread(imagined[reachable]),
            "bands": bands}


def _spread(estimates: np.ndarray) -> float:
    """The 5-95 percentile range: a correlation over estimates that barely differ says little."""
    return float(np.subtract(*np.percentile(estimates, [95, 5]))) if len(estimates) else 0.0
