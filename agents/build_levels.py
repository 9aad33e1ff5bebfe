"""The levels of a hierarchical agent, built from the typed config sections (``configs.sections``).

Every level shares the ``world_model``, ``backbones`` and ``agent`` sections; ``hierarchy`` says how
many levels there are, how they stride and what sits beside each model, ``goal`` how a level above 0
acts. The per-level settings derived here (backbone, period, horizon, discount, goal action size) are
computed into copies, never written back into the config.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from agents.actor_critic import ActorCritic
from agents.goals import GOAL_SPACES, Ensemble, GoalAutoencoder, NoveltyPredictor
from agents.imagined_top import ImaginedTop
from agents.level import Level
from agents.spaces import ActionLayout, ObsLayout
from configs.sections import ActorCriticConfig, AgentSections, GoalConfig, HierarchyConfig, WorldModelConfig, as_kwargs
from world_models import hierarchy as stack
from world_models.hierarchy import FEATURES
from world_models.world_model import WorldModel

TOP_MODELS = ("stacked", "imagined")  # hierarchy.top_model
NOVELTY_REWARDS = ("measured", "predicted")  # hierarchy.novelty_reward (agents.goals.NoveltyPredictor)
GOAL_FEATURES = ("deter", "full")  # goal.features: a level's deterministic state, or all its latent features


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What every level needs to know of the whole stack."""

    obs_layout: ObsLayout
    action_layout: ActionLayout
    sections: AgentSections
    ks: list[int]
    backbones: list[str]
    discounts: list[float | None]
    entropies: list[float]
    actor_lrs: list[float]


def build_levels(obs_layout: ObsLayout, action_layout: ActionLayout, sections: AgentSections) -> list[Level]:
    """The levels from the environment (level 0) up."""
    hierarchy, goal, agent = sections.hierarchy, sections.goal, sections.agent
    ks = resolve_ks(hierarchy.levels, hierarchy.k)
    level_backbones = resolve_backbones(hierarchy.levels, hierarchy.backbones, sections.world_model.backbone)
    if goal.space not in GOAL_SPACES:
        raise ValueError(f"goal.space must be one of {GOAL_SPACES}, got {goal.space!r}")
    check_top_model(hierarchy, goal)
    plan = _Plan(obs_layout, action_layout, sections, ks, level_backbones,
                 resolve_discounts(hierarchy.levels, hierarchy.discount),
                 list(hierarchy.entropy) or [agent.entropy] * hierarchy.levels,
                 list(hierarchy.actor_lr) or [agent.actor_lr] * hierarchy.levels)
    levels: list[Level] = []
    period, length = 1, sections.sequence_length
    for index in range(hierarchy.levels):
        if index > 0:
            period *= ks[index - 1]
            length = stack.abstract_length(length, ks[index - 1])
        levels.append(_build_level(plan, index, period, length, levels))
    return levels


def _build_level(plan: _Plan, index: int, period: int, length: int, below: Sequence[Level]) -> Level:
    """Level ``index`` (``period`` environment steps per step, training sequences of ``length``) on
    top of the levels ``below`` it."""
    hierarchy, goal = plan.sections.hierarchy, plan.sections.goal
    top = index == hierarchy.levels - 1
    imagined = top and index > 0 and hierarchy.top_model == "imagined"
    world_model = dataclasses.replace(plan.sections.world_model, backbone=plan.backbones[index])
    novelty = hierarchy.novelty if top else 0.0
    task_scale = 0.0 if top else goal.task_reward_scale
    terms = Level.reward_terms(top, goal.reward_scale, task_scale, novelty)
    model, actor_critic = _model_and_actor_critic(plan, index, top, period, world_model, terms, below, imagined)
    goal_size = _goal_size(goal, world_model)
    lower_goal_size = below[index - 1].goal_size if index > 0 else 0
    goal_autoencoder = _autoencoder(lower_goal_size, world_model, hierarchy, goal) if (
        index > 0 and goal.space == "autoencoder") else None
    # a top that needs novelty and has no goal autoencoder describes goal features with its own
    novelty_autoencoder = _autoencoder(lower_goal_size or goal_size, world_model, hierarchy, goal) if (
        novelty > 0 and goal_autoencoder is None) else None
    # the novelty predictor reads what the novelty term is paid on: level 0's features for a top imagining through it
    predictor = NoveltyPredictor(below[index - 1].world_model.feature_dim if imagined else model.feature_dim,
                                 world_model.units, world_model.layers, hierarchy.lr, hierarchy.grad_clip) if (
        novelty > 0 and hierarchy.novelty_reward == "predicted") else None
    if imagined:
        return ImaginedTop(below[index - 1], index, actor_critic, period, length, goal_size, lower_goal_size, novelty,
                           goal_autoencoder, hierarchy.disagreement_penalty, hierarchy.exploration_bonus, predictor)
    return Level(
        index, top, model, actor_critic, period, length, goal_size, lower_goal_size, goal.reward_scale,
        task_scale, novelty, goal_autoencoder, novelty_autoencoder,
        _ensemble(index, top, model, world_model, hierarchy),
        hierarchy.disagreement_penalty if index > 0 else 0.0,
        hierarchy.exploration_bonus if top else 0.0,
        predictor,
        goal.terminal,
    )


