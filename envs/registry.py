"""`make_env`: environments from string ids, wrapped as an `EnvConfig` says.

Ids:
    ``CartPole-v1``                     any id in Gymnasium's registry (user registrations included)
    ``minigrid:MiniGrid-DoorKey-5x5-v0`` MiniGrid/BabyAI, observation = the (7, 7, 3) grid, one-hot per cell (980 floats),
                                        ``info["success"]`` on reaching the goal (`envs.wrappers.GoalSuccess`)
    ``dmc:cartpole-swingup``            dm_control suite ``<domain>-<task>`` through the dm_env adapter
    ``ale:Pong`` / ``ale:Pong-v5``      Arcade Learning Environment (``ALE/<game>-v5``)
    ``event:<any id above>``            the event camera over that environment's rgb_array render

Wrappers, innermost first (fixed order):
    1. time limit (``time_limit`` counts underlying env steps; 0 keeps the env's own limit),
    2. action repeat,
    3. observation: event camera for ``event:`` ids, else pixels if ``pixels``; either keeps the
       env's own observation in ``info["source_observation"]`` (`envs.wrappers.KeepSourceObservation`),
    4. bounded Box actions rescaled to [-1, 1] if ``rescale_actions``,
    5. episode statistics (``info["episode"]`` at episode ends).
The event camera sits outside action repeat, so one observation covers one agent step
(``frame_interval`` seconds) and the frames skipped inside a repeat are not rendered.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
from typing import Any, Callable, Mapping

import gymnasium
import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit

from envs.config import EnvConfig, as_env_config
from envs.event_camera import EventCamera
from envs.wrappers import (ActionRepeat, GoalSuccess, KeepSourceObservation, OneHotGrid, PixelObservation,
                           SelectObservation, rescale_to_unit)

__all__ = ["make_env", "list_env_ids", "observed_through_camera", "LIST_IDS_HINT"]

EVENT_PREFIX = "event:"
LIST_IDS_HINT = 'python -c "from envs.registry import list_env_ids; print(list_env_ids())"'
_EXTRA_HINT = 'pip install "hmbrl[{extra}]"'
# Entry points served by a prefix family rather than listed as plain Gymnasium ids.
_FAMILY_ENTRY_POINTS = ("minigrid", "ale_py")


def make_env(
    env_id: str, config: EnvConfig | Mapping[str, Any] | None = None, seed: int | None = None
) -> gymnasium.Env:
    """Build ``env_id`` (see the module docstring for ids and wrapper order).

    ``seed`` seeds the spaces, the event simulator and a first ``reset(seed=seed)``, so later
    un-seeded resets continue one reproducible stream.
    """
    config = as_env_config(config)
    is_event = env_id.startswith(EVENT_PREFIX)
    base_id = env_id[len(EVENT_PREFIX):] if is_event else env_id
    camera = observed_through_camera(env_id, config)
    if is_event and config.pixels:
        raise ValueError(f"{env_id!r} already observes rendered frames as events: set env.pixels to false")
    render_mode = "rgb_array" if camera else None
    env = _make_base(base_id, config, render_mode, seed, full_id=env_id)
    if config.action_repeat > 1:
        env = ActionRepeat(env, config.action_repeat)
    if camera:
        env = KeepSourceObservation(env)
    if is_event:
        env = EventCamera(env, config.event_camera, config.image_size, seed=seed)
    elif config.pixels:
        env = PixelObservation(env, config.image_size, config.grayscale)
    if config.rescale_actions:
        env = rescale_to_unit(env)
    env = RecordEpisodeStatistics(env)
    if seed is not None:
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
        env.reset(seed=seed)
    return env


def observed_through_camera(env_id: str, config: EnvConfig | Mapping[str, Any] | None = None) -> bool:
    """Whether `make_env` shows the agent a camera's view (events or pixels) instead of the env's own
    observation, which it then keeps in ``info["source_observation"]``."""
    return env_id.startswith(EVENT_PREFIX) or as_env_config(config).pixels


def list_env_ids() -> list[str]:
    """Every id `make_env` accepts: Gymnasium ids, installed families, and ``event:`` of each."""
    base_ids = _gymnasium_ids() + _minigrid_ids() + _ale_ids() + _dmc_ids()
    return base_ids + [EVENT_PREFIX + env_id for env_id in base_ids]


def _make_base(
    env_id: str, config: EnvConfig, render_mode: str | None, seed: int | None, full_id: str
) -> gymnasium.Env:
    """The environment with its time limit, before action repeat and observation wrappers."""
    family, _, name = env_id.partition(":")
    if name and family in _FAMILIES:
        return _FAMILIES[family](name, config, render_mode, seed, full_id)
    if name:
        return _make_entry_point(family, name, config, render_mode, full_id)
    if env_id not in gymnasium.registry:
        raise _unknown_id_error(full_id)
    return _gymnasium_make(env_id, config, render_mode)


def _make_entry_point(
    module_name: str, attribute: str, config: EnvConfig, render_mode: str | None, full_id: str
) -> gymnasium.Env:
    """``my_pkg.my_module:MyEnv`` (a class or factory, called with ``config.kwargs``) or
    ``my_pkg:Some-v0`` (a Gymnasium id that importing ``my_pkg`` registers)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"environment id {full_id!r} looks like an entry point module:Class, but module "
            f"{module_name!r} could not be imported ({error}). Tried: the entry point form. Plain "
            f"Gymnasium ids have no colon; prefixes are event:, minigrid:, dmc:, ale:. "
            f"List every valid id with: {LIST_IDS_HINT}"
        ) from error
    target = getattr(module, attribute, None)
    if callable(target):
        kwargs = dict(config.kwargs)
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        env = target(**kwargs)
        if not isinstance(env, gymnasium.Env):
            raise ValueError(f"{full_id!r} built a {type(env).__name__}, not a gymnasium.Env")
        return TimeLimit(env, config.time_limit) if config.time_limit else env
    if attribute in gymnasium.registry:
        return _gymnasium_make(attribute, config, render_mode)
    raise ValueError(
        f"environment id {full_id!r}: module {module_name!r} was imported but has no callable "
        f"{attribute!r} and registered no Gymnasium id {attribute!r}. Tried: the entry point form "
        f"module:Class and the form module:RegisteredId."
    )


