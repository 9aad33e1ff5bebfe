"""The values a config key with a fixed set of them may take, read from the registry in the code
that acts on it.

Each such key names its registry (``module:attribute``, a dict keyed by name or a tuple of names);
its valid values are the registry's names, so that adding a backbone to
``world_models.backbones.BACKBONES`` (or a goal space to ``agents.goals.GOAL_SPACES``, ...) makes it
a valid config value with no second edit. A registry is imported when one of its keys is first
checked, not when ``configs`` is imported: configs stay loadable on their own (the layers of
DESIGN.md point down), and a config that sets none of these keys never imports JAX.
"""

from __future__ import annotations

import importlib
from typing import Iterator, Mapping

REGISTRIES: dict[str, str] = {
    "run.env_parallel": "envs.vector:PARALLEL_MODES",
    "run.nonfinite": "envs.collector:NONFINITE_MODES",
    "replay.storage": "agents.replay:STORAGES",
    "world_model.backbone": "world_models.backbones:BACKBONES",
    "world_model.posterior": "world_models.rssm:POSTERIORS",
    "world_model.dynamics_input": "world_models.rssm:DYNAMICS_INPUTS",
    "world_model.vector_loss": "world_models.world_model:VECTOR_LOSSES",
    "world_model.event_encoder.backbone": "world_models.backbones:BACKBONES",
    "world_model.event_encoder.readout": "world_models.event_encoder:READOUTS",
    "world_model.event_encoder.position": "world_models.event_encoder:POSITIONS",
    "agent.actor_grad": "agents.actor_critic:ACTOR_GRADS",
    "env.event_camera.representation": "envs.config:REPRESENTATIONS",
    "parallel.acting": "agents.parallel:ACTING_CHOICES",
    "goal.space": "agents.goals:GOAL_SPACES",
    "goal.features": "agents.build_levels:GOAL_FEATURES",
    "goal.terminal": "agents.level:TERMINAL_GOAL_REWARDS",
    "hierarchy.top_model": "agents.build_levels:TOP_MODELS",
    "hierarchy.novelty_reward": "agents.build_levels:NOVELTY_REWARDS",
}


def registry_names(location: str) -> tuple[str, ...]:
    """The names in the registry at ``module:attribute``, in its order: read at every check (a
    registry imported once is only looked up again), so names registered later count too."""
    module, attribute = location.split(":")
    return tuple(getattr(importlib.import_module(module), attribute))


class RegistryChoices(Mapping[str, tuple[str, ...]]):
    """``config key -> its valid values`` for the keys of ``REGISTRIES``, each read on first use."""

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return registry_names(REGISTRIES[key])

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRIES)

    def __len__(self) -> int:
        return len(REGISTRIES)


CHOICES = RegistryChoices()
