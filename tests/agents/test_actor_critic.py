"""The actor-critic's update against its losses written out plainly and differentiated by ``jax.grad``.

The update shares one critic forward pass between the returns' values and the critic's gradient
(REINFORCE) and pulls the critic's gradient back from its logits; the reference here differentiates
the textbook losses directly. With plain SGD of rate 1 the parameters move by exactly minus the
gradient, so the update's gradients are read off its parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agents.actor_critic import ActorCritic, Replayed, Trajectory, weighted_correlation
from agents.returns import lambda_returns, replayed_lambda_returns, update_return_scale
from configs.loader import load_config

LENGTH, BATCH, FEATURES, ACTIONS = 4, 3, 5, 3


def _actor_critic(discrete: bool, replay_value: float) -> ActorCritic:
    settings = {**load_config(["debug"])["agent"], "replay_value": replay_value, "actor_grad": "auto"}
    actor_critic = ActorCritic(ACTIONS, discrete, reward_terms=(("task", 1.0), ("novelty", 0.5)), **settings)
    actor_critic.actor_optimizer = actor_critic.critic_optimizer = optax.sgd(1.0)
    return actor_critic


def _perturbed(tree, key: jax.Array, scale: float = 0.3):
    """Random parameters of the same structure: the critic's zero-initialised head would otherwise
    value every state alike."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([leaf + scale * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)])


def _rollout(horizon: int):
    """A small differentiable model: the next features depend on the action, rewards on the features."""
    rng = np.random.default_rng(0)
    starts = jnp.asarray(rng.normal(size=(LENGTH * BATCH, FEATURES)), jnp.float32)
    transition = jnp.asarray(rng.normal(size=(FEATURES + ACTIONS, FEATURES)) / 2, jnp.float32)
    reward_weights = jnp.asarray(rng.normal(size=(FEATURES, 2)), jnp.float32)

    def rollout(policy, key):
        features, actions = [starts], []
        for step_key in jax.random.split(key, horizon):
            actions.append(policy(features[-1], step_key))
            features.append(jnp.tanh(jnp.concatenate([features[-1], actions[-1]], -1) @ transition))
        features = jnp.stack(features)
        continues = jax.nn.sigmoid(3.0 + features[1:, :, 0])
        return Trajectory(features, jnp.stack(actions), features[1:] @ reward_weights, continues,
                          jnp.ones(LENGTH * BATCH).at[0].set(0.0))

    return rollout, starts


def _reference_gradients(actor_critic: ActorCritic, state, rollout, key, replayed):
    """Actor and critic gradients of the losses as written in DreamerV3, each net run where it is used."""
    stop = jax.lax.stop_gradient
    reinforce = actor_critic.actor_grad == "reinforce"
    value = lambda params, features: actor_critic.value(params, features)

    def imagine(actor_params):
        def policy(features, policy_key):
            action = actor_critic.policy(actor_params, features).sample(policy_key)
            return stop(action) if reinforce else action
        trajectory = rollout(policy, key)
        return jax.tree.map(stop, trajectory) if reinforce else trajectory

    def returns_of(trajectory):
        values = value(state.critic.params, trajectory.features)
        discounts = actor_critic.discount * trajectory.continues
        returns = lambda_returns(trajectory.rewards, jnp.broadcast_to(discounts[..., None], trajectory.rewards.shape),
                                 values, actor_critic.lambda_)
        weights = jnp.cumprod(jnp.concatenate([trajectory.start_continue[None], discounts[:-1]]), 0)
        _, divisor = update_return_scale(state.return_scale, stop(returns), actor_critic.return_norm_decay,
                                         actor_critic.return_norm_percentiles)
        return values, returns, stop(weights), divisor

    def actor_loss(actor_params):
        trajectory = imagine(actor_params)
        values, returns, weights, divisor = returns_of(trajectory)
        dist = actor_critic.policy(actor_params, stop(trajectory.features[:-1]))
        if reinforce:
            advantage = stop(jnp.sum(actor_critic.term_weights * (returns - values[:-1]) / divisor, -1))
            objective = dist.log_prob(trajectory.actions) * advantage
        else:
            objective = jnp.sum(actor_critic.term_weights * returns / divisor, -1)
        return -jnp.mean(weights * (objective + actor_critic.entropy * dist.entropy()))

    trajectory = jax.tree.map(stop, imagine(state.actor.params))
    _, returns, weights, _ = returns_of(trajectory)

    def two_hot_loss(critic_params, features, targets):
        dist = actor_critic.value_dist(critic_params, features)
        slow = value(state.slow_critic, features)
        return -dist.log_prob(targets) - actor_critic.slow_critic_reg * dist.log_prob(slow)

    def critic_loss(critic_params):
        loss = jnp.mean(weights * jnp.sum(two_hot_loss(critic_params, trajectory.features[:-1], returns), -1))
        if replayed is None:
            return loss
        boot = returns[0, :, 0].reshape(LENGTH, BATCH)
        targets, same_episode = replayed_lambda_returns(replayed.rewards, replayed.terminal, replayed.first, boot,
                                                        actor_critic.discount, actor_critic.lambda_)
        # every head sees the replayed target; only the first head's loss counts
        per_head = two_hot_loss(critic_params, replayed.features[:-1], jnp.repeat(targets[..., None], 2, -1))
        replay = jnp.mean(same_episode * replayed.weights[:-1] * per_head[..., 0])
        return loss + actor_critic.replay_value * replay

    return jax.grad(actor_loss)(state.actor.params), jax.grad(critic_loss)(state.critic.params)


