"""What each level expects to earn, by its own model and critic: the imagined side of the
exploitation gap (``agents.diagnostics`` measures the same sums on the real steps that follow).

A level's expectation is the discounted sum of its own weighted reward over its imagination horizon,
imagined from its current latent state with the goal in effect held and its current policy (no
bootstrap); a top imagining through level 0 (``agents.imagined_top``) imagines through level 0's
model with level 0's actor in the loop. The top's critic adds its estimate of the task return.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from agents.imagined_top import ImaginedTop
from agents.level import Level, LevelState, level_key
from agents.returns import discounted_sum
from world_models.rssm import RSSMState, state_features


def _imagine_held(level: Level, state: LevelState, latent: RSSMState, goal: jax.Array | None, key: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
    """``level``'s imagination from ``latent`` (leaves ``[N, ...]``) under its policy with ``goal`` held:
    the features of the states reached ``[H, N, F]`` and their continue probabilities ``[H, N]``."""
    params = state.world_model.params
    states, _ = level.world_model.imagine(
        params, latent, lambda features, k: level.act(state, features, goal, k), level.actor_critic.horizon, key
    )
    features = state_features(states)[1:]
    return features, level.world_model.continue_prob(params, features)


def imagined_return(level: Level, state: LevelState, latent: RSSMState, goal: jax.Array | None,
                    key: jax.Array) -> jax.Array:
    """``level``'s expectation from ``latent`` (leaves ``[N, ...]``) with ``goal [N, G]`` held (None
    at the top): ``[N]``."""
    features, continues = _imagine_held(level, state, latent, goal, key)
    rewards = level.weighted_reward(features, goal, level.world_model.reward(state.world_model.params, features),
                                    continues)
    return discounted_sum(rewards, continues, level.actor_critic.discount)


def imagined_return_through_below(top: ImaginedTop, state: LevelState, below: LevelState, latent: RSSMState,
                                  key: jax.Array) -> jax.Array:
    """The expectation of a top imagining through level 0 (``below``: level 0's state) from level 0's
    states ``latent`` (leaves ``[N, ...]``): its weighted task reward per abstract step, ``[N]``."""
    imagined = top.imagine(state, below, latent, lambda features, k: top.act(state, features, None, k), key)
    rewards = imagined.rewards * top.actor_critic.term_weights[0]
    return discounted_sum(rewards, imagined.continues, top.actor_critic.discount)


def imagined_returns(levels: Sequence[Level], level_states: Sequence[LevelState], latents: Sequence[RSSMState],
                     goals: Sequence[jax.Array], key: jax.Array) -> jax.Array:
    """Every level's expectation from its acting state (``latents`` per level, ``goals`` in effect per
    level below the top): ``[levels, N]``."""
    returns = []
    for index, level in enumerate(levels):
        latent, index_key = latents[index], level_key(key, index)
        if level.imagines_below:
            returns.append(imagined_return_through_below(level, level_states[index], level_states[index - 1],
                                                         latent, index_key))
        else:
            goal = None if index == len(levels) - 1 else goals[index]
            returns.append(imagined_return(level, level_states[index], latent, goal, index_key))
    return jnp.stack(returns)


def imagined_novelty_return(levels: Sequence[Level], level_states: Sequence[LevelState], latent: RSSMState,
                            key: jax.Array) -> jax.Array:
    """The top level's expected discounted sum of its novelty term (unweighted) from its acting state
    ``latent`` (leaves ``[N, ...]``) over its horizon: ``[N]``. With the ``key`` given to
    ``imagined_returns`` it is summed along the same imagined states as the top's task expectation.
    A policy that learned to steer its model into states that only the model finds novel expects far
    more novelty than it meets (``agents.diagnostics``)."""
    index = len(levels) - 1
    top, state = levels[index], level_states[index]
    if top.novelty_scale <= 0:
        raise ValueError("the top level has no novelty term (hierarchy.novelty is 0)")
    if top.imagines_below:
        imagined = top.imagine(state, level_states[index - 1], latent,
                               lambda features, k: top.act(state, features, None, k), level_key(key, index))
        features, continues = imagined.features[1:], imagined.continues
    else:
        features, continues = _imagine_held(top, state, latent, None, level_key(key, index))
    return discounted_sum(top.novelty(state, features), continues, top.actor_critic.discount)


def top_task_value(top: Level, state: LevelState, features: jax.Array) -> jax.Array:
    """The top level's critic estimate ``[...]`` of its weighted task reward's discounted return from
    ``features``: what its ``weighted_reward`` will add up to."""
    if not top.top:
        raise ValueError(f"level {top.index} is not the top level: only the top's task value is defined")
    values = top.actor_critic.value(state.actor_critic.critic.params, top.policy_input(features, None))
    return values[..., 0] * top.actor_critic.term_weights[0]


def first_action_candidates(level: Level, state: LevelState, latent: RSSMState, grid: int, key: jax.Array
                            ) -> jax.Array:
    """The first actions ``first_action_values`` tries from each state ``[N, C, A]``: for discrete
    actions each one-hot action (``C = A``); for continuous ones the policy's greedy action followed by
    that action with one dimension at a time set to each of ``grid`` values evenly spaced over
    ``[-1, 1]`` (``C = 1 + A * grid``, dimension-major)."""
    critic, count = level.actor_critic, latent.deter.shape[0]
    if critic.discrete:
        return jnp.broadcast_to(jnp.eye(critic.action_dim), (count, critic.action_dim, critic.action_dim))
    greedy = level.act(state, state_features(latent), None, key, greedy=True)  # [N, A]
    dims, values = critic.action_dim, jnp.linspace(-1.0, 1.0, grid)
    varied = jnp.broadcast_to(greedy[:, None, None, :], (count, dims, grid, dims))
    chosen = jnp.eye(dims, dtype=bool)[None, :, None, :]  # [1, d, 1, A]: dimension d is the one set
    varied = jnp.where(chosen, values[None, None, :, None], varied).reshape(count, dims * grid, dims)
    return jnp.concatenate([greedy[:, None], varied], 1)


def _check_first_action_probe(level: Level, samples: int) -> None:
    critic = level.actor_critic
    if not (level.top and level.index == 0 and (not critic.discrete or critic.action_groups == 1)):
        raise ValueError("first-action values are defined for a flat agent with one discrete action or continuous "
                         "actions")
    if samples < 2:
        raise ValueError(f"first-action values need at least 2 samples for their standard error, got {samples}")


def _first_action_q(level: Level, state: LevelState, starts: RSSMState, first: jax.Array, first_key: jax.Array,
                    rest_key: jax.Array) -> jax.Array:
    """``Q`` of taking ``first [M, A]`` from ``starts`` (leaves ``[M, ...]``), then the current policy for
    the rest of the horizon: the discounted weighted task reward plus the critic's value at its end,
    one imagination each, ``[M]``; differentiable in ``first`` through the model, the later actions and
    the critic."""
    critic, params, actor_params = level.actor_critic, state.world_model.params, state.actor_critic.actor.params

    def policy(features: jax.Array, key: jax.Array) -> jax.Array:
        # level.act's sample, without its stop-gradient: the later actions respond to the state the first
        # one led to, as in the imagination a dynamics-backprop actor learns from
        return critic.policy(actor_params, level.policy_input(features, None)).sample(key)

    after_first = level.world_model.img_step(params, starts, first, first_key)
    states, _ = level.world_model.imagine(params, after_first, policy, critic.horizon - 1, rest_key)
    features = state_features(states)  # s_1 .. s_H
    rewards = level.weighted_reward(features, None, level.world_model.reward(params, features))
    continues = level.world_model.continue_prob(params, features)
    reached = jnp.prod(critic.discount * continues, 0)  # discount^H times the chance s_H is still in the episode
    return discounted_sum(rewards, continues, critic.discount) + reached * top_task_value(level, state, features[-1])


def _mean_and_error(samples: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The mean over the sample axis of ``[N, S, ...]`` and its standard error: ``[N, ...]`` each."""
    return samples.mean(1), samples.std(1, ddof=1) / jnp.sqrt(samples.shape[1])


