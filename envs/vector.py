"""Vector environments (``gymnasium.vector``) built from ``make_env`` ids.

``async`` runs every sub-environment in its own subprocess and restarts a worker that dies (killed,
crashed simulator) or raises: ``RestartingAsyncVectorEnv``.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from envs.registry import make_env

PARALLEL_MODES = ("sync", "async")
LOG = logging.getLogger(__name__)


def make_vector_env(
    env_id: str, config: Any = None, num_envs: int = 1, parallel: str = "sync"
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make_env(env_id, config)`` stepped together.

    ``parallel="async"`` runs each copy in its own subprocess (for slow simulators) and restarts a
    worker that dies. Autoreset is NEXT_STEP (see ``envs.collector``). Seed them with
    ``reset(seed=s)``: copy i gets ``s + i``.
    """
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"env parallel mode must be one of {PARALLEL_MODES}, got {parallel!r}")
    factories = [functools.partial(make_env, env_id, config) for _ in range(num_envs)]
    if parallel == "async":
        return RestartingAsyncVectorEnv(factories)
    return SyncVectorEnv(factories, autoreset_mode=AutoresetMode.NEXT_STEP)


class RestartingAsyncVectorEnv(gym.vector.VectorEnv):
    """Sub-environments in subprocesses, stepped in parallel; a worker that dies or raises is replaced.

    Each sub-environment is a one-env ``AsyncVectorEnv`` (its own subprocess, shared-memory
    observations), so one can be replaced without touching the others. When a worker fails during
    ``step``, a new one is started and reset, and its reset observation is returned at once with
    reward 0, as after an episode end under NEXT_STEP autoreset; ``info["worker_restarted"]`` (bool
    ``[num_envs]``) marks it, so that the collector ends the interrupted episode (not as terminal)
    and starts a new one. Restarts are counted in ``worker_restarts`` and logged as warnings.

    Args:
      env_fns: one factory per sub-environment.
      step_timeout: seconds a step may take before its worker counts as hung and is replaced
        (None: wait for ever).
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], step_timeout: float | None = None):
        self.env_fns, self.step_timeout = list(env_fns), step_timeout
        self.num_envs = len(self.env_fns)
        self.workers = [self._start(index) for index in range(self.num_envs)]
        first = self.workers[0]
        self.single_observation_space = first.single_observation_space
        self.single_action_space = first.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = dict(first.metadata)  # autoreset_mode NEXT_STEP
        self.render_mode = first.render_mode
        self.worker_restarts = 0
        self.restarts_per_env = [0] * self.num_envs
        self.seeds: list[int | None] = [None] * self.num_envs

    def _start(self, index: int) -> AsyncVectorEnv:
        return AsyncVectorEnv([self.env_fns[index]], autoreset_mode=AutoresetMode.NEXT_STEP)

    def _batch(self, observations: list[Any]) -> Any:
        empty = create_empty_array(self.single_observation_space, n=self.num_envs, fn=np.zeros)
        return concatenate(self.single_observation_space, observations, empty)

    def _single(self, batched: Any) -> Any:
        """The one observation in a one-env batch."""
        return next(iter(iterate(self.workers[0].observation_space, batched)))

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        seeds = [seed + index for index in range(self.num_envs)] if isinstance(seed, int) else seed
        self.seeds = list(seeds) if seeds is not None else [None] * self.num_envs
        for worker, env_seed in zip(self.workers, self.seeds):
            worker.reset_async(seed=[env_seed], options=options)
        observations, infos = [], {}
        for index, worker in enumerate(self.workers):
            try:
                obs, info = worker.reset_wait(timeout=self.step_timeout)
            except (Exception, multiprocessing.TimeoutError) as error:  # noqa: BLE001 - any worker failure
                obs, info = self._restart(index, error)
            observations.append(self._single(obs))
            infos = self._add_info(infos, _unbatch_info(info), index)
        return self._batch(observations), infos

    def step(self, actions: Any):
        failed: dict[int, BaseException] = {}
        for index, (worker, action) in enumerate(zip(self.workers, iterate(self.action_space, actions))):
            one = concatenate(self.single_action_space, [action], create_empty_array(self.single_action_space, n=1))
            try:
                worker.step_async(one)
            except Exception as error:  # noqa: BLE001 - a dead worker's pipe is broken
                failed[index] = error
        observations, rewards = [], np.zeros(self.num_envs)
        terminated, truncated = np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
        restarted, infos = np.zeros(self.num_envs, bool), {}
        for index, worker in enumerate(self.workers):
            try:
                if index in failed:
                    raise failed[index]
                obs, reward, term, trunc, info = worker.step_wait(timeout=self.step_timeout)
                rewards[index], terminated[index], truncated[index] = reward[0], term[0], trunc[0]
            except (Exception, multiprocessing.TimeoutError) as error:  # noqa: BLE001 - any worker failure
                obs, info = self._restart(index, error)
                restarted[index] = True
            observations.append(self._single(obs))
            infos = self._add_info(infos, _unbatch_info(info), index)
        infos["worker_restarted"] = restarted
        return self._batch(observations), rewards, terminated, truncated, infos

    def _restart(self, index: int, error: BaseException) -> tuple[Any, dict]:
        """Replace worker ``index`` by a fresh one, reset with a new seed; its reset result."""
        _discard(self.workers[index])
        self.worker_restarts += 1
        self.restarts_per_env[index] += 1
        base = self.seeds[index]
        # A seed no other sub-environment of this run uses: past the range of the others' seeds.
        seed = None if base is None else base + self.num_envs * self.restarts_per_env[index]
        LOG.warning("env worker %d failed (%s: %s); restarted it (restart %d of this run), its episode is cut",
                    index, type(error).__name__, error, self.worker_restarts)
        self.workers[index] = self._start(index)
        return self.workers[index].reset(seed=[seed])

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return tuple(worker.call(name, *args, **kwargs)[0] for worker in self.workers)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return tuple(worker.get_attr(name)[0] for worker in self.workers)

    def render(self) -> tuple[Any, ...] | None:
        return self.call("render")

    def close_extras(self, **kwargs: Any) -> None:
        for worker in self.workers:
            try:
                worker.close(**kwargs)
            except Exception:  # noqa: BLE001 - a worker that died mid-call cannot close cleanly
                _discard(worker)


def _discard(worker: AsyncVectorEnv) -> None:
    """Stop a failed one-env worker for good: kill its process, close its pipe, mark it closed."""
    for process in worker.processes:
        if process.is_alive():
            process.kill()
        process.join(timeout=5)
    for pipe in worker.parent_pipes:
        if pipe is not None:
            pipe.close()
    worker.closed = True  # so that its __del__ does not try to talk to the dead process


def _unbatch_info(info: dict) -> dict:
    """One sub-environment's info from a one-env vector info (values ``[1]`` with ``_key`` masks)."""
    single = {}
    for key, value in info.items():
        if key.startswith("_") or not np.asarray(info.get(f"_{key}", [True]))[0]:
            continue
        single[key] = _unbatch_info(value) if isinstance(value, dict) else value[0]
    return single
