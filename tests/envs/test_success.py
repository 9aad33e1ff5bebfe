"""The one success rule (`envs.success`) against hand-made infos."""

import numpy as np

from envs.success import info_success, success_rate, vector_info_success


def test_either_key_reports_success_and_neither_reports_nothing():
    assert info_success({"success": True}) is True
    assert info_success({"is_success": np.float32(1.0)}) is True  # Gymnasium-Robotics
    assert info_success({"success": 0.0, "cell": (1, 2)}) is False
    assert info_success({"success": None, "is_success": np.True_}) is True
    assert info_success({"cell": (1, 2), "episode": {}}) is None


def test_vector_infos_follow_their_masks():
    info = {"success": np.array([True, False, True]), "_success": np.array([True, True, False]),
            "is_success": np.array([0.0, 0.0, 1.0]), "_is_success": np.array([False, False, True])}
    assert vector_info_success(info, 3) == [True, False, True]
    assert vector_info_success({"cell": np.zeros((2, 2))}, 2) == [None, None]


def test_success_rate_is_none_where_no_episode_reports_success():
    assert success_rate([None, None, None]) is None  # not 0: the environment does not say
    assert success_rate([True, False, False, True]) == 0.5
    assert success_rate([True, None, None, None]) == 0.25  # an env that sets the key only on success
