"""A camera environment, whose renderer holds pygame surfaces, snapshots and continues its episode exactly."""

import pickle

import numpy as np
import pytest


def test_a_camera_env_snapshot_continues_the_episode_exactly(tmp_path):
    from agents.env_snapshots import EnvSnapshots
    from envs.registry import make_env

    env = make_env("event:Pendulum-v1", {"image_size": [16, 16], "action_repeat": 2})
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        env.step(rng.uniform(-2.0, 2.0, 1).astype(np.float32))
    with pytest.raises(Exception):  # what made resumes restart camera episodes before
        pickle.dumps(env)
    snapshots = EnvSnapshots(tmp_path)
    snapshots.save(3, env, {"open": [1, 2]}, kept_steps=[3])
    restored, collector_state = snapshots.load(3)
    assert collector_state == {"open": [1, 2]} and restored is not env
    for _ in range(4):  # the same actions: the same observations, events and rewards, renderer rebuilt on the way
        action = rng.uniform(-2.0, 2.0, 1).astype(np.float32)
        expected, got = env.step(action), restored.step(action)
        for original, again in zip(expected[:4], got[:4]):
            for key in (original if isinstance(original, dict) else [None]):
                first = original[key] if key is not None else original
                second = again[key] if key is not None else again
                np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
        np.testing.assert_array_equal(expected[4]["source_observation"], got[4]["source_observation"])
