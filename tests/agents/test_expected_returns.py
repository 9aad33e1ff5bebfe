"""``first_action_values`` against Q worked out by hand on a deterministic stand-in for a level (each
discrete action first, or a grid of continuous ones), ``first_action_gradient`` against Q's derivative
worked out by hand and against finite differences, and the top's imagined novelty along the same
imagined states as its task expectation."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.expected_returns import (first_action_gradient, first_action_values, imagined_novelty_return,
                                     imagined_returns)
from world_models.rssm import RSSMState, state_features

STEP = jnp.array([[1.0], [10.0]])  # action 0 moves deter by 1, action 1 by 10
DISCOUNT, CONTINUE, WEIGHT, HORIZON = 0.5, 0.9, 2.0, 3


class Dynamics:
    """deter += the action's step; reward deter; continue 0.9 everywhere."""

    def img_step(self, params, state, action, key):
        return state._replace(deter=state.deter + action @ STEP)

    def imagine(self, params, start, policy, horizon, key):
        states = [start]
        for step_key in jax.random.split(key, horizon):
            states.append(self.img_step(params, states[-1], policy(state_features(states[-1]), step_key), None))
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states), None

    def reward(self, params, features):
        return features[..., 0]

    def continue_prob(self, params, features):
        return jnp.full(features.shape[:-1], CONTINUE)


class NoisyFirstStep(Dynamics):
    """The first (forced) step adds N(0, 1) to each imagination's deter; ``imagine`` steps without a key."""

    def img_step(self, params, state, action, key):
        moved = super().img_step(params, state, action, key)
        return moved if key is None else moved._replace(deter=moved.deter + jax.random.normal(key, moved.deter.shape))


class Deterministic:
    """A policy distribution that always gives one action."""

    def __init__(self, action):
        self.action = action

    def sample(self, key):
        return self.action

    def mode(self):
        return self.action


def always_first(features):
    return jnp.broadcast_to(jnp.array([1.0, 0.0]), features.shape[:-1] + (2,))


def stand_in(top=True, discrete=True, rule=always_first):
    """A level whose policy's action is ``rule(features)``; like ``Level.act``, its ``act`` passes no
    gradient, its ``actor_critic.policy`` does."""
    critic = SimpleNamespace(discrete=discrete, action_groups=1, action_dim=2, horizon=HORIZON, discount=DISCOUNT,
                             term_weights=jnp.array([WEIGHT]),
                             value=lambda params, features: 100.0 * features[..., :1],
                             policy=lambda params, features: Deterministic(rule(features)))
    policy = lambda state, features, goal, key, greedy=False: jax.lax.stop_gradient(rule(features))
    level = SimpleNamespace(top=top, index=0, actor_critic=critic, world_model=Dynamics(), act=policy,
                            policy_input=lambda features, goal: features,
                            weighted_reward=lambda features, goal, task, continues=None: WEIGHT * task)
    state = SimpleNamespace(world_model=SimpleNamespace(params=None),
                            actor_critic=SimpleNamespace(critic=SimpleNamespace(params=None),
                                                         actor=SimpleNamespace(params=None)))
    return level, state


def by_hand(deter0: float, first) -> float:
    """r_i = WEIGHT * d_i for s_1 .. s_H (the first action, an index or a continuous vector, then
    action 0 every step), then the critic's WEIGHT * 100 * d_H at s_H, weighted by (DISCOUNT * CONTINUE)^i."""
    d = [deter0 + (float(STEP[first, 0]) if isinstance(first, int) else float(np.asarray(first) @ STEP[:, 0]))]
    for _ in range(HORIZON - 1):
        d.append(d[-1] + 1.0)
    factor = DISCOUNT * CONTINUE
    rewards = sum(factor ** i * WEIGHT * d[i] for i in range(HORIZON))
    return rewards + factor ** HORIZON * WEIGHT * 100.0 * d[-1]


def test_each_action_is_taken_first_then_the_policy_and_the_critic_bootstraps():
    level, state = stand_in()
    latent = RSSMState(carry=None, deter=jnp.array([[0.0], [5.0]]), stoch=jnp.zeros((2, 1, 1)))
    values, errors = first_action_values(level, state, latent, samples=3, key=jax.random.PRNGKey(0))
    assert values.shape == errors.shape == (2, 2)
    expected = [[by_hand(d0, a) for a in range(2)] for d0 in (0.0, 5.0)]
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    np.testing.assert_allclose(errors, 0.0, atol=1e-3)  # deterministic: every sample alike
    with pytest.raises(ValueError, match="at least 2 samples"):
        first_action_values(level, state, latent, samples=1, key=jax.random.PRNGKey(0))


