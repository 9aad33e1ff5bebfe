"""The hierarchical agent: one level is the flat agent; clocks, goals and goal rewards."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.goals import goal_similarity
from agents.build_levels import resolve_backbones, resolve_ks
from agents.hierarchical_agent import HierarchicalAgent
from configs.loader import load_config
from reference_dreamer import DreamerAgent
from world_models.rssm import state_features

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = gym.spaces.Discrete(2)


def synthetic_batch(rng, steps=16, batch=4, action_dim=2):
    is_first = rng.random((steps, batch)) < 0.1
    is_first[0] = True
    return {
        "obs": rng.normal(size=(steps, batch, 3)).astype(np.float32),
        "prev_action": np.eye(action_dim, dtype=np.float32)[rng.integers(0, action_dim, (steps, batch))] * ~is_first[..., None],
        "reward": rng.normal(size=(steps, batch)).astype(np.float32) * ~is_first,
        "is_first": is_first,
        "is_terminal": np.roll(is_first, -1, 0) & (rng.random((steps, batch)) < 0.5),
    }


def test_one_level_reproduces_the_flat_agent():
    config = load_config(["debug"])
    flat = DreamerAgent.from_config(config, OBS, ACTIONS)
    stacked = HierarchicalAgent.from_config(config, OBS, ACTIONS)
    flat_state, stacked_state = flat.init(jax.random.PRNGKey(3)), stacked.init(jax.random.PRNGKey(3))
    rng = np.random.default_rng(0)
    for _ in range(2):
        batch = synthetic_batch(rng)
        flat_state, flat_metrics = flat.train_step(flat_state, batch)
        stacked_state, stacked_metrics = stacked.train_step(stacked_state, batch)
    level = stacked_state.levels[0]
    pairs = [
        (flat_state.world_model, level.world_model.params),
        (flat_state.actor_critic.actor, level.actor_critic.actor),
        (flat_state.actor_critic.critic, level.actor_critic.critic),
        (flat_state.actor_critic.slow_critic, level.actor_critic.slow_critic),
    ]
    for expected, actual in pairs:
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), expected, actual)
    assert flat_metrics["world_model/loss"] == pytest.approx(float(stacked_metrics["level0/world_model/loss"]), rel=1e-5)
    assert stacked.replay_fields() == {}


@pytest.mark.parametrize("space", ["autoencoder", "direct"])
def test_each_level_changes_its_goal_exactly_every_k1_to_kl_steps(space):
    config = load_config(["debug"], [("hierarchy.levels", 3), ("hierarchy.k", [2, 3]), ("goal.space", space)])
    agent = HierarchicalAgent.from_config(config, OBS, ACTIONS)
    assert [spec.period for spec in agent.levels] == [1, 2, 6]
    state = agent.init(jax.random.PRNGKey(0))
    envs = 3
    policy_state = agent.initial_policy_state(state, envs)
    starts = {0: [0, 0, 0], 9: [0], 14: [2], 20: [1]}  # step -> envs whose episode starts there
    episode_step = np.zeros(envs, int)
    previous = None
    for t in range(30):
        is_first = np.zeros(envs, bool)
        is_first[starts.get(t, [])] = True
        episode_step = np.where(is_first, 0, episode_step + 1)
        step = agent.prefill_step if t < 8 else agent.policy_step  # the clock runs in prefill too
        if t < 8:
            policy_state = step(policy_state, jnp.asarray(is_first), jax.random.PRNGKey(t))
        else:
            obs = {"obs": np.full((envs, 3), 0.1 * t, np.float32)}
            _, policy_state = step(state, policy_state, obs, jnp.asarray(is_first), jax.random.PRNGKey(t))
        for level, period in ((1, 2), (2, 6)):
            ticks = np.asarray(policy_state.ticks[level - 1])
            np.testing.assert_array_equal(ticks, episode_step % period == 0)
            if previous is not None:
                changed = np.any(np.asarray(policy_state.actions[level]) != np.asarray(previous.actions[level]), -1)
                assert not np.any(changed & ~ticks), f"level {level} changed its action between ticks at step {t}"
                if t >= 9:  # acting: the goal handed down changes only at ticks too
                    goal_changed = np.any(np.asarray(policy_state.goals[level - 1]) != np.asarray(previous.goals[level - 1]), -1)
                    assert not np.any(goal_changed & ~ticks)
                    assert np.all(goal_changed[ticks])
        extras = agent.replay_extras(policy_state)
        assert set(extras) == {"policy_acted", "tick_1", "goal_action_1", "tick_2", "goal_action_2"}
        assert np.all(extras["policy_acted"] == (t >= 8))
        previous = policy_state


def test_goal_reward_peaks_when_the_state_equals_the_goal():
    goal = jax.random.normal(jax.random.PRNGKey(0), (16,))
    assert float(goal_similarity(goal, goal)) == pytest.approx(1.0)
    others = goal + 0.3 * jax.random.normal(jax.random.PRNGKey(1), (256, 16))
    assert float(goal_similarity(others, goal).max()) < 1.0
    for scale in (0.5, 2.0):  # the right direction with the wrong length is not the goal
        assert float(goal_similarity(scale * goal, goal)) == pytest.approx(min(scale, 1 / scale))
    gradient = jax.grad(lambda s: goal_similarity(s, goal))(goal + 0.05)
    assert np.all(np.isfinite(gradient)) and np.linalg.norm(gradient) > 0


def test_flat_agent_with_novelty_learns_an_autoencoder_of_its_states_and_a_second_critic():
    """Arm B of the hierarchy benchmark: the flat agent with the top level's novelty term, measured
    by the autoencoder on every state (``novelty_reward: measured``)."""
    config = load_config(["debug"], [("hierarchy.novelty", 0.1), ("hierarchy.novelty_reward", "measured")])
    agent = HierarchicalAgent.from_config(config, OBS, ACTIONS)
    level = agent.levels[0]
    assert level.actor_critic.term_names == ("task", "novelty") and "novelty_autoencoder" in level.auxiliaries
    state = agent.init(jax.random.PRNGKey(0))
    state, metrics = agent.train_step(state, synthetic_batch(np.random.default_rng(0)))
    for name in ("novelty/autoencoder_loss", "actor_critic/value/novelty", "actor_critic/imagined_reward/novelty"):
        assert np.isfinite(float(metrics[f"level0/{name}"])), name
    assert float(metrics["level0/actor_critic/imagined_reward/novelty"]) > 0
    assert np.isfinite(float(metrics["level0/actor_critic/replayed_reward/novelty"]))
    # the replayed novelty is the autoencoder's error on the start states' goal features, weighted
    level_state = state.levels[0]
    starts = level.world_model.initial(level_state.world_model.params, 6)
    starts = starts._replace(deter=jax.random.normal(jax.random.PRNGKey(1), starts.deter.shape))
    weights = jnp.array([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    features = state_features(starts)[:, :level.goal_size]
    per_state = level.auxiliaries["novelty_autoencoder"].novelty(level_state.auxiliary["novelty_autoencoder"].params,
                                                                  features)
    measured = level.replayed_novelty(level_state, starts, weights)["actor_critic/replayed_reward/novelty"]
    assert float(measured) == pytest.approx(float(per_state[weights > 0].mean()), rel=1e-5)
    assert float(per_state[weights > 0].mean()) != pytest.approx(float(per_state.mean()), rel=1e-3)


def test_per_level_discount_entropy_learning_rate_and_reward_terms():
    config = load_config(["debug"], [("hierarchy.levels", 3), ("hierarchy.k", [2, 4]), ("hierarchy.discount", [0.9, 0.99]),
                                     ("hierarchy.entropy", [1e-3, 1e-2, 1e-1]), ("hierarchy.actor_lr", [1e-4, 2e-4, 1e-3]),
                                     ("goal.task_reward_scale", 0.5)])
    levels = HierarchicalAgent.from_config(config, OBS, ACTIONS).levels
    assert [level.actor_critic.discount for level in levels] == [config["agent"]["discount"], 0.9, 0.99]
    assert [level.actor_critic.entropy for level in levels] == [1e-3, 1e-2, 1e-1]
    assert [level.actor_critic.actor_lr for level in levels] == [1e-4, 2e-4, 1e-3]
    assert [level.actor_critic.term_names for level in levels] == [("goal", "task"), ("goal", "task"), ("task",)]
    empty = load_config(["debug"], [("hierarchy.levels", 2), ("hierarchy.discount", [])])
    top = HierarchicalAgent.from_config(empty, OBS, ACTIONS).levels[1]
    assert top.actor_critic.discount == pytest.approx(empty["agent"]["discount"] ** 8)
    assert top.actor_critic.actor_lr == empty["agent"]["actor_lr"]


def test_level_settings_are_checked_with_clear_messages():
    assert resolve_ks(3, [4]) == [4, 4]
    assert resolve_ks(1, [8]) == []
    with pytest.raises(ValueError, match="one factor >= 1 per level"):
        resolve_ks(3, [4, 4, 4])
    assert resolve_backbones(2, [], "gru") == ["gru", "gru"]
    with pytest.raises(ValueError, match="one backbone per level"):
        resolve_backbones(3, ["gru", "s5"], "gru")


def test_from_config_returns_the_agent_built_for_equal_inputs_and_only_for_those():
    """Equal configs and spaces (new objects each time) give the agent built before, with its compiled
    programs; any difference, even one an array's repr would elide, builds another."""
    import agents.hierarchical_agent as module

    def build(config=None, observations=OBS, actions=ACTIONS):
        return HierarchicalAgent.from_config(config or load_config(["debug"]), observations, actions)

    first = build()
    assert build(load_config(["debug"]), gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.Discrete(2)) is first
    assert build(load_config(["debug"], ["agent.actor_lr=0.001"])) is not first
    assert build(actions=gym.spaces.Discrete(3)) is not first

    def box(high_at_1000):  # repr of the bounds prints "1., 1., 1., ..., 1., 1., 1." for every value here
        high = np.ones(2000, np.float32)
        high[1000] = high_at_1000
        return gym.spaces.Box(-high, high)

    assert build(actions=box(2.0)) is not build(actions=box(1.0))
    assert build(actions=box(2.0)) is build(actions=box(2.0))
    assert len({module._identity(1), module._identity(1.0), module._identity(True)}) == 3

    for lr in range(module.KEEP_BUILT_AGENTS):  # pushes the first out: memory stays bounded
        build(load_config(["debug"], [f"agent.actor_lr={lr + 2}e-3"]))
    assert len(module._BUILT_AGENTS) == module.KEEP_BUILT_AGENTS
    assert build() is not first