def _gymnasium_make(env_id: str, config: EnvConfig, render_mode: str | None) -> gymnasium.Env:
    kwargs = dict(config.kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    # max_episode_steps replaces the registered limit instead of nesting a second one inside it.
    return gymnasium.make(env_id, max_episode_steps=config.time_limit or None, **kwargs)


def _make_minigrid(
    name: str, config: EnvConfig, render_mode: str | None, seed: int | None, full_id: str
) -> gymnasium.Env:
    _import_extra("minigrid", "minigrid")  # registers MiniGrid-* and BabyAI-* ids
    if name not in _minigrid_names():
        raise _unknown_id_error(full_id)
    # The raw observation is a dict with a mission string; the grid image is the usable part.
    env = SelectObservation(GoalSuccess(_gymnasium_make(name, config, render_mode)), "image")
    if config.pixels:
        return env  # the rgb_array render replaces it later
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

    return OneHotGrid(env, (len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX)))


def _make_ale(
    name: str, config: EnvConfig, render_mode: str | None, seed: int | None, full_id: str
) -> gymnasium.Env:
    ale_py = _import_extra("ale_py", "atari")
    gymnasium.register_envs(ale_py)
    gym_id = _ale_gym_id(name)
    if gym_id not in gymnasium.registry:
        raise _unknown_id_error(full_id)
    return _gymnasium_make(gym_id, config, render_mode)


def _make_dmc(
    name: str, config: EnvConfig, render_mode: str | None, seed: int | None, full_id: str
) -> gymnasium.Env:
    suite = _import_dm_control_suite()
    from envs.dm_env_adapter import DmEnvToGymnasium

    domain, _, task = name.partition("-")
    if (domain, task) not in suite.ALL_TASKS:
        raise _unknown_id_error(full_id)
    kwargs = dict(config.kwargs)
    task_kwargs = {"random": seed, **kwargs.pop("task_kwargs", {})}
    source = suite.load(domain, task, task_kwargs=task_kwargs, **kwargs)
    height, width = config.image_size

    def render() -> np.ndarray:
        return source.physics.render(height=height, width=width, camera_id=0)

    def reseed(new_seed: int) -> None:
        # dm_control has no public re-seeding; its Task keeps the generator in `_random`.
        source.task._random = np.random.RandomState(new_seed)

    env = DmEnvToGymnasium(source, render_fn=render if render_mode else None, seed_fn=reseed)
    return TimeLimit(env, config.time_limit) if config.time_limit else env


_FAMILIES: dict[str, Callable[..., gymnasium.Env]] = {
    "minigrid": _make_minigrid,
    "ale": _make_ale,
    "dmc": _make_dmc,
}


def _import_dm_control_suite() -> Any:
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # headless machines: GLFW needs a display, EGL does not
    return _import_extra("dm_control.suite", "dmc")


def _import_extra(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        hint = _EXTRA_HINT.format(extra=extra)
        raise ImportError(f"{module} could not be imported ({error}); it is an optional extra: {hint}") from error


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _gymnasium_ids() -> list[str]:
    return sorted(
        env_id
        for env_id, spec in gymnasium.registry.items()
        if not str(spec.entry_point).startswith(_FAMILY_ENTRY_POINTS)
    )


def _minigrid_names() -> list[str]:
    return sorted(
        env_id for env_id, spec in gymnasium.registry.items() if str(spec.entry_point).startswith("minigrid")
    )


def _minigrid_ids() -> list[str]:
    if not _installed("minigrid"):
        return []
    importlib.import_module("minigrid")
    return [f"minigrid:{name}" for name in _minigrid_names()]


def _ale_gym_id(name: str) -> str:
    """``Pong`` -> ``ALE/Pong-v5``; ``Pong-v5`` -> ``ALE/Pong-v5``; ``ALE/...`` unchanged."""
    if name.startswith("ALE/"):
        return name
    return f"ALE/{name}" if "-v" in name else f"ALE/{name}-v5"


def _ale_ids() -> list[str]:
    if not _installed("ale_py"):
        return []
    gymnasium.register_envs(importlib.import_module("ale_py"))
    return sorted(f"ale:{env_id[len('ALE/'):]}" for env_id in gymnasium.registry if env_id.startswith("ALE/"))


def _dmc_ids() -> list[str]:
    if not _installed("dm_control"):
        return []
    suite = _import_dm_control_suite()
    return sorted(f"dmc:{domain}-{task}" for domain, task in suite.ALL_TASKS)


def _unknown_id_error(env_id: str) -> ValueError:
    matches = difflib.get_close_matches(env_id, list_env_ids(), n=5, cutoff=0.6)
    suggestion = f" Close matches: {', '.join(matches)}." if matches else ""
    return ValueError(
        f"unknown environment id {env_id!r}.{suggestion} "
        f"Prefixes: event:, minigrid:, dmc:, ale:. List every valid id with: {LIST_IDS_HINT}"
    )
