"""The RSSM's sequence filter against a plain loop of single filtering steps, with episode resets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from world_models.rssm import RSSM


@pytest.mark.parametrize("backbone, posterior, dynamics_input",
                         [("gru", "state", "joint"), ("s5", "embedding", "joint"), ("gru", "state", "split")])
def test_observe_equals_a_loop_of_obs_steps_with_resets(backbone, posterior, dynamics_input):
    T, B, A, E = 6, 3, 2, 5
    kwargs = {"state_size": 4, "layers": 1, "blocks": 1} if backbone == "s5" else {}
    rssm = RSSM(backbone=backbone, backbone_kwargs=kwargs, deter=8, stoch=3, classes=4, units=16, unimix=0.01,
                posterior=posterior, dynamics_input=dynamics_input)
    rng = np.random.default_rng(0)
    actions = jnp.asarray(rng.normal(size=(T, B, A)), jnp.float32)
    embeds = jnp.asarray(rng.normal(size=(T, B, E)), jnp.float32)
    is_first = jnp.asarray(rng.random((T, B)) < 0.3).at[0].set(True).at[3, 1].set(True)
    key = jax.random.PRNGKey(1)
    # the backbone's initial carry may hold parameters (S5's): create those first, then all of them
    shaped = rssm.apply(rssm.init(jax.random.PRNGKey(0), B, method=RSSM.initial), B, method=RSSM.initial)
    params = rssm.init(jax.random.PRNGKey(0), shaped, actions, embeds, is_first, key)
    state = rssm.apply(params, B, method=RSSM.initial)
    last, states, posterior_logits, prior_logits = rssm.apply(params, state, actions, embeds, is_first, key)
    if posterior == "embedding":
        return _check_prior_on_states(rssm, params, states, prior_logits)
    keys = jax.random.split(key, T)
    loop_state, deters, posteriors, priors = state, [], [], []
    for t in range(T):
        loop_state, (post, prior) = rssm.apply(params, loop_state, actions[t], embeds[t], is_first[t], keys[t],
                                               method=RSSM.obs_step)
        deters.append(loop_state.deter), posteriors.append(post), priors.append(prior)
    np.testing.assert_allclose(states.deter, jnp.stack(deters), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(posterior_logits, jnp.stack(posteriors), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prior_logits, jnp.stack(priors), rtol=1e-5, atol=1e-5)
    # the same one-hot samples; the straight-through estimator (one_hot + p - stop(p)) rounds in the last bit
    np.testing.assert_allclose(last.stoch, loop_state.stoch, rtol=0, atol=1e-6)


def _check_prior_on_states(rssm, params, states, prior_logits):
    """The embedding posterior's priors are the prior head on each step's deterministic state."""
    expected = rssm.apply(params, states.deter, method=RSSM.prior_logits)
    np.testing.assert_allclose(prior_logits, expected, rtol=1e-5, atol=1e-6)


def test_split_dynamics_input_gives_the_action_a_block_of_its_own():
    B, A, units = 4, 1, 16
    rssm = RSSM(backbone="gru", backbone_kwargs={}, deter=8, stoch=3, classes=4, units=units, unimix=0.01,
                posterior="state", dynamics_input="split")
    rng = np.random.default_rng(0)
    stoch = jax.nn.one_hot(jnp.asarray(rng.integers(0, 4, (B, 3))), 4)
    other_stoch = jax.nn.one_hot(jnp.asarray(rng.integers(0, 4, (B, 3))), 4)
    action, other_action = jnp.full((B, A), 0.5), jnp.full((B, A), -0.5)
    params = rssm.init(jax.random.PRNGKey(0), stoch, action, method=RSSM._core_input)
    core_input = lambda s, a: rssm.apply(params, s, a, method=RSSM._core_input)
    base = core_input(stoch, action)
    assert base.shape == (B, 2 * units)
    # the first block reads only the latent, the second only the action
    np.testing.assert_allclose(core_input(stoch, other_action)[:, :units], base[:, :units])
    np.testing.assert_allclose(core_input(other_stoch, action)[:, units:], base[:, units:])
    assert np.abs(np.asarray(core_input(stoch, other_action)[:, units:] - base[:, units:])).max() > 0.1
    # each block is normalised on its own: the action's is as large as the latent's, not one column's share
    for block in (base[:, :units], base[:, units:]):
        assert 0.3 < float(jnp.sqrt(jnp.mean(block ** 2))) < 3.0
    grads = jax.grad(lambda p: jnp.sum(rssm.apply(p, stoch, action, method=RSSM._core_input) ** 2))(params)
    for leaf in jax.tree.leaves(grads["params"]["action_input_net"]):
        assert np.all(np.isfinite(leaf)) and np.abs(np.asarray(leaf)).max() > 0


def test_an_unknown_dynamics_input_is_refused():
    rssm = RSSM(backbone="gru", backbone_kwargs={}, deter=8, stoch=3, classes=4, units=16, unimix=0.01,
                posterior="state", dynamics_input="sideways")
    with pytest.raises(ValueError, match="dynamics_input must be one of"):
        rssm.init(jax.random.PRNGKey(0), 2, method=RSSM.initial)
