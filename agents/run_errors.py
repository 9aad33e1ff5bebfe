"""How a training run fails on non-finite numbers: the errors, and what to tell the user."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from envs.collector import NonFiniteObservationError


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names it. The last good checkpoint is kept."""


class NonFiniteEnvironmentError(NonFiniteObservationError):
    """The environment sent a NaN or infinite value; the message names it and the step. Nothing of
    that step was stored."""


# Why a loss can still turn non-finite once every observation and reward is checked at collection.
LOSS_REMEDY = (
    "Observations and rewards were all finite, so the update itself diverged: lower the learning "
    "rates (world_model.lr, agent.actor_lr, agent.critic_lr) or the gradient clipping "
    "(world_model.grad_clip, agent.grad_clip), which --resume accepts, or check for observations "
    "of very large magnitude."
)


def first_nonfinite(metrics: Mapping[str, float]) -> str | None:
    """The name of a non-finite metric: losses before other metrics and the world model's before the
    actor-critic's, since the later ones are computed from the earlier."""
    for name in sorted(metrics, key=lambda name: ("loss" not in name, "world_model" not in name, name)):
        value = metrics[name]
        if not np.all(np.isfinite(value)):
            return name
    return None
