"""Run logging: TensorBoard (through tensorboardX, no TensorFlow needed) plus ``metrics.jsonl``.

Every scalar goes to both: ``metrics.jsonl`` holds one JSON object per write, ``{"step": ...,
name: value, ...}``, so that scripts can read a run without TensorBoard.

A resumed run continues both without duplicates or gaps: rows and events after the checkpoint's
step are dropped when it starts (it writes them again), and the trainer flushes at every checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Mapping

import numpy as np
from tensorboardX import SummaryWriter


class Logger:
    """Args:
    logdir: the run directory.
    resume_step: the step a run starts or resumes from (0 for a new run): what an interrupted run
      logged after it is dropped, in ``metrics.jsonl`` at once and in TensorBoard by a purge event,
      so that curves neither fold back nor double-count. None (evaluation) appends only.
    enabled: false makes every method a no-op and writes no file (processes other than 0 of a
      multi-process run, whose metrics are the same or not the run's).
    """

    def __init__(self, logdir: str | Path, resume_step: int | None = None, enabled: bool = True):
        self.logdir, self.enabled = Path(logdir), enabled
        if not enabled:
            return
        self.logdir.mkdir(parents=True, exist_ok=True)
        purge_step = None
        if resume_step is not None:
            truncate_metrics(self.logdir, resume_step)
            purge_step = resume_step + 1  # rows at the checkpoint's own step were written before it
        # The event file is named by the second it was opened in: a run resumed within that second
        # (a crash at start-up, a quick test) would reopen the same name and overwrite its events.
        # A nanosecond suffix keeps the names apart and sorted in order of opening, as TensorBoard reads them.
        self.writer = SummaryWriter(str(self.logdir), purge_step=purge_step, flush_secs=10,
                                    filename_suffix=f".{time.time_ns()}")
        self.jsonl = open(self.logdir / "metrics.jsonl", "a")

    def scalars(self, metrics: Mapping[str, float], step: int) -> None:
        if not self.enabled:
            return
        values = {name: float(value) for name, value in metrics.items()}
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        row = {"step": int(step)}
        row.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()

    def image(self, name: str, image: np.ndarray, step: int) -> None:
        """``image [H, W, C]`` uint8."""
        if not self.enabled:
            return
        self.writer.add_image(name, np.asarray(image), step, dataformats="HWC")

    def flush(self) -> None:
        if not self.enabled:
            return
        self.writer.flush()
        self.jsonl.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.writer.close()
        self.jsonl.close()


def truncate_metrics(logdir: str | Path, last_step: int) -> None:
    """Keep the rows of ``metrics.jsonl`` up to ``last_step`` (and drop a line cut by a kill)."""
    path = Path(logdir) / "metrics.jsonl"
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if _step_of(line) <= last_step]
    temporary = path.with_suffix(".jsonl.tmp")
    temporary.write_text("".join(f"{line}\n" for line in kept))
    os.replace(temporary, path)


def _step_of(line: str) -> float:
    """A row's step; infinite for a line that is not a whole row, so that it is dropped."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


def read_metrics(logdir: str | Path) -> list[dict]:
    """The rows of a run's ``metrics.jsonl``."""
    path = Path(logdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
