"""The old ``gym`` API (before 0.26) over Gymnasium, for the reference DreamerV3's ``from_gym`` adapter.

Only the reference's virtual environment sees this package (``setup.sh`` puts ``shim/`` on its path);
it is not the real ``gym``. The reference's ``embodied/envs/from_gym.py`` calls ``env.reset() -> obs``
and ``env.step(a) -> (obs, reward, done, info)`` and reads ``info.get('is_terminal', done)``, so a
time-limit truncation is reported as the end of an episode that is not terminal, as Gymnasium says.
"""

import gymnasium
import numpy as np
from gymnasium import spaces  # noqa: F401  (from_gym reads gym.spaces.Dict)

__version__ = f"shim-over-gymnasium-{gymnasium.__version__}"


class OldApiEnv:
    """A Gymnasium environment behind the pre-0.26 ``gym`` interface."""

    def __init__(self, env: gymnasium.Env, seed: int | None = None):
        self._env = env
        self._seed = seed  # the first reset's seed, as the old env.seed() set it

    @property
    def observation_space(self):
        return self._env.observation_space

    @property
    def action_space(self):
        return self._env.action_space

    @property
    def unwrapped(self):
        return self._env.unwrapped

    def seed(self, seed: int | None = None) -> list:
        self._seed = seed
        return [seed]

    def reset(self, **kwargs):
        if self._seed is not None and "seed" not in kwargs:
            kwargs["seed"], self._seed = self._seed, None
        observation, _ = self._env.reset(**kwargs)
        return observation

    def step(self, action):
        if isinstance(self._env.action_space, spaces.Discrete):
            action = int(np.asarray(action))
        observation, reward, terminated, truncated, info = self._env.step(action)
        info = {**info, "is_terminal": bool(terminated)}
        return observation, float(reward), bool(terminated or truncated), info

    def render(self, mode: str = "rgb_array"):
        del mode  # Gymnasium fixes the render mode at make()
        return self._env.render()

    def close(self):
        return self._env.close()

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._env, name)


def make(id: str, seed: int | None = None, **kwargs) -> OldApiEnv:  # noqa: A002 (gym's signature)
    return OldApiEnv(gymnasium.make(id, **kwargs), seed=seed)
