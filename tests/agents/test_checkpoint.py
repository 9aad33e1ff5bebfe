"""Restoring a checkpoint whose state tree differs from the agent's: one clear error, not orbax's."""

import numpy as np
import pytest

from agents.checkpoint import CheckpointLayoutError, Checkpointer
from scripts.common import user_error_message


def test_a_checkpoint_of_another_layout_names_the_differing_keys(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    checkpointer.save(7, {"params": np.zeros(2, np.float32), "old_field": np.ones(1, np.float32)}, {}, {"step": 7})
    checkpointer.wait()
    template = {"params": np.zeros(2, np.float32), "new_field": np.zeros((), bool)}
    with pytest.raises(CheckpointLayoutError) as error:
        checkpointer.restore(template, None)
    message = str(error.value)
    assert "new_field" in message and "old_field" in message and "another version" in message
    assert user_error_message(error.value) == message  # scripts print it as one paragraph, no traceback


def test_a_checkpoint_of_the_same_layout_restores(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    checkpointer.save(3, {"params": np.arange(2, dtype=np.float32)}, {}, {"step": 3})
    checkpointer.wait()
    state, replay, meta = checkpointer.restore({"params": np.zeros(2, np.float32)}, None)
    np.testing.assert_array_equal(state["params"], [0.0, 1.0])
    assert replay == {} and meta == {"step": 3}
