import jax.numpy as jnp
import numpy as np
import pytest

from agents.returns import ReturnScale, discounted_sum, lambda_returns, replayed_lambda_returns, update_return_scale


def test_lambda_returns_hand_computed():
    rewards = jnp.array([[1.0], [2.0]])
    discounts = jnp.array([[0.5], [0.5]])
    values = jnp.array([[10.0], [20.0], [40.0]])
    lam = 0.5
    r1 = 2.0 + 0.5 * ((1 - lam) * 40.0 + lam * 40.0)  # R_2 = V_2
    r0 = 1.0 + 0.5 * ((1 - lam) * 20.0 + lam * r1)
    np.testing.assert_allclose(lambda_returns(rewards, discounts, values, lam), [[r0], [r1]], rtol=1e-6)


def test_lambda_one_is_monte_carlo_and_zero_is_one_step():
    rewards = jnp.array([[1.0], [1.0], [1.0]])
    discounts = jnp.full((3, 1), 0.9)
    values = jnp.array([[0.0], [5.0], [6.0], [7.0]])
    mc = lambda_returns(rewards, discounts, values, 1.0)
    np.testing.assert_allclose(mc[0], [1 + 0.9 + 0.81 + 0.729 * 7.0], rtol=1e-6)
    td = lambda_returns(rewards, discounts, values, 0.0)
    np.testing.assert_allclose(td[:, 0], [1 + 0.9 * 5, 1 + 0.9 * 6, 1 + 0.9 * 7], rtol=1e-6)


def test_return_scale_tracks_percentiles_and_never_scales_up():
    scale = ReturnScale.initial()
    returns = jnp.linspace(0.0, 100.0, 101)
    scale, divisor = update_return_scale(scale, returns, decay=0.0, percentiles=(5.0, 95.0))
    np.testing.assert_allclose([scale.low, scale.high, divisor], [5.0, 95.0, 90.0], rtol=1e-5)
    _, divisor = update_return_scale(ReturnScale.initial(), jnp.full(10, 0.1), 0.0, (5.0, 95.0))
    assert divisor == 1.0


def test_discounted_sum_against_hand_computed_numbers():
    # one sequence, discount 0.5: 1 + 0.5 * 1 * 2 + 0.25 * (1 * 0) * 4 = 2 (the episode ends after step 1)
    rewards, continues = jnp.array([[1.0], [2.0], [4.0]]), jnp.array([[1.0], [0.0], [1.0]])
    np.testing.assert_allclose(discounted_sum(rewards, continues, 0.5), [2.0])


@pytest.mark.parametrize("terminated", [True, False])
def test_replayed_returns_follow_real_rewards_within_episodes_by_hand(terminated):
    # records 0-2 one episode, 3-4 the next; record 2 ends the first by termination or by truncation
    rewards = jnp.array([0.0, 1.0, 2.0, 3.0, 4.0])[:, None]
    terminal = jnp.array([False, False, terminated, False, False])[:, None]
    first = jnp.array([True, False, False, True, False])[:, None]
    boot = jnp.array([10.0, 20.0, 30.0, 40.0, 50.0])[:, None]
    returns, weights = replayed_lambda_returns(rewards, terminal, first, boot, discount=0.5, lambda_=0.5)
    r3 = 4.0 + 0.5 * (0.5 * 50.0 + 0.5 * 50.0)  # the sequence's end: R_4 = boot
    r1 = 2.0 if terminated else 2.0 + 0.5 * 30.0  # after a termination nothing; after a truncation boot only
    r0 = 1.0 + 0.5 * (0.5 * 20.0 + 0.5 * r1)
    np.testing.assert_allclose(returns[:, 0], [r0, r1, 0.0, r3])
    np.testing.assert_array_equal(weights[:, 0], [1.0, 1.0, 0.0, 1.0])  # 2 -> 3 crosses episodes
