"""A run's counters and the metrics accumulated between two log writes."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping


@dataclasses.dataclass
class Counters:
    """What a run has done, saved with each checkpoint. ``seconds``: its wall-clock time of training
    up to the checkpoint, so that ``eval/elapsed_seconds`` goes on across resumes (0 in checkpoints
    written before it was kept)."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    seconds: float = 0.0


WEIGHT_SUFFIX = "#weight"  # a metric ``name`` with a ``name#weight`` beside it is a weighted mean


class MetricsWindow:
    """Metrics accumulated between two log writes: their means, the throughput over the window and
    the returns of the episodes that ended in it.

    A metric defined over only some of a batch's steps (the reward head on rewarded steps) comes with
    ``<name>#weight``, how many steps it averaged: its window mean weights every update by that, an
    update without such steps counts for nothing, a window without any writes no value, and the
    weight itself is not written."""

    def __init__(self, counters: Counters):
        self.last_return: float | None = None
        self.returns: list[float] = []
        self.reset(counters)

    def reset(self, counters: Counters) -> None:
        if self.returns:
            self.last_return = self.returns[-1]
        self.sums: dict[str, float] = {}
        self.count = 0
        self.returns = []
        self.start = (time.time(), counters.env_steps, counters.updates)

    def add(self, metrics: Mapping[str, Any]) -> None:
        for name, value in metrics.items():
            weight = metrics.get(name + WEIGHT_SUFFIX)
            value = float(value) * (1.0 if weight is None else float(weight))
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def summary(self, counters: Counters) -> dict[str, float]:
        seconds = max(time.time() - self.start[0], 1e-9)
        scalars = {}
        for name, total in self.sums.items():
            if name.endswith(WEIGHT_SUFFIX):
                continue
            weight = self.sums.get(name + WEIGHT_SUFFIX)
            if weight is None:
                scalars[name] = total / self.count
            elif weight > 0:
                scalars[name] = total / weight
        scalars["throughput/env_steps_per_second"] = (counters.env_steps - self.start[1]) / seconds
        scalars["throughput/train_steps_per_second"] = (counters.updates - self.start[2]) / seconds
        scalars["throughput/updates"] = counters.updates
        scalars["throughput/episodes"] = counters.episodes
        if self.returns:
            self.last_return = self.returns[-1]
        return scalars

    def progress_postfix(self, scalars: Mapping[str, float]) -> dict[str, str]:
        """What the progress bar shows of a ``summary``: throughput and the last episode's return."""
        postfix = {"env/s": f"{scalars['throughput/env_steps_per_second']:.1f}",
                   "train/s": f"{scalars['throughput/train_steps_per_second']:.2f}"}
        if self.last_return is not None:
            postfix["return"] = f"{self.last_return:.1f}"
        return postfix
