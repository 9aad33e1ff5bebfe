"""``agents.reward_reach``: which steps precede a reward, and the probe on a scripted walk into the
reward of the four-rooms grid (an untrained agent: ranges and bookkeeping, not a reach rate)."""

import jax
import numpy as np
import pytest

from agents.gates import cell_groups, filter_level0
from agents.hierarchical_agent import HierarchicalAgent
from agents.reward_reach import GOAL_KINDS, pairs_before_rewards, reward_reach
from agents.value_map import distances_to_reward, explore_cells
from configs.loader import load_config
from envs import make_env


def test_pairs_start_up_to_k_steps_before_each_reward_within_its_episode():
    reward = np.zeros((12, 3))
    is_first = np.zeros((12, 3), bool)
    is_first[0] = True
    reward[5, 0], is_first[3, 0] = 1.0, True  # episode from step 3: only 4 and 3 precede the reward in it
    reward[10, 1] = 0.5  # whole horizon inside the episode
    reward[1, 2] = 2.0  # only step 0 before it
    reward[7, 2] = -1.0  # a penalty is not a reward to reach
    time, column, offset = pairs_before_rewards(reward, is_first, horizon=3)
    expected = [(4, 0, 1), (3, 0, 2), (9, 1, 1), (8, 1, 2), (7, 1, 3), (0, 2, 1)]
    assert sorted(zip(time.tolist(), column.tolist(), offset.tolist())) == sorted(expected)


def test_no_reward_gives_no_pairs():
    time, column, offset = pairs_before_rewards(np.zeros((5, 2)), np.ones((5, 2), bool), horizon=4)
    assert time.shape == column.shape == offset.shape == (0,)


@pytest.fixture(scope="module")
def walk_into_reward():
    """An untrained two-level agent (K = 4) and one episode walking the shortest path to the reward of
    a 9 x 9 grid, as ``[T, 1]`` steps."""
    config = load_config(["debug"], ["env_id=hmbrl/GridFourRooms-v0", "env.kwargs={size: 9}", "hierarchy.levels=2",
                                     "hierarchy.k=[4]"])
    make = lambda: make_env(config["env_id"], config["env"])  # noqa: E731
    env = make()
    agent = HierarchicalAgent.from_config(config, env.observation_space, env.action_space)
    obs_key, groups = cell_groups(env, agent.obs_layout)
    graph = explore_cells(make, obs_key, groups, agent.obs_layout.to_dict)
    distance = distances_to_reward(graph)
    observation, _ = env.reset(seed=0)
    records, cell, prev_action, reward = [], 0, np.zeros(agent.action_layout.dim, np.float32), 0.0
    while True:
        records.append({**agent.obs_layout.to_dict(observation[None]), "prev_action": prev_action[None],
                        "reward": np.array([reward], np.float32), "is_first": np.array([not records]),
                        "is_terminal": np.array([reward > 0])})
        if reward > 0:
            break
        paying = np.flatnonzero(graph.rewards[cell] > 0)
        action = int(paying[0]) if len(paying) else int(np.argmin(
            [distance[nxt] if nxt >= 0 else np.inf for nxt in graph.successors[cell]]))
        observation, reward, *_ = env.step(action)
        cell = graph.successors[cell][action]
        prev_action = np.eye(agent.action_layout.dim, dtype=np.float32)[action]
    env.close()
    steps = {name: np.stack([record[name] for record in records]) for name in records[0]}
    state = agent.init(jax.random.PRNGKey(0))
    return agent, state, make, steps, obs_key, groups, int(distance[0])


def test_the_probe_starts_before_the_reward_and_counts_entries_into_its_cell(walk_into_reward):
    agent, state, make, steps, obs_key, groups, shortest = walk_into_reward
    assert len(steps["reward"]) == shortest + 1 and steps["reward"][-1, 0] == 1.0
    filtered = filter_level0(agent, state, steps, jax.random.PRNGKey(1))
    result = reward_reach(agent, state, make, steps, *filtered[:2], obs_key, groups, pairs=64, greedy=True,
                          rng=np.random.default_rng(0), key=jax.random.PRNGKey(2))
    assert result["K"] == 4 and result["rewarded_steps"] == 1 and result["rewarded_cells"] == 1
    assert result["pairs"] == 4 and result["pairs_by_offset"] == {1: 1, 2: 1, 3: 1, 4: 1}
    assert set(result["reach"]) == set(GOAL_KINDS)  # goal.space: autoencoder, so the codebook's goal too
    for kind in GOAL_KINDS:
        assert 0.0 <= result["reach"][kind] <= 1.0
        assert set(result["by_offset"][kind]) == {1, 2, 3, 4}
        assert result["reach"][kind] == pytest.approx(np.mean(list(result["by_offset"][kind].values())))
    assert -1.0 <= result["code_similarity"]["rewarded"] <= 1.0 and -1.0 <= result["code_similarity"]["visited"] <= 1.0


def test_data_without_a_reward_is_reported_not_probed(walk_into_reward):
    agent, state, make, steps, obs_key, groups, _ = walk_into_reward
    steps = {**steps, "reward": np.zeros_like(steps["reward"])}
    filtered = filter_level0(agent, state, steps, jax.random.PRNGKey(1))
    result = reward_reach(agent, state, make, steps, *filtered[:2], obs_key, groups, pairs=8, greedy=True,
                          rng=np.random.default_rng(0), key=jax.random.PRNGKey(2))
    assert result["pairs"] == 0 and result["rewarded_steps"] == 0 and "no rewarded step" in result["note"]
