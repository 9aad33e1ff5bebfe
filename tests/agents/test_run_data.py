"""Real steps of a run in time order: the replay's ring unrolled, oldest record first."""

import numpy as np

from agents.run_data import replay_window


def test_a_full_ring_is_unrolled_from_its_write_position_and_cut_to_the_last_steps():
    ring = np.array([[4, 5, 1, 2, 3], [14, 15, 11, 12, 13]])  # 2 envs, written up to index 2 (next write)
    arrays = {"x": ring, "is_first": np.zeros((2, 5), bool)}
    window = replay_window(arrays, position=2, count=5, length=5, steps=3)
    np.testing.assert_array_equal(window["x"], [[3, 13], [4, 14], [5, 15]])  # [T, E]
    assert window["is_first"][0].all() and not window["is_first"][1:].any()  # filtered from the initial state
    assert not arrays["is_first"].any()  # the run's arrays are not written to


def test_a_ring_not_yet_full_is_in_order_up_to_its_count():
    arrays = {"x": np.array([[1, 2, 3, 0, 0]]), "is_first": np.zeros((1, 5), bool)}
    window = replay_window(arrays, position=3, count=3, length=5, steps=10)
    np.testing.assert_array_equal(window["x"][:, 0], [1, 2, 3])