@pytest.mark.parametrize("discrete, replay_value", [(True, 0.0), (True, 0.3), (False, 0.3)],
                         ids=["reinforce", "reinforce-replayed", "dynamics-replayed"])
def test_one_update_moves_actor_and_critic_by_the_plain_losses_gradients(discrete, replay_value):
    actor_critic = _actor_critic(discrete, replay_value)
    rollout, starts = _rollout(actor_critic.horizon)
    state = actor_critic.init(jax.random.PRNGKey(0), FEATURES)
    state = state.replace(critic=state.critic.replace(params=_perturbed(state.critic.params, jax.random.PRNGKey(1))),
                          slow_critic=_perturbed(state.slow_critic, jax.random.PRNGKey(2)))
    rng = np.random.default_rng(1)
    replayed = None if not replay_value else Replayed(
        features=starts.reshape(LENGTH, BATCH, FEATURES),
        rewards=jnp.asarray(rng.normal(size=(LENGTH, BATCH)), jnp.float32),
        terminal=jnp.zeros((LENGTH, BATCH), bool).at[1, 2].set(True),
        first=jnp.zeros((LENGTH, BATCH), bool).at[0].set(True).at[2, 2].set(True),
        weights=jnp.ones((LENGTH, BATCH)).at[2, 0].set(0.0))
    key = jax.random.PRNGKey(3)

    new_state, metrics, trajectory = jax.jit(lambda state: actor_critic.update(state, rollout, key, replayed))(state)
    actor_grads, critic_grads = jax.jit(lambda: _reference_gradients(actor_critic, state, rollout, key, replayed))()

    for old, new, expected in ((state.actor.params, new_state.actor.params, actor_grads),
                               (state.critic.params, new_state.critic.params, critic_grads)):
        moved = jax.tree.map(lambda before, after: before - after, old, new)
        assert optax.tree.norm(expected) > 1e-4  # a test that could fail
        for got, want in zip(jax.tree.leaves(moved), jax.tree.leaves(expected)):
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)
    assert np.isfinite(metrics["actor_critic/critic_loss"])
    assert ("actor_critic/replay_value_loss" in metrics) == bool(replay_value)
    assert ("actor_critic/entropy_fraction" in metrics) == discrete  # a continuous policy has no maximum
    if discrete:
        assert 0.5 < float(metrics["actor_critic/entropy_fraction"]) <= 1.0 + 1e-6  # a fresh policy: near uniform
    # the critic's ranking of the starts against the rewards imagined from them, over the live starts
    live = np.asarray(trajectory.start_continue) > 0
    start_values = np.asarray(actor_critic.value(state.critic.params, trajectory.features[0]))
    rewards, continues = np.asarray(trajectory.rewards), np.asarray(trajectory.continues)
    for index, name in enumerate(("actor_critic/value_reward_corr", "actor_critic/value_reward_corr/novelty")):
        reward_sum = sum(actor_critic.discount**t * np.prod(continues[:t], 0) * rewards[t, :, index]
                         for t in range(rewards.shape[0]))
        expected = np.corrcoef(start_values[live, index], reward_sum[live])[0, 1]
        np.testing.assert_allclose(metrics[name], expected, rtol=1e-4, atol=1e-5)


