"""Evaluation episodes of a trained agent, and loading an agent back from a run directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import jax
import numpy as np

from agents.checkpoint import Checkpointer
from agents.diagnostics import measure_levels
from agents.hierarchical_agent import HierarchicalAgent, HierarchicalTrainState
from agents.logging import Logger
from agents.state_probe import state_probe_scalars
from configs.sections import run_sections
from envs.collector import Collector, Episode
from envs.success import success_rate


def load_train_state(agent: HierarchicalAgent, config: dict[str, Any], logdir: str | Path, step: int | None = None):
    """The train state of a run's latest (or given) checkpoint, and its step."""
    checkpointer = Checkpointer(Path(logdir) / "checkpoints")
    step = checkpointer.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {Path(logdir) / 'checkpoints'}: train first")
    template = agent.init(jax.random.PRNGKey(0))
    full_template = {
        "train": template,
        "act_key": jax.random.PRNGKey(0),
        "policy": agent.initial_policy_state(template, run_sections(config).run.num_envs),
    }
    state, _, _ = checkpointer.restore(full_template, replay_template=None, step=step)
    checkpointer.close()
    return state["train"], step


def evaluation_scalars(episodes: Sequence[Episode]) -> dict[str, float]:
    """``eval/return_mean``, ``eval/return_std`` and, where the environment reports success
    (``envs.success``: ``hmbrl/GridFourRooms-v0``, PointFourRooms, MiniGrid, ...), ``eval/success_rate``
    of evaluation episodes. No success rate at all where it does not: a return is no success."""
    returns = np.asarray([episode.score for episode in episodes], dtype=np.float64)
    scalars = {"eval/return_mean": float(returns.mean()), "eval/return_std": float(returns.std())}
    rate = success_rate([episode.success for episode in episodes])
    if rate is not None:
        scalars["eval/success_rate"] = rate
    return scalars


def run_episodes(
    agent: HierarchicalAgent,
    state: HierarchicalTrainState,
    envs: gym.vector.VectorEnv,
    episodes: int,
    seed: int,
    greedy: bool = True,
    on_step: Callable[[gym.vector.VectorEnv], None] | None = None,
) -> list[Episode]:
    """``episodes`` complete episodes (return, length, success), collected round-robin over the vector env.

    The env is reset with ``seed`` and the policy's key derives from it, so the same seed gives the
    same returns. ``on_step`` is called after every step (for example to grab rendered frames).
    """
    actions = agent.action_layout
    collector = Collector(envs, actions.dim, agent.obs_layout.to_dict)
    collector.reset(seed=seed)
    policy_state = agent.initial_policy_state(state, envs.num_envs)
    key = jax.random.PRNGKey(seed)
    finished_episodes: list[Episode] = []

    def policy(obs, is_first):
        nonlocal policy_state, key
        key, step_key = jax.random.split(key)
        action, policy_state = agent.policy_step(state, policy_state, obs, is_first, step_key, greedy=greedy)
        action = np.asarray(action)
        return action, actions.to_env(action)

    while len(finished_episodes) < episodes:
        _, finished = collector.step(policy)
        finished_episodes.extend(finished)
        if on_step is not None:
            on_step(envs)
    return finished_episodes[:episodes]


def evaluation_pass(agent: HierarchicalAgent, state: HierarchicalTrainState,
                    make_envs: Callable[[int], gym.vector.VectorEnv], config: Mapping[str, Any]
                    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """A training run's periodic evaluation: ``run.eval_episodes`` greedy episodes, then
    ``run.diagnose_episodes`` episodes of the sampling policy that measure every level
    (``agents.diagnostics``: exploitation gap, goal reach rate, goal images) and, with
    ``run.state_probe_steps``, the state probe's ``eval/state_r2`` (``agents.state_probe``). A fresh
    env with its own seed and keys: the training run's RNG streams are untouched, so evaluating does
    not change what is learned. Returns the scalars and images to log."""
    run = run_sections(config).run
    envs = make_envs(1)
    seed = int(config["seed"]) + 10_000
    try:
        episodes = run_episodes(agent, state, envs, run.eval_episodes, seed=seed)
        diagnose = run.diagnose_episodes
        scalars, images = measure_levels(agent, state, envs, diagnose, seed) if diagnose else ({}, {})
        if run.state_probe_steps:
            scalars.update(state_probe_scalars(agent, state, envs, run.state_probe_steps, seed))
    finally:
        envs.close()
    scalars.update(evaluation_scalars(episodes))
    return scalars, images


def log_evaluation(logger: Logger, step: int, agent: HierarchicalAgent, state: HierarchicalTrainState,
                   make_envs: Callable[[int], gym.vector.VectorEnv], config: Mapping[str, Any],
                   start_time: float) -> None:
    """``evaluation_pass`` written to ``logger`` at ``step``, with the seconds since ``start_time``
    (the run's start) when it ended."""
    scalars, images = evaluation_pass(agent, state, make_envs, config)
    scalars["eval/elapsed_seconds"] = time.time() - start_time
    logger.scalars(scalars, step)
    for name, image in images.items():
        logger.image(name, image, step)
