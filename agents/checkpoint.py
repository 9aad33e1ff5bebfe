"""Atomic checkpoints of a whole run with orbax.

A checkpoint holds the train state (parameters, optimiser states, RNG keys, counters), the replay
buffer's arrays (memory storage; disk storage keeps its own files) and a JSON of counters and the
replay's position and sampler state. orbax writes each step to a temporary folder and renames it
when complete, so a killed save never replaces the last good checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, replay_data: dict[str, np.ndarray], meta: dict) -> None:
        """Save asynchronously; the previous save is finished first."""
        self.manager.wait_until_finished()
        items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
        if replay_data:  # disk storage keeps its arrays in its own files
            items["replay"] = ocp.args.StandardSave(replay_data)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(
        self, state_template: Any, replay_template: dict[str, np.ndarray] | None, step: int | None = None
    ):
        """Returns ``(state, replay_data, meta)`` of ``step`` (default: the latest).

        With ``replay_template`` None or empty the replay is not read (``replay_data`` is empty).
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
        items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
        if replay_template:
            items["replay"] = ocp.args.StandardRestore(replay_template)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        replay = restored.get("replay") if replay_template else None
        return restored.state, dict(replay or {}), restored.meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