def test_weighted_correlation_is_pearsons_over_the_weighted_pairs():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=9), rng.normal(size=9)
    b[:5] += 2 * a[:5]
    weights = np.array([1, 1, 2, 1, 1, 0, 0, 0, 0], np.float32)  # a weight of 2 counts the pair twice
    expected = np.corrcoef(np.append(a[:5], a[2]), np.append(b[:5], b[2]))[0, 1]
    np.testing.assert_allclose(weighted_correlation(jnp.asarray(a), jnp.asarray(b), jnp.asarray(weights)),
                               expected, rtol=1e-5)
    assert float(weighted_correlation(jnp.asarray(a), jnp.ones(9), jnp.ones(9))) == 0.0  # nothing varies


def _plain_lambda_returns(rewards, continues, values, discount, lambda_):
    """``R_t = r_t + discount c_t ((1 - lambda) v_{t+1} + lambda R_{t+1})``, ``R_H = v_H``, step by step."""
    returns = [values[-1]]
    for t in reversed(range(rewards.shape[0])):
        following = (1 - lambda_) * values[t + 1] + lambda_ * returns[0]
        returns.insert(0, rewards[t] + discount * continues[t][..., None] * following)
    return np.stack(returns[:-1])


def test_judge_values_another_actor_as_its_objective_written_out():
    actor_critic = _actor_critic(discrete=False, replay_value=0.0)
    rollout, _ = _rollout(actor_critic.horizon)
    state = actor_critic.init(jax.random.PRNGKey(0), FEATURES)
    state = state.replace(critic=state.critic.replace(params=_perturbed(state.critic.params, jax.random.PRNGKey(1))),
                          return_scale=state.return_scale._replace(low=jnp.array([-3.0, 0.0]),
                                                                   high=jnp.array([1.0, 0.5])))
    other_actor = _perturbed(state.actor.params, jax.random.PRNGKey(2))
    key = jax.random.PRNGKey(3)

    judged = jax.jit(lambda params: actor_critic.judge(state, params, rollout, key))(other_actor)

    trajectory = rollout(lambda features, k: actor_critic.policy(other_actor, features).sample(k), key)
    values = np.asarray(actor_critic.value(state.critic.params, trajectory.features))
    rewards, continues = np.asarray(trajectory.rewards), np.asarray(trajectory.continues)
    returns = _plain_lambda_returns(rewards, continues, values, actor_critic.discount, actor_critic.lambda_)
    horizon, starts = continues.shape
    weights = np.ones((horizon, starts)) * np.asarray(trajectory.start_continue)
    for t in range(1, horizon):
        weights[t] = weights[t - 1] * actor_critic.discount * continues[t - 1]
    divisor = np.array([4.0, 1.0])  # max(1, high - low) of each term's scale as it stands
    objective = np.mean(weights * np.sum(np.asarray(actor_critic.term_weights) * returns / divisor, -1), 0)
    reward_sum = sum(actor_critic.discount**t * np.prod(continues[:t], 0) * rewards[t, :, 0] for t in range(horizon))

    np.testing.assert_allclose(judged.objective, objective, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(judged.start_return, returns[0, :, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(judged.reward_sum, reward_sum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(judged.horizon_value, values[-1, :, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(judged.start_value, values[0, :, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(judged.weight, trajectory.start_continue)
    own = actor_critic.judge(state, state.actor.params, rollout, key)
    assert np.abs(np.asarray(own.objective) - objective).max() > 1e-3  # it judged the actor it was given
