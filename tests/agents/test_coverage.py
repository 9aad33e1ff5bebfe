"""The coverage meter against hand-made sequences of cells."""

import json

import numpy as np
import pytest

from agents.coverage import CoverageMeter


def test_counts_distinct_cells_in_the_window_and_in_total():
    meter = CoverageMeter(window=4)
    meter.observe([(0, 0), (0, 1)])  # one vector step of two sub-environments: two env steps
    meter.observe([(0, 0), (1, 1)])
    assert meter.scalars() == {"coverage/cells_per_4_steps": 3.0, "coverage/cells_total": 3.0}
    meter.observe([(2, 2), (2, 2)])  # (0, 0), (0, 1) leave the window
    assert meter.scalars() == {"coverage/cells_per_4_steps": 3.0, "coverage/cells_total": 4.0}
    meter.observe([(2, 2), (2, 2)])
    assert meter.scalars() == {"coverage/cells_per_4_steps": 1.0, "coverage/cells_total": 4.0}


def test_default_window_is_named_per_1k_steps_and_arrays_hash_as_tuples():
    meter = CoverageMeter()
    for step in range(1500):
        meter.observe([np.array([step % 50, 0]), (step % 50, 0)])  # the same cell, as array and tuple
    assert meter.scalars() == {"coverage/cells_per_1k_steps": 50.0, "coverage/cells_total": 50.0}


def test_environments_without_cells_log_nothing():
    meter = CoverageMeter()
    meter.observe([None, None])
    assert meter.scalars() == {}
    meter.observe([None, "room-a"])  # any hashable cell; a sub-environment without one is skipped
    assert meter.scalars() == {"coverage/cells_per_1k_steps": 1.0, "coverage/cells_total": 1.0}


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        CoverageMeter(window=0)


def test_state_round_trips_through_json_with_tuple_cells():
    meter = CoverageMeter(window=3)
    meter.observe([(1, 2), (3, (4, 5)), "room", 7])  # the window keeps the last 3
    state = json.loads(json.dumps(meter.state_dict()))
    restored = CoverageMeter(window=3)
    restored.load_state_dict(state)
    assert restored.seen == meter.seen and list(restored.recent) == list(meter.recent)
    assert restored.scalars() == meter.scalars() == {"coverage/cells_per_3_steps": 3.0, "coverage/cells_total": 4.0}


def test_cells_that_are_not_json_are_not_saved():
    meter = CoverageMeter()
    meter.observe([frozenset({1})])
    assert meter.state_dict() is None
