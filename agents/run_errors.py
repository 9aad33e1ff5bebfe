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


def last_checkpoint_text(latest_step: int | None, directory: object) -> str:
    """What a failed run leaves to resume from, for the error message."""
    if latest_step is None:
        return "no checkpoint was written yet"
    return f"the last checkpoint (step {latest_step:,}) in {directory} is intact"


def nonfinite_environment_error(error: NonFiniteObservationError, env_step: int,
                                checkpoint: str) -> NonFiniteEnvironmentError:
    """The error for a non-finite observation or reward at ``env_step``; ``checkpoint``: ``last_checkpoint_text``."""
    return NonFiniteEnvironmentError(
        f"{error} at environment step {env_step:,}. Nothing of that step was stored; {checkpoint}. Fix the "
        "environment, or set run.nonfinite=drop_episode (also with --resume) to end such episodes there and go on."
    )


def nonfinite_loss_error(name: str, value: object, update: int, env_step: int, checkpoint: str) -> NonFiniteLossError:
    """The error for the non-finite metric ``name`` of ``update``; ``checkpoint``: ``last_checkpoint_text``."""
    return NonFiniteLossError(f"training stopped: {name} = {value} at update {update} (environment step "
                              f"{env_step:,}); {checkpoint}. {LOSS_REMEDY}")
