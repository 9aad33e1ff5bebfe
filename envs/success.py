"""Whether an episode succeeded: the one rule every count of success uses.

An environment reports success in the ``info`` of an episode's last step, under ``success``
(Meta-World; this package's ``hmbrl/GridFourRooms-v0`` and ``hmbrl/PointFourRooms-v0``; MiniGrid
through `envs.wrappers.GoalSuccess`) or ``is_success`` (Gymnasium-Robotics, Stable-Baselines3's
convention). An environment that reports neither has no success rate: None, never 0 (a return
says nothing about success on a dense task).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

SUCCESS_KEYS = ("success", "is_success")


def info_success(info: Mapping[str, Any]) -> bool | None:
    """Whether one environment's ``info`` (not batched) at an episode's last step reports success:
    the first of ``SUCCESS_KEYS`` it holds, as a bool (``1.0``, ``np.True_`` ... count); None if it
    holds neither."""
    for key in SUCCESS_KEYS:
        if info.get(key) is not None:
            return bool(np.asarray(info[key]).item())
    return None


def vector_info_success(info: Mapping[str, Any], num_envs: int) -> list[bool | None]:
    """`info_success` of each sub-environment of a vector env's batched ``info`` (values stacked,
    ``_<key>`` masking the sub-environments that set the key)."""
    per_env: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key in SUCCESS_KEYS:
        if key in info:
            mask = info.get(f"_{key}", np.ones(num_envs, bool))
            for index in np.flatnonzero(mask):
                per_env[index][key] = info[key][index]
    return [info_success(entries) for entries in per_env]


def success_rate(successes: Sequence[bool | None]) -> float | None:
    """The fraction of episodes that succeeded, from each episode's `info_success`; None when none of
    them reported success (the environment does not). Once some do, an episode without a report
    counts as a failure: some environments set the key only on the step that succeeds."""
    if all(success is None for success in successes):
        return None
    return float(np.mean([bool(success) for success in successes]))
