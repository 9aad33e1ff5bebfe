"""When the training loop's work is due, from its counters alone.

Pure functions of the environment steps, so that a resumed run, which gets its counters back from
the checkpoint, is due exactly what the uninterrupted run was: no burst of catch-up updates, no
repeated log or checkpoint.
"""

from __future__ import annotations

import math


def updates_due(env_steps: int, prefill: int, train_ratio: float, batch_steps: int) -> int:
    """Updates that should have run after ``env_steps``: ``train_ratio`` replayed steps per
    environment step once the replay is prefilled, each update replaying ``batch_steps`` steps."""
    if env_steps < prefill:
        return 0
    return int(math.floor((env_steps - prefill) * train_ratio / batch_steps)) + 1


def crossed_multiple(every: int, before: int, now: int) -> bool:
    """Whether going from ``before`` to ``now`` environment steps crossed a multiple of ``every``
    (never for ``every <= 0``: that work is off)."""
    if every <= 0:
        return False
    return now // every > before // every


def reached(value: int, before: int, now: int) -> bool:
    """Whether going from ``before`` to ``now`` environment steps reached ``value``."""
    return before < value <= now
