"""``first_action_values`` against Q worked out by hand on a deterministic stand-in for a level."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.expected_returns import first_action_values
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


def stand_in(top=True, discrete=True):
    critic = SimpleNamespace(discrete=discrete, action_groups=1, action_dim=2, horizon=HORIZON, discount=DISCOUNT,
                             term_weights=jnp.array([WEIGHT]),
                             value=lambda params, features: 100.0 * features[..., :1])
    policy = lambda state, features, goal, key: jnp.broadcast_to(jnp.array([1.0, 0.0]), features.shape[:-1] + (2,))
    level = SimpleNamespace(top=top, index=0, actor_critic=critic, world_model=Dynamics(), act=policy,
                            policy_input=lambda features, goal: features,
                            weighted_reward=lambda features, goal, task: WEIGHT * task)
    state = SimpleNamespace(world_model=SimpleNamespace(params=None),
                            actor_critic=SimpleNamespace(critic=SimpleNamespace(params=None)))
    return level, state


def by_hand(deter0: float, first: int) -> float:
    """r_i = WEIGHT * d_i for s_1 .. s_H (the first action, then action 0 every step), then the
    critic's WEIGHT * 100 * d_H at s_H, weighted by (DISCOUNT * CONTINUE)^i."""
    d = [deter0 + float(STEP[first, 0])]
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
    # the noise moves every later deter alike: Q's sensitivity to d_1 is sum_i f^i W + f^H W 100
    factor = DISCOUNT * CONTINUE
    sensitivity = sum(factor ** i * WEIGHT for i in range(HORIZON)) + factor ** HORIZON * WEIGHT * 100.0
    np.testing.assert_allclose(errors, sensitivity / np.sqrt(4000), rtol=0.05)
    np.testing.assert_allclose(values, [[by_hand(0.0, 0), by_hand(0.0, 1)]], atol=4 * sensitivity / np.sqrt(4000))


@pytest.mark.parametrize("top, discrete", [(False, True), (True, False)])
def test_only_a_flat_discrete_agent_has_first_action_values(top, discrete):
    level, state = stand_in(top, discrete)
    latent = RSSMState(carry=None, deter=jnp.zeros((1, 1)), stoch=jnp.zeros((1, 1, 1)))
    with pytest.raises(ValueError, match="flat agent with a discrete action space"):
        first_action_values(level, state, latent, samples=1, key=jax.random.PRNGKey(0))