def test_standard_errors_are_those_of_the_mean_over_samples():
    level, state = stand_in()
    level.world_model = NoisyFirstStep()
    latent = RSSMState(carry=None, deter=jnp.zeros((1, 1)), stoch=jnp.zeros((1, 1, 1)))
    values, errors = first_action_values(level, state, latent, samples=4000, key=jax.random.PRNGKey(1))
    sensitivity = sensitivity_to_first_deter()  # the noise moves every later deter alike
    np.testing.assert_allclose(errors, sensitivity / np.sqrt(4000), rtol=0.05)
    np.testing.assert_allclose(values, [[by_hand(0.0, 0), by_hand(0.0, 1)]], atol=4 * sensitivity / np.sqrt(4000))


def test_continuous_actions_try_the_greedy_action_then_a_grid_along_each_dimension():
    level, state = stand_in(discrete=False)  # greedy action [1, 0]; the first action moves deter by a0 + 10 a1
    latent = RSSMState(carry=None, deter=jnp.array([[0.0], [5.0]]), stoch=jnp.zeros((2, 1, 1)))
    values, errors = first_action_values(level, state, latent, samples=2, key=jax.random.PRNGKey(0), grid=3)
    candidates = [[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, -1.0], [1.0, 0.0], [1.0, 1.0]]
    assert values.shape == errors.shape == (2, len(candidates))
    np.testing.assert_allclose(values, [[by_hand(d0, a) for a in candidates] for d0 in (0.0, 5.0)], rtol=1e-6)
    with pytest.raises(ValueError, match="grid of at least 2"):
        first_action_values(level, state, latent, samples=2, key=jax.random.PRNGKey(0), grid=1)


def sensitivity_to_first_deter() -> float:
    """dQ/dd_1 of ``by_hand``: the first step's deter carries into every later one alike."""
    factor = DISCOUNT * CONTINUE
    return sum(factor ** i * WEIGHT for i in range(HORIZON)) + factor ** HORIZON * WEIGHT * 100.0


def test_first_action_gradient_is_q_s_derivative_at_the_greedy_action():
    level, state = stand_in(discrete=False)  # the first action moves deter by a0 + 10 a1
    latent = RSSMState(carry=None, deter=jnp.array([[0.0], [5.0]]), stoch=jnp.zeros((2, 1, 1)))
    gradient, errors = first_action_gradient(level, state, latent, samples=3, key=jax.random.PRNGKey(0))
    assert gradient.shape == errors.shape == (2, 2)
    np.testing.assert_allclose(gradient, np.outer([1.0, 1.0], [1.0, 10.0]) * sensitivity_to_first_deter(), rtol=1e-5)
    np.testing.assert_allclose(errors, 0.0, atol=1e-3)
    # the same derivative by central differences of Q on the grid's neighbours of the greedy action [1, 0]
    eps = 1e-2
    plus = by_hand(0.0, [1.0, eps])
    minus = by_hand(0.0, [1.0, -eps])
    np.testing.assert_allclose(gradient[0, 1], (plus - minus) / (2 * eps), rtol=1e-4)


def test_first_action_gradient_flows_through_the_later_actions_of_the_policy():
    """A policy whose action follows the state, a = [K d, 0], so that each later step multiplies deter
    by 1 + K: the first action's effect on d_1 grows along the horizon, and the gradient must say so."""
    gain = 0.5
    level, state = stand_in(discrete=False, rule=lambda features: jnp.concatenate(
        [gain * features[..., :1], jnp.zeros_like(features[..., :1])], -1))
    latent = RSSMState(carry=None, deter=jnp.array([[2.0]]), stoch=jnp.zeros((1, 1, 1)))
    gradient, _ = first_action_gradient(level, state, latent, samples=2, key=jax.random.PRNGKey(0))
    factor, growth = DISCOUNT * CONTINUE, 1.0 + gain
    # d_i = growth^(i-1) d_1 for the rewards of s_1 .. s_H, then the critic's 100 d_H
    sensitivity = (sum(factor ** i * WEIGHT * growth ** i for i in range(HORIZON))
                   + factor ** HORIZON * WEIGHT * 100.0 * growth ** (HORIZON - 1))
    np.testing.assert_allclose(gradient, [[sensitivity, 10.0 * sensitivity]], rtol=1e-5)


def test_first_action_gradient_on_a_noisy_model_averages_the_samples():
    """Noise that does not depend on the action leaves every sample's gradient alike."""
    level, state = stand_in(discrete=False)
    level.world_model = NoisyFirstStep()
    latent = RSSMState(carry=None, deter=jnp.zeros((1, 1)), stoch=jnp.zeros((1, 1, 1)))
    gradient, errors = first_action_gradient(level, state, latent, samples=16, key=jax.random.PRNGKey(1))
    np.testing.assert_allclose(gradient, [[sensitivity_to_first_deter(), 10.0 * sensitivity_to_first_deter()]],
                               rtol=1e-5)
    np.testing.assert_allclose(errors, 0.0, atol=1e-3)


