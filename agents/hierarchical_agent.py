"""The hierarchical agent: a world model and an actor-critic per level, goals handed down.

Level 0 models the environment step by step and acts in its action space; level l > 0 models level
l-1 once every ``K_l`` of its steps (``world_models.hierarchy``) and acts in a goal space
(``agents.goals``). The top level maximises the task reward, every level below it the similarity of
its state to the goal from above, plus (weighted) the task reward. Each level's actor-critic trains
in the imagination of its own world model, with the goal from above held for its whole rollout; with
``hierarchy.top_model: imagined`` the top of two levels has no model and imagines through level 0's,
with level 0's actor in the loop (``agents.imagined_top``).

Each level (``agents.level``) holds its parts and what they mean; this module is the loop over the
levels (world models bottom-up, behaviours top-down, so that each level trains with the goals its
level above hands down now) and the acting clock. With ``levels=1`` it is exactly the flat Dreamer
agent (``tests/agents/reference_dreamer.py``; tested equal).

While acting, ``policy_step`` filters the observation bottom-up (level l only at its ticks, every
``K_1 * ... * K_l`` steps of an episode) and picks actions top-down: a level that ticks picks a new
abstract action, decodes it into the goal of the level below and holds both until its next tick.
What it picked is stored in replay (``tick_<l>``, ``goal_action_<l>``) so that training replays the
very abstract steps that acting took.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from agents.build_levels import build_levels, goal_action_dim
from agents.build_levels import resolve_backbones, resolve_ks  # noqa: F401 - re-exported: the per-level checks
from agents.goals import goal_similarity
from agents.images import decode_to_observations, reconstruction_images
from agents.level import Level, LevelState, goal_view, level_key
from agents.optimization import select_rows
from agents.spaces import ActionLayout, ObsLayout, action_layout, observation_layout
from configs.sections import AgentSections, agent_sections
from world_models.hierarchy import FEATURES, abstract_batch, gather_time, level_zero_bookkeeping
from world_models.rssm import RSSMState, state_features
from world_models.world_model import count_parameters

Batch = Mapping[str, jax.Array]


@struct.dataclass
class HierarchicalTrainState:
    levels: tuple[LevelState, ...]
    key: jax.Array
    updates: jax.Array  # train steps taken, 0-d int32
    rewarded: jax.Array  # 0-d bool: a batch has held a rewarded step (turns the disagreement penalty on)


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
    chance_closest: tuple[jax.Array, ...]  # the same for a random goal drawn at each tick and never
    chance_finished: tuple[jax.Array, ...]  # pursued: how often a goal counts as reached by chance
    chance_goals: tuple[jax.Array, ...]
    policy_acted: jax.Array  # [N] bool: the agent's policy picked this step's actions (not random prefill)


class HierarchicalAgent:
    """Args:
    obs_layout, action_layout: what the environment gives and takes (``agents.spaces``).
    sections: the typed config sections it is built from (``configs.sections.agent_sections``).
    """

    def __init__(self, obs_layout: ObsLayout, action_layout: ActionLayout, sections: AgentSections):
        self.obs_layout, self.action_layout, self.sections = obs_layout, action_layout, sections
        self.levels: list[Level] = build_levels(obs_layout, action_layout, sections)
        self.num_levels = len(self.levels)
        self.discount = sections.agent.discount
        self.goal_action_dim = goal_action_dim(sections.goal)
        self.reach_threshold = sections.goal.reach_threshold
        self.train_step = jax.jit(self._train_step, donate_argnums=0)
        self.policy_step = jax.jit(self._policy_step, static_argnames="greedy")
        self.prefill_step = jax.jit(self._prefill_step)
        self.reconstruction_images = jax.jit(self._reconstruction_images, static_argnames="frames")
        self.imagined_returns = jax.jit(self._imagined_returns)
        self.top_task_value = jax.jit(self._top_task_value)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], observation_space, action_space) -> "HierarchicalAgent":
        """The agent a resolved config describes, for an environment's (single) spaces."""
        obs = observation_layout(observation_space, config["encoder"]["mlp_keys"], config["encoder"]["cnn_keys"])
        return cls(obs, action_layout(action_space), agent_sections(config))

    def init(self, key: jax.Array) -> HierarchicalTrainState:
        world_model_key, actor_critic_key, key = jax.random.split(key, 3)
        levels = tuple(level.init(world_model_key, actor_critic_key) for level in self.levels)
        return HierarchicalTrainState(levels, key, jnp.zeros((), jnp.int32), jnp.zeros((), bool))

    def parameter_counts(self, state: HierarchicalTrainState) -> dict[str, int]:
        counts = {}
        for index, level_state in enumerate(state.levels):
            prefix = f"level{index}/" if self.num_levels > 1 else ""
            if not self.levels[index].imagines_below:  # a top imagining through level 0 has no model
                counts[prefix + "world_model"] = count_parameters(level_state.world_model)
            counts[prefix + "actor"] = count_parameters(level_state.actor_critic.actor)
            counts[prefix + "critic"] = count_parameters(level_state.actor_critic.critic)
            for name, params in level_state.auxiliary.items():
                counts[prefix + name] = count_parameters(params)
        return counts

    def replay_fields(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Per-step fields acting adds to replay: each level's ticks and abstract actions, and whether
        the policy acted (an abstract action issued during random prefill was never followed)."""
        fields = {"policy_acted": ((), np.bool_)} if self.num_levels > 1 else {}
        for level in range(1, self.num_levels):
            fields[f"tick_{level}"] = ((), np.bool_)
            fields[f"goal_action_{level}"] = ((self.goal_action_dim,), np.float32)
        return fields

    def replay_extras(self, policy_state: HierarchicalPolicyState) -> dict[str, np.ndarray]:
        """The ``replay_fields`` of the step just taken."""
        extras = {"policy_acted": np.asarray(policy_state.policy_acted)} if self.num_levels > 1 else {}
        for level in range(1, self.num_levels):
            extras[f"tick_{level}"] = np.asarray(policy_state.ticks[level - 1])
            extras[f"goal_action_{level}"] = np.asarray(policy_state.actions[level])
        return extras

    # --------------------------------------------------------------------------------- training
    def _train_step(self, state: HierarchicalTrainState, batch: Batch):
        key, world_model_key, actor_critic_key = jax.random.split(state.key, 3)
        levels, sequences, metrics = self._update_world_models(state, batch, world_model_key)
        rewarded = state.rewarded | jnp.any(batch["reward"] != 0)
        levels, behaviour_metrics = self._update_behaviours(state, levels, sequences, rewarded, actor_critic_key)
        metrics.update(behaviour_metrics)
        metrics["replay/rewarded_fraction"] = jnp.mean((batch["reward"] != 0).astype(jnp.float32))
        return HierarchicalTrainState(tuple(levels), key, state.updates + 1, rewarded), metrics

    def _update_world_models(self, state: HierarchicalTrainState, batch: Batch, key: jax.Array):
        """Bottom-up: each level's batch is strided from the posterior of the level below.
        Returns the new level states, each level's ``(bookkeeping, posterior)`` and the metrics."""
        levels, sequences, metrics = list(state.levels), [], {}
        for index, level in enumerate(self.levels):
            described = None
            if index == 0:
                model_batch, book = dict(batch), level_zero_bookkeeping(batch)
            else:
                lower_book, lower_posterior = sequences[-1]
                lower_features = jax.lax.stop_gradient(state_features(lower_posterior))
                model_batch, book = abstract_batch(
                    lower_book, lower_features, batch[f"tick_{index}"], batch[f"goal_action_{index}"],
                    level.sequence_length, self.discount, batch["policy_acted"],
                )
                described = (lower_features, lower_book["mask"])
            if level.imagines_below:  # no model: its states are level 0's at its replayed steps
                posterior = jax.tree.map(lambda leaf: gather_time(leaf, book["lower_index"]), lower_posterior)
                levels[index], level_metrics = level.update_auxiliaries(
                    levels[index], model_batch, described, level_key(key, index))
            else:
                levels[index], level_metrics, posterior = level.update_world_model(
                    levels[index], model_batch, described, level_key(key, index))
            metrics.update(_prefixed(index, level_metrics))
            sequences.append((book, posterior))
        return levels, sequences, metrics

    def _update_behaviours(self, state: HierarchicalTrainState, levels: list[LevelState], sequences,
                           rewarded: jax.Array, key: jax.Array):
        """Top-down: each level trains with the goals the level above hands down now. Goals are
        picked and decoded with the parameters before this step, the ones the posteriors came from."""
        levels, metrics = list(levels), {}
        goal = governed = None  # of the level being trained, from above: [T, B, F], [T, B]
        for index in reversed(range(self.num_levels)):
            level, (book, posterior) = self.levels[index], sequences[index]
            index_key = level_key(key, index)
            handed_down = (None, None)
            if index > 0:
                lower_book, lower_posterior = sequences[index - 1]
                handed_down, goal_metrics = level.hand_down_goals(
                    state.levels[index], book, posterior, goal, governed, lower_book,
                    jax.lax.stop_gradient(state_features(lower_posterior)), jax.random.fold_in(index_key, 1_000))
                metrics.update(_prefixed(index, goal_metrics))
            if level.imagines_below:  # through level 0's updated model, with its actor before this step
                levels[index], level_metrics = level.update_behaviour_through_below(
                    levels[index], levels[index - 1], book, posterior, rewarded, index_key)
            else:
                levels[index], level_metrics = level.update_behaviour(levels[index], book, posterior, goal, governed,
                                                                      rewarded, index_key)
            metrics.update(_prefixed(index, level_metrics))
            goal, governed = handed_down
        return levels, metrics

    def _reconstruction_images(self, state: HierarchicalTrainState, batch: Batch, frames: int = 8):
        return reconstruction_images(self.levels[0].world_model, state.levels[0].world_model,
                                     tuple(self.obs_layout.cnn_shapes), batch, frames)

    def goal_images(self, state: HierarchicalTrainState, goal: jax.Array, level: int) -> dict[str, jax.Array]:
        """A goal of level ``level`` decoded to observations (``agents.images``)."""
        below = self.levels[level - 1]
        features = below.world_model.complete_features(state.levels[level - 1].world_model, goal[..., :below.goal_size])
        return decode_to_observations([spec.world_model for spec in self.levels],
                                      [level_state.world_model for level_state in state.levels], features, level)

    # --------------------------------------------------------------------------------- acting
    def initial_policy_state(self, state: HierarchicalTrainState, batch_size: int) -> HierarchicalPolicyState:
        below_top = self.levels[:-1]
        actions = [jnp.zeros((batch_size, self.action_layout.dim))]
        actions += [jnp.zeros((batch_size, self.goal_action_dim)) for _ in range(1, self.num_levels)]
        return HierarchicalPolicyState(
            latents=tuple(self._initial_latent(state, index, batch_size) for index in range(self.num_levels)),
            actions=tuple(actions),
            goals=tuple(jnp.zeros((batch_size, level.goal_size)) for level in below_top),
            step=jnp.zeros((batch_size,), jnp.int32),
            ticks=tuple(jnp.zeros((batch_size,), bool) for _ in range(1, self.num_levels)),
            closest=tuple(jnp.full((batch_size,), -jnp.inf) for _ in below_top),
            finished=tuple(jnp.full((batch_size,), jnp.nan) for _ in below_top),
            chance_closest=tuple(jnp.full((batch_size,), -jnp.inf) for _ in below_top),
            chance_finished=tuple(jnp.full((batch_size,), jnp.nan) for _ in below_top),
            chance_goals=tuple(jnp.zeros((batch_size, level.goal_size)) for level in below_top),
            policy_acted=jnp.zeros((batch_size,), bool),
        )

    def _initial_latent(self, state: HierarchicalTrainState, index: int, batch_size: int) -> RSSMState:
        """Level ``index``'s latent state at an episode start (a top imagining through level 0: level 0's)."""
        own = index - 1 if self.levels[index].imagines_below else index
        return self.levels[own].world_model.initial(state.levels[own].world_model, batch_size)

    def _clock(self, policy_state: HierarchicalPolicyState, is_first: jax.Array):
        step = jnp.where(is_first, 0, policy_state.step + 1)
        ticks = tuple(step % level.period == 0 for level in self.levels[1:])
        return step, ticks

    def _prefill_step(self, policy_state: HierarchicalPolicyState, is_first: jax.Array, key: jax.Array):
        """Advance the clocks during random-action prefill, with random abstract actions at the ticks
        (so that the replay's abstract steps are as acting would take them)."""
        step, ticks = self._clock(policy_state, is_first)
        actions = list(policy_state.actions)
        for index in range(1, self.num_levels):
            random = self.levels[index].random_action(jax.random.fold_in(key, index), is_first.shape[0])
            actions[index] = select_rows(ticks[index - 1], random, actions[index])
        return policy_state._replace(step=step, ticks=ticks, actions=tuple(actions),
                                     policy_acted=jnp.zeros_like(is_first, bool))

    def _policy_step(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                     obs: Mapping[str, jax.Array], is_first: jax.Array, key: jax.Array, greedy: bool = False):
        """Observe ``obs`` (keys ``[N, ...]``) and pick actions ``[N, A]`` (see the module docstring)."""
        filter_key, action_key = jax.random.split(key)
        step, ticks = self._clock(policy_state, is_first)
        latents = self._observe(state, policy_state, obs, is_first, ticks, filter_key)
        actions, goals = list(policy_state.actions), list(policy_state.goals)
        closest, finished = list(policy_state.closest), list(policy_state.finished)
        chance_closest, chance_finished = list(policy_state.chance_closest), list(policy_state.chance_finished)
        chance_goals = list(policy_state.chance_goals)
        for index in reversed(range(self.num_levels)):
            level, level_state = self.levels[index], state.levels[index]
            index_key = level_key(action_key, index)
            goal = None if level.top else goals[index]
            action = level.act(level_state, state_features(latents[index]), goal, index_key, greedy)
            if index == 0:
                actions[0] = action
                continue
            tick, below = ticks[index - 1], index - 1
            actions[index] = select_rows(tick, action, actions[index])
            new_goal = level.decode_goal(level_state, latents[index], action, jax.random.fold_in(index_key, 1))
            reached = goal_view(state_features(latents[below]), self.levels[below].goal_size)
            for track, ended, goal_in_effect in ((closest, finished, goals), (chance_closest, chance_finished, chance_goals)):
                best = jnp.maximum(track[below], goal_similarity(reached, goal_in_effect[below]))
                ended[below] = jnp.where(tick & ~is_first, best, jnp.nan)
                track[below] = jnp.where(tick, -jnp.inf, best)
            goals[below] = select_rows(tick, new_goal, goals[below])
            random_action = level.random_action(jax.random.fold_in(index_key, 2), tick.shape[0])
            chance_goal = level.decode_goal(level_state, latents[index], random_action, jax.random.fold_in(index_key, 3))
            chance_goals[below] = select_rows(tick, chance_goal, chance_goals[below])
        new_state = HierarchicalPolicyState(
            tuple(latents), tuple(actions), tuple(goals), step, ticks, tuple(closest), tuple(finished),
            tuple(chance_closest), tuple(chance_finished), tuple(chance_goals), jnp.ones_like(is_first, bool))
        return actions[0], new_state

    def _observe(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState, obs: Batch,
                 is_first: jax.Array, ticks: tuple[jax.Array, ...], key: jax.Array) -> list[RSSMState]:
        """Filter bottom-up: level 0 every step, level l only where it ticks, on the features below (a top
        imagining through level 0 holds level 0's state from its last tick)."""
        latents = []
        for index, level in enumerate(self.levels):
            if level.imagines_below:
                latents.append(select_rows(ticks[index - 1], latents[-1], policy_state.latents[index]))
                continue
            observation = obs if index == 0 else {FEATURES: state_features(latents[-1])}
            latent = level.world_model.obs_step(state.levels[index].world_model, policy_state.latents[index],
                                                policy_state.actions[index], observation, is_first,
                                                level_key(key, index))
            latents.append(latent if index == 0 else select_rows(ticks[index - 1], latent, policy_state.latents[index]))
        return latents

    def _imagined_returns(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                          key: jax.Array) -> jax.Array:
        """Each level's discounted sum of its own reward over its imagination horizon, imagined from
        the current states with the current goals and policies: ``[levels, N]`` (no bootstrap).

        The same sum measured on the real steps that follow (``agents.diagnostics``) gives the
        exploitation gap: how much more a level expects from its model than it gets.
        """
        returns = []
        for index, level in enumerate(self.levels):
            latent, index_key = policy_state.latents[index], level_key(key, index)
            if level.imagines_below:
                returns.append(level.imagined_return_through_below(state.levels[index], state.levels[index - 1],
                                                                   latent, index_key))
            else:
                returns.append(level.imagined_return(state.levels[index], latent, self._goal(policy_state, index),
                                                     index_key))
        return jnp.stack(returns)

    def _top_task_value(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState) -> jax.Array:
        """The top level's critic estimate of its task return from the current states: ``[N]``."""
        top = self.num_levels - 1
        return self.levels[top].task_value(state.levels[top], state_features(policy_state.latents[top]))

    def _goal(self, policy_state: HierarchicalPolicyState, index: int) -> jax.Array | None:
        """The goal in effect at level ``index`` while acting (None at the top)."""
        return None if index == self.num_levels - 1 else policy_state.goals[index]


def _prefixed(level: int, metrics: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    return {f"level{level}/{name}": value for name, value in metrics.items()}
