"""The flat agent: ``HierarchicalAgent`` with one level (the debug preset)."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.hierarchical_agent import HierarchicalAgent
from configs.loader import load_config


def random_batch(agent: HierarchicalAgent, length: int = 8, batch: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {k: rng.normal(size=(length, batch) + s).astype(np.float32) for k, s in agent.obs_layout.mlp_shapes.items()}
    out.update({k: rng.integers(0, 255, (length, batch) + s, dtype=np.uint8) for k, s in agent.obs_layout.cnn_shapes.items()})
    out["prev_action"] = np.eye(agent.action_layout.dim, dtype=np.float32)[rng.integers(0, agent.action_layout.dim, (length, batch))]
    out["reward"] = rng.normal(size=(length, batch)).astype(np.float32)
    out["is_first"] = np.zeros((length, batch), bool)
    out["is_first"][0] = True
    out["is_first"][4, 1] = True
    out["is_terminal"] = np.zeros((length, batch), bool)
    out["is_terminal"][3, 1] = True
    return out


@pytest.fixture(scope="module")
def agent_and_state():
    config = load_config(["debug"])
    agent = HierarchicalAgent.from_config(config, gym.spaces.Box(-1, 1, (5,), np.float32), gym.spaces.Discrete(3))
    return agent, agent.init(jax.random.PRNGKey(0))


def fresh(state):
    """train_step donates its input state: give each test its own buffers."""
    return jax.tree.map(jnp.copy, state)


def test_one_train_step_changes_every_network_and_keeps_losses_finite(agent_and_state):
    agent, state = agent_and_state
    state = fresh(state)
    before = jax.tree.map(np.array, state)
    new_state, metrics = agent.train_step(state, random_batch(agent))
    for name, value in metrics.items():
        assert np.isfinite(value), name
    for part in ("world_model", "actor_critic"):
        changed = jax.tree.map(lambda a, b: not np.allclose(a, b), getattr(before.levels[0], part),
                               jax.device_get(getattr(new_state.levels[0], part)))
        assert any(jax.tree.leaves(changed)), part
    assert int(new_state.updates) == 1
    expected = {"world_model/loss", "world_model/loss/reward", "actor_critic/actor_loss", "actor_critic/critic_loss"}
    assert {f"level0/{name}" for name in expected} <= set(metrics)


def test_world_model_gradients_are_finite_and_reach_every_parameter(agent_and_state):
    agent, state = agent_and_state
    # after one step: at init the zero-initialised reward head blocks gradients to its hidden layers
    state, _ = agent.train_step(fresh(state), random_batch(agent))
    batch = random_batch(agent, seed=1)
    level = agent.levels[0]
    grads, _ = jax.grad(level.world_model.loss, has_aux=True)(state.levels[0].world_model.params, batch, jax.random.PRNGKey(1))
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(leaf)), path
        assert np.abs(leaf).sum() > 0, jax.tree_util.keystr(path)


def test_policy_step_gives_one_hot_actions_and_resets_its_state(agent_and_state):
    agent, state = agent_and_state
    state = fresh(state)
    policy_state = agent.initial_policy_state(state, 2)
    obs = {"obs": np.ones((2, 5), np.float32)}
    action, policy_state = agent.policy_step(state, policy_state, obs, np.array([True, True]), jax.random.PRNGKey(0))
    assert action.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(action).sum(-1), 1.0, rtol=1e-5)
    # an episode start forgets the past: same action as from the initial state
    initial = agent.initial_policy_state(state, 2)
    key = jax.random.PRNGKey(5)
    after_reset, _ = agent.policy_step(state, policy_state, obs, np.array([True, True]), key, greedy=True)
    from_initial, _ = agent.policy_step(state, initial, obs, np.array([True, True]), key, greedy=True)
    np.testing.assert_allclose(after_reset, from_initial, atol=1e-6)


def test_the_first_policy_step_of_an_episode_reuses_the_program_of_every_later_one(agent_and_state):
    # Training places the state on a device (committed); an initial carry that was not would make the
    # first call of every evaluation compile policy_step a second time.
    agent, state = agent_and_state
    state = jax.device_put(fresh(state), jax.devices()[0])
    policy_step = jax.jit(agent._policy_step)  # a fresh cache, whatever other tests compiled
    policy_state = agent.initial_policy_state(state, 2)
    obs = {"obs": np.ones((2, 5), np.float32)}
    for step in range(3):
        _, policy_state = policy_step(state, policy_state, obs, np.array([step == 0] * 2), jax.random.PRNGKey(step))
    assert policy_step._cache_size() == 1


def test_continuous_actions_are_bounded():
    config = load_config(["debug"])
    agent = HierarchicalAgent.from_config(config, gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-2, 2, (2,), np.float32))
    state = agent.init(jax.random.PRNGKey(0))
    assert agent.levels[0].actor_critic.actor_grad == "dynamics"
    batch = random_batch(agent)
    batch["prev_action"] = np.random.default_rng(0).uniform(-1, 1, (8, 3, 2)).astype(np.float32)
    state, metrics = agent.train_step(state, batch)
    assert all(np.isfinite(v) for v in metrics.values())
    action, _ = agent.policy_step(state, agent.initial_policy_state(state, 4), {"obs": np.zeros((4, 3), np.float32)},
                                  np.ones(4, bool), jax.random.PRNGKey(0))
    assert np.all(np.abs(np.asarray(action)) <= 1.0)
    env_action = agent.action_layout.to_env(np.asarray(action))
    assert np.all(np.abs(env_action) <= 2.0)


def test_world_model_losses_are_exactly_the_keys_of_the_scale_table(agent_and_state):
    agent, state = agent_and_state
    model = agent.levels[0].world_model
    _, (metrics, _) = model.loss(state.levels[0].world_model.params, random_batch(agent), jax.random.PRNGKey(2))
    losses = {name.removeprefix("world_model/loss/") for name in metrics if name.startswith("world_model/loss/")}
    assert losses == set(model.loss_scales) == set(load_config(["debug"])["world_model"]["loss_scales"])


def test_replayed_value_loss_is_the_first_terms_loss_on_replayed_returns_by_hand():
    from agents.actor_critic import ActorCritic, Replayed, Trajectory
    from agents.returns import lambda_returns, replayed_lambda_returns
    from world_models.distributions import TwoHotSymlog

    settings = {**load_config(["debug"])["agent"], "replay_value": 0.5}
    actor_critic = ActorCritic(3, True, reward_terms=(("task", 1.0), ("novelty", 0.1)), **settings)
    length, batch, features, horizon = 6, 2, 4, settings["horizon"]
    state = actor_critic.init(jax.random.PRNGKey(0), features)
    rng = np.random.default_rng(0)
    starts = jnp.asarray(rng.normal(size=(length * batch, features)), jnp.float32)  # time-major, as Level
    imagined = jnp.asarray(rng.normal(size=(horizon, length * batch, features)), jnp.float32)
    rewards = jnp.asarray(rng.normal(size=(horizon, length * batch, 2)), jnp.float32)

    def rollout(policy, key):
        actions = jnp.stack([policy(f, k) for f, k in zip(jnp.concatenate([starts[None], imagined[:-1]]),
                                                          jax.random.split(key, horizon))])
        return Trajectory(jnp.concatenate([starts[None], imagined]), actions, rewards,
                          jnp.full((horizon, length * batch), 0.9), jnp.ones(length * batch))

    sequence = Replayed(features=starts.reshape(length, batch, features),
                        rewards=jnp.asarray(rng.normal(size=(length, batch)), jnp.float32),
                        terminal=jnp.zeros((length, batch), bool).at[2, 1].set(True),
                        first=jnp.zeros((length, batch), bool).at[0].set(True).at[3, 1].set(True),
                        weights=jnp.ones((length, batch)).at[4, 0].set(0.0))
    update = jax.jit(lambda state, replayed: actor_critic.update(state, rollout, jax.random.PRNGKey(1), replayed))
    _, metrics, trajectory = update(state, sequence)

    # by hand: the imagined lambda-returns of the first term from each start are the bootstrap
    values = actor_critic.value(state.critic.params, trajectory.features)
    discounts = settings["discount"] * trajectory.continues
    imagined_returns = lambda_returns(trajectory.rewards, jnp.broadcast_to(discounts[..., None], rewards.shape),
                                      values, settings["lambda_"])
    boot = imagined_returns[0, :, 0].reshape(length, batch)
    targets, same_episode = replayed_lambda_returns(sequence.rewards, sequence.terminal, sequence.first, boot,
                                                    settings["discount"], settings["lambda_"])
    logits = actor_critic.critic_net.apply({"params": state.critic.params}, sequence.features[:-1])[..., 0, :]
    head = TwoHotSymlog(logits, actor_critic.bins)
    slow = actor_critic.value(state.slow_critic, sequence.features[:-1])[..., 0]
    expected = -head.log_prob(targets) - settings["slow_critic_reg"] * head.log_prob(slow)
    weights = same_episode * sequence.weights[:-1]
    np.testing.assert_allclose(metrics["actor_critic/replay_value_loss"], jnp.mean(weights * expected), rtol=1e-5)
    assert weights[2, 1] == 0.0 and weights[3, 0] == 1.0  # 2 -> 3 ends column 1's episode; the mask counts
    # off: the same step without the replayed sequences has no such loss
    _, plain, _ = update(state, None)
    assert "actor_critic/replay_value_loss" not in plain
    np.testing.assert_allclose(metrics["actor_critic/critic_loss"] - plain["actor_critic/critic_loss"],
                               0.5 * metrics["actor_critic/replay_value_loss"], rtol=1e-4, atol=1e-6)