def test_first_action_gradient_refuses_discrete_actions_and_a_single_sample():
    level, state = stand_in(discrete=True)
    latent = RSSMState(carry=None, deter=jnp.zeros((1, 1)), stoch=jnp.zeros((1, 1, 1)))
    with pytest.raises(ValueError, match="continuous actions only"):
        first_action_gradient(level, state, latent, samples=2, key=jax.random.PRNGKey(0))
    level, state = stand_in(discrete=False)
    with pytest.raises(ValueError, match="at least 2 samples"):
        first_action_gradient(level, state, latent, samples=1, key=jax.random.PRNGKey(0))


def test_only_a_flat_agent_has_first_action_values():
    level, state = stand_in(top=False)
    latent = RSSMState(carry=None, deter=jnp.zeros((1, 1)), stoch=jnp.zeros((1, 1, 1)))
    with pytest.raises(ValueError, match="flat agent"):
        first_action_values(level, state, latent, samples=2, key=jax.random.PRNGKey(0))


class NoisyDynamics(Dynamics):
    """Every imagined step adds N(0, 1) to deter: two imaginations agree only if their keys do."""

    def imagine(self, params, start, policy, horizon, key):
        states = [start]
        for step_key in jax.random.split(key, horizon):
            moved = self.img_step(params, states[-1], policy(state_features(states[-1]), step_key), None)
            states.append(moved._replace(deter=moved.deter + jax.random.normal(step_key, moved.deter.shape)))
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states), None


def squared(features):
    return features[..., 0] ** 2


def test_the_tops_novelty_is_summed_along_the_states_its_task_expectation_imagines():
    """A stand-in whose task reward and novelty are the same function of the state: on a noisy model
    both expectations agree only if they follow the same imagined states."""
    level, state = stand_in()
    level.world_model, level.imagines_below, level.novelty_scale = NoisyDynamics(), False, 0.1
    level.weighted_reward = lambda features, goal, task, continues=None: squared(features)
    level.novelty = lambda level_state, features: squared(features)
    latent = RSSMState(carry=None, deter=jnp.array([[0.0], [5.0]]), stoch=jnp.zeros((2, 1, 1)))
    key = jax.random.PRNGKey(4)
    novelty = imagined_novelty_return([level], [state], latent, key)
    np.testing.assert_allclose(novelty, imagined_returns([level], [state], [latent], [], key)[0], rtol=1e-6)
    factor = DISCOUNT * CONTINUE  # without the noise: deter d0 + 1, d0 + 2, d0 + 3
    noiseless = [sum(factor ** i * (d0 + i + 1.0) ** 2 for i in range(HORIZON)) for d0 in (0.0, 5.0)]
    assert np.all(np.abs(np.asarray(novelty) - noiseless) > 1e-3)  # the noise matters, so the agreement says something
    level.novelty_scale = 0.0
    with pytest.raises(ValueError, match="no novelty term"):
        imagined_novelty_return([level], [state], latent, key)


def test_a_top_imagining_through_level_zero_sums_novelty_along_its_own_rollout():
    """Level 1 imagining through level 0: the novelty of the states its rollout reaches, discounted
    and weighted by the rollout's continue probabilities, with the key ``imagined_returns`` gives it."""
    below, below_state = stand_in(top=False)
    top, state = stand_in()
    top.index, top.imagines_below, top.novelty_scale = 1, True, 0.1
    top.actor_critic.term_weights = jnp.array([1.0])

    def imagine(level_state, below_level_state, latent, policy, key):
        assert below_level_state is below_state
        features = jax.random.normal(key, (HORIZON + 1,) + latent.deter.shape)
        return SimpleNamespace(features=features, rewards=squared(features[1:]),
                               continues=jnp.full(features.shape[1:-1], CONTINUE).repeat(HORIZON, 0).reshape(
                                   HORIZON, -1))

    top.imagine, top.novelty = imagine, lambda level_state, features: squared(features)
    latent = RSSMState(carry=None, deter=jnp.zeros((2, 1)), stoch=jnp.zeros((2, 1, 1)))
    key = jax.random.PRNGKey(5)
    novelty = imagined_novelty_return([below, top], [below_state, state], latent, key)
    features = imagine(state, below_state, latent, None, jax.random.fold_in(key, 1)).features[1:]
    factor = DISCOUNT * CONTINUE
    np.testing.assert_allclose(novelty, sum(factor ** i * squared(features[i]) for i in range(HORIZON)), rtol=1e-5)
