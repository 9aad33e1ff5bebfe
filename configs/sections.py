"""Typed, frozen views of the config sections the agent is built from.

``configs.loader`` resolves and validates the plain config; ``agent_sections`` turns its agent-facing
sections into these dataclasses once. They have no defaults: every value comes from
``defaults.yaml`` (and the presets and overrides on top), and a field that the YAML lacks, or a YAML
key that no field takes, is an error (``tests/configs`` checks them against ``defaults.yaml``).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple


@dataclasses.dataclass(frozen=True)
class WorldModelConfig:
    """``world_model``: the keyword arguments of ``world_models.world_model.WorldModel``."""

    backbone: str
    posterior: str
    deter: int
    stoch: int
    classes: int
    units: int
    layers: int
    cnn_depth: int
    unimix: float
    free_bits: float
    vector_loss: str
    bins: int
    loss_scales: Mapping[str, float]
    activity_weight: float  # EGRU's activity regulariser in the loss
    lr: float
    ssm_lr: float  # S5's Lambda, B, log Delta (0: lr)
    eps: float
    grad_clip: float
    event_encoder: Mapping[str, Any]  # world_models.event_encoder.EventEncoder's arguments (event streams)


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig:
    """``agent``: the keyword arguments of ``agents.actor_critic.ActorCritic``."""

    horizon: int
    discount: float
    lambda_: float
    entropy: float
    units: int
    layers: int
    bins: int
    unimix: float
    actor_grad: str
    min_std: float
    max_std: float
    slow_critic_fraction: float
    slow_critic_reg: float
    return_norm_decay: float
    return_norm_percentiles: tuple[float, float]
    actor_lr: float
    critic_lr: float
    eps: float
    grad_clip: float


@dataclasses.dataclass(frozen=True)
class HierarchyConfig:
    """``hierarchy``: how many levels, how they stride, and what sits beside each level's model."""

    levels: int
    top_model: str  # stacked | imagined (agents.imagined_top)
    k: tuple[int, ...]
    backbones: tuple[str, ...]
    abstract_horizon: int
    ensemble: int
    disagreement_penalty: float
    exploration_bonus: float
    novelty: float
    discount: tuple[float, ...]
    entropy: tuple[float, ...]
    lr: float
    grad_clip: float


@dataclasses.dataclass(frozen=True)
class GoalConfig:
    """``goal``: the abstract actions of the levels above 0 and the reward of the levels below the top."""

    space: str
    features: str
    dim: int
    codes: int
    classes: int
    kl: float
    kl_target: float
    reward_scale: float
    task_reward_scale: float
    reach_threshold: float


class AgentSections(NamedTuple):
    """Everything ``HierarchicalAgent`` is built from."""

    world_model: WorldModelConfig
    backbones: Mapping[str, Mapping[str, Any]]  # per backbone name, its constructor's keyword arguments
    agent: ActorCriticConfig
    hierarchy: HierarchyConfig
    goal: GoalConfig
    sequence_length: int  # replay.batch_length: level 0's training sequences


def agent_sections(config: Mapping[str, Any]) -> AgentSections:
    """The typed sections of a resolved config (``configs.loader.load_config``)."""
    return AgentSections(
        world_model=section(WorldModelConfig, config["world_model"], "world_model"),
        backbones=_frozen(config["backbones"]),
        agent=section(ActorCriticConfig, config["agent"], "agent"),
        hierarchy=section(HierarchyConfig, config["hierarchy"], "hierarchy"),
        goal=section(GoalConfig, config["goal"], "goal"),
        sequence_length=int(config["replay"]["batch_length"]),
    )


def section(cls: type, values: Mapping[str, Any], name: str) -> Any:
    """``cls`` from exactly its fields' values: lists become tuples, mappings read-only."""
    fields = {field.name for field in dataclasses.fields(cls)}
    missing, unknown = fields - set(values), set(values) - fields
    if missing or unknown:
        raise KeyError(f"config section {name!r} does not match {cls.__name__}: "
                       f"missing {sorted(missing)}, unknown {sorted(unknown)}")
    return cls(**{key: _frozen(value) for key, value in values.items()})


def as_kwargs(section_value: Any) -> dict[str, Any]:
    """A section's fields as keyword arguments (shallow: nested mappings stay as they are)."""
    return {field.name: getattr(section_value, field.name) for field in dataclasses.fields(section_value)}


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value
