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
level above hands down now); acting with every level (the clock, filtering bottom-up, picking
top-down) is ``agents.hierarchical_policy``, and what each level expects to earn
``agents.expected_returns``. With ``levels=1`` it is exactly the flat Dreamer agent
(``tests/agents/reference_dreamer.py``; tested equal).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Hashable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from agents.build_levels import build_levels, goal_action_dim
from agents.expected_returns import (first_action_gradient, first_action_values, imagined_novelty_return,
                                     imagined_returns, top_task_value)
from agents.goals import hindsight_goals
from agents.hierarchical_policy import HierarchicalPolicy, HierarchicalPolicyState
from agents.images import decode_to_observations, reconstruction_images
from agents.level import Level, LevelState, level_key
from agents.spaces import ActionLayout, ObsLayout, action_layout, observation_layout
from configs.sections import AgentSections, agent_sections
from world_models.hierarchy import abstract_batch, gather_time, level_zero_bookkeeping
from world_models.rssm import state_features
from world_models.world_model import count_parameters

Batch = Mapping[str, jax.Array]

KEEP_BUILT_AGENTS = 4  # agents from_config keeps for reuse, with their compiled programs; least recent go first


@struct.dataclass
class HierarchicalTrainState:
    levels: tuple[LevelState, ...]
    key: jax.Array
    updates: jax.Array  # train steps taken, 0-d int32
    rewarded: jax.Array  # 0-d bool: a batch has held a rewarded step (turns the disagreement penalty on)


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
        self.hindsight, self.hindsight_reach = sections.goal.hindsight, sections.goal.hindsight_reach
        self.policy = HierarchicalPolicy(self.levels, action_layout.dim, self.goal_action_dim)
        self.train_step = jax.jit(self._train_step, donate_argnums=0)
        self.policy_step = jax.jit(self._policy_step, static_argnames="greedy")
        self.prefill_step = jax.jit(self.policy.prefill_step)
        # jitted so that the carry is committed to the params' device, as every later carry returned by
        # policy_step is: an uncommitted first carry costs policy_step a second compile
        self._initial_policy_state = jax.jit(self.policy.initial_state, static_argnums=1)
        self.reconstruction_images = jax.jit(self._reconstruction_images, static_argnames="frames")
        self.imagined_returns = jax.jit(self._imagined_returns)
        self.top_task_value = jax.jit(self._top_task_value)
        self.predicted_reward = jax.jit(self._predicted_reward)
        self.imagined_novelty_return = jax.jit(self._imagined_novelty_return)
        self.top_novelty = jax.jit(self._top_novelty)
        self.first_action_values = jax.jit(self._first_action_values, static_argnames=("samples", "grid"))
        self.first_action_gradient = jax.jit(self._first_action_gradient, static_argnames=("samples",))

    @classmethod
    def from_config(cls, config: Mapping[str, Any], observation_space, action_space) -> "HierarchicalAgent":
        """The agent a resolved config describes, for an environment's (single) spaces.

        An agent is a pure function of its layouts and sections, so asking again for one equal to an
        agent built recently returns that agent, and with it the programs it has traced and compiled:
        a run resumed or evaluated in the process that trained it, or the next run of a sweep, does
        not pay the tens of seconds of tracing and compiling again."""
        sections = agent_sections(config)
        obs = observation_layout(observation_space, sections.encoder.mlp_keys, sections.encoder.cnn_keys,
                                 sections.decoder.mlp_keys, sections.decoder.cnn_keys)
        actions = action_layout(action_space)
        key = _identity((cls, obs, actions, sections))
        agent = _BUILT_AGENTS.pop(key, None)
        if agent is None:
            agent = cls(obs, actions, sections)
        _BUILT_AGENTS[key] = agent  # most recent last
        while len(_BUILT_AGENTS) > KEEP_BUILT_AGENTS:
            _BUILT_AGENTS.popitem(last=False)
        return agent

    @functools.partial(jax.jit, static_argnums=0)
    def init(self, key: jax.Array) -> HierarchicalTrainState:
        """Every level's parameters and optimiser states. Jitted: run op by op, initialising compiles a
        few hundred small XLA programs, which took seconds per agent built (bit-identical for GRU and S5
        models; Mamba's and EGRU's random initialisers may round a last bit differently)."""
        world_model_key, actor_critic_key, key = jax.random.split(key, 3)
        levels = tuple(level.init(world_model_key, actor_critic_key) for level in self.levels)
        return HierarchicalTrainState(levels, key, jnp.zeros((), jnp.int32), jnp.zeros((), bool))

    def parameter_counts(self, state: HierarchicalTrainState) -> dict[str, int]:
        counts = {}
        for index, level_state in enumerate(state.levels):
            prefix = f"level{index}/" if self.num_levels > 1 else ""
            if not self.levels[index].imagines_below:  # a top imagining through level 0 has no model
                counts[prefix + "world_model"] = count_parameters(level_state.world_model.params)
            counts[prefix + "actor"] = count_parameters(level_state.actor_critic.actor.params)
            counts[prefix + "critic"] = count_parameters(level_state.actor_critic.critic.params)
            for name, part in level_state.auxiliary.items():
                counts[prefix + name] = count_parameters(part.params)
        return counts

    def replay_fields(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Per-step fields acting adds to replay (``HierarchicalPolicy.replay_fields``)."""
        return self.policy.replay_fields()

    def replay_extras(self, policy_state: HierarchicalPolicyState) -> dict[str, np.ndarray]:
        """The ``replay_fields`` of the step just taken."""
        return self.policy.replay_extras(policy_state)

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
                if self.hindsight > 0:
                    lower_goal, lower_governed = handed_down
                    lower_goal, replaced = hindsight_goals(
                        lower_goal, jax.lax.stop_gradient(state_features(lower_posterior)), lower_book["is_first"],
                        self.hindsight, self.hindsight_horizon(index), jax.random.fold_in(index_key, 2_000))
                    handed_down = (lower_goal, lower_governed)
                    goal_metrics["goal/hindsight_fraction"] = jnp.mean(replaced & lower_governed)
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
        return reconstruction_images(self.levels[0].world_model, state.levels[0].world_model.params,
                                     self.obs_layout.decoded_images, batch, frames, self.obs_layout.count_frames)

    def goal_images(self, state: HierarchicalTrainState, goal: jax.Array, level: int) -> dict[str, jax.Array]:
        """A goal of level ``level`` decoded to observations (``agents.images``)."""
        below = self.levels[level - 1]
        below_params = state.levels[level - 1].world_model.params
        features = below.world_model.complete_features(below_params, goal[..., :below.goal_size])
        return decode_to_observations([spec.world_model for spec in self.levels],
                                      [level_state.world_model.params for level_state in state.levels], features, level)

    def hindsight_horizon(self, index: int) -> int:
        """How many steps of level ``index - 1`` ahead its hindsight goals may lie: ``goal.hindsight_reach``
        periods of level ``index``."""
        return self.hindsight_reach * (self.levels[index].period // self.levels[index - 1].period)

    # --------------------------------------------------------------------------------- acting
    def initial_policy_state(self, state: HierarchicalTrainState, batch_size: int) -> HierarchicalPolicyState:
        """Acting's carry at every environment's episode start (``agents.hierarchical_policy``)."""
        return self._initial_policy_state(state.levels, batch_size)

    def _policy_step(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                     obs: Mapping[str, jax.Array], is_first: jax.Array, key: jax.Array, greedy: bool = False):
        """Observe ``obs`` (keys ``[N, ...]``) and pick actions ``[N, A]`` (``HierarchicalPolicy.step``)."""
        return self.policy.step(state.levels, policy_state, obs, is_first, key, greedy)

    def _imagined_returns(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                          key: jax.Array) -> jax.Array:
        """Each level's expected return from its acting state: ``[levels, N]`` (``agents.expected_returns``)."""
        return imagined_returns(self.levels, state.levels, policy_state.latents, policy_state.goals, key)

    def _imagined_novelty_return(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                                 key: jax.Array) -> jax.Array:
        """The top level's expected discounted novelty from its acting state: ``[N]``; with the key given
        to ``imagined_returns``, along the same imagined states (``agents.expected_returns``)."""
        return imagined_novelty_return(self.levels, state.levels, policy_state.latents[-1], key)

    def _top_novelty(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState) -> jax.Array:
        """The novelty of the top level's current (observed) states, as its novelty term measures it: ``[N]``."""
        top = self.num_levels - 1
        return self.levels[top].novelty(state.levels[top], state_features(policy_state.latents[top]))

    def _top_task_value(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState) -> jax.Array:
        """The top level's critic estimate of its task return from the current states: ``[N]``."""
        top = self.num_levels - 1
        return top_task_value(self.levels[top], state.levels[top], state_features(policy_state.latents[top]))

    def _predicted_reward(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState) -> jax.Array:
        """Level 0's reward head on its current (observed) states: ``[N]``, its estimate of the reward
        that arrived with the observation just filtered (the environment's reward, unweighted)."""
        return self.levels[0].world_model.reward(state.levels[0].world_model.params,
                                                 state_features(policy_state.latents[0]))

    def _first_action_values(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                             key: jax.Array, samples: int, grid: int = 0) -> tuple[jax.Array, jax.Array]:
        """A flat agent's ``Q(s, a)`` of its candidate first actions (every discrete action, or the
        greedy continuous action and a ``grid`` along each dimension) from its acting states and their
        standard errors: ``[N, C]`` each (``agents.expected_returns.first_action_values``)."""
        return first_action_values(self.levels[0], state.levels[0], policy_state.latents[0], samples, key, grid)

    def _first_action_gradient(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                               key: jax.Array, samples: int) -> tuple[jax.Array, jax.Array]:
        """A flat agent's ``dQ(s, a)/da`` at its greedy continuous action from its acting states, as
        backpropagation through its model sees it, and its standard error: ``[N, A]`` each
        (``agents.expected_returns.first_action_gradient``)."""
        return first_action_gradient(self.levels[0], state.levels[0], policy_state.latents[0], samples, key)


def _prefixed(level: int, metrics: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    return {f"level{level}/{name}": value for name, value in metrics.items()}


_BUILT_AGENTS: "collections.OrderedDict[Hashable, HierarchicalAgent]" = collections.OrderedDict()


def _identity(value: Any) -> Hashable:
    """A hashable value equal for equal layouts and sections and only for them: dataclasses, named
    tuples and mappings field by field, arrays by dtype, shape and bytes (their repr elides), and every
    leaf with its type (so that ``1``, ``1.0`` and ``True`` stay apart)."""
    if isinstance(value, type):
        return ("type", value.__module__, value.__qualname__)
    if dataclasses.is_dataclass(value):
        fields = tuple(_identity(getattr(value, field.name)) for field in dataclasses.fields(value))
        return (type(value).__qualname__, fields)
    if isinstance(value, Mapping):
        return ("mapping", tuple((_identity(key), _identity(item)) for key, item in value.items()))
    if isinstance(value, (tuple, list)):
        return (type(value).__qualname__, tuple(_identity(item) for item in value))
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, np.dtype):
        return ("dtype", value.str)
    hash(value)  # anything else must compare by value; an unhashable leaf is a bug to hear about
    return (type(value).__qualname__, value)
