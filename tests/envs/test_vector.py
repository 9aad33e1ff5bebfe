"""Vector envs from ids, sync and async, give the collector correct episode starts."""

import numpy as np
import pytest

from envs import make_vector_env
from envs.collector import Collector


@pytest.mark.parametrize("parallel", ["sync", "async"])
def test_vector_env_records_mark_every_episode_start(parallel):
    envs = make_vector_env("CartPole-v1", {"time_limit": 7}, num_envs=2, parallel=parallel)
    try:
        collector = Collector(envs, 2, lambda obs: {"obs": obs})
        collector.reset(seed=0)
        policy = lambda obs, is_first: (np.eye(2, dtype=np.float32)[[0, 1]], np.array([0, 1]))
        records = [collector.step(policy)[0] for _ in range(20)]
    finally:
        envs.close()
    is_first = np.stack([r["is_first"] for r in records])
    is_last = np.stack([r["is_last"] for r in records])
    assert is_first[0].all()
    np.testing.assert_array_equal(is_first[1:], is_last[:-1])  # a start follows every end
    assert is_last.any()
    starts = np.stack([r["prev_action"] for r in records])[is_first]
    assert np.all(starts == 0)


def test_unknown_parallel_mode_is_an_error():
    with pytest.raises(ValueError, match="sync"):
        make_vector_env("CartPole-v1", None, 1, parallel="threads")
