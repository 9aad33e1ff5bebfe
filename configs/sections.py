"""Typed, frozen views of the config sections the agent is built from.

``configs.loader`` resolves and validates the plain config; ``agent_sections`` turns its agent-facing
sections into these dataclasses once, ``run_sections`` those of the loop around the agent (the
training loop, replay, devices). The plain config stays what is saved (``config.yaml``) and resumed
from; code reads its sections through these views. They have no defaults: every value comes from
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
    dynamics_input: str
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
    replay_value: float


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
    novelty_reward: str  # measured | predicted (agents.goals.NoveltyPredictor)
    discount: tuple[float, ...]
    entropy: tuple[float, ...]
    actor_lr: tuple[float, ...]
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
    hindsight: float  # share of hindsight goals below the top (agents.goals.hindsight_goals)
    hindsight_reach: int  # hindsight goals lie up to this many periods of the level above ahead
    terminal: str  # once | held: the goal reward of a step into a terminal state (agents.level)
    reach_threshold: float | str  # a similarity, or "auto" (agents.goals.reach_threshold)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """``encoder``: regular expressions over observation keys that route each key to the MLP or the
    CNN encoder (``agents.spaces.observation_layout``)."""

    mlp_keys: str
    cnn_keys: str


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """``decoder``: regular expressions over observation keys that the world model reconstructs
    (null: the encoder's). A key only the decoder matches is a reconstruction target the encoder
    never reads; an event stream's count frame is reconstructed unless ``cnn_keys`` is set and does
    not match its key."""

    mlp_keys: str | None
    cnn_keys: str | None


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """``run``: the training loop (``agents.trainer.Trainer``)."""

    num_envs: int
    env_parallel: str  # sync | async (gymnasium.vector)
    prefill: int  # random-policy environment steps before the first update
    train_ratio: int  # replayed steps per environment step
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int
    eval_every: int  # 0: never
    eval_episodes: int
    diagnose_episodes: int  # after each evaluation (agents.diagnostics.measure_levels; 0: none)
    state_probe_steps: int  # after each evaluation, camera envs only (agents.state_probe; 0: none)
    video_every: int  # 0: never
    gpu_recommended: bool  # warn when run on a CPU
    nonfinite: str  # error | drop_episode (envs.collector.Collector)


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    """``replay``: the keyword arguments of ``agents.replay.Replay``."""

    capacity: int  # environment steps kept, over all environments
    storage: str  # memory | disk
    batch_size: int  # global: split over the devices and processes (agents.parallel)
    batch_length: int
    reward_share: float  # share of chunks drawn to contain a rewarded step


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    """``parallel``: devices and acting of ``agents.parallel.DataParallel``."""

    devices: str | int  # auto | devices per process
    acting: str  # device | cpu: where policy_step runs


class AgentSections(NamedTuple):
    """Everything ``HierarchicalAgent`` is built from."""

    world_model: WorldModelConfig
    backbones: Mapping[str, Mapping[str, Any]]  # per backbone name, its constructor's keyword arguments
    agent: ActorCriticConfig
    hierarchy: HierarchyConfig
    goal: GoalConfig
    encoder: EncoderConfig
    decoder: DecoderConfig
    sequence_length: int  # replay.batch_length: level 0's training sequences


def agent_sections(config: Mapping[str, Any]) -> AgentSections:
    """The typed sections of a resolved config (``configs.loader.load_config``)."""
    return AgentSections(
        world_model=section(WorldModelConfig, config["world_model"], "world_model"),
        backbones=_frozen(config["backbones"]),
        agent=section(ActorCriticConfig, config["agent"], "agent"),
        hierarchy=section(HierarchyConfig, config["hierarchy"], "hierarchy"),
        goal=section(GoalConfig, config["goal"], "goal"),
        encoder=section(EncoderConfig, config["encoder"], "encoder"),
        decoder=section(DecoderConfig, config["decoder"], "decoder"),
        sequence_length=int(config["replay"]["batch_length"]),
    )


class RunSections(NamedTuple):
    """Everything the loop around the agent is built from (``agents.trainer.Trainer``)."""

    run: RunConfig
    replay: ReplayConfig
    parallel: ParallelConfig


def run_sections(config: Mapping[str, Any]) -> RunSections:
    """The typed loop sections of a resolved config (``configs.loader.load_config``)."""
    return RunSections(
        run=section(RunConfig, config["run"], "run"),
        replay=section(ReplayConfig, config["replay"], "replay"),
        parallel=section(ParallelConfig, config["parallel"], "parallel"),
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
