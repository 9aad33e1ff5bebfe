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
3. for two or more levels, reads where level 1 sends level 0 from every cell: the cell whose goal
   features (level 0's, on stepping into it) are nearest its greedy goal, and the same for a random
   code (``goal_cells``);
4. runs the agent's greedy and its sampling policy from every cell until its episode ends
   (``success_from_cells``): the ground truth the estimates are about;
5. summarises (``summarise``) how the estimates follow the distance: their rank correlation with
   minus the distance (1: they rise all the way to the reward) and their spread (a correlation over
   estimates that differ by a thousandth is noise), and per distance band the mean
   value, the mean imagined return and the share of cells from which the top imagines reaching the
   reward at all (imagined return above ``IMAGINES_REWARD``); with goal cells, how many steps nearer
   the reward the goals lie than the cells they are set in (``goal_progress``), against random codes,
   and the share of cells from which the greedy and the sampling agent earned the reward.

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
from agents.gates import worker_rollouts
from agents.hierarchical_agent import HierarchicalAgent, HierarchicalTrainState
from agents.level import goal_view
from world_models.rssm import state_features

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


class CellRuns(NamedTuple):
    """The agent from an episode start in every cell (``success_from_cells``), ``[N]`` each: the
    steps to its reward (NaN where the episode ended without one) and the index of the cell it was
    last in (where a failed run ended up: stuck at a wall, in a corner)."""

    steps: np.ndarray
    last_cells: np.ndarray


def success_from_cells(agent: HierarchicalAgent, state: HierarchicalTrainState, make_env: Callable[[], gym.Env],
                       graph: CellGraph, key: jax.Array, greedy: bool = True) -> CellRuns:
    """Does the agent's policy (greedy: every level's most likely action; else sampled), started in
    each cell of ``graph`` (an episode start there), earn a reward before its episode ends? All cells
    step together, one batched policy step per environment step."""
    count = len(graph.cells)
    cell_of = {observation.tobytes(): index for index, observation in enumerate(graph.observations)}
    envs = [make_env() for _ in range(count)]
    try:
        observations = [env.reset(seed=0, options={"cell": cell})[0] for env, cell in zip(envs, graph.cells)]
        steps, running = np.full(count, np.nan), np.ones(count, bool)
        policy_state = agent.initial_policy_state(state, count)
        is_first, step = np.ones(count, bool), 0
        while running.any():
            key, step_key = jax.random.split(key)
            action, policy_state = agent.policy_step(state, policy_state, agent.obs_layout.to_dict(np.stack(observations)),
                                                     is_first, step_key, greedy=greedy)
            env_actions = agent.action_layout.to_env(np.asarray(action))
            is_first[:], step = False, step + 1
            for index in np.flatnonzero(running):
                observation, reward, terminated, truncated, _ = envs[index].step(env_actions[index])
                if reward > 0:
                    steps[index] = step
                running[index] = not (reward > 0 or terminated or truncated)
                if running[index]:  # a finished cell keeps feeding its last state, whose actions are ignored
                    observations[index] = observation
    finally:
        for env in envs:
            env.close()
    return CellRuns(steps, np.array([cell_of[np.asarray(observation).tobytes()] for observation in observations]))


class TopGoals(NamedTuple):
    """Level 1's greedy goal at an episode start in every cell (``goal_cells``), ``[N]`` each: the
    index of the cell it names and of the cell a random code names, and whether level 0, holding the
    goal, entered the cell it names (``reached``)."""

    own: np.ndarray
    random_code: np.ndarray
    reached: np.ndarray


HOLD_PERIODS = 4  # goal_cells: level 0 holds level 1's goal this many of level 1's periods


def goal_cells(agent: HierarchicalAgent, state: HierarchicalTrainState, graph: CellGraph,
               observations: dict[str, np.ndarray], make_env: Callable[[], gym.Env], obs_key: str,
               groups: tuple[int, ...], key: jax.Array) -> TopGoals | None:
    """Where level 1 sends level 0 from an episode start in each cell of ``graph`` (``observations``
    its cells' observations in the agent's keys): the cell whose goal features (``entered_features``)
    are most similar to level 1's greedy goal by the worker's own similarity
    (``probes.nearest_states``), the same for the random code drawn beside it (the reach statistics'
    chance goal), and whether level 0, holding the goal for ``HOLD_PERIODS`` of level 1's periods with
    no new goal at the ticks, gets there: a top that asks for the wrong place and a worker that cannot
    reach the right one fail alike in the agent's own runs. None for a flat agent."""
    if agent.num_levels < 2:
        return None
    goals_key, entered_key, worker_key = jax.random.split(key, 3)
    count = len(graph.cells)
    policy_state = agent.initial_policy_state(state, count)
    _, policy_state = agent.policy_step(state, policy_state, observations, np.ones(count, bool), goals_key, greedy=True)
    in_cells = entered_features(agent, state, graph, observations, entered_key)
    own, random_code = (probes.nearest_states(np.asarray(goals), in_cells)
                        for goals in (policy_state.goals[0], policy_state.chance_goals[0]))
    cell_ids = probes.cell_ids(probes.group_indices(np.asarray(observations[obs_key]), groups), groups)
    envs = [make_env() for _ in range(count)]
    try:
        _, cells, alive = worker_rollouts(agent, state, envs, policy_state.latents[0], graph.cells,
                                          np.asarray(policy_state.goals[0]), HOLD_PERIODS * agent.levels[1].period,
                                          obs_key, groups, True, worker_key)
    finally:
        for env in envs:
            env.close()
    reached = probes.entered_cells(cells, cell_ids[own], alive) | (own == np.arange(count))  # or already there
    return TopGoals(own, random_code, reached)


def entered_features(agent: HierarchicalAgent, state: HierarchicalTrainState, graph: CellGraph,
                     observations: dict[str, np.ndarray], key: jax.Array) -> np.ndarray:
    """Level 0's goal features in each cell ``[N, G]`` as it has them on stepping in from a neighbour
    (``entries``): at an episode's first step the deterministic state, the default goal features, is
    the same in every cell, so one real step is needed for them to say where the agent is."""
    predecessor, action = entries(graph)
    count = len(graph.cells)
    first_key, second_key = jax.random.split(key)
    policy_state = agent.initial_policy_state(state, count)
    before = {name: value[predecessor] for name, value in observations.items()}
    _, policy_state = agent.policy_step(state, policy_state, before, np.ones(count, bool), first_key, greedy=True)
    taken = jax.nn.one_hot(action, graph.successors.shape[1], dtype=policy_state.actions[0].dtype)
    policy_state = policy_state._replace(actions=(taken, *policy_state.actions[1:]))
    _, policy_state = agent.policy_step(state, policy_state, observations, np.zeros(count, bool), second_key, greedy=True)
    return np.asarray(goal_view(state_features(policy_state.latents[0]), agent.levels[0].goal_size))


def entries(graph: CellGraph) -> tuple[np.ndarray, np.ndarray]:
    """Per cell a neighbour and the action that steps from it into the cell ``[N]`` each (the first
    found); a cell no step enters (the start can be one) is entered from itself by action 0."""
    predecessor, action = np.arange(len(graph.cells)), np.zeros(len(graph.cells), int)
    found = np.zeros(len(graph.cells), bool)
    for cell, row in enumerate(graph.successors):
        for taken, successor in enumerate(row):
            if successor >= 0 and not found[successor]:
                predecessor[successor], action[successor], found[successor] = cell, taken, True
    return predecessor, action


def goal_progress(distance: np.ndarray, targets: np.ndarray, cells: np.ndarray) -> dict[str, float] | None:
    """Over ``cells`` (a mask) whose goal cell ``targets`` can reach the reward: how many steps nearer
    the reward the goal cell lies than the cell (``progress``, mean; negative: farther) and the share
    of cells whose goal is nearer (``nearer``); None where no cell counts."""
    counted = cells & np.isfinite(distance[targets])
    if not counted.any():
        return None
    gained = distance[counted] - distance[targets[counted]]
    return {"progress": float(gained.mean()), "nearer": float((gained > 0).mean())}


def _rank_correlation(estimates: np.ndarray, distance: np.ndarray) -> float | None:
    """Spearman's rho of the estimates with minus the distance; None where either is constant."""
    if len(estimates) < 3 or np.ptp(estimates) == 0 or np.ptp(distance) == 0:
        return None
    return float(spearmanr(estimates, -distance).statistic)


def summarise(value: np.ndarray, imagined: np.ndarray, distance: np.ndarray,
              goals: TopGoals | None = None,
              success_steps: dict[str, np.ndarray] | None = None) -> dict:
    """Rank correlations with minus the distance, and per distance band the cells, mean value, mean
    imagined return and share of cells whose imagined return exceeds ``IMAGINES_REWARD``; with
    ``goals`` (``goal_cells``) the ``goal_progress`` of level 1's goals and of random codes, overall
    and per band, the share of cells whose goal level 0 reached (``worker_reached``), and how many
    distinct cells level 1's goals name; with
    ``success_steps`` (per policy, e.g. ``greedy`` and ``sampled``: ``success_from_cells``' steps)
    the share of cells from which that policy earned the reward (``<policy>_success``), overall and
    per band."""
    reachable = np.isfinite(distance)
    bands = []
    edges = [*BAND_EDGES, np.inf]
    for low, high in zip(edges[:-1], edges[1:]):
        in_band = reachable & (distance >= low) & (distance < high)
        if in_band.any():
            bands.append({"from": int(low), "below": None if high == np.inf else int(high), "cells": int(in_band.sum()),
                          "value": float(value[in_band].mean()), "imagined_return": float(imagined[in_band].mean()),
                          "imagines_reward": float((imagined[in_band] > IMAGINES_REWARD).mean())})
            if goals is not None:
                bands[-1]["goal_progress"] = goal_progress(distance, goals.own, in_band)
                bands[-1]["worker_reached"] = float(goals.reached[in_band].mean())
            for policy, steps in (success_steps or {}).items():
                bands[-1][f"{policy}_success"] = float(np.isfinite(steps[in_band]).mean())
    summary = {"cells": int(len(distance)), "cells_reaching_reward": int(reachable.sum()),
               "value_rank_correlation": _rank_correlation(value[reachable], distance[reachable]),
               "imagined_rank_correlation": _rank_correlation(imagined[reachable], distance[reachable]),
               "value_spread": _spread(value[reachable]), "imagined_spread": _spread(imagined[reachable]),
               "bands": bands}
    if goals is not None:
        summary["goals"] = {"level1": goal_progress(distance, goals.own, reachable),
                            "random_code": goal_progress(distance, goals.random_code, reachable),
                            "worker_reached": float(goals.reached[reachable].mean()) if reachable.any() else 0.0,
                            "distinct_goal_cells": int(len(np.unique(goals.own)))}
    for policy, steps in (success_steps or {}).items():
        summary[f"{policy}_success"] = float(np.isfinite(steps[reachable]).mean()) if reachable.any() else 0.0
    return summary


def _spread(estimates: np.ndarray) -> float:
    """The 5-95 percentile range: a correlation over estimates that barely differ says little."""
    return float(np.subtract(*np.percentile(estimates, [95, 5]))) if len(estimates) else 0.0
