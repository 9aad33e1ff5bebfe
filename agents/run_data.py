"""Real steps of a trained run, time-major: its saved replay, or fresh episodes of its policy.

Both give the same dict ``[T, B, ...]``: the observation keys, ``prev_action``, ``is_first`` and
``is_terminal`` (B: the run's environments, or those collecting fresh episodes). The first step of
every column is marked ``is_first``, as the replay sampler marks it, because a world model filters
each column from its initial state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from agents.checkpoint import Checkpointer
from agents.hierarchical_agent import HierarchicalAgent, HierarchicalTrainState
from agents.spaces import replay_spec
from configs.sections import run_sections
from envs.collector import Collector

STEP_FIELDS = ("prev_action", "reward", "is_first", "is_terminal")


def replay_window(arrays: dict[str, np.ndarray], position: int, count: int, length: int, steps: int
                  ) -> dict[str, np.ndarray]:
    """The last ``steps`` records of each environment, oldest first, time-major ``[T, E, ...]``.

    ``arrays`` are the replay's ``[E, >= count, ...]`` rings of ``length`` records with ``count`` filled
    and the next write at ``position``: once full, the oldest record sits at ``position``.
    """
    oldest = position if count == length else 0
    index = (oldest + np.arange(max(count - steps, 0), count)) % length  # read only what is kept
    window = {name: np.swapaxes(np.asarray(array[:, index]), 0, 1).copy() for name, array in arrays.items()}
    window["is_first"][0] = True
    return window


def load_replay(agent: HierarchicalAgent, config: dict[str, Any], logdir: str | Path, steps: int,
                step: int | None = None) -> dict[str, np.ndarray] | None:
    """The last ``steps`` records per environment of the replay saved with a run's checkpoint
    (memory storage) or beside it (disk storage), or None if it holds none."""
    logdir, sections = Path(logdir), run_sections(config)
    checkpointer = Checkpointer(logdir / "checkpoints")
    try:
        saved = checkpointer.meta(step)["replay"]
        count, num_envs = int(saved["count"]), int(sections.run.num_envs)
        keys = list(agent.obs_layout.keys) + list(STEP_FIELDS)
        if count == 0:
            return None
        if saved.get("storage", "memory") == "memory":
            spec = {**replay_spec(agent.obs_layout, agent.action_layout.dim), **agent.replay_fields()}
            template = {name: np.zeros((num_envs, count) + tuple(shape), dtype)
                        for name, (shape, dtype) in spec.items()}
            arrays = checkpointer.replay(template, step)
        else:
            arrays = {name: np.load(logdir / "replay" / f"{name}.npy", mmap_mode="r") for name in keys}
    finally:
        checkpointer.close()
    if not arrays:
        return None
    length = int(sections.replay.capacity) // num_envs
    return replay_window({name: arrays[name] for name in keys}, int(saved["position"]), count, length, steps)


def collect_episodes(agent: HierarchicalAgent, state: HierarchicalTrainState, envs: gym.vector.VectorEnv,
                     episodes: int, seed: int, greedy: bool = False) -> dict[str, np.ndarray]:
    """Every step of the agent acting (sampling unless ``greedy``) until ``episodes`` episodes ended,
    ``[T, N, ...]``; the episodes still running then are kept as far as they went."""
    collector = Collector(envs, agent.action_layout.dim, agent.obs_layout.to_dict)
    collector.reset(seed=seed)
    policy_state = agent.initial_policy_state(state, envs.num_envs)
    key = jax.random.PRNGKey(seed)
    records, finished = [], 0

    def policy(obs, is_first):
        nonlocal policy_state, key
        key, step_key = jax.random.split(key)
        action, policy_state = agent.policy_step(state, policy_state, obs, is_first, step_key, greedy=greedy)
        action = np.asarray(action)
        return action, agent.action_layout.to_env(action)

    while finished < episodes:
        record, ended = collector.step(policy)
        records.append({name: record[name] for name in list(agent.obs_layout.keys) + list(STEP_FIELDS)})
        finished += len(ended)
    return {name: np.stack([record[name] for record in records]) for name in records[0]}
