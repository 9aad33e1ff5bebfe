"""The gates' counts (``agents.probes``) on hand-made arrays whose answers are known."""

import jax.numpy as jnp
import numpy as np
import pytest

from agents import probes
from agents.goals import goal_similarity

GROUPS = (3, 4)  # a 3 x 4 grid: one-hot row, then one-hot column


def observation(row: int, column: int) -> np.ndarray:
    return np.concatenate([np.eye(GROUPS[0])[row], np.eye(GROUPS[1])[column]])


def every_cell() -> np.ndarray:
    return np.stack([observation(row, column) for row in range(GROUPS[0]) for column in range(GROUPS[1])])


def test_group_indices_and_cell_ids_name_each_cell_once():
    indices = probes.group_indices(every_cell(), GROUPS)
    assert indices[5].tolist() == [1, 1]
    np.testing.assert_array_equal(probes.cell_ids(indices, GROUPS), np.arange(12))
    with pytest.raises(ValueError, match="add up to 8, not the observation size 7"):
        probes.group_indices(every_cell(), (3, 5))


def test_a_perfect_decoder_scores_one_and_a_shifted_one_zero():
    observed = every_cell()
    noisy = observed * 0.6 + 0.1  # not one-hot, but the argmax of every group is right
    assert probes.decoding_accuracy(noisy, observed, GROUPS) == 1.0
    shifted = np.concatenate([observed[:, :3], np.roll(observed[:, 3:], 1, axis=1)], 1)  # column off by one
    assert probes.decoding_accuracy(shifted, observed, GROUPS) == 0.0
    half = np.where(np.arange(12)[:, None] < 6, observed, shifted)  # the row alone is not enough
    assert probes.decoding_accuracy(half, observed, GROUPS) == 0.5
    assert probes.decoding_accuracy(half, observed, GROUPS, mask=np.arange(12) < 3) == 1.0


def test_reach_counts_the_best_similarity_of_the_steps_still_alive():
    similarities = np.array([[0.1, 0.95, 0.2, 0.3],
                             [0.92, 0.5, 0.2, 0.3],
                             [0.3, 0.5, 0.91, 0.3]])  # [K = 3, P = 4]
    assert probes.reach_rate(similarities, 0.9) == 0.75
    alive = np.ones((3, 4), bool)
    alive[2, 2] = False  # pair 2's episode ended before its only close step
    assert probes.reach_rate(similarities, 0.9, alive) == 0.5
    assert probes.reach_rate(similarities, 0.99) == 0.0


def test_cell_reach_is_the_goal_cell_at_some_alive_step():
    cells = np.array([[1, 2, 3], [4, 5, 6]])  # [K = 2, P = 3]
    goal_cells = np.array([4, 9, 3])
    assert probes.cell_reach_rate(cells, goal_cells) == pytest.approx(2 / 3)
    alive = np.array([[True, True, False], [True, True, False]])
    assert probes.cell_reach_rate(cells, goal_cells, alive) == pytest.approx(1 / 3)


@pytest.mark.parametrize("own, shuffled, passes", [(0.4, 0.2, True), (0.39, 0.2, False), (0.1, 0.0, True),
                                                   (0.0, 0.0, False)])
def test_the_reach_gate_wants_twice_the_shuffled_rate_and_some_reach(own, shuffled, passes):
    assert probes.reach_gate_passes(own, shuffled) is passes


def test_pairs_stay_inside_one_episode_and_at_most_k_steps_apart():
    is_first = np.zeros((20, 3), bool)
    is_first[[0, 7, 12], 0] = True
    is_first[0, 1:] = True
    is_first[[3, 4, 5, 6], 2] = True  # one-step episodes and short ones
    time, column, offset = probes.sample_pairs(is_first, 4, 1000, np.random.default_rng(0))
    assert len(time) == len(set(zip(time, column)))  # distinct starts
    assert np.all((offset >= 1) & (offset <= 4)) and np.all(time + offset < 20)
    for start, col, k in zip(time, column, offset):
        assert not is_first[start + 1: start + k + 1, col].any()
    assert not np.any((column == 2) & (time >= 3) & (time <= 5))  # no room for a goal in those episodes
    assert len(probes.sample_pairs(is_first, 4, 10, np.random.default_rng(0))[0]) == 10


def test_pairs_beyond_a_distance_have_offsets_in_their_band_within_one_episode():
    is_first = np.zeros((40, 3), bool)
    is_first[0] = is_first[25, 1] = True
    time, column, offset = probes.sample_pairs_beyond(is_first, 8, 16, 500, np.random.default_rng(0))
    assert 0 < len(time) <= 500 and len(time) == len(set(zip(time, column)))
    assert np.all((offset > 8) & (offset <= 16)) and np.all(time + offset < 40)
    for start, col, k in zip(time, column, offset):
        assert not is_first[start + 1: start + k + 1, col].any()
    assert len(probes.sample_pairs_beyond(is_first, 8, 16, 5, np.random.default_rng(0))[0]) == 5


def test_a_derangement_gives_every_pair_another_pairs_goal():
    for count in (2, 3, 50):
        shuffled = probes.derangement(count, np.random.default_rng(count))
        assert sorted(shuffled) == list(range(count)) and np.all(shuffled != np.arange(count))
    with pytest.raises(ValueError):
        probes.derangement(1, np.random.default_rng(0))


def test_the_similarity_matrix_is_the_agents_goal_similarity():
    rng = np.random.default_rng(0)
    goals, states = rng.normal(size=(5, 6)), rng.normal(size=(7, 6)) * 2
    expected = goal_similarity(jnp.asarray(states)[None], jnp.asarray(goals)[:, None])
    np.testing.assert_allclose(probes.similarity_matrix(goals, states), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(probes.nearest_states(goals, states, chunk=2),
                                  np.argmax(probes.similarity_matrix(goals, states), 1))


def test_coverage_counts_the_visited_cells_that_decoded_goals_land_on():
    states = every_cell()  # one state per cell, its features its observation
    cells = probes.cell_ids(probes.group_indices(states, GROUPS), GROUPS)
    goals = np.stack([states[3], states[3] * 1.1, states[7]])  # two goals near cell 3, one at cell 7
    assert probes.goal_coverage(probes.nearest_states(goals, states), cells) == (2 / 12, 2, 12)
    revisits = np.concatenate([cells, cells])  # visiting a cell twice does not count it twice
    nearest = probes.nearest_states(states, np.concatenate([states, states]))
    assert probes.goal_coverage(nearest, revisits) == (1.0, 12, 12)


def test_codes_to_probe_enumerates_a_small_code_space_and_samples_a_large_one():
    every = probes.codes_to_probe(2, 3, np.zeros((1, 2), int), 16, np.random.default_rng(0))
    assert len(np.unique(every, axis=0)) == len(every) == 9
    visited = np.array([[7, 7, 7, 7], [1, 2, 3, 4]])
    sampled = probes.codes_to_probe(4, 8, visited, 16, np.random.default_rng(0))
    assert sampled.shape[1] == 4 and 16 < len(sampled) <= 18 and sampled.max() < 8
    assert {tuple(code) for code in visited} <= {tuple(code) for code in sampled}
