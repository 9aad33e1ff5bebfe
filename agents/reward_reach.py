"""Can the top level make the worker collect the reward? The worker handed the rewarded state as its goal.

A two-level agent collects a sparse reward only if some goal the top can propose leads the worker
into the rewarded state. This probe takes the rewarded steps of real data (``agents.run_data``),
places level 0 in the cell of each of the ``K`` steps before one (``K``: level 1's period, so the
reward is at most one goal away) and hands it, held for ``K`` steps, one of three goals:

- ``state``: the goal features of the rewarded step's own posterior state (a perfect goal);
- ``code``: the same through the level-1 goal autoencoder's most likely code, decoded: the best the
  top can propose for that state (absent with ``goal.space: direct``);
- ``random``: the goal features of a uniformly drawn real step: chance, a worker that wanders in.

It counts how often the worker enters the rewarded cell (the ground truth; on
``hmbrl/GridFourRooms-v0`` that is collecting the reward). ``state`` near ``random`` says the worker
cannot be steered onto the reward; ``code`` well below ``state`` says the codebook cannot name the
rewarded state (a state seen a few times in a run is reconstructed worse than the states the agent
dwells in: ``code_similarity`` sets the two side by side); only where both are high does the failure
lie with the top's choice of goal (``agents.value_map``).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from agents import probes
from agents.gates import worker_rollouts
from agents.goals import goal_similarity
from agents.hierarchical_agent import HierarchicalAgent, HierarchicalTrainState
from agents.level import goal_view
from world_models.rssm import RSSMState

GOAL_KINDS = ("state", "code", "random")


def pairs_before_rewards(reward: np.ndarray, is_first: np.ndarray, horizon: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (start time, column, offset k in ``1..horizon``) of ``reward``, ``is_first`` ``[T, B]``
    whose step ``t + k`` paid a positive reward in the episode that step ``t`` is in:
    ``(time [P], column [P], offset [P])``, ordered by rewarded step, then offset."""
    started = probes.episode_starts(is_first)
    times, columns, offsets = [], [], []
    for goal_time, column in zip(*np.nonzero(reward > 0)):
        for offset in range(1, horizon + 1):
            time = goal_time - offset
            if time >= 0 and started[goal_time, column] <= time:
                times.append(time), columns.append(column), offsets.append(offset)
    as_array = lambda values: np.asarray(values, np.int64)  # noqa: E731
    return as_array(times), as_array(columns), as_array(offsets)


def code_goals(agent: HierarchicalAgent, state: HierarchicalTrainState, goals: np.ndarray) -> np.ndarray | None:
    """``goals [N, G]`` through level 1's goal autoencoder: the decoding of each one's most likely
    code, ``[N, G]``; None where level 1 has no autoencoder."""
    autoencoder = agent.levels[1].goal_autoencoder
    if autoencoder is None:
        return None
    params = state.levels[1].auxiliary["goal_autoencoder"].params
    codes = jnp.argmax(autoencoder.code_logits(params, jnp.asarray(goals)), -1)
    one_hot = jax.nn.one_hot(codes, autoencoder.classes).reshape(len(goals), -1)
    return np.asarray(autoencoder.decode(params, one_hot))


def reward_reach(agent: HierarchicalAgent, state: HierarchicalTrainState, make_env: Callable[[], gym.Env],
                 steps: dict[str, np.ndarray], posterior: RSSMState, features: np.ndarray, obs_key: str,
                 groups: tuple[int, ...], pairs: int, greedy: bool, rng: np.random.Generator, key: jax.Array
                 ) -> dict[str, Any]:
    """The probe on real ``steps [T, B]`` (with ``reward``), their level-0 posterior and its features
    ``[T, B, F]``: per goal kind the share of up to ``pairs`` (start, rewarded step) pairs whose worker
    entered the rewarded cell within ``K`` steps, overall and per offset; ``note`` says why where there
    are no pairs."""
    horizon = agent.levels[1].period
    time, column, offset = pairs_before_rewards(steps["reward"], steps["is_first"], horizon)
    rewarded = int((steps["reward"] > 0).sum())
    result: dict[str, Any] = {"K": horizon, "rewarded_steps": rewarded, "policy": "greedy" if greedy else "sampling"}
    if not len(time):
        return {**result, "pairs": 0, "note": "no rewarded step in the probed data"}
    chosen = np.sort(rng.permutation(len(time))[:pairs])
    time, column, offset = time[chosen], column[chosen], offset[chosen]
    goal_size = agent.levels[0].goal_size
    all_goals = goal_view(features, goal_size).reshape(-1, goal_size)
    state_goals = goal_view(features[time + offset, column], goal_size)
    goals = {"state": state_goals, "code": code_goals(agent, state, state_goals),
             "random": all_goals[rng.integers(0, len(all_goals), len(time))]}
    indices = probes.group_indices(steps[obs_key], groups)
    goal_cells = probes.cell_ids(indices[time + offset, column], groups)
    envs = [make_env() for _ in time]
    start_cells = [envs[0].unwrapped.cell_of_groups(cell) for cell in indices[time, column]]
    starts = jax.tree.map(lambda leaf: leaf[time, column], posterior)
    reach, by_offset = {}, {}
    try:
        for kind in GOAL_KINDS:
            if goals[kind] is None:
                continue
            key, rollout_key = jax.random.split(key)
            _, cells, alive = worker_rollouts(agent, state, envs, starts, start_cells, goals[kind], horizon,
                                              obs_key, groups, greedy, rollout_key)
            entered = probes.entered_cells(cells, goal_cells, alive)
            reach[kind] = float(entered.mean())
            by_offset[kind] = {int(k): float(entered[offset == k].mean()) for k in np.unique(offset)}
    finally:
        for env in envs:
            env.close()
    result.update(pairs=len(time), rewarded_cells=len(np.unique(goal_cells)), reach=reach, by_offset=by_offset,
                  pairs_by_offset={int(k): int((offset == k).sum()) for k in np.unique(offset)})
    if goals["code"] is not None:  # how well the codebook names the rewarded states, against typical ones
        typical = all_goals[rng.integers(0, len(all_goals), min(len(all_goals), 4096))]
        result["code_similarity"] = {
            "rewarded": float(np.mean(goal_similarity(jnp.asarray(goals["code"]), jnp.asarray(state_goals)))),
            "visited": float(np.mean(goal_similarity(jnp.asarray(code_goals(agent, state, typical)),
                                                     jnp.asarray(typical))))}
    return result
