"""Adapters between `dm_env.Environment` and `gymnasium.Env`, both directions.

Specs and spaces: ``DiscreteArray <-> Discrete``, ``BoundedArray <-> Box``, ``Array -> Box`` with
unbounded limits, nested dicts/tuples of either <-> ``Dict``/``Tuple``. Episode ends: a LAST step
with discount 0 is a termination, a LAST step with discount > 0 a truncation (and back).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import dm_env
import gymnasium
import numpy as np
import tree  # dm-tree, a dependency of dm_env
from dm_env import specs

__all__ = ["DmEnvToGymnasium", "GymnasiumToDmEnv", "space_to_spec", "spec_to_space"]


def spec_to_space(spec: Any) -> gymnasium.Space:
    """A (nested) dm_env spec as a Gymnasium space."""
    if isinstance(spec, specs.DiscreteArray):
        return gymnasium.spaces.Discrete(spec.num_values)
    if isinstance(spec, specs.BoundedArray):
        low = np.broadcast_to(spec.minimum, spec.shape).astype(spec.dtype)
        high = np.broadcast_to(spec.maximum, spec.shape).astype(spec.dtype)
        return gymnasium.spaces.Box(low, high, spec.shape, spec.dtype)
    if isinstance(spec, specs.Array):
        return _unbounded_box(spec.shape, spec.dtype)
    if isinstance(spec, Mapping):
        return gymnasium.spaces.Dict({key: spec_to_space(value) for key, value in spec.items()})
    if isinstance(spec, (list, tuple)):
        return gymnasium.spaces.Tuple([spec_to_space(value) for value in spec])
    raise TypeError(f"no Gymnasium space for dm_env spec {spec!r}")


def space_to_spec(space: gymnasium.Space, name: str | None = None) -> Any:
    """A Gymnasium space as a (nested) dm_env spec."""
    if isinstance(space, gymnasium.spaces.Discrete):
        if space.start == 0:
            return specs.DiscreteArray(int(space.n), dtype=space.dtype, name=name)
        return specs.BoundedArray((), space.dtype, space.start, space.start + space.n - 1, name=name)
    if isinstance(space, gymnasium.spaces.Box):
        return specs.BoundedArray(space.shape, space.dtype, space.low, space.high, name=name)
    if isinstance(space, gymnasium.spaces.MultiBinary):
        return specs.BoundedArray(space.shape, space.dtype, 0, 1, name=name)
    if isinstance(space, gymnasium.spaces.MultiDiscrete):
        return specs.BoundedArray(space.shape, space.dtype, space.start, space.start + space.nvec - 1, name=name)
    if isinstance(space, gymnasium.spaces.Dict):
        return {key: space_to_spec(value, name=key) for key, value in space.spaces.items()}
    if isinstance(space, gymnasium.spaces.Tuple):
        return tuple(space_to_spec(value) for value in space.spaces)
    raise TypeError(f"no dm_env spec for Gymnasium space {space!r}")


def _unbounded_box(shape: tuple[int, ...], dtype: Any) -> gymnasium.spaces.Box:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return gymnasium.spaces.Box(-np.inf, np.inf, shape, dtype)
    if dtype == np.bool_:
        return gymnasium.spaces.Box(False, True, shape, dtype)
    info = np.iinfo(dtype)
    return gymnasium.spaces.Box(info.min, info.max, shape, dtype)


def _convert(value: Any, space: gymnasium.Space) -> Any:
    """``value`` cast to ``space``'s dtypes and structure (dm_control hands out float64 and lists)."""
    if isinstance(space, gymnasium.spaces.Dict):
        return {key: _convert(value[key], sub_space) for key, sub_space in space.spaces.items()}
    if isinstance(space, gymnasium.spaces.Tuple):
        return tuple(_convert(item, sub_space) for item, sub_space in zip(value, space.spaces))
    if isinstance(space, gymnasium.spaces.Discrete):
        return np.int64(value)
    return np.array(value, dtype=space.dtype).reshape(space.shape)


class DmEnvToGymnasium(gymnasium.Env):
    """A `dm_env.Environment` seen as a `gymnasium.Env`.

    dm_env has no seeding or rendering API, so both come as optional callables: ``seed_fn(seed)`` is
    called by ``reset(seed=...)``, ``render_fn()`` returns an ``(H, W, 3)`` uint8 frame and enables
    ``render_mode="rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        env: dm_env.Environment,
        render_fn: Callable[[], np.ndarray] | None = None,
        seed_fn: Callable[[int], None] | None = None,
    ):
        self.env = env
        self.render_fn = render_fn
        self.seed_fn = seed_fn
        self.render_mode = "rgb_array" if render_fn is not None else None
        self.observation_space = spec_to_space(env.observation_spec())
        self.action_space = spec_to_space(env.action_spec())
        self._action_spec = env.action_spec()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        if seed is not None:
            if self.seed_fn is None:
                raise ValueError("this dm_env source cannot be re-seeded: pass seed_fn to DmEnvToGymnasium")
            self.seed_fn(seed)
        time_step = self.env.reset()
        return _convert(time_step.observation, self.observation_space), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        time_step = self.env.step(self._dm_action(action))
        if time_step.first():
            raise RuntimeError("the dm_env source restarted an episode: call reset() after an episode ends")
        terminated = time_step.last() and float(time_step.discount) == 0.0
        truncated = time_step.last() and not terminated
        observation = _convert(time_step.observation, self.observation_space)
        info = {"discount": float(time_step.discount)}
        return observation, float(time_step.reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        return None if self.render_fn is None else self.render_fn()

    def close(self) -> None:
        self.env.close()

    def _dm_action(self, action: Any) -> Any:
        return tree.map_structure(lambda spec, value: np.asarray(value, spec.dtype), self._action_spec, action)


class GymnasiumToDmEnv(dm_env.Environment):
    """A `gymnasium.Env` seen as a `dm_env.Environment` (FIRST/MID/LAST time steps).

    ``seed`` seeds the first reset; `reseed` sets the seed of the next one. A step after LAST starts
    a new episode, as the dm_env contract requires.
    """

    def __init__(self, env: gymnasium.Env, seed: int | None = None):
        self.env = env
        self._next_seed = seed
        self._needs_reset = True
        self._observation_spec = space_to_spec(env.observation_space, name="observation")
        self._action_spec = space_to_spec(env.action_space, name="action")

    def reseed(self, seed: int) -> None:
        self._next_seed = seed

    def reset(self) -> dm_env.TimeStep:
        observation, _ = self.env.reset(seed=self._next_seed)
        self._next_seed = None
        self._needs_reset = False
        return dm_env.restart(self._observation(observation))

    def step(self, action: Any) -> dm_env.TimeStep:
        if self._needs_reset:
            return self.reset()
        observation, reward, terminated, truncated, _ = self.env.step(self._gym_action(action))
        observation, reward = self._observation(observation), np.float64(reward)
        if terminated or truncated:
            self._needs_reset = True
            end = dm_env.termination if terminated else dm_env.truncation
            return end(reward, observation)
        return dm_env.transition(reward, observation)

    def observation_spec(self) -> Any:
        return self._observation_spec

    def action_spec(self) -> Any:
        return self._action_spec

    def reward_spec(self) -> specs.Array:
        return specs.Array((), np.float64, name="reward")

    def close(self) -> None:
        self.env.close()

    def _observation(self, observation: Any) -> Any:
        return _convert(observation, self.env.observation_space)

    def _gym_action(self, action: Any) -> Any:
        if isinstance(self.env.action_space, gymnasium.spaces.Discrete):
            return int(action)
        return _convert(action, self.env.action_space)