def test_the_tops_value_before_a_reward_is_its_critic_at_the_step_before_each_rewarded_one():
    """Rewards at (t=2, b=0) and (t=1, b=1); the second follows an episode start, so only the state
    at (t=1, b=0) counts: the critic's task value there, and the reward paid after it."""
    config = load_config(["debug"])
    agent = HierarchicalAgent.from_config(config, OBS, ACTIONS)
    level, state = agent.levels[0], agent.init(jax.random.PRNGKey(0)).levels[0]
    posterior = level.world_model.initial(state.world_model.params, 2)
    posterior = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (4,) + leaf.shape), posterior)
    posterior = posterior._replace(deter=jax.random.normal(jax.random.PRNGKey(1), posterior.deter.shape))
    book = {"reward": jnp.array([[0.0, 0.0], [0.0, 3.0], [2.0, 0.0], [0.0, 0.0]]),
            "is_first": jnp.array([[True, True], [False, True], [False, False], [False, False]]),
            "mask": jnp.ones((4, 2))}
    metrics = level.value_before_reward(state, posterior, book)
    values = level.actor_critic.value(state.actor_critic.critic.params, state_features(posterior))[..., 0]
    np.testing.assert_allclose(metrics["actor_critic/value_before_reward"], values[1, 0], rtol=1e-6)
    assert float(metrics["actor_critic/value_before_reward#weight"]) == 1.0
    assert float(metrics["actor_critic/reward_after"]) == 2.0