def first_action_values(level: Level, state: LevelState, latent: RSSMState, samples: int, key: jax.Array,
                        grid: int = 0) -> tuple[jax.Array, jax.Array]:
    """``Q(s, a)`` of a flat agent's candidate first actions (``first_action_candidates``: every
    discrete action, or for continuous actions the greedy one and a ``grid`` along each dimension), by
    its own model and critic, and the standard error of each estimate: ``[N, C]`` each, for the states
    ``latent`` (leaves ``[N, ...]``).

    Each candidate is taken once in imagination, then the current policy acts for the rest of the
    horizon; ``Q`` is the discounted sum of the weighted task reward over the horizon plus the critic's
    value at its end (``top_task_value``), averaged over ``samples`` imaginations. It says what the
    actor would choose if it followed its own model and critic one action ahead, the probe for an
    actor that does not act on what the critic knows.
    """
    _check_first_action_probe(level, samples)
    if not level.actor_critic.discrete and grid < 2:
        raise ValueError(f"first-action values of continuous actions need a grid of at least 2 values, got {grid}")
    candidate_key, first_key, rest_key = jax.random.split(key, 3)
    candidates = first_action_candidates(level, state, latent, grid, candidate_key)  # [N, C, A]
    count, choices = candidates.shape[:2]
    # [N * C * samples] imaginations, state-major then candidate then sample
    starts = jax.tree.map(lambda leaf: jnp.repeat(leaf, choices * samples, axis=0), latent)
    first = jnp.repeat(candidates, samples, axis=1).reshape(count * choices * samples, -1)
    values = _first_action_q(level, state, starts, first, first_key, rest_key)
    return _mean_and_error(values.reshape(count, choices, samples).transpose(0, 2, 1))


def first_action_gradient(level: Level, state: LevelState, latent: RSSMState, samples: int, key: jax.Array
                          ) -> tuple[jax.Array, jax.Array]:
    """``dQ(s, a)/da`` at a flat agent's greedy continuous action, backpropagated through its model,
    later actions and critic as ``first_action_values`` computes ``Q``, and its standard error:
    ``[N, A]`` each, for the states ``latent`` (leaves ``[N, ...]``), averaged over ``samples``
    imaginations.

    It is the direction in which an actor trained by backpropagating imagined returns
    (``agent.actor_grad: dynamics``) is told to move its first action. Where it points away from the
    grid value that ``first_action_values`` ranks first, the model's gradients (straight-through
    through its categorical latents) mislead the actor even where the model's values would not.
    """
    _check_first_action_probe(level, samples)
    if level.actor_critic.discrete:
        raise ValueError("a first-action gradient is defined for continuous actions only")
    greedy_key, first_key, rest_key = jax.random.split(key, 3)
    greedy = level.act(state, state_features(latent), None, greedy_key, greedy=True)  # [N, A]
    count = greedy.shape[0]
    starts = jax.tree.map(lambda leaf: jnp.repeat(leaf, samples, axis=0), latent)
    first = jnp.repeat(greedy, samples, axis=0)  # [N * samples, A], state-major
    # each imagination's Q depends on its own first action only, so the gradient of the sum is per row
    gradients = jax.grad(lambda actions: _first_action_q(level, state, starts, actions, first_key, rest_key).sum())(
        first)
    return _mean_and_error(gradients.reshape(count, samples, -1))
