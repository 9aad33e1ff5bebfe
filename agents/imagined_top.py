"""A top level with no world model of its own: it imagines through the level below (Director-style).

With ``hierarchy.top_model: imagined`` the top level (level 1 of two) observes level 0's latent
features and acts in the goal-code space, as a stacked top does, but it learns no abstract model of
level 0. Its actor-critic trains on trajectories imagined with *level 0's* world model, with level
0's current actor in the loop (parameters fixed, no gradient):

* every ``K`` imagined steps (a *tick*) the top's policy picks a code on level 0's imagined features,
  decoded by the goal autoencoder into a goal for level 0;
* between ticks level 0's actor pursues that goal for ``K`` steps;
* one abstract step's reward is the sum of level 0's predicted task reward over those ``K`` steps,
  each weighted by the probability that the episode still goes on when it is earned (so that reward
  imagined after a predicted episode end does not count), plus the novelty of the state reached where
  ``hierarchy.novelty > 0``; its continue probability is the product of the ``K`` steps' ones.

The top's trajectory is level 0's features at the ticks ``[H + 1, N, F]``, its codes ``[H, N, A]``
and those per-abstract-step rewards and continues: ``ActorCritic.update`` takes it as it is.
Acting is as with a stacked top: the top reads level 0's latent state at its ticks.
Dimensions: ``K`` level-0 steps per tick, ``H`` abstract steps (``hierarchy.abstract_horizon``),
``N`` imagination starts, ``F`` level 0's feature size, ``A`` the code size.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from agents.actor_critic import ActorCritic, Policy, Trajectory
from agents.auxiliaries import init_auxiliaries
from agents.controllability import spread_ratio
from agents.goals import Ensemble, GoalAutoencoder, NoveltyPredictor
from agents.level import Level, LevelState, flatten_time, goal_view, level_key
from agents.optimization import TrainState
from world_models.rssm import RSSMState, state_features


class Segment(NamedTuple):
    """``K`` imagined steps of the level below under one goal, from ``N`` states."""

    end: RSSMState  # the state reached, leaves [N, ...]
    reward: jax.Array  # [N] task reward summed over the steps, each weighted by the chance to be alive
    continues: jax.Array  # [N] product of the steps' continue probabilities
    doubt: jax.Array  # [N] the below ensemble's disagreement, weighted like the reward (0 without one)


class ImaginedRollout(NamedTuple):
    """``H`` abstract steps of the top imagined through the level below."""

    features: jax.Array  # [H + 1, N, F] level 0's features at the ticks
    codes: jax.Array  # [H, N, A]
    rewards: jax.Array  # [H, N] summed task reward of each abstract step
    continues: jax.Array  # [H, N]
    doubt: jax.Array  # [H, N]


class ImaginedTop(Level):
    """The top of two levels, imagining through ``below`` (level 0).

    Args:
      below: level 0; its world model, actor and (if any) ensemble are used with the parameters in
        the ``LevelState`` the methods are handed.
      index, actor_critic, period, sequence_length, goal_size, lower_goal_size, novelty_scale,
        disagreement_penalty, exploration_bonus: as for ``Level``; the doubt is measured by the
        ensemble of ``below`` (where it has one).
      goal_autoencoder: decodes codes into goals for ``below`` and measures novelty (required).
      novelty_predictor: as for ``Level``.
    """

    imagines_below = True

    def __init__(self, below: Level, index: int, actor_critic: ActorCritic, period: int, sequence_length: int,
                 goal_size: int, lower_goal_size: int, novelty_scale: float, goal_autoencoder: GoalAutoencoder,
                 disagreement_penalty: float, exploration_bonus: float,
                 novelty_predictor: NoveltyPredictor | None = None):
        if goal_autoencoder is None:
            raise ValueError("hierarchy.top_model=imagined needs goal.space=autoencoder: with direct goals "
                             "the top's own world model would decode them, and it has none")
        super().__init__(index, True, None, actor_critic, period, sequence_length, goal_size, lower_goal_size,
                         0.0, 0.0, novelty_scale, goal_autoencoder, None, None, disagreement_penalty,
                         exploration_bonus, novelty_predictor)
        self.below = below
        self.segment_length = period // below.period  # steps of the level below per tick

    @property
    def policy_input_dim(self) -> int:
        return self.below.world_model.feature_dim

    @property
    def doubt_ensemble(self) -> Ensemble | None:
        """The ensemble whose disagreement is weighted, where the weights are non-zero."""
        weighted = self.disagreement_penalty > 0 or self.exploration_bonus > 0
        return self.below.ensemble if weighted else None

    def init(self, world_model_key: jax.Array, actor_critic_key: jax.Array) -> LevelState:
        """No world model: its train state holds empty dicts (0 parameters; orbax and ``jax.tree`` pass
        empty dicts through). Its goal autoencoder draws the stacked top's key."""
        return LevelState(
            world_model=TrainState(params={}, opt_state={}),
            actor_critic=self.actor_critic.init(level_key(actor_critic_key, self.index), self.policy_input_dim),
            auxiliary=init_auxiliaries(self.auxiliaries, world_model_key, self.index),
        )

    def measured_novelty(self, state: LevelState, features: jax.Array) -> jax.Array:
        """The reconstruction error of level 0's states ``features [..., F]``: they are this level's features."""
        return self.goal_autoencoder.novelty(state.auxiliary["goal_autoencoder"].params,
                                             goal_view(features, self.lower_goal_size))

    # ------------------------------------------------------------------------------ training
    def update_auxiliaries(self, state: LevelState, batch: dict, described: tuple[jax.Array, jax.Array],
                           key: jax.Array) -> tuple[LevelState, dict[str, jax.Array]]:
        """The goal autoencoder learns level 0's states ``described`` (features ``[T, B, F]``, mask
        ``[T, B]``), as with a stacked top; there is no model to train."""
        return self._update_auxiliaries(state, batch, None, described, key)

    def segment(self, state: LevelState, below: LevelState, start: RSSMState, code: jax.Array,
                key: jax.Array) -> Segment:
        """``K`` steps of level 0's model from ``start`` (leaves ``[N, ...]``) with level 0's current
        actor pursuing the goal that ``code [N, A]`` decodes to."""
        spec = self.below
        decode_key, imagine_key = jax.random.split(key)
        goal = jax.lax.stop_gradient(self.decode_goal(state, start, code, decode_key))
        actor = jax.lax.stop_gradient(below.actor_critic.actor.params)
        params = below.world_model.params
        states, actions = spec.world_model.imagine(
            params, start, lambda features, k: spec.actor_critic.act(actor, spec.policy_input(features, goal), k),
            self.segment_length, imagine_key)
        features = state_features(states)
        continues = spec.world_model.continue_prob(params, features[1:])  # [K, N]
        alive = jnp.cumprod(jnp.concatenate([jnp.ones_like(continues[:1]), continues[:-1]]), 0)
        reward = jnp.sum(alive * spec.world_model.reward(params, features[1:]), 0)
        doubt = jnp.zeros_like(reward)
        if self.doubt_ensemble is not None:
            inputs = jnp.concatenate([features[:-1], actions], -1)
            doubt = jnp.sum(alive * spec.ensemble.disagreement(below.auxiliary["ensemble"].params, inputs), 0)
        end = jax.tree.map(lambda leaf: leaf[-1], states)
        return Segment(end, reward, jnp.prod(continues, 0), doubt)

    def imagine(self, state: LevelState, below: LevelState, starts: RSSMState, policy: Policy,
                key: jax.Array) -> ImaginedRollout:
        """``H`` abstract steps from ``starts`` (level 0's states, leaves ``[N, ...]``): at each tick
        ``policy(features [N, F], key) -> code [N, A]``, then one ``segment``."""

        def tick(latent: RSSMState, tick_key: jax.Array):
            code_key, segment_key = jax.random.split(tick_key)
            features = state_features(latent)
            code = policy(features, code_key)
            segment = self.segment(state, below, latent, code, segment_key)
            return segment.end, (features, code, segment.reward, segment.continues, segment.doubt)

        last, (features, codes, rewards, continues, doubt) = jax.lax.scan(
            tick, starts, jax.random.split(key, self.actor_critic.horizon))
        features = jnp.concatenate([features, state_features(last)[None]])
        return ImaginedRollout(features, codes, rewards, continues, doubt)

    def update_behaviour_through_below(self, state: LevelState, below: LevelState, book: dict, posterior: RSSMState,
                                       rewarded: jax.Array, key: jax.Array) -> tuple[LevelState, dict[str, jax.Array]]:
        """One actor-critic step on rollouts imagined through level 0 (``below``: its state, world
        model already updated), from level 0's posterior states at this level's replayed steps
        (``posterior``, leaves ``[M, B, ...]``, and this level's ``book``); with ``agent.replay_value``
        its critic also learns the real returns along those steps, as a stacked top's does."""
        starts = jax.tree.map(flatten_time, posterior)
        start_continue = self.start_weights(book, None)
        extra = {**self.replayed_novelty(state, starts, start_continue), **self.value_before_reward(state, posterior, book)}

        def rollout(policy: Policy, rollout_key: jax.Array) -> Trajectory:
            imagined = self.imagine(state, below, starts, policy, rollout_key)
            rewards = imagined.rewards[..., None]
            if self.doubt_ensemble is not None:
                doubt_weight = self.exploration_bonus - self.disagreement_penalty * rewarded
                rewards = rewards + (doubt_weight * imagined.doubt)[..., None]  # on the task term, in its units
                extra["imagined/disagreement"] = jax.lax.stop_gradient(imagined.doubt.mean())
            if self.novelty_scale > 0:
                rewards = jnp.concatenate([rewards, self.novelty(state, imagined.features[1:])[..., None]], -1)
            return Trajectory(features=imagined.features, actions=imagined.codes, rewards=rewards,
                              continues=imagined.continues, start_continue=start_continue)

        actor_critic, metrics, _ = self.actor_critic.update(state.actor_critic, rollout, key,
                                                            self.replayed(book, posterior, None))
        metrics.update(extra)
        metrics.update(self.segment_controllability(state, below, starts, jax.random.fold_in(key, 3_000)))
        return state.replace(actor_critic=actor_critic), metrics

    # ------------------------------------------------------------------------------ diagnostics
    def segment_controllability(self, state: LevelState, below: LevelState, starts: RSSMState, key: jax.Array,
                                count: int = 32, codes: int = 8) -> dict[str, jax.Array]:
        """Do this level's codes matter? From ``count`` starts, one segment under each of ``codes``
        random codes: the spread across codes of the deterministic state reached (and of the segment's
        reward), over its spread across starts. The stacked top's ``model/controllability`` asks its
        abstract model the same; here level 0's model and actor answer. Near 0: the code changes nothing."""
        starts = jax.tree.map(lambda leaf: leaf[:count], starts)
        count = starts.deter.shape[0]
        tiled = jax.tree.map(lambda leaf: jnp.repeat(leaf, codes, axis=0), starts)
        code_key, segment_key = jax.random.split(key)
        segment = self.segment(state, below, tiled, self.random_action(code_key, count * codes), segment_key)
        reached = {"model/controllability": segment.end.deter.reshape(count, codes, -1),
                   "model/reward_controllability": segment.reward.reshape(count, codes, 1)}
        return {name: spread_ratio(value) for name, value in reached.items()}
