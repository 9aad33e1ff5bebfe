"""The collector against a hand-made environment whose episodes have known lengths and rewards."""

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from envs.collector import Collector


class CountingEnv(gym.Env):
    """Observation = steps since reset; reward = 1 per step; terminates after ``length`` steps."""

    observation_space = gym.spaces.Box(0, 100, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 3, truncate: bool = False):
        self.length, self.truncate, self.t = length, truncate, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        return np.array([self.t], np.float32), 1.0, done and not self.truncate, done and self.truncate, {}


def collect(length: int, truncate: bool, steps: int):
    env = SyncVectorEnv([lambda: CountingEnv(length, truncate)], autoreset_mode=AutoresetMode.NEXT_STEP)
    collector = Collector(env, 2, lambda obs: {"obs": obs})
    collector.reset(seed=0)
    policy = lambda obs, is_first: (np.eye(2, dtype=np.float32)[[1]], np.array([1]))
    records, episodes = [], []
    for _ in range(steps):
        record, finished = collector.step(policy)
        records.append(record)
        episodes.extend(finished)
    return records, episodes


def test_records_follow_next_step_autoreset():
    records, episodes = collect(length=3, truncate=False, steps=9)
    obs = [int(r["obs"][0, 0]) for r in records]
    assert obs == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert [bool(r["is_first"][0]) for r in records] == [True, False, False, False] * 2 + [True]
    assert [bool(r["is_terminal"][0]) for r in records] == [False, False, False, True] * 2 + [False]
    assert [float(r["reward"][0]) for r in records] == [0, 1, 1, 1] * 2 + [0]
    # the action that led to the step; zero at an episode start (the env ignored that action)
    assert [r["prev_action"][0].tolist() for r in records[:5]] == [[0, 0], [0, 1], [0, 1], [0, 1], [0, 0]]
    assert [(e.score, e.length) for e in episodes] == [(3.0, 3), (3.0, 3)]


def test_truncation_is_last_but_not_terminal():
    records, episodes = collect(length=2, truncate=True, steps=4)
    assert [bool(r["is_last"][0]) for r in records] == [False, False, True, False]
    assert not any(bool(r["is_terminal"][0]) for r in records)
    assert [(e.score, e.length) for e in episodes] == [(2.0, 2)]
