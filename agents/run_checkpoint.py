"""A run's checkpoint as a whole: everything a resumed run needs to continue exactly, and how it
comes back.

Beside the arrays (``agents.checkpoint``: the caller's state tree and the replay's arrays) it holds
the replay's position and sampler state, the NumPy generator of random prefill and exploration and
the run's counters, and, where the environments can be pickled, the environments themselves in
mid-episode (``agents.env_snapshots``), all under one step number.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.checkpoint import open_checkpointer
from agents.coverage import CoverageMeter
from agents.env_snapshots import EnvSnapshots
from agents.metrics_window import Counters
from agents.replay import Replay
from agents.run_errors import last_checkpoint_text


class RunCheckpoint:
    """The checkpoints of the run in ``logdir`` (``checkpoints/`` and ``env_snapshots/``), the last
    ``keep`` of them kept."""

    def __init__(self, logdir: Path, keep: int):
        self.checkpointer = open_checkpointer(logdir / "checkpoints", keep)
        self.env_snapshots = EnvSnapshots(logdir / "env_snapshots")

    @property
    def directory(self) -> Path:
        return self.checkpointer.directory

    def latest_step(self) -> int | None:
        return self.checkpointer.latest_step()

    def status(self) -> str:
        """What a failed run leaves to resume from, for error messages."""
        return last_checkpoint_text(self.latest_step(), self.directory)

    def save(self, counters: Counters, state: Any, replay: Replay, rng: np.random.Generator,
             envs: gym.vector.VectorEnv, collector_snapshot: Any, coverage: CoverageMeter) -> None:
        """Save at step ``counters.env_steps``: ``state`` (a tree of arrays), the replay (flushed by
        the caller), the generator's state, the counters, the cells visited where they are JSON, and
        the environments where they pickle."""
        meta = {
            "counters": dataclasses.asdict(counters),
            "replay": replay.state_dict(),
            "numpy_rng": rng.bit_generator.state,
            "coverage": coverage.state_dict(),
        }
        self.env_snapshots.save(counters.env_steps, envs, collector_snapshot, self.checkpointer.manager.all_steps())
        self.checkpointer.save(counters.env_steps, state, replay.data(), meta)

    def restore(self, state_template: Any, replay: Replay, rng: np.random.Generator, coverage: CoverageMeter
                ) -> tuple[Any, Counters, tuple[gym.vector.VectorEnv, Any] | None]:
        """Load the latest checkpoint: the replay, ``rng`` and ``coverage`` in place (the last where it
        was saved); returns the state tree (shaped like ``state_template``), the counters and the
        saved ``(envs, collector snapshot)`` or None."""
        saved_count = self.checkpointer.meta()["replay"]["count"]
        state, replay_data, meta = self.checkpointer.restore(state_template, replay.data_template(saved_count))
        replay.load_state_dict(meta["replay"], replay_data)
        rng.bit_generator.state = meta["numpy_rng"]
        if meta.get("coverage"):  # absent in checkpoints written before it was saved
            coverage.load_state_dict(meta["coverage"])
        counters = Counters(**meta["counters"])
        return state, counters, self.env_snapshots.load(counters.env_steps)

    def close(self) -> None:
        self.checkpointer.close()
