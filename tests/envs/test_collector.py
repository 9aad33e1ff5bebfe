"""The collector against a hand-made environment whose episodes have known lengths and rewards."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from envs.collector import Collector, NonFiniteObservationError


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



class ScriptedInfoEnv(CountingEnv):
    """CountingEnv whose step infos follow a script: ``infos[episode][step]``."""

    def __init__(self, infos: list[list[dict]], truncate: bool = False):
        super().__init__(length=len(infos[0]), truncate=truncate)
        self.infos, self.episode = infos, -1

    def reset(self, *, seed=None, options=None):
        self.episode += 1
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, _ = super().step(action)
        return obs, reward, terminated, truncated, self.infos[self.episode % len(self.infos)][self.t - 1]


def test_each_episode_carries_the_success_of_its_last_step():
    script = [[{}, {"success": True}],  # success on the last step
              [{"success": True}, {"success": False}],  # reached early, lost it: only the end counts
              [{}, {"is_success": 1.0}]]
    silent = [[{"cell": 1}, {"cell": 2}]]  # reports nothing
    env = SyncVectorEnv([lambda: ScriptedInfoEnv(script), lambda: ScriptedInfoEnv(silent, truncate=True)],
                        autoreset_mode=AutoresetMode.NEXT_STEP)
    collector = Collector(env, 2, lambda obs: {"obs": obs})
    collector.reset(seed=0)
    policy = lambda obs, is_first: (np.zeros((2, 2), np.float32), np.array([1, 1]))
    episodes = [episode for _ in range(10) for episode in collector.step(policy)[1]]
    assert [e.success for e in episodes if e.env_index == 0] == [True, False, True]
    assert [e.success for e in episodes if e.env_index == 1] == [None, None, None]


class NanAtEnv(CountingEnv):
    """CountingEnv whose observation (or reward) is NaN on one step of the first episode."""

    def __init__(self, nan_at: int, field: str = "obs"):
        super().__init__(length=10)
        self.nan_at, self.field, self.episode = nan_at, field, 0

    def reset(self, *, seed=None, options=None):
        self.episode += 1
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.episode == 1 and self.t == self.nan_at:
            obs, reward = (np.array([np.nan], np.float32), reward) if self.field == "obs" else (obs, np.inf)
        return obs, reward, terminated, truncated, info


def nan_collector(nonfinite: str, field: str = "obs", nan_at: int = 2):
    envs = SyncVectorEnv([lambda: CountingEnv(10), lambda: NanAtEnv(nan_at, field)],
                         autoreset_mode=AutoresetMode.NEXT_STEP)
    collector = Collector(envs, 2, lambda obs: {"obs": obs}, nonfinite=nonfinite, name="Test-v0")
    collector.reset(seed=0)
    return collector


def constant_policy(obs, is_first):
    return np.eye(2, dtype=np.float32)[[1, 1]], np.array([1, 1])


@pytest.mark.parametrize("field, named", [("obs", "observation 'obs'[0] = nan"), ("reward", "reward = inf")])
def test_a_non_finite_step_is_an_error_naming_env_key_and_value(field, named):
    collector = nan_collector("error", field)
    seen = [collector.step(constant_policy)[0]]  # returns obs 0; the env moves to t=1
    with pytest.raises(NonFiniteObservationError, match=r"'Test-v0' \(sub-environment 1 of 2\)") as error:
        seen.append(collector.step(constant_policy)[0])  # t=2 is NaN: this step's record is not returned
    assert named in str(error.value)
    assert len(seen) == 1 and all(np.isfinite(r["obs"]).all() for r in seen)


def test_drop_episode_ends_the_episode_at_its_last_good_step_and_resets_that_env():
    collector = nan_collector("drop_episode", nan_at=3)
    records = [collector.step(constant_policy)[0] for _ in range(6)]
    assert all(np.isfinite(r["obs"]).all() and np.isfinite(r["reward"]).all() for r in records)
    dropped = [r["obs"][1, 0] for r in records]
    assert dropped == [0, 1, 2, 0, 1, 2]  # t=3 never recorded: the env was reset instead
    assert [bool(r["is_last"][1]) for r in records] == [False, False, True, False, False, False]
    assert [bool(r["is_first"][1]) for r in records] == [True, False, False, True, False, False]
    assert not any(bool(r["is_terminal"][1]) for r in records)
    assert [r["obs"][0, 0] for r in records] == [0, 1, 2, 3, 4, 5]  # the other env goes on untouched
    assert collector.dropped_episodes == 1


def test_cells_from_infos_follow_the_records_and_are_none_without_them():
    from envs import make_vector_env

    envs = make_vector_env("hmbrl/GridFourRooms-v0", {"time_limit": 3}, num_envs=2)
    collector = Collector(envs, 4, lambda obs: {"obs": obs})
    collector.reset(seed=0)
    policy = lambda obs, is_first: (np.eye(4, dtype=np.float32)[[0, 3]], np.array([0, 3]))  # up, right
    starts = []
    for _ in range(6):
        record, _ = collector.step(policy)
        interior = record["obs"].shape[1] // 2  # the observation is one-hot row, one-hot column
        rows, columns = record["obs"][:, :interior].argmax(1) + 1, record["obs"][:, interior:].argmax(1) + 1
        assert collector.cells == list(zip(rows.tolist(), columns.tolist()))
        starts.append(bool(record["is_first"][0]))
    envs.close()
    assert starts == [True, False, False, False, True, False]  # reset observations' cells checked too
    counting = Collector(SyncVectorEnv([CountingEnv], autoreset_mode=AutoresetMode.NEXT_STEP), 2,
                         lambda obs: {"obs": obs})
    counting.reset(seed=0)
    counting.step(lambda obs, is_first: (np.eye(2, dtype=np.float32)[[1]], np.array([1])))
    assert counting.cells == [None]
