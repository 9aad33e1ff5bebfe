"""Run logging: TensorBoard (through tensorboardX, no TensorFlow needed) plus ``metrics.jsonl``.

Every scalar goes to both: ``metrics.jsonl`` holds one JSON object per write, ``{"step": ...,
name: value, ...}``, so that scripts can read a run without TensorBoard.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import numpy as np
from tensorboardX import SummaryWriter


class Logger:
    """Args:
    logdir: the run directory.
    purge_step: on resume, TensorBoard events written after this step by the interrupted run are
      discarded, so that curves do not fold back on themselves.
    enabled: false makes every method a no-op and writes no file (processes other than 0 of a
      multi-process run, whose metrics are the same or not the run's).
    """

    def __init__(self, logdir: str | Path, purge_step: int | None = None, enabled: bool = True):
        self.logdir, self.enabled = Path(logdir), enabled
        if not enabled:
            return
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.logdir), purge_step=purge_step, flush_secs=10)
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


def read_metrics(logdir: str | Path) -> list[dict]:
    """The rows of a run's ``metrics.jsonl``."""
    path = Path(logdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
