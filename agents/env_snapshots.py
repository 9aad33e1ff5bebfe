"""Pickled environments beside a run's checkpoints, so that a resumed run continues the very same
episodes: the vector env and the collector's open episode records, one file per checkpointed step."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Iterable

import cloudpickle
import gymnasium as gym


class _SnapshotPickler(cloudpickle.Pickler):
    """cloudpickle (Gymnasium's own dependency: wrappers such as ``RescaleAction`` hold local functions)
    that pickles pygame objects as None: the surfaces and clocks of an environment's renderer
    (Gymnasium's classic-control envs hold them once ``render`` ran, and a camera renders every step)
    are no part of its state, and those envs create them again when they find None."""

    def reducer_override(self, obj):
        if type(obj).__module__.split(".")[0] == "pygame":
            return type(None), ()
        return super().reducer_override(obj)


def snapshot_bytes(value: Any) -> bytes:
    """``value`` pickled as ``_SnapshotPickler`` does (``pickle.loads`` reads it back)."""
    buffer = io.BytesIO()
    _SnapshotPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


class EnvSnapshots:
    """``directory/<step>.pkl`` files of ``(envs, collector snapshot)``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, step: int) -> Path:
        return self.directory / f"{step}.pkl"

    def save(self, step: int, envs: gym.vector.VectorEnv, collector_state: Any, kept_steps: Iterable[int]) -> None:
        """Write the snapshot of ``step`` where the envs allow it (subprocess envs and many simulators
        cannot be pickled: a resume then resets them), and drop those of steps not in ``kept_steps``."""
        try:
            blob = snapshot_bytes((envs, collector_state))
        except Exception:  # noqa: BLE001 - many simulators are not picklable; resume then resets them
            return
        path = self.path(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(blob)
        os.replace(temporary, path)  # a kill mid-write leaves the previous snapshot whole
        kept = set(kept_steps) | {step}
        for old in self.directory.glob("*.pkl"):
            if int(old.stem) not in kept:
                old.unlink(missing_ok=True)

    def load(self, step: int) -> tuple[gym.vector.VectorEnv, Any] | None:
        """``(envs, collector snapshot)`` saved at ``step``, or None where none was."""
        path = self.path(step)
        return pickle.loads(path.read_bytes()) if path.exists() else None
