"""A top level imagining through level 0 (``hierarchy.top_model: imagined``): no model of its own,
its rewards are level 0's over each segment, its codes reach level 0's actor, it acts at ticks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.hierarchical_agent import HierarchicalAgent
from configs.loader import ConfigError, load_config
from test_hierarchical_agent import ACTIONS, OBS, synthetic_batch
from world_models.rssm import state_features

K = 4


def imagined_config(**overrides):
    settings = {"hierarchy.levels": 2, "hierarchy.top_model": "imagined", "hierarchy.k": [K],
                "hierarchy.abstract_horizon": 2, "hierarchy.novelty": 0.1, "hierarchy.ensemble": 2,
                "hierarchy.disagreement_penalty": 0.1, **overrides}
    return load_config(["debug"], list(settings.items()))


def with_ticks(batch, code_dim):
    """The replay fields of a two-level agent: level 1 ticks every K steps of each episode."""
    steps, _ = batch["is_first"].shape
    episode_step = np.zeros(batch["is_first"].shape, int)
    for t in range(1, steps):
        episode_step[t] = np.where(batch["is_first"][t], 0, episode_step[t - 1] + 1)
    return {**batch, "tick_1": episode_step % K == 0, "policy_acted": np.ones_like(batch["is_first"]),
            "goal_action_1": np.zeros(batch["is_first"].shape + (code_dim,), np.float32)}


@pytest.fixture(scope="module")
def trained():
    agent = HierarchicalAgent.from_config(imagined_config(), OBS, ACTIONS)
    state = agent.init(jax.random.PRNGKey(0))
    batch = with_ticks(synthetic_batch(np.random.default_rng(0)), agent.goal_action_dim)
    state, metrics = agent.train_step(state, batch)
    return agent, jax.device_get(state), {name: float(value) for name, value in metrics.items()}


@pytest.fixture(scope="module")
def perturbed(trained):
    """Level 0's model and actor with random weights of unit scale, so that rewards, continues and
    actions vary strongly with the state and the goal (fresh heads start near constant)."""
    agent, state, _ = trained
    below = state.levels[0]
    keys = iter(jax.random.split(jax.random.PRNGKey(7), 1_000))

    def noisy(tree, scale):
        return jax.tree.map(lambda leaf: leaf + scale * jax.random.normal(next(keys), leaf.shape), tree)

    below = below.replace(world_model=noisy(below.world_model, 0.3),
                          actor_critic=below.actor_critic.replace(actor=noisy(below.actor_critic.actor, 1.0)))
    starts = agent.levels[0].world_model.initial(below.world_model.params, 6)
    starts = starts._replace(deter=jax.random.normal(next(keys), starts.deter.shape))
    return agent, state.levels[1], below, starts


def test_a_train_step_updates_the_top_through_level_zero_with_finite_non_zero_gradients(trained):
    agent, state, metrics = trained
    top = state.levels[1]
    assert agent.levels[1].imagines_below and agent.levels[1].world_model is None
    assert top.world_model.params == {} and top.world_model.opt_state == {}
    counts = agent.parameter_counts(state)
    assert "level1/world_model" not in counts and counts["level1/actor"] > 0 and counts["level0/world_model"] > 0
    for name in ("actor_grad_norm", "critic_grad_norm"):
        value = metrics[f"level1/actor_critic/{name}"]
        assert np.isfinite(value) and value > 0, name
    # the goals it hands down are described (goal.hindsight is 0: none replaced)
    assert {"level1/goal/diversity", "level1/goal/spread_ratio"} <= set(metrics)
    assert "level1/goal/hindsight_fraction" not in metrics
    for name in ("level1/goal/autoencoder_loss", "level1/model/controllability", "level1/imagined/disagreement",
                 "level1/actor_critic/value/novelty", "level0/actor_critic/actor_loss", "level0/ensemble/grad_norm"):
        assert np.isfinite(metrics[name]), name
    assert not any(name.startswith("level1/world_model") for name in metrics)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state))


def hand_segment(agent, top_state, below, start, code, key):
    """One segment the long way: decode the goal, then step level 0's model with its actor, with the
    keys ``ImaginedTop.segment`` splits from ``key``; ``(end, rewards [K, N], continues [K, N])``."""
    top, level0 = agent.levels[1], agent.levels[0]
    decode_key, imagine_key = jax.random.split(key)
    goal = top.goal_autoencoder.decode(top_state.auxiliary["goal_autoencoder"].params, code)
    latent, rewards, continues = start, [], []
    for step_key in jax.random.split(imagine_key, K):
        policy_key, dynamics_key = jax.random.split(step_key)
        action = level0.actor_critic.act(below.actor_critic.actor.params, level0.policy_input(state_features(latent), goal),
                                         policy_key)
        latent = level0.world_model.img_step(below.world_model.params, latent, action, dynamics_key)
        rewards.append(level0.world_model.reward(below.world_model.params, state_features(latent)))
        continues.append(level0.world_model.continue_prob(below.world_model.params, state_features(latent)))
    return latent, np.stack(rewards), np.stack(continues)


def test_the_top_is_paid_level_zero_task_reward_over_each_segment(perturbed):
    agent, top_state, below, starts = perturbed
    top = agent.levels[1]
    code = top.random_action(jax.random.PRNGKey(1), 6)
    imagined = top.imagine(top_state, below, starts, lambda features, key: code, jax.random.PRNGKey(2))
    latent = starts
    for tick, tick_key in enumerate(jax.random.split(jax.random.PRNGKey(2), 2)):
        _, segment_key = jax.random.split(tick_key)
        np.testing.assert_allclose(imagined.features[tick], state_features(latent), rtol=1e-5, atol=1e-6)
        latent, rewards, continues = hand_segment(agent, top_state, below, latent, code, segment_key)
        # each step's reward counts as far as the episode is still going before it
        alive = np.cumprod(np.concatenate([np.ones_like(continues[:1]), continues[:-1]]), 0)
        np.testing.assert_allclose(imagined.rewards[tick], np.sum(alive * rewards, 0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(imagined.continues[tick], np.prod(continues, 0), rtol=1e-4, atol=1e-6)
        assert np.abs(rewards).max() > 1e-2 and continues.min() < 0.99  # not vacuous
    np.testing.assert_allclose(imagined.features[2], state_features(latent), rtol=1e-5, atol=1e-6)


def test_the_top_code_reaches_level_zero_actor(perturbed):
    agent, top_state, below, starts = perturbed
    top = agent.levels[1]
    first, second = (top.random_action(jax.random.PRNGKey(seed), 6) for seed in (3, 4))
    ends = [top.segment(top_state, below, starts, code, jax.random.PRNGKey(5)).end.deter for code in (first, second)]
    same = top.segment(top_state, below, starts, first, jax.random.PRNGKey(5)).end.deter
    np.testing.assert_array_equal(ends[0], same)  # the same code and keys: the same segment
    assert np.mean(np.any(np.abs(ends[0] - ends[1]) > 1e-4, -1)) >= 0.5  # another code: other actions


def test_acting_picks_codes_only_at_ticks_from_level_zero_state(trained):
    agent, state, _ = trained
    envs = 3
    policy_state = agent.initial_policy_state(state, envs)
    previous, episode_step = None, np.zeros(envs, int)
    for t in range(11):
        is_first = np.zeros(envs, bool)
        is_first[[0, 1, 2] if t == 0 else ([1] if t == 6 else [])] = True
        episode_step = np.where(is_first, 0, episode_step + 1)
        obs = {"obs": np.full((envs, 3), 0.1 * t, np.float32)}
        _, policy_state = agent.policy_step(state, policy_state, obs, jnp.asarray(is_first), jax.random.PRNGKey(t))
        ticks = np.asarray(policy_state.ticks[0])
        np.testing.assert_array_equal(ticks, episode_step % K == 0)
        below, top = (np.asarray(latent.deter) for latent in policy_state.latents)
        np.testing.assert_array_equal(top[ticks], below[ticks])  # the top reads level 0's state at its ticks
        if previous is not None:
            changed = np.any(np.asarray(policy_state.actions[1]) != np.asarray(previous.actions[1]), -1)
            assert not np.any(changed & ~ticks), f"the top changed its code between ticks at step {t}"
            np.testing.assert_array_equal(top[~ticks], np.asarray(previous.latents[1].deter)[~ticks])
        previous = policy_state
    returns = agent.imagined_returns(state, policy_state, jax.random.PRNGKey(0))
    assert returns.shape == (2, envs) and np.all(np.isfinite(returns))


@pytest.mark.parametrize("overrides", [{"hierarchy.levels": 3, "hierarchy.k": [2, 2]}, {"goal.space": "direct"},
                                       {"hierarchy.top_model": "abstract"}])
def test_unsupported_combinations_are_refused_naming_the_key(overrides):
    with pytest.raises(ConfigError, match="hierarchy.top_model"):
        imagined_config(**overrides)
