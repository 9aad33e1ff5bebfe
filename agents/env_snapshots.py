"""Pickled environments beside a run's checkpoints, so that a resumed run continues the very same
episodes: the vector env and the collector's open episode records, one file per checkpointed step."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Iterable

import gymnasium as gym


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
            blob = pickle.dumps((envs, collector_state))
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
