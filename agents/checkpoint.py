"""Atomic checkpoints of a whole run with orbax.

A checkpoint holds the train state (parameters, optimiser states, RNG keys, counters), the replay
buffer's arrays (memory storage; disk storage keeps its own files) and a JSON of counters and the
replay's position and sampler state. orbax writes each step to a temporary folder and renames it
when complete, so a killed save never replaces the last good checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointLayoutError(ValueError):
    """A checkpoint whose state tree is not the one this version's agent builds: it was written by
    another version of the package (or another agent), so it cannot be restored into this one."""


def layout_error(directory: Path, step: int, error: ValueError) -> CheckpointLayoutError:
    """The orbax tree-mismatch ``error`` restoring ``step``, worded as what differs and what to do."""
    lines = str(error).splitlines()
    # orbax lists each differing key path on its own line, followed by "- Source: ..." (the template
    # asked for) and "- Target: ..." (the checkpoint): MISSING on the side that lacks it.
    only_agent = [path.rstrip(":") for path, _, target in zip(lines, lines[1:], lines[2:])
                  if path.endswith(":") and "Target: MISSING" in target]
    only_saved = [path.rstrip(":") for path, source in zip(lines, lines[1:])
                  if path.endswith(":") and "Source: MISSING" in source]
    if only_agent or only_saved:
        what = (f"the agent has {', '.join(only_agent) or 'nothing'} that the checkpoint lacks, and the "
                f"checkpoint has {', '.join(only_saved) or 'nothing'} that the agent lacks")
    else:
        what = " ".join(line.strip() for line in lines[:3])
    return CheckpointLayoutError(
        f"checkpoint {directory / str(step)} does not fit this version's agent ({what}): it was written by "
        "another version of hmbrl. Continue it with the version that wrote it, or start a new run.")


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory).resolve()
        # In a multi-process run, process 0 checkpoints the run alone (no barriers with the others,
        # which keep their shards with ``ShardCheckpointer``).
        multiprocessing = ocp.options.MultiprocessingOptions(
            primary_host=0, active_processes={0}, barrier_sync_key_prefix="process0"
        ) if jax.process_count() > 1 else ocp.options.MultiprocessingOptions()
        self.directory.mkdir(parents=True, exist_ok=True)  # orbax refuses create=True with active_processes
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=False, multiprocessing_options=multiprocessing)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, replay_data: dict[str, np.ndarray], meta: dict) -> None:
        """Save asynchronously; the previous save is finished first."""
        self.manager.wait_until_finished()
        state = jax.tree.map(_process_local, state)
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
        abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, jax.tree.map(_process_local, state_template))
        items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
        if replay_template:
            items["replay"] = ocp.args.StandardRestore(replay_template)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except ValueError as error:
            if "MISSING" not in str(error) and "mismatch" not in str(error):
                raise
            raise layout_error(self.directory, step, error) from error
        replay = restored.get("replay") if replay_template else None
        return restored.state, dict(replay or {}), restored.meta

    def meta(self, step: int | None = None) -> dict:
        """The JSON part of ``step`` (default: the latest) alone, e.g. to shape the replay template."""
        step = self.latest_step() if step is None else step
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def replay(self, template: dict[str, np.ndarray], step: int | None = None) -> dict[str, np.ndarray]:
        """The replay arrays of ``step`` (default: the latest) alone, shaped like ``template``; empty
        where none were saved (disk storage keeps its own files)."""
        step = self.latest_step() if step is None else step
        if not (self.directory / str(step) / "replay").is_dir():  # orbax names each item's folder
            return {}
        restored = self.manager.restore(step, args=ocp.args.Composite(replay=ocp.args.StandardRestore(template)))
        return dict(restored.replay)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _process_local(leaf: Any) -> Any:
    """In a multi-process run, JAX arrays as this process's numpy copy (the local replica of the
    replicated train state), because orbax saves each process's own checkpoint only from host
    data; unchanged in a single-process run."""
    if isinstance(leaf, jax.Array) and jax.process_count() > 1:
        return np.asarray(leaf if leaf.is_fully_addressable else leaf.addressable_data(0))
    return leaf


class ShardCheckpointer:
    """The checkpoint of a multi-process run's process i > 0: its replay shard, counters and keys,
    as plain ``.npz`` and JSON files (orbax's multi-host logic only lets process 0 commit). Same
    interface as ``Checkpointer``; each step is written to a temporary folder and renamed."""

    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.manager = self  # ``manager.all_steps()``, as on ``Checkpointer``

    def all_steps(self) -> list[int]:
        return sorted(int(path.name) for path in self.directory.iterdir() if path.name.isdigit())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, replay_data: dict[str, np.ndarray], meta: dict) -> None:
        temporary = self.directory / f"{step}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        leaves = [np.asarray(_process_local(leaf)) for leaf in jax.tree.leaves(state)]
        np.savez(temporary / "state.npz", *leaves)
        np.savez(temporary / "replay.npz", **{name: np.asarray(array) for name, array in replay_data.items()})
        (temporary / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(self.directory / str(step), ignore_errors=True)
        os.replace(temporary, self.directory / str(step))
        for old in self.all_steps()[: -self.keep]:
            shutil.rmtree(self.directory / str(old), ignore_errors=True)

    def restore(self, state_template: Any, replay_template: dict[str, np.ndarray] | None, step: int | None = None):
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        folder = self.directory / str(step)
        with np.load(folder / "state.npz") as saved:
            leaves = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        state = jax.tree.unflatten(jax.tree.structure(state_template), leaves)
        replay = {}
        if replay_template:
            with np.load(folder / "replay.npz") as saved:
                replay = {name: saved[name] for name in saved.files}
        return state, replay, json.loads((folder / "meta.json").read_text())

    def meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        return json.loads((self.directory / str(step) / "meta.json").read_text())

    def wait(self) -> None:
        pass

    def close(self) -> None:
        pass


def latest_checkpoint_step(directory: str | Path) -> int | None:
    """The newest complete checkpoint step in ``directory`` without opening it (both checkpointers
    name complete steps by their number and unfinished ones otherwise)."""
    directory = Path(directory)
    steps = [int(path.name) for path in directory.iterdir() if path.name.isdigit()] if directory.is_dir() else []
    return max(steps, default=None)


def open_checkpointer(directory: str | Path, keep: int = 2) -> Checkpointer | ShardCheckpointer:
    """Orbax for the run (process 0, or a single-process run), plain files for other processes."""
    return Checkpointer(directory, keep) if jax.process_index() == 0 else ShardCheckpointer(directory, keep)
