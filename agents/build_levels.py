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
from agents.goals import GOAL_SPACES, Ensemble, GoalAutoencoder
from agents.level import Level
from agents.spaces import ActionLayout, ObsLayout
from configs.sections import ActorCriticConfig, AgentSections, GoalConfig, HierarchyConfig, WorldModelConfig, as_kwargs
from world_models import hierarchy as stack
from world_models.hierarchy import FEATURES
from world_models.world_model import WorldModel


def build_levels(obs_layout: ObsLayout, action_layout: ActionLayout, sections: AgentSections) -> list[Level]:
    """The levels from the environment (level 0) up."""
    hierarchy, goal, agent = sections.hierarchy, sections.goal, sections.agent
    ks = resolve_ks(hierarchy.levels, hierarchy.k)
    level_backbones = resolve_backbones(hierarchy.levels, hierarchy.backbones, sections.world_model.backbone)
    if goal.space not in GOAL_SPACES:
        raise ValueError(f"goal.space must be one of {GOAL_SPACES}, got {goal.space!r}")
    levels: list[Level] = []
    period, length = 1, sections.sequence_length
    for index in range(hierarchy.levels):
        if index > 0:
            period *= ks[index - 1]
            length = stack.abstract_length(length, ks[index - 1])
        top = index == hierarchy.levels - 1
        world_model = dataclasses.replace(sections.world_model, backbone=level_backbones[index])
        model_kwargs = dict(as_kwargs(world_model), backbone_kwargs=sections.backbones[world_model.backbone])
        horizon = _horizon(index, top, ks, hierarchy, agent)
        if index == 0:
            model = WorldModel(obs_layout.mlp_shapes, obs_layout.cnn_shapes, action_layout.dim, **model_kwargs,
                               event_streams=obs_layout.event_streams)  # event camera hook (#18)
            actor_critic = ActorCritic(action_layout.dim, action_layout.discrete,
                                       **as_kwargs(dataclasses.replace(agent, horizon=horizon)))
        else:
            below = levels[index - 1].world_model.feature_dim
            # the level below's latent features are not an observation: rare one-hot classes have a
            # tiny batch variance, which the variance-scaled vector loss would blow up
            model = WorldModel({FEATURES: (below,)}, {}, goal_action_dim(goal), **{**model_kwargs, "vector_loss": "mse"})
            actor_critic = _goal_actor_critic(goal, agent, period, horizon)
        levels.append(Level(
            index, top, model, actor_critic, period, length, goal.reward_scale, goal.task_reward_scale,
            _goal_autoencoder(index, levels, world_model, hierarchy, goal),
            _ensemble(index, top, model, world_model, hierarchy),
            hierarchy.disagreement_penalty if index > 0 else 0.0,
            hierarchy.exploration_bonus if top else 0.0,
        ))
    return levels


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


def _goal_actor_critic(goal: GoalConfig, agent: ActorCriticConfig, period: int, horizon: int) -> ActorCritic:
    """The actor-critic of a level above 0: one discount step per abstract step of ``period``
    environment steps; goal codes (grouped one-hots) or continuous goal actions."""
    settings = dataclasses.replace(agent, discount=agent.discount**period, horizon=horizon)
    codes = goal.space == "autoencoder"
    return ActorCritic(goal_action_dim(goal), codes, action_groups=goal.codes if codes else 1, **as_kwargs(settings))


def _goal_autoencoder(index: int, levels: Sequence[Level], world_model: WorldModelConfig, hierarchy: HierarchyConfig,
                      goal: GoalConfig) -> GoalAutoencoder | None:
    if index == 0 or goal.space != "autoencoder":
        return None
    return GoalAutoencoder(levels[index - 1].world_model.feature_dim, goal.codes, goal.classes, world_model.units,
                           world_model.layers, goal.kl, hierarchy.lr, hierarchy.grad_clip)


def _ensemble(index: int, top: bool, model: WorldModel, world_model: WorldModelConfig,
              hierarchy: HierarchyConfig) -> Ensemble | None:
    """An ensemble where its disagreement is used: above level 0, and at the top when it explores."""
    explores = top and hierarchy.exploration_bonus > 0
    if hierarchy.ensemble == 0 or not (index > 0 or explores):
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
