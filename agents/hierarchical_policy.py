"""Acting with every level of a hierarchical agent: the clock, filtering bottom-up, picking top-down.

``HierarchicalPolicy.step`` filters the observation bottom-up (level l only at its ticks, every
``K_1 * ... * K_l`` steps of an episode) and picks actions top-down: a level that ticks picks a new
abstract action, decodes it into the goal of the level below and holds both until its next tick.
What it picked is stored in replay (``tick_<l>``, ``goal_action_<l>``) so that training replays the
very abstract steps that acting took. Along the way it keeps the goal-reach statistics of every level
below the top, for the goal it pursues and for a random goal it never pursues (chance).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from agents.goals import goal_similarity
from agents.level import Level, LevelState, goal_view, level_key
from agents.optimization import select_rows
from world_models.hierarchy import FEATURES
from world_models.rssm import RSSMState, state_features

Batch = Mapping[str, jax.Array]


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


class HierarchicalPolicy:
    """Acting with ``levels`` (from level 0 up; ``agents.build_levels``): level 0 in the environment's
    action space of size ``action_dim``, the levels above in abstract actions of size ``goal_action_dim``.
    The methods take the levels' states (``HierarchicalTrainState.levels``) and are jitted by the agent."""

    def __init__(self, levels: Sequence[Level], action_dim: int, goal_action_dim: int):
        self.levels, self.num_levels = list(levels), len(levels)
        self.action_dim, self.goal_action_dim = action_dim, goal_action_dim

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

    def initial_state(self, level_states: Sequence[LevelState], batch_size: int) -> HierarchicalPolicyState:
        """The carry at every environment's episode start."""
        below_top = self.levels[:-1]
        actions = [jnp.zeros((batch_size, self.action_dim))]
        actions += [jnp.zeros((batch_size, self.goal_action_dim)) for _ in range(1, self.num_levels)]
        return HierarchicalPolicyState(
            latents=tuple(self._initial_latent(level_states, index, batch_size) for index in range(self.num_levels)),
            actions=tuple(actions),
            goals=tuple(jnp.zeros((batch_size, level.goal_size)) for level in below_top),
            step=jnp.zeros((batch_size,), jnp.int32),
            ticks=tuple(jnp.zeros((batch_size,), bool) for _ in range(1, self.num_levels)),
            closest=tuple(jnp.full((batch_size,), -jnp.inf, jnp.float32) for _ in below_top),
            finished=tuple(jnp.full((batch_size,), jnp.nan, jnp.float32) for _ in below_top),
            chance_closest=tuple(jnp.full((batch_size,), -jnp.inf, jnp.float32) for _ in below_top),
            chance_finished=tuple(jnp.full((batch_size,), jnp.nan, jnp.float32) for _ in below_top),
            chance_goals=tuple(jnp.zeros((batch_size, level.goal_size)) for level in below_top),
            policy_acted=jnp.zeros((batch_size,), bool),
        )

    def _initial_latent(self, level_states: Sequence[LevelState], index: int, batch_size: int) -> RSSMState:
        """Level ``index``'s latent state at an episode start (a top imagining through level 0: level 0's)."""
        own = index - 1 if self.levels[index].imagines_below else index
        return self.levels[own].world_model.initial(level_states[own].world_model.params, batch_size)

    def _clock(self, policy_state: HierarchicalPolicyState, is_first: jax.Array):
        step = jnp.where(is_first, 0, policy_state.step + 1)
        ticks = tuple(step % level.period == 0 for level in self.levels[1:])
        return step, ticks

    def prefill_step(self, policy_state: HierarchicalPolicyState, is_first: jax.Array, key: jax.Array
                     ) -> HierarchicalPolicyState:
        """Advance the clocks during random-action prefill, with random abstract actions at the ticks
        (so that the replay's abstract steps are as acting would take them)."""
        step, ticks = self._clock(policy_state, is_first)
        actions = list(policy_state.actions)
        for index in range(1, self.num_levels):
            random = self.levels[index].random_action(jax.random.fold_in(key, index), is_first.shape[0])
            actions[index] = select_rows(ticks[index - 1], random, actions[index])
        return policy_state._replace(step=step, ticks=ticks, actions=tuple(actions),
                                     policy_acted=jnp.zeros_like(is_first, bool))

    def step(self, level_states: Sequence[LevelState], policy_state: HierarchicalPolicyState,
             obs: Mapping[str, jax.Array], is_first: jax.Array, key: jax.Array, greedy: bool = False
             ) -> tuple[jax.Array, HierarchicalPolicyState]:
        """Observe ``obs`` (keys ``[N, ...]``) and pick actions ``[N, A]`` (see the module docstring)."""
        filter_key, action_key = jax.random.split(key)
        step, ticks = self._clock(policy_state, is_first)
        latents = self._observe(level_states, policy_state, obs, is_first, ticks, filter_key)
        actions, goals = list(policy_state.actions), list(policy_state.goals)
        closest, finished = list(policy_state.closest), list(policy_state.finished)
        chance_closest, chance_finished = list(policy_state.chance_closest), list(policy_state.chance_finished)
        chance_goals = list(policy_state.chance_goals)
        for index in reversed(range(self.num_levels)):
            level, level_state = self.levels[index], level_states[index]
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

    def _observe(self, level_states: Sequence[LevelState], policy_state: HierarchicalPolicyState, obs: Batch,
                 is_first: jax.Array, ticks: tuple[jax.Array, ...], key: jax.Array) -> list[RSSMState]:
        """Filter bottom-up: level 0 every step, level l only where it ticks, on the features below (a top
        imagining through level 0 holds level 0's state from its last tick)."""
        latents = []
        for index, level in enumerate(self.levels):
            if level.imagines_below:
                latents.append(select_rows(ticks[index - 1], latents[-1], policy_state.latents[index]))
                continue
            observation = obs if index == 0 else {FEATURES: state_features(latents[-1])}
            latent = level.world_model.obs_step(level_states[index].world_model.params, policy_state.latents[index],
                                                policy_state.actions[index], observation, is_first,
                                                level_key(key, index))
            latents.append(latent if index == 0 else select_rows(ticks[index - 1], latent, policy_state.latents[index]))
        return latents
