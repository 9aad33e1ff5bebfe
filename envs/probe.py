"""Build, reset and step one environment before a run starts, so that an environment that cannot be
built, or that returns observations its own space does not describe, is reported in one message
instead of a traceback from deep inside a vector env ("Output array is the wrong shape")."""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium
import numpy as np

from envs.config import EnvConfig, EnvConfigError
from envs.registry import make_env

# What building an environment raises for a bad id, missing dependency or constructor argument.
_BUILD_ERRORS = (ValueError, ImportError, TypeError, gymnasium.error.Error)


class EnvProbeError(ValueError):
    """The environment cannot be built or breaks its own observation space; the message says how."""


def build_env(env_id: str, config: EnvConfig | Mapping[str, Any] | None = None) -> gymnasium.Env:
    """`make_env`, with what a bad id, a missing dependency or a wrong constructor argument raises
    turned into `EnvProbeError` saying so (`EnvConfigError` passes as it is)."""
    kwargs = dict((config or {}).get("kwargs", {})) if isinstance(config, Mapping) else {}
    try:
        return make_env(env_id, config, seed=None)
    except EnvConfigError:
        raise
    except _BUILD_ERRORS as error:
        raise EnvProbeError(_build_message(env_id, kwargs, error)) from error


def probe_env(env_id: str, config: EnvConfig | Mapping[str, Any] | None = None, seed: int = 0) -> None:
    """Build ``env_id`` (`build_env`), reset it and take one random step, checking every observation
    against ``observation_space``; raises `EnvProbeError` naming what is wrong."""
    env = build_env(env_id, config)
    try:
        obs, _ = env.reset(seed=seed)
        check_observation(env.observation_space, obs, f"{env_id}: reset()")
        obs, *_ = env.step(env.action_space.sample())
        check_observation(env.observation_space, obs, f"{env_id}: step()")
    finally:
        env.close()


def check_observation(space: gymnasium.Space, obs: Any, where: str) -> None:
    """Shapes of ``obs`` (a Box's array or a Dict of them) against ``space``."""
    if isinstance(space, gymnasium.spaces.Dict):
        if not isinstance(obs, Mapping) or set(obs) != set(space.spaces):
            keys = sorted(obs) if isinstance(obs, Mapping) else type(obs).__name__
            raise EnvProbeError(f"{where} returned keys {keys}; its observation_space has {sorted(space.spaces)}")
        for key, entry in space.spaces.items():
            check_observation(entry, obs[key], f"{where}[{key!r}]")
    elif isinstance(space, gymnasium.spaces.Box):
        shape = np.shape(obs)
        if shape != space.shape:
            raise EnvProbeError(
                f"{where} returned an observation of shape {shape}, but its observation_space is "
                f"{space}: make the two agree"
            )


def _build_message(env_id: str, kwargs: Mapping[str, Any], error: BaseException) -> str:
    if type(error) is ValueError:  # the registry's own messages (unknown ids) are complete
        return str(error)
    text = f"environment {env_id!r} could not be built: {type(error).__name__}: {error}"
    if isinstance(error, TypeError) and kwargs:
        text += f". The constructor was given --env-kwargs {dict(kwargs)}: check their names"
    return text
