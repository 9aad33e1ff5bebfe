import jax
import jax.numpy as jnp
import numpy as np
import pytest

from world_models.distributions import (
    BoundedNormal,
    GroupedOneHot,
    OneHotCategorical,
    TwoHotSymlog,
    balanced_kl_losses,
    categorical_kl,
    symexp,
    symlog,
    symlog_bins,
    twohot,
    unimix_logits,
)


def test_symlog_hand_values_and_round_trip():
    x = jnp.array([-1000.0, -1.0, 0.0, 0.5, 1e6])
    np.testing.assert_allclose(symlog(jnp.array([0.0, np.e - 1, -(np.e - 1)])), [0.0, 1.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(symexp(symlog(x)), x, rtol=1e-5)


def test_twohot_hand_values():
    bins = jnp.array([-1.0, 0.0, 1.0, 3.0])
    np.testing.assert_allclose(twohot(jnp.array(0.25), bins), [0.0, 0.75, 0.25, 0.0], atol=1e-6)
    np.testing.assert_allclose(twohot(jnp.array(2.0), bins), [0.0, 0.0, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(twohot(jnp.array(-5.0), bins), [1.0, 0.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(twohot(jnp.array(3.0), bins), [0.0, 0.0, 0.0, 1.0], atol=1e-6)


def test_twohot_round_trip_through_the_readout():
    values = jnp.array([-300.0, -2.5, 0.0, 0.1, 7.0, 4000.0])
    bins = symlog_bins(255)
    weights = twohot(symlog(values), bins)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    decoded = TwoHotSymlog(jnp.log(weights + 1e-30), bins).mean()
    np.testing.assert_allclose(decoded, values, rtol=1e-3, atol=1e-4)


def test_twohot_loss_is_minimised_at_the_target():
    bins = symlog_bins(11, limit=5.0)
    target = jnp.array(2.0)
    exact = TwoHotSymlog(jnp.log(twohot(symlog(target), bins) + 1e-9), bins)
    uniform = TwoHotSymlog(jnp.zeros(11), bins)
    assert exact.log_prob(target) > uniform.log_prob(target)


def test_unimix_gives_the_mixed_probabilities():
    logits = jnp.array([0.0, -jnp.inf, -jnp.inf, -jnp.inf])
    probs = jnp.exp(unimix_logits(logits, 0.01))
    np.testing.assert_allclose(probs, [0.99 + 0.0025, 0.0025, 0.0025, 0.0025], rtol=1e-5)


def test_categorical_kl_and_free_bits():
    p = jnp.log(jnp.array([[[0.5, 0.5]]]))
    q = jnp.log(jnp.array([[[0.9, 0.1]]]))
    expected = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    np.testing.assert_allclose(categorical_kl(p, q), [expected], rtol=1e-5)
    dynamics, representation = balanced_kl_losses(p, q, free_bits=1.0)
    np.testing.assert_allclose(dynamics, [1.0])  # expected ~0.51 is below the free bits
    dynamics, _ = balanced_kl_losses(p, q, free_bits=0.1)
    np.testing.assert_allclose(dynamics, [expected], rtol=1e-5)


def test_kl_balancing_routes_gradients():
    p = jnp.log(jnp.array([[[0.3, 0.7]]]))
    q = jnp.log(jnp.array([[[0.8, 0.2]]]))
    grad_prior = jax.grad(lambda q: balanced_kl_losses(p, q, 0.0)[0].sum())(q)
    grad_post = jax.grad(lambda p: balanced_kl_losses(p, q, 0.0)[0].sum())(p)
    assert jnp.abs(grad_prior).sum() > 0 and jnp.abs(grad_post).sum() == 0
    grad_post = jax.grad(lambda p: balanced_kl_losses(p, q, 0.0)[1].sum())(p)
    assert jnp.abs(grad_post).sum() > 0


def test_one_hot_sample_is_straight_through():
    logits = unimix_logits(jnp.array([1.0, 2.0, 0.5]), 0.01)
    sample = OneHotCategorical(logits).sample(jax.random.PRNGKey(0))
    assert jnp.sum(sample) == pytest.approx(1.0) and jnp.max(sample) == pytest.approx(1.0)
    grad = jax.grad(lambda l: jnp.sum(OneHotCategorical(unimix_logits(l, 0.01)).sample(jax.random.PRNGKey(0)) * jnp.arange(3.0)))(
        jnp.array([1.0, 2.0, 0.5])
    )
    assert jnp.all(jnp.isfinite(grad)) and jnp.abs(grad).sum() > 0


def test_one_hot_samples_follow_the_probabilities_and_never_pick_an_impossible_class():
    probs = np.array([[0.5, 0.0, 0.2, 0.3], [0.0, 0.0, 0.0, 1.0], [0.97, 0.01, 0.01, 0.01]], np.float32)
    with np.errstate(divide="ignore"):
        dist = OneHotCategorical(jnp.log(jnp.asarray(probs)))
    draws = 20_000
    samples = jax.jit(jax.vmap(dist.sample))(jax.random.split(jax.random.PRNGKey(3), draws))  # [draws, 3, 4]
    assert samples.shape == (draws, 3, 4)
    np.testing.assert_array_equal(np.asarray(samples).sum(-1), 1.0)  # one-hot, every draw
    frequencies = np.asarray(samples).mean(0)
    assert np.all(frequencies[probs == 0.0] == 0.0)
    # within 5 standard errors of the binomial frequency of each class
    np.testing.assert_array_less(np.abs(frequencies - probs), 5 * np.sqrt(probs * (1 - probs) / draws) + 1e-6)


def test_bounded_normal_samples_stay_in_bounds_and_log_prob_matches_formula():
    dist = BoundedNormal.from_outputs(jnp.array([[3.0, -3.0, 0.0, 0.0]]), 0.1, 1.0)
    samples = jax.vmap(lambda k: dist.sample(k))(jax.random.split(jax.random.PRNGKey(0), 100))
    assert jnp.all(samples <= 1.0) and jnp.all(samples >= -1.0)
    value = jnp.array([[0.2, -0.1]])
    expected = sum(
        -0.5 * ((v - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
        for v, m, s in zip(value[0], dist.mean[0], dist.std[0])
    )
    np.testing.assert_allclose(dist.log_prob(value), [expected], rtol=1e-5)


def test_twohot_log_prob_reads_two_bins_as_the_full_cross_entropy_does():
    bins = symlog_bins(255)
    logits = jax.random.normal(jax.random.PRNGKey(0), (64, 255))
    target = jnp.concatenate([jnp.array([0.0, -1e9, 1e9, 1.0]), 30 * jax.random.normal(jax.random.PRNGKey(1), (60,))])
    full = lambda l: jnp.sum(twohot(symlog(target), bins) * jax.nn.log_softmax(l, -1), -1)
    np.testing.assert_allclose(TwoHotSymlog(logits, bins).log_prob(target), full(logits), rtol=1e-5, atol=1e-5)
    gathered = jax.grad(lambda l: TwoHotSymlog(l, bins).log_prob(target).sum())(logits)
    np.testing.assert_allclose(gathered, jax.grad(lambda l: full(l).sum())(logits), rtol=1e-5, atol=1e-6)


def test_max_entropy_is_the_uniform_policys_and_bounds_every_other():
    """``max_entropy`` is what ``actor_critic/entropy_fraction`` divides by: a uniform policy sits at it."""
    classes, groups = 8, 3
    uniform = jnp.full((2, groups, classes), -np.log(classes))
    peaked = jax.nn.log_softmax(jnp.arange(groups * classes, dtype=jnp.float32).reshape(groups, classes) / 3.0)
    for dist, one_group in ((GroupedOneHot(uniform), False), (OneHotCategorical(uniform[:, 0]), True)):
        expected = np.log(classes) * (1 if one_group else groups)
        np.testing.assert_allclose(dist.max_entropy(), expected, rtol=1e-6)
        np.testing.assert_allclose(dist.entropy(), expected, rtol=1e-5)
    assert float(GroupedOneHot(peaked).entropy()) < 0.9 * GroupedOneHot(peaked).max_entropy()
    assert float(OneHotCategorical(peaked[0]).entropy()) < 0.9 * OneHotCategorical(peaked[0]).max_entropy()