def _model_and_actor_critic(plan: _Plan, index: int, top: bool, period: int, world_model: WorldModelConfig,
                            terms, below: Sequence[Level], imagined: bool) -> tuple[WorldModel | None, ActorCritic]:
    """Level ``index``'s world model (None for a top imagining through level 0) and actor-critic:
    level 0 models the environment and acts in it, a level above models the level below's features
    and acts in goals."""
    hierarchy, goal, agent = plan.sections.hierarchy, plan.sections.goal, plan.sections.agent
    # a registered backbone without an entry in the backbones section takes no arguments
    model_kwargs = dict(as_kwargs(world_model), backbone_kwargs=plan.sections.backbones.get(world_model.backbone, {}))
    settings = dataclasses.replace(agent, horizon=_horizon(index, top, plan.ks, hierarchy, agent),
                                   entropy=plan.entropies[index], actor_lr=plan.actor_lrs[index])
    if index == 0:
        obs, actions = plan.obs_layout, plan.action_layout
        model = WorldModel(obs.mlp_shapes, obs.cnn_shapes, actions.dim, **model_kwargs,
                           event_streams=obs.event_streams,  # event camera hook (#18)
                           decoder_only=sorted(obs.decoder_only), encoder_only=sorted(obs.encoder_only))
        return model, ActorCritic(actions.dim, actions.discrete, reward_terms=terms, **as_kwargs(settings))
    features_below = below[index - 1].world_model.feature_dim
    # the level below's latent features are not an observation: rare one-hot classes have a tiny
    # batch variance, which the variance-scaled vector loss would blow up
    model = None if imagined else WorldModel({FEATURES: (features_below,)}, {}, goal_action_dim(goal),
                                             **{**model_kwargs, "vector_loss": "mse"})
    discount = plan.discounts[index - 1] or agent.discount**period
    return model, _goal_actor_critic(goal, dataclasses.replace(settings, discount=discount), terms)


def check_top_model(hierarchy: HierarchyConfig, goal: GoalConfig) -> None:
    """``hierarchy.top_model``: ``stacked`` (the top models the level below every K steps) or
    ``imagined`` (the top imagines through level 0's model, ``agents.imagined_top``: two levels and
    goal codes only)."""
    if hierarchy.top_model not in TOP_MODELS:
        raise ValueError(f"hierarchy.top_model must be one of {TOP_MODELS}, got {hierarchy.top_model!r}")
    if hierarchy.top_model != "imagined":
        return
    if hierarchy.levels != 2:
        raise ValueError(f"hierarchy.top_model=imagined needs hierarchy.levels=2 (the top imagines through level 0), "
                         f"got hierarchy.levels={hierarchy.levels}; use hierarchy.top_model=stacked")
    if goal.space != "autoencoder":
        raise ValueError(f"hierarchy.top_model=imagined needs goal.space=autoencoder (a direct goal is decoded by "
                         f"the top's own world model, which it does not have), got goal.space={goal.space!r}")


def _goal_size(goal: GoalConfig, world_model: WorldModelConfig) -> int:
    """Size of a level's goal features: its deterministic state, or all its latent features."""
    full = world_model.deter + world_model.stoch * world_model.classes
    return world_model.deter if goal.features == "deter" else full


def goal_action_dim(goal: GoalConfig) -> int:
    """Size of the abstract action of a level above 0."""
    return goal.codes * goal.classes if goal.space == "autoencoder" else goal.dim


