"""Vector environments (``gymnasium.vector``) built from ``make_env`` ids."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from envs.registry import make_env

PARALLEL_MODES = ("sync", "async")


def make_vector_env(
    env_id: str, config: Any = None, num_envs: int = 1, parallel: str = "sync"
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make_env(env_id, config)`` stepped together.

    ``parallel="async"`` runs each copy in its own subprocess (for slow simulators). Autoreset is
    NEXT_STEP (see ``envs.collector``). Seed them with ``reset(seed=s)``: copy i gets ``s + i``.
    """
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"env parallel mode must be one of {PARALLEL_MODES}, got {parallel!r}")
    factories = [functools.partial(make_env, env_id, config) for _ in range(num_envs)]
    vector_class = SyncVectorEnv if parallel == "sync" else AsyncVectorEnv
    return vector_class(factories, autoreset_mode=AutoresetMode.NEXT_STEP)
