"""The hierarchical agent: a world model and an actor-critic per level, goals handed down.

Level 0 models the environment step by step and acts in its action space; level l > 0 models level
l-1 once every ``K_l`` of its steps (``world_models.hierarchy``) and acts in a goal space
(``agents.goals``). The top level maximises the task reward, every level below it the similarity of
its state to the goal from above, plus (weighted) the task reward. Each level's actor-critic trains
in the imagination of its own world model, with the goal from above held for its whole rollout.

With ``levels=1`` this is exactly the flat Dreamer agent (``agents.dreamer``; tested equal).

While acting, ``policy_step`` filters the observation bottom-up (level l only at its ticks, every
``K_1 * ... * K_l`` steps of an episode) and picks actions top-down: a level that ticks picks a new
abstract action, decodes it into the goal of the level below and holds both until its next tick.
What it picked is stored in replay (``tick_<l>``, ``goal_action_<l>``) so that training replays the
very abstract steps that acting took.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from agents.actor_critic import ActorCritic, ActorCriticState, Trajectory
from agents.dreamer import reconstruction_images
from agents.goals import GOAL_SPACES, Ensemble, GoalAutoencoder, goal_diversity, goal_similarity
from agents.optimization import gradient_step, select_rows
from agents.spaces import ActionLayout, ObsLayout, action_layout, observation_layout
from world_models import hierarchy as stack
from world_models.hierarchy import FEATURES
from world_models.distributions import symexp
from world_models.rssm import RSSMState, state_features
from world_models.world_model import WorldModel, count_parameters


@struct.dataclass
class LevelState:
    world_model: Any
    world_model_opt: Any
    actor_critic: ActorCriticState
    auxiliary: dict  # {"goal_autoencoder": ..., "ensemble": ...} parameters, where the config asks for them
    auxiliary_opt: dict


@struct.dataclass
class HierarchicalTrainState:
    levels: tuple[LevelState, ...]
    key: jax.Array
    updates: jax.Array  # train steps taken, 0-d int32


class HierarchicalPolicyState(NamedTuple):
    """What acting carries between steps, per environment ``[N, ...]``."""

    latents: tuple[RSSMState, ...]  # per level
    actions: tuple[jax.Array, ...]  # per level, the action in effect (level 0: the last env action)
    goals: tuple[jax.Array, ...]  # per level below the top, the goal in effect [N, F]
    step: jax.Array  # [N] int32, steps since the episode started
    ticks: tuple[jax.Array, ...]  # per level above 0, [N] bool: picked a new action at this step
    closest: tuple[jax.Array, ...]  # per level below the top, best goal similarity since the goal was set
    finished: tuple[jax.Array, ...]  # per level below the top, the best similarity of a goal replaced at
    # this step (NaN where none was): the goal-reach statistics


class LevelSpec(NamedTuple):
    """The static description of one level."""

    world_model: WorldModel
    actor_critic: ActorCritic
    period: int  # environment steps per step of this level (the product of the K's up to it)
    sequence_length: int  # length of this level's training sequences
    goal_autoencoder: GoalAutoencoder | None
    ensemble: Ensemble | None


def _level_key(key: jax.Array, level: int) -> jax.Array:
    """Level 0 uses ``key`` itself (so that one level reproduces the flat agent), level l a fold."""
    return key if level == 0 else jax.random.fold_in(key, level)


def _flatten(leaf: jax.Array) -> jax.Array:
    return jax.lax.stop_gradient(leaf.reshape((-1,) + leaf.shape[2:]))


class HierarchicalAgent:
    """Args:
    obs_layout, action_layout: what the environment gives and takes (``agents.spaces``).
    world_model, backbones, agent: the config sections of the same names (every level uses them).
    hierarchy: the ``hierarchy`` section: ``levels``, ``k``, ``backbones``, ``abstract_horizon``,
      ``ensemble``, ``disagreement_penalty``, ``exploration_bonus``, ``lr``.
    goal: the ``goal`` section: ``space``, ``dim``, ``codes``, ``classes``, ``kl``, ``reward_scale``,
      ``task_reward_scale``, ``reach_threshold``.
    """

    def __init__(
        self,
        obs_layout: ObsLayout,
        action_layout: ActionLayout,
        world_model: Mapping[str, Any],
        backbones: Mapping[str, Mapping[str, Any]],
        agent: Mapping[str, Any],
        hierarchy: Mapping[str, Any],
        goal: Mapping[str, Any],
        sequence_length: int,
    ):
        self.obs_layout, self.action_layout = obs_layout, action_layout
        self.num_levels = int(hierarchy["levels"])
        self.ks = resolve_ks(self.num_levels, hierarchy["k"])
        level_backbones = resolve_backbones(self.num_levels, hierarchy["backbones"], world_model.get("backbone", "gru"))
        if goal["space"] not in GOAL_SPACES:
            raise ValueError(f"goal.space must be one of {GOAL_SPACES}, got {goal['space']!r}")
        self.goal_config, self.hierarchy_config = dict(goal), dict(hierarchy)
        self.discount = float(agent.get("discount", 0.985))
        self.levels: list[LevelSpec] = []
        period, length = 1, sequence_length
        for level in range(self.num_levels):
            top = level == self.num_levels - 1
            if level > 0:
                period *= self.ks[level - 1]
                length = stack.abstract_length(length, self.ks[level - 1])
            self.levels.append(self._build_level(
                level, top, period, length, world_model, backbones, agent, level_backbones[level]
            ))
        self.train_step = jax.jit(self._train_step, donate_argnums=0)
        self.policy_step = jax.jit(self._policy_step, static_argnames="greedy")
        self.prefill_step = jax.jit(self._prefill_step)
        self.reconstruction_images = jax.jit(self._reconstruction_images, static_argnames="frames")
        self.imagined_returns = jax.jit(self._imagined_returns)

    # --------------------------------------------------------------------------------- building
    def _build_level(self, level, top, period, length, world_model, backbones, agent, backbone) -> LevelSpec:
        wm_kwargs = dict(world_model, backbone=backbone)
        if level == 0:
            model = WorldModel(self.obs_layout.mlp_shapes, self.obs_layout.cnn_shapes, self.action_layout.dim,
                               backbone_kwargs=backbones.get(backbone, {}), **wm_kwargs)
        else:
            below = self.levels[level - 1].world_model.feature_dim
            model = WorldModel({FEATURES: (below,)}, {}, self._goal_action_dim(),
                               backbone_kwargs=backbones.get(backbone, {}), **wm_kwargs)
        ac_kwargs = dict(agent)
        if level > 0:
            ac_kwargs["discount"] = self.discount**period
        if not top:  # a goal from above lasts K_{l+1} steps while acting; imagination holds it as long
            ac_kwargs["horizon"] = self.ks[level]
        elif level > 0:
            ac_kwargs["horizon"] = int(self.hierarchy_config["abstract_horizon"]) or ac_kwargs.get("horizon", 15)
        if level == 0:
            actor_critic = ActorCritic(self.action_layout.dim, self.action_layout.discrete, **ac_kwargs)
        else:
            autoencoder_space = self.goal_config["space"] == "autoencoder"
            actor_critic = ActorCritic(self._goal_action_dim(), autoencoder_space,
                                       action_groups=self.goal_config["codes"] if autoencoder_space else 1, **ac_kwargs)
        lr, clip = float(self.hierarchy_config["lr"]), float(self.hierarchy_config["grad_clip"])
        units, layers = world_model.get("units", 512), world_model.get("layers", 2)
        autoencoder = None
        if level > 0 and self.goal_config["space"] == "autoencoder":
            autoencoder = GoalAutoencoder(self.levels[level - 1].world_model.feature_dim, self.goal_config["codes"],
                                          self.goal_config["classes"], units, layers, self.goal_config["kl"], lr, clip)
        ensemble = None
        members = int(self.hierarchy_config["ensemble"])
        explores = top and self.hierarchy_config["exploration_bonus"] > 0
        if members > 0 and (level > 0 or explores):  # its disagreement is used only there
            stoch = world_model.get("stoch", 32) * world_model.get("classes", 32)
            ensemble = Ensemble(model.feature_dim + model.action_dim, stoch, members, units, layers, lr, clip)
        return LevelSpec(model, actor_critic, period, length, autoencoder, ensemble)

    def _goal_action_dim(self) -> int:
        if self.goal_config["space"] == "autoencoder":
            return self.goal_config["codes"] * self.goal_config["classes"]
        return self.goal_config["dim"]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], observation_space, action_space) -> "HierarchicalAgent":
        """The agent a resolved config describes, for an environment's (single) spaces."""
        obs = observation_layout(observation_space, config["encoder"]["mlp_keys"], config["encoder"]["cnn_keys"])
        return cls(obs, action_layout(action_space), config["world_model"], config["backbones"], config["agent"],
                   config["hierarchy"], config["goal"], config["replay"]["batch_length"])

    def _actor_input_dim(self, level: int) -> int:
        features = self.levels[level].world_model.feature_dim
        return features if level == self.num_levels - 1 else 2 * features

    def init(self, key: jax.Array) -> HierarchicalTrainState:
        world_model_key, actor_critic_key, key = jax.random.split(key, 3)
        levels = []
        for level, spec in enumerate(self.levels):
            params = spec.world_model.init(_level_key(world_model_key, level))
            auxiliary = {}
            if spec.goal_autoencoder is not None:
                auxiliary["goal_autoencoder"] = spec.goal_autoencoder.init(jax.random.fold_in(world_model_key, 100 + level))
            if spec.ensemble is not None:
                auxiliary["ensemble"] = spec.ensemble.init(jax.random.fold_in(world_model_key, 200 + level))
            levels.append(LevelState(
                world_model=params,
                world_model_opt=spec.world_model.optimizer.init(params),
                actor_critic=spec.actor_critic.init(_level_key(actor_critic_key, level), self._actor_input_dim(level)),
                auxiliary=auxiliary,
                auxiliary_opt={name: self._auxiliary(spec, name).optimizer.init(p) for name, p in auxiliary.items()},
            ))
        return HierarchicalTrainState(tuple(levels), key, jnp.zeros((), jnp.int32))

    @staticmethod
    def _auxiliary(spec: LevelSpec, name: str):
        return spec.goal_autoencoder if name == "goal_autoencoder" else spec.ensemble

    def parameter_counts(self, state: HierarchicalTrainState) -> dict[str, int]:
        counts = {}
        for level, level_state in enumerate(state.levels):
            prefix = f"level{level}/" if self.num_levels > 1 else ""
            counts[prefix + "world_model"] = count_parameters(level_state.world_model)
            counts[prefix + "actor"] = count_parameters(level_state.actor_critic.actor)
            counts[prefix + "critic"] = count_parameters(level_state.actor_critic.critic)
            for name, params in level_state.auxiliary.items():
                counts[prefix + name] = count_parameters(params)
        return counts

    def replay_fields(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Per-step fields acting adds to replay: each level's ticks and abstract actions."""
        fields = {}
        for level in range(1, self.num_levels):
            fields[f"tick_{level}"] = ((), np.bool_)
            fields[f"goal_action_{level}"] = ((self._goal_action_dim(),), np.float32)
        return fields

    def replay_extras(self, policy_state: HierarchicalPolicyState) -> dict[str, np.ndarray]:
        """The ``replay_fields`` of the step just taken."""
        extras = {}
        for level in range(1, self.num_levels):
            extras[f"tick_{level}"] = np.asarray(policy_state.ticks[level - 1])
            extras[f"goal_action_{level}"] = np.asarray(policy_state.actions[level])
        return extras

    # --------------------------------------------------------------------------------- goals
    def decode_goal(self, state: HierarchicalTrainState, level: int, latent: RSSMState, action: jax.Array,
                    key: jax.Array) -> jax.Array:
        """The goal ``[..., F_{l-1}]`` that level ``level``'s abstract ``action`` asks of the level below."""
        spec, level_state = self.levels[level], state.levels[level]
        if spec.goal_autoencoder is not None:
            return spec.goal_autoencoder.decode(level_state.auxiliary["goal_autoencoder"], action)
        lead = action.shape[:-1]
        flat_latent = jax.tree.map(lambda leaf: leaf.reshape((-1,) + leaf.shape[len(lead):]), latent)
        following = spec.world_model.img_step(level_state.world_model, flat_latent, action.reshape(-1, action.shape[-1]), key)
        decoded = spec.world_model.decode(level_state.world_model, state_features(following))[FEATURES]
        return symexp(decoded).reshape(lead + decoded.shape[-1:])

    def _random_goal_action(self, key: jax.Array, batch: int) -> jax.Array:
        if self.goal_config["space"] == "autoencoder":
            index = jax.random.randint(key, (batch, self.goal_config["codes"]), 0, self.goal_config["classes"])
            return jax.nn.one_hot(index, self.goal_config["classes"]).reshape(batch, -1)
        return jax.random.uniform(key, (batch, self.goal_config["dim"]), minval=-1.0, maxval=1.0)

    # --------------------------------------------------------------------------------- training
    def _train_step(self, state: HierarchicalTrainState, batch: Mapping[str, jax.Array]):
        key, world_model_key, actor_critic_key = jax.random.split(state.key, 3)
        metrics: dict[str, jax.Array] = {}
        levels = list(state.levels)
        sequences: list[tuple[dict, dict, RSSMState]] = []  # (model batch, bookkeeping, posterior)
        for level, spec in enumerate(self.levels):
            if level == 0:
                model_batch, book = dict(batch), stack.level_zero_bookkeeping(batch)
            else:
                _, lower_book, lower_posterior = sequences[level - 1]
                model_batch, book = stack.abstract_batch(
                    lower_book, jax.lax.stop_gradient(state_features(lower_posterior)), batch[f"tick_{level}"],
                    batch[f"goal_action_{level}"], spec.sequence_length, self.discount,
                )
            level_key = _level_key(world_model_key, level)
            levels[level], level_metrics, posterior = self._update_world_model(spec, levels[level], model_batch, level_key)
            levels[level], auxiliary_metrics = self._update_auxiliary(spec, levels[level], model_batch, posterior, level_key)
            level_metrics.update(auxiliary_metrics)
            error = spec.world_model.open_loop_error(
                levels[level].world_model, model_batch, jax.lax.stop_gradient(posterior), spec.actor_critic.horizon,
                jax.random.fold_in(level_key, 1_000),
            )
            level_metrics["model/open_loop_error"] = error.mean()
            level_metrics[f"model/open_loop_error_step{error.shape[0]}"] = error[-1]
            metrics.update(self._prefixed(level, level_metrics))
            sequences.append((model_batch, book, posterior))

        goal_in_effect: tuple[jax.Array, jax.Array] | None = None  # (goals [T, B, F], governed [T, B])
        for level in reversed(range(self.num_levels)):
            spec = self.levels[level]
            model_batch, book, posterior = sequences[level]
            level_key = _level_key(actor_critic_key, level)
            goals, governed = goal_in_effect if goal_in_effect is not None else (None, None)
            handed_down = None
            if level > 0:
                handed_down, goal_metrics = self._goals_for_level_below(
                    state, level, book, posterior, goals, governed, sequences[level - 1][1], jax.random.fold_in(level_key, 1_000)
                )
                metrics.update(self._prefixed(level, goal_metrics))
            levels[level], ac_metrics = self._update_actor_critic(
                level, levels[level], book, posterior, goals, governed, level_key
            )
            metrics.update(self._prefixed(level, ac_metrics))
            goal_in_effect = handed_down
        return HierarchicalTrainState(tuple(levels), key, state.updates + 1), metrics

    def _prefixed(self, level: int, metrics: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return {f"level{level}/{name}": value for name, value in metrics.items()}

    def _update_world_model(self, spec: LevelSpec, level_state: LevelState, model_batch, key):
        params, opt, _, (metrics, posterior), grad_norm = gradient_step(
            spec.world_model.loss, spec.world_model.optimizer, level_state.world_model, level_state.world_model_opt,
            model_batch, key,
        )
        metrics["world_model/grad_norm"] = grad_norm
        return level_state.replace(world_model=params, world_model_opt=opt), metrics, posterior

    def _update_auxiliary(self, spec, level_state, model_batch, posterior, key) -> tuple[LevelState, dict]:
        """Train the goal autoencoder (on the features of the level below) and the ensemble (on this
        level's real transitions)."""
        metrics = {}
        auxiliary, auxiliary_opt = dict(level_state.auxiliary), dict(level_state.auxiliary_opt)
        mask = model_batch.get("mask", jnp.ones(model_batch["is_first"].shape))
        if spec.goal_autoencoder is not None:
            name = "goal_autoencoder"
            auxiliary[name], auxiliary_opt[name], _, aux_metrics, grad_norm = gradient_step(
                spec.goal_autoencoder.loss, spec.goal_autoencoder.optimizer, auxiliary[name], auxiliary_opt[name],
                model_batch[FEATURES], mask, jax.random.fold_in(key, 2_000))
            metrics.update(aux_metrics, **{"goal/autoencoder_grad_norm": grad_norm})
        if spec.ensemble is not None:
            features = jax.lax.stop_gradient(state_features(posterior))
            inputs = jnp.concatenate([features[:-1], model_batch["prev_action"][1:]], -1)
            stoch = jax.lax.stop_gradient(posterior.stoch[1:])
            targets = stoch.reshape(stoch.shape[:2] + (-1,))
            valid = mask[1:] * (1.0 - model_batch["is_first"][1:].astype(jnp.float32))
            auxiliary["ensemble"], auxiliary_opt["ensemble"], _, aux_metrics, grad_norm = gradient_step(
                spec.ensemble.loss, spec.ensemble.optimizer, auxiliary["ensemble"], auxiliary_opt["ensemble"],
                inputs, targets, valid)
            metrics.update(aux_metrics, **{"ensemble/grad_norm": grad_norm})
        return level_state.replace(auxiliary=auxiliary, auxiliary_opt=auxiliary_opt), metrics

    def _goals_for_level_below(self, state, level, book, posterior, goals, governed, lower_book, key):
        """Goals level ``level``'s current policy hands down at each of its steps, spread over the steps
        of the level below that they govern: ``((goals [T_below, B, F], governed [T_below, B]), metrics)``."""
        spec = self.levels[level]
        features = jax.lax.stop_gradient(state_features(posterior))
        actor_input = features if goals is None else jnp.concatenate([features, goals], -1)
        action_key, decode_key = jax.random.split(key)
        actions = spec.actor_critic.act(state.levels[level].actor_critic.actor, actor_input, action_key)
        lower_goals = jax.lax.stop_gradient(self.decode_goal(state, level, jax.lax.stop_gradient(posterior), actions, decode_key))
        own_governed = book["mask"] > 0 if governed is None else governed
        valid = book["tick"] & own_governed
        step = stack.governing_step({"lower_index": book["lower_index"], "tick": valid}, lower_book["mask"].shape[0])
        lower_governed = (step >= 0) & (lower_book["mask"] > 0)
        lower_goal = stack.gather_time(lower_goals, jnp.maximum(step, 0))
        metrics = {"goal/diversity": goal_diversity(lower_goals, valid.astype(jnp.float32)),
                   "goal/governed_fraction": lower_governed.mean()}
        return (lower_goal, lower_governed), metrics

    def _update_actor_critic(self, level, level_state, book, posterior, goals, governed, key):
        spec = self.levels[level]
        top = level == self.num_levels - 1
        model, params = spec.world_model, level_state.world_model
        starts = jax.tree.map(_flatten, posterior)
        weight = 1.0 - book["is_terminal"].astype(jnp.float32)
        if level > 0:
            weight = weight * book["mask"]
        if governed is not None:
            weight = weight * governed
        start_continue = weight.reshape(-1)
        goal = None if goals is None else _flatten(goals)
        goal_scale, task_scale = self.goal_config["reward_scale"], self.goal_config["task_reward_scale"]
        penalty = self.hierarchy_config["disagreement_penalty"] if level > 0 else 0.0
        bonus = self.hierarchy_config["exploration_bonus"] if top else 0.0
        ensemble = level_state.auxiliary.get("ensemble")
        extra = {}

        def with_goal(features: jax.Array) -> jax.Array:
            if goal is None:
                return features
            return jnp.concatenate([features, jnp.broadcast_to(goal, features.shape[:-1] + goal.shape[-1:])], -1)

        def rollout(policy, rollout_key) -> Trajectory:
            states, actions = model.imagine(
                params, starts, lambda features, k: policy(with_goal(features), k), spec.actor_critic.horizon, rollout_key
            )
            features = state_features(states)
            task = model.reward(params, features[1:])
            if top:
                rewards = task
            else:
                rewards = goal_scale * goal_similarity(features[1:], goal) + task_scale * task
            if ensemble is not None and (penalty or bonus):
                doubt = spec.ensemble.disagreement(ensemble, jnp.concatenate([features[:-1], actions], -1))
                rewards = rewards + (bonus - penalty) * doubt
                extra["imagined/disagreement"] = jax.lax.stop_gradient(doubt.mean())
            return Trajectory(
                features=with_goal(features),
                actions=actions,
                rewards=rewards,
                continues=model.continue_prob(params, features[1:]),
                start_continue=start_continue,
            )

        actor_critic, metrics, _ = spec.actor_critic.update(level_state.actor_critic, rollout, key)
        metrics.update(extra)
        return level_state.replace(actor_critic=actor_critic), metrics

    def _reconstruction_images(self, state, batch, frames: int = 8):
        return reconstruction_images(self.levels[0].world_model, state.levels[0].world_model,
                                     tuple(self.obs_layout.cnn_shapes), batch, frames)

    # --------------------------------------------------------------------------------- acting
    def initial_policy_state(self, state: HierarchicalTrainState, batch_size: int) -> HierarchicalPolicyState:
        below_top = range(self.num_levels - 1)
        actions = [jnp.zeros((batch_size, self.action_layout.dim))]
        actions += [jnp.zeros((batch_size, self._goal_action_dim())) for _ in range(1, self.num_levels)]
        return HierarchicalPolicyState(
            latents=tuple(spec.world_model.initial(s.world_model, batch_size) for spec, s in zip(self.levels, state.levels)),
            actions=tuple(actions),
            goals=tuple(jnp.zeros((batch_size, self.levels[l].world_model.feature_dim)) for l in below_top),
            step=jnp.zeros((batch_size,), jnp.int32),
            ticks=tuple(jnp.zeros((batch_size,), bool) for _ in range(1, self.num_levels)),
            closest=tuple(jnp.full((batch_size,), -jnp.inf) for _ in below_top),
            finished=tuple(jnp.full((batch_size,), jnp.nan) for _ in below_top),
        )

    def _clock(self, policy_state: HierarchicalPolicyState, is_first: jax.Array):
        step = jnp.where(is_first, 0, policy_state.step + 1)
        ticks = tuple(step % self.levels[level].period == 0 for level in range(1, self.num_levels))
        return step, ticks

    def _prefill_step(self, policy_state: HierarchicalPolicyState, is_first: jax.Array, key: jax.Array):
        """Advance the clocks during random-action prefill, with random abstract actions at the ticks
        (so that the replay's abstract steps are as acting would take them)."""
        step, ticks = self._clock(policy_state, is_first)
        actions = list(policy_state.actions)
        for level in range(1, self.num_levels):
            random = self._random_goal_action(jax.random.fold_in(key, level), is_first.shape[0])
            actions[level] = select_rows(ticks[level - 1], random, actions[level])
        return policy_state._replace(step=step, ticks=ticks, actions=tuple(actions))

    def _policy_step(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                     obs: Mapping[str, jax.Array], is_first: jax.Array, key: jax.Array, greedy: bool = False):
        """Observe ``obs`` (keys ``[N, ...]``) and pick actions ``[N, A]`` (see the module docstring)."""
        filter_key, action_key = jax.random.split(key)
        step, ticks = self._clock(policy_state, is_first)
        always = jnp.ones_like(is_first)
        latents = []
        for level, spec in enumerate(self.levels):
            params = state.levels[level].world_model
            observation = obs if level == 0 else {FEATURES: state_features(latents[-1])}
            latent = spec.world_model.obs_step(params, policy_state.latents[level], policy_state.actions[level],
                                               observation, is_first, _level_key(filter_key, level))
            tick = always if level == 0 else ticks[level - 1]
            latents.append(select_rows(tick, latent, policy_state.latents[level]))

        actions, goals = list(policy_state.actions), list(policy_state.goals)
        closest, finished = list(policy_state.closest), list(policy_state.finished)
        for level in reversed(range(self.num_levels)):
            spec = self.levels[level]
            features = state_features(latents[level])
            actor_input = features if level == self.num_levels - 1 else jnp.concatenate([features, goals[level]], -1)
            level_key = _level_key(action_key, level)
            action = spec.actor_critic.act(state.levels[level].actor_critic.actor, actor_input, level_key, greedy)
            if level == 0:
                actions[0] = action
                continue
            tick = ticks[level - 1]
            actions[level] = select_rows(tick, action, actions[level])
            goal = self.decode_goal(state, level, latents[level], action, jax.random.fold_in(level_key, 1))
            below = level - 1
            similarity = goal_similarity(state_features(latents[below]), goals[below])
            best = jnp.maximum(closest[below], similarity)
            finished[below] = jnp.where(tick & ~is_first, best, jnp.nan)
            closest[below] = jnp.where(tick, -jnp.inf, best)
            goals[below] = select_rows(tick, goal, goals[below])
        new_state = HierarchicalPolicyState(tuple(latents), tuple(actions), tuple(goals), step, ticks,
                                            tuple(closest), tuple(finished))
        return actions[0], new_state

    def _imagined_returns(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                          key: jax.Array) -> jax.Array:
        """Each level's discounted sum of its own reward over its imagination horizon, imagined from
        the current states with the current goals and policies: ``[levels, N]`` (no bootstrap).

        The same sum measured on the real steps that follow (``agents.diagnostics``) gives the
        exploitation gap: how much more a level expects from its model than it gets.
        """
        returns = []
        for level, spec in enumerate(self.levels):
            params = state.levels[level].world_model
            top = level == self.num_levels - 1
            goal = None if top else policy_state.goals[level]
            actor = state.levels[level].actor_critic.actor

            def policy(features, k, goal=goal, actor=actor, spec=spec):
                actor_input = features if goal is None else jnp.concatenate([features, goal], -1)
                return spec.actor_critic.act(actor, actor_input, k)

            states, _ = spec.world_model.imagine(params, policy_state.latents[level], policy,
                                                 spec.actor_critic.horizon, _level_key(key, level))
            features = state_features(states)[1:]
            rewards = self.level_reward(state, level, features, goal, spec.world_model.reward(params, features))
            continues = spec.world_model.continue_prob(params, features)
            discount = spec.actor_critic.discount
            weights = jnp.cumprod(jnp.concatenate([jnp.ones_like(continues[:1]), discount * continues[:-1]]), 0)
            returns.append(jnp.sum(weights * rewards, 0))
        return jnp.stack(returns)

    def level_reward(self, state, level: int, features: jax.Array, goal: jax.Array | None,
                     task_reward: jax.Array) -> jax.Array:
        """Level ``level``'s reward (without the ensemble terms) of arriving in ``features`` with
        ``task_reward``: the task reward at the top, goal similarity plus weighted task reward below."""
        if level == self.num_levels - 1:
            return task_reward
        return self.goal_config["reward_scale"] * goal_similarity(features, goal) + \
            self.goal_config["task_reward_scale"] * task_reward

    def goal_images(self, state: HierarchicalTrainState, goal: jax.Array, level: int) -> dict[str, jax.Array]:
        """Decode a goal of level ``level`` (features of level ``level-1``) down to observations:
        through the decoders of every level below; float images in ``[-0.5, 0.5]`` per image key."""
        features = goal
        for below in reversed(range(level - 1)):
            decoded = self.levels[below + 1].world_model.decode(state.levels[below + 1].world_model, features)
            features = symexp(decoded[FEATURES])
        return self.levels[0].world_model.decode(state.levels[0].world_model, features)


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