def _horizon(index: int, top: bool, ks: Sequence[int], hierarchy: HierarchyConfig, agent: ActorCriticConfig) -> int:
    """Imagination steps: a level below the top imagines as long as a goal from above lasts (``K`` of
    the level above); the top ``abstract_horizon`` steps (``agent.horizon`` for 0 or a flat agent)."""
    if not top:
        return ks[index]
    if index == 0:
        return agent.horizon
    return hierarchy.abstract_horizon or agent.horizon


def _goal_actor_critic(goal: GoalConfig, settings: ActorCriticConfig, terms) -> ActorCritic:
    """The actor-critic of a level above 0 (``settings`` already hold its discount per abstract step):
    goal codes (grouped one-hots) or continuous goal actions."""
    codes = goal.space == "autoencoder"
    return ActorCritic(goal_action_dim(goal), codes, action_groups=goal.codes if codes else 1, reward_terms=terms,
                       **as_kwargs(settings))


def _autoencoder(feature_dim: int, world_model: WorldModelConfig, hierarchy: HierarchyConfig,
                 goal: GoalConfig) -> GoalAutoencoder:
    return GoalAutoencoder(feature_dim, goal.codes, goal.classes, world_model.units, world_model.layers, goal.kl,
                           hierarchy.lr, hierarchy.grad_clip, kl_target=goal.kl_target)


def _ensemble(index: int, top: bool, model: WorldModel, world_model: WorldModelConfig,
              hierarchy: HierarchyConfig) -> Ensemble | None:
    """An ensemble where its disagreement is used: above level 0, at the top when it explores, and at
    level 0 when a top imagining through it weights the disagreement (it has no model of its own)."""
    explores = top and hierarchy.exploration_bonus > 0
    weighted = hierarchy.disagreement_penalty > 0 or hierarchy.exploration_bonus > 0
    feeds_imagined_top = index == 0 and hierarchy.levels > 1 and hierarchy.top_model == "imagined" and weighted
    if hierarchy.ensemble == 0 or not (index > 0 or explores or feeds_imagined_top):
        return None
    return Ensemble(model.feature_dim + model.action_dim, world_model.stoch * world_model.classes, hierarchy.ensemble,
                    world_model.units, world_model.layers, hierarchy.lr, hierarchy.grad_clip)


def resolve_ks(levels: int, ks: Sequence[int]) -> list[int]:
    """The abstraction factor of each level above 0: ``k`` lists one per level, or one for all."""
    ks = list(ks)
    if levels < 1:
        raise ValueError(f"hierarchy.levels must be at least 1, got {levels}")
    if levels == 1:
        return []
    if len(ks) == 1:
        ks = ks * (levels - 1)
    if len(ks) != levels - 1 or any(int(k) < 1 for k in ks):
        raise ValueError(
            f"hierarchy.k={ks} must give one factor >= 1 per level above 0 ({levels - 1} for "
            f"hierarchy.levels={levels}), or a single factor for all of them"
        )
    return [int(k) for k in ks]


def resolve_discounts(levels: int, discounts: Sequence[float]) -> list[float | None]:
    """The discount per abstract step of each level above 0 (None: ``agent.discount ** K``):
    ``hierarchy.discount`` lists one per level above 0, one for all, or none."""
    discounts = [float(d) for d in discounts]
    if levels == 1 or not discounts:
        return [None] * (levels - 1)
    if len(discounts) == 1:
        return discounts * (levels - 1)
    if len(discounts) != levels - 1:
        raise ValueError(f"hierarchy.discount={discounts} must give one discount per level above 0 "
                         f"({levels - 1}), one for all of them, or none")
    return discounts


def resolve_backbones(levels: int, backbones: Sequence[str], default: str) -> list[str]:
    """The backbone of each level: ``hierarchy.backbones`` lists one per level (from level 0) or is
    empty (``world_model.backbone`` everywhere)."""
    backbones = list(backbones)
    if not backbones:
        return [default] * levels
    if len(backbones) != levels:
        raise ValueError(
            f"hierarchy.backbones={backbones} must name one backbone per level ({levels} for "
            f"hierarchy.levels={levels}), or be empty to use world_model.backbone={default!r} everywhere"
        )
    return backbones
