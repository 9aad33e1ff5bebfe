"""A crashed or killed async env worker is restarted; its episode is cut (not terminal) in replay."""

import os
import signal

import gymnasium as gym
import numpy as np
import pytest

from agents.replay import Replay
from envs.collector import Collector
from envs.vector import RestartingAsyncVectorEnv, make_vector_env


class RaisesOnce(gym.Env):
    """A counter env that raises on its ``fail_at``-th step (in the first process that runs it)."""

    observation_space = gym.spaces.Box(0, 1000, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, fail_at: int | None, flag_path: str):
        self.fail_at, self.flag_path, self.t = fail_at, flag_path, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == self.fail_at and not os.path.exists(self.flag_path):
            open(self.flag_path, "w").close()  # a restarted worker does not fail again
            raise RuntimeError("simulator crashed")
        return np.array([self.t], np.float32), 1.0, False, False, {}


def random_policy(obs, is_first):
    count = len(is_first)
    return np.zeros((count, 2), np.float32), np.zeros(count, np.int64)


def collect(envs, steps, before_step=None):
    collector = Collector(envs, 2, lambda obs: {"obs": obs})
    collector.reset(seed=0)
    records = []
    for t in range(steps):
        if before_step is not None:
            before_step(t)
        records.append(collector.step(random_policy)[0])
    return {key: np.stack([record[key] for record in records]) for key in records[0]}


def test_killed_worker_is_restarted_and_replay_marks_the_cut():
    envs = make_vector_env("CartPole-v1", {"time_limit": 500}, num_envs=2, parallel="async")
    assert isinstance(envs, RestartingAsyncVectorEnv)
    kill_at = 5

    def kill_worker_one(t):
        if t == kill_at:  # record t is already observed; stepping from it finds the worker dead
            os.kill(envs.workers[1].processes[0].pid, signal.SIGKILL)

    try:
        records = collect(envs, 12, kill_worker_one)
        assert envs.worker_restarts == 1 and envs.restarts_per_env == [0, 1]
    finally:
        envs.close()
    # env 1: the record it was killed from ends the episode (not terminal), the next starts one
    assert records["is_last"][kill_at, 1] and not records["is_terminal"][kill_at, 1]
    assert records["is_first"][kill_at + 1, 1] and np.all(records["prev_action"][kill_at + 1, 1] == 0)
    assert not records["is_first"][1:, 0].any()  # env 0 went on undisturbed
    assert records["is_last"][:, 1].sum() == 1  # CartPole with a zero policy lasts longer than 12 steps

    replay = Replay({"obs": ((4,), np.float32), "is_first": ((), bool), "is_terminal": ((), bool)},
                    num_envs=2, capacity=100, batch_size=1, batch_length=12)
    for t in range(12):
        replay.add({key: records[key][t] for key in records})
    stored_first = replay.arrays["is_first"][1, :12]
    assert np.flatnonzero(stored_first).tolist() == [0, kill_at + 1]
    assert not replay.arrays["is_terminal"][1, :12].any()


def test_worker_that_raises_is_restarted_and_the_run_goes_on(tmp_path, caplog):
    flag = str(tmp_path / "crashed")
    factories = [lambda: RaisesOnce(None, flag), lambda: RaisesOnce(3, flag)]
    envs = RestartingAsyncVectorEnv(factories)
    try:
        with caplog.at_level("WARNING", logger="envs.vector"):
            records = collect(envs, 8)
    finally:
        envs.close()
    assert envs.worker_restarts == 1
    assert any("restarted" in message for message in caplog.messages)
    # env 1 raised while stepping from record 2 (its 3rd step): record 2 ends the episode, record 3
    # starts a fresh one (counter back at 0), and it counts up again after that
    np.testing.assert_array_equal(records["obs"][:, 1, 0], [0, 1, 2, 0, 1, 2, 3, 4])
    assert records["is_last"][2, 1] and records["is_first"][3, 1] and not records["is_terminal"].any()
    np.testing.assert_array_equal(records["obs"][:, 0, 0], np.arange(8))
