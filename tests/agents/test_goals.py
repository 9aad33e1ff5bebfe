"""Goals worth reaching: the goal autoencoder covers what it describes, the worker's reward ranks
states by their distance to the goal, and the diagnostics compare like with like."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.diagnostics import _LevelMeter
from agents.goals import GoalAutoencoder, code_perplexity, goal_diversity, one_step_similarities, reach_threshold
from agents.hierarchical_agent import HierarchicalAgent
from configs.bounds import BoundsError
from configs.loader import load_config
from test_hierarchical_agent import ACTIONS, OBS, synthetic_batch


def test_goal_autoencoder_codes_cover_the_states_it_describes():
    """64 well separated states: with the defaults (8 x 8 codes, KL held at 1 nat per code) the
    decoded codes spread over the data instead of collapsing onto its mean, as 4 x 4 codes with a
    fixed KL weight of 1 did (spread ratio 0.15 there, measured)."""
    config = load_config()["goal"]
    rng = np.random.default_rng(0)
    centres = np.tanh(1.5 * rng.normal(size=(64, 16))).astype(np.float32)
    autoencoder = GoalAutoencoder(16, config["codes"], config["classes"], 64, 1, config["kl"], 1e-3, 100.0,
                                  kl_target=config["kl_target"])
    state = autoencoder.init(jax.random.PRNGKey(0))
    update = jax.jit(autoencoder.update)
    for step in range(300):
        batch = centres[rng.integers(0, 64, 256)] + 0.02 * rng.normal(size=(256, 16)).astype(np.float32)
        state, metrics = update(state, jnp.asarray(batch), jnp.ones(256), jax.random.PRNGKey(step))
    params = state.params
    assert float(metrics["goal/autoencoder_kl_weight"]) < config["kl"]  # tuned down towards its target
    codes = jnp.argmax(autoencoder.code_logits(params, jnp.asarray(centres)), -1)
    decoded = autoencoder.decode(params, jax.nn.one_hot(codes, config["classes"]).reshape(64, -1))
    ones = jnp.ones(64)
    assert float(goal_diversity(decoded, ones) / goal_diversity(jnp.asarray(centres), ones)) > 0.5
    assert float(code_perplexity(codes, ones, config["classes"])) > 30


def test_code_perplexity_counts_whole_codes_in_use():
    codes = jnp.array([[0, 1], [0, 1], [1, 0], [1, 1]])
    assert float(code_perplexity(codes, jnp.ones(4), 2)) == pytest.approx(np.exp(-(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))))
    assert float(code_perplexity(codes, jnp.array([1.0, 1.0, 0.0, 0.0]), 2)) == pytest.approx(1.0)


def grid_features(level, deter_size, cells, rng):
    """Latent features of a toy grid: a smooth deterministic state of the cell (Fourier features
    over about 5 cells, the same for every ``rng``) beside a one-hot sample drawn from ``rng``."""
    frequencies = np.random.default_rng(0).normal(size=(2, deter_size // 2)) / 5.0
    phases = cells @ frequencies
    deter = np.concatenate([np.cos(phases), np.sin(phases)], -1)
    stoch_size = level.world_model.feature_dim - deter_size
    classes = 4
    stoch = np.eye(classes)[rng.integers(0, classes, (len(cells), stoch_size // classes))].reshape(len(cells), -1)
    return np.concatenate([deter, stoch], -1).astype(np.float32)


def spearman(a, b):
    rank = lambda x: np.argsort(np.argsort(x))
    return np.corrcoef(rank(a), rank(b))[0, 1]


def test_worker_reward_on_the_deterministic_state_ranks_cells_and_ignores_the_sample():
    """Toy grid states rewarded on the deterministic state (``goal.features: deter``, the default)
    rank cells by their distance to the goal, and a fresh stochastic sample of the same states
    changes no reward; on all features (``full``, the old reward) the sample moves every reward."""
    cells = np.stack(np.meshgrid(np.arange(11), np.arange(11)), -1).reshape(-1, 2).astype(np.float64)
    goal_cell = 60  # the centre
    closeness = -np.linalg.norm(cells - cells[goal_cell], axis=-1)
    for features in ("deter", "full"):
        config = load_config(["debug"], [("hierarchy.levels", 2), ("goal.features", features)])
        worker = HierarchicalAgent.from_config(config, OBS, ACTIONS).levels[0]
        deter = config["world_model"]["deter"]
        states, resampled = (grid_features(worker, deter, cells, np.random.default_rng(seed)) for seed in (1, 2))
        resampled[:, :deter] = states[:, :deter]
        goal = jnp.asarray(states[goal_cell, : worker.goal_size])
        reward, reward_resampled = (np.asarray(worker.reward(jnp.asarray(x), goal, jnp.zeros(len(cells))))[:, 0]
                                    for x in (states, resampled))
        if features == "deter":
            assert worker.goal_size == deter
            assert spearman(reward, closeness) > 0.8
            np.testing.assert_array_equal(reward, reward_resampled)
        else:
            assert np.mean(reward != reward_resampled) > 0.5  # a resample repeats some one-hots


def test_a_held_terminal_goal_is_worth_entering_where_one_paid_once_is_worth_hovering_beside():
    """A worker next to its goal, which is a terminal state (the rewarded cell of a maze that ends the
    episode): entering pays the goal's similarity 1 and ends the trajectory; staying beside it pays
    0.9 at every step. Paid once (``goal.terminal: once``), hovering returns more; held, entering does,
    as it would for a goal the worker could stay in."""
    returns = {}
    for terminal in ("once", "held"):
        config = load_config(["debug"], [("hierarchy.levels", 2), ("goal.terminal", terminal)])
        worker = HierarchicalAgent.from_config(config, OBS, ACTIONS).levels[0]
        discount, horizon = worker.actor_critic.discount, 15
        goal = jnp.ones(worker.goal_size)
        beside = jnp.concatenate([0.9 * goal, jnp.zeros(worker.world_model.feature_dim - worker.goal_size)])
        at_goal = beside.at[: worker.goal_size].set(goal)
        paths = {"enter": (jnp.stack([at_goal] * horizon), jnp.zeros(horizon)),  # terminal at once: nothing after
                 "hover": (jnp.stack([beside] * horizon), jnp.ones(horizon))}
        for name, (features, continues) in paths.items():
            reward = worker.reward(features, goal, jnp.zeros(horizon), continues)[:, 0]
            # the discounted return, bootstrapped with the value of staying beside the goal for good
            alive = jnp.cumprod(jnp.concatenate([jnp.ones(1), continues[:-1]]))
            bootstrap = continues[-1] * discount**horizon * 0.9 / (1 - discount)
            returns[terminal, name] = float(jnp.sum(alive * discount ** jnp.arange(horizon) * reward) + bootstrap)
        np.testing.assert_allclose(worker.reward(at_goal[None], goal, jnp.zeros(1), jnp.ones(1))[0, 0], 1.0, rtol=1e-6)
        # the continue head's doubt about a state that goes on does not scale its reward
        doubted = worker.reward(jnp.stack([beside] * 3), goal, jnp.zeros(3), jnp.array([0.99, 0.9, 0.6]))[:, 0]
        np.testing.assert_allclose(doubted, 0.9, rtol=1e-5)
    assert returns["once", "enter"] == pytest.approx(1.0)
    assert returns["once", "hover"] > 10 * returns["once", "enter"]
    assert returns["held", "enter"] == pytest.approx(1 / (1 - discount), rel=1e-5)
    assert returns["held", "enter"] > returns["held", "hover"]
    assert returns["held", "hover"] == pytest.approx(returns["once", "hover"])


def test_exploitation_windows_below_the_top_open_only_with_a_new_goal():
    """Level 0 under a goal held for 4 steps: its windows start at the level above's ticks, so each
    compares one goal's imagined return with the same goal's real return."""
    level = types.SimpleNamespace(index=0, top=False, goal_size=1,
                                  actor_critic=types.SimpleNamespace(horizon=4, discount=1.0),
                                  weighted_reward=lambda features, goal, task, continues=None: np.asarray(task, float))
    meter = _LevelMeter(level, num_envs=1, env_discount=1.0)
    for t in range(13):
        record = {"is_first": np.array([t == 0]), "is_last": np.array([False]), "is_terminal": np.array([False]),
                  "reward": np.array([float(t)])}
        meter.step(record, ticks=np.array([True]), opens=np.array([t % 4 == 0]), features=np.zeros((1, 1)),
                   goal=np.zeros((1, 1)), imagined=np.array([100.0 + t]))
    pairs = meter.trackers[0].pairs
    assert [imagined for imagined, _ in pairs] == [100.0, 104.0, 108.0]  # windows only at ticks 0, 4, 8
    assert [real for _, real in pairs] == [1 + 2 + 3 + 4, 5 + 6 + 7 + 8, 9 + 10 + 11 + 12]


def test_reach_threshold_is_the_setting_or_the_median_one_step_similarity():
    # [T=3, B=2, F=2]; env 1 starts a new episode at t = 2, so its last pair does not count
    features = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 2.0]], [[0.0, 1.0], [3.0, 0.0]]])
    is_first = np.array([[True, True], [False, False], [False, True]])
    # pairs: env 0 (1,0)->(1,0): 1, (1,0)->(0,1): 0; env 1 (0,1)->(0,2): 2 / 4
    np.testing.assert_allclose(np.sort(one_step_similarities(features, is_first)), [0.0, 0.5, 1.0])
    assert reach_threshold("auto", [0.0, 0.5, 1.0]) == 0.5
    assert reach_threshold(0.9, [0.0]) == 0.9
    assert reach_threshold("auto", []) is None


def test_the_novelty_predictor_learns_what_the_autoencoder_measures_after_its_step():
    """``update_auxiliaries``: the autoencoder steps first; the predictor's targets are the updated
    autoencoder's novelty of the goal features it is given, and it learns them."""
    from agents.auxiliaries import update_auxiliaries
    from agents.goals import NoveltyPredictor

    rng = np.random.default_rng(1)
    autoencoder = GoalAutoencoder(4, 2, 4, 32, 1, 1.0, 1e-3, 100.0)
    predictor = NoveltyPredictor(6, 32, 1, 3e-3, 100.0)
    parts = {"novelty_autoencoder": autoencoder, "novelty_predictor": predictor}
    states = {"novelty_autoencoder": autoencoder.init(jax.random.PRNGKey(0)),
              "novelty_predictor": predictor.init(jax.random.PRNGKey(1))}
    own = jnp.asarray(rng.normal(size=(5, 3, 6)), jnp.float32)  # [T, B, F]; its first 4 entries are goal features
    batch = {"is_first": jnp.zeros((5, 3), bool)}
    examples = (own, own[..., :4], jnp.ones((5, 3)))
    step = jax.jit(lambda states, key: update_auxiliaries(parts, states, batch, None, (own, jnp.ones((5, 3))), 4,
                                                          key, examples))
    first, metrics = step(states, jax.random.PRNGKey(2))
    measured = autoencoder.novelty(first["novelty_autoencoder"].params, own[..., :4])
    np.testing.assert_allclose(metrics["novelty/measured"], measured.mean(), rtol=1e-5)
    for update in range(300):  # the autoencoder keeps learning, so the targets move; the predictor follows
        states, metrics = step(states if update else first, jax.random.PRNGKey(3 + update))
    measured = autoencoder.novelty(states["novelty_autoencoder"].params, own[..., :4])
    predicted = predictor.predict(states["novelty_predictor"].params, own)
    assert float(jnp.mean(jnp.abs(predicted - measured))) < 0.2 * float(jnp.mean(measured))


@pytest.mark.parametrize("levels, top_model", [(1, "stacked"), (2, "stacked"), (2, "imagined")])
def test_the_novelty_term_reads_the_predictor_trained_on_what_each_top_really_observed(levels, top_model):
    """With ``novelty_reward: predicted`` the top's novelty term is its predictor's estimate; the
    predictor learns from the top's own features, with targets from the state they stand for: at
    level 0 the state itself, above it the level below's state it observed (not its model's decoding)."""
    config = load_config(["debug"], [("hierarchy.levels", levels), ("hierarchy.top_model", top_model),
                                     ("hierarchy.novelty", 0.1), ("hierarchy.novelty_reward", "predicted")])
    agent = HierarchicalAgent.from_config(config, OBS, ACTIONS)
    top = agent.levels[-1]
    state = agent.init(jax.random.PRNGKey(0)).levels[-1]
    width = agent.levels[0].world_model.feature_dim if top.imagines_below else top.world_model.feature_dim
    features = jnp.asarray(np.random.default_rng(2).normal(size=(4, 2, width)), jnp.float32)
    np.testing.assert_allclose(top.novelty(state, features), top.auxiliaries["novelty_predictor"].predict(
        state.auxiliary["novelty_predictor"].params, features))
    if levels == 1:
        posterior = agent.levels[0].world_model.initial(state.world_model.params, 2)
        posterior = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (4,) + leaf.shape), posterior)
        own, goal_features, mask = top.novelty_examples({}, posterior)
        np.testing.assert_array_equal(goal_features, own[..., :top.goal_size])
    else:
        observed = jnp.asarray(np.random.default_rng(3).normal(size=(4, 2, agent.levels[0].world_model.feature_dim)),
                               jnp.float32)
        batch = {"features": observed, "mask": jnp.ones((4, 2))}
        posterior = None if top.imagines_below else top.world_model.initial(state.world_model.params, 2)
        if posterior is not None:
            posterior = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (4,) + leaf.shape), posterior)
        own, goal_features, mask = top.novelty_examples(batch, posterior)
        np.testing.assert_array_equal(goal_features, observed[..., :top.lower_goal_size])
        assert own.shape[-1] == width
        if top.imagines_below:
            np.testing.assert_array_equal(own, observed)


def test_hindsight_goals_are_the_levels_own_later_states_within_the_episode():
    """Each replaced goal is the goal features of the same column's state 1..K steps later in the same
    episode (checked by a loop over the steps); the others keep the goal from above; about ``share``
    of the steps whose K-step future is inside the sequence and the episode are replaced."""
    from agents.goals import hindsight_goals

    length, columns, goal_size, horizon, share = 40, 6, 3, 4, 0.5
    rng = np.random.default_rng(0)
    features = rng.normal(size=(length, columns, goal_size + 2)).astype(np.float32)
    is_first = rng.random((length, columns)) < 0.1
    is_first[0] = True
    from_above = rng.normal(size=(length, columns, goal_size)).astype(np.float32)
    goals, replaced = (np.asarray(value) for value in hindsight_goals(
        jnp.asarray(from_above), jnp.asarray(features), jnp.asarray(is_first), share, horizon, jax.random.PRNGKey(3)))
    assert goals.shape == from_above.shape
    expected = 0.0
    for t in range(length):
        for b in range(columns):
            future = [t + k for k in range(1, horizon + 1) if t + k < length and not is_first[t + 1:t + k + 1, b].any()]
            expected += share * len(future) / horizon
            if replaced[t, b]:
                assert any(np.array_equal(goals[t, b], features[later, b, :goal_size]) for later in future), (t, b)
            else:
                np.testing.assert_array_equal(goals[t, b], from_above[t, b])
    assert abs(replaced.sum() - expected) < 4 * np.sqrt(expected)  # share x the chance that k is usable


def test_hindsight_goals_lie_up_to_hindsight_reach_periods_of_the_level_above_ahead():
    def horizons(*overrides):
        config = load_config(["debug"], [("hierarchy.levels", 3), ("hierarchy.k", [2, 3]), *overrides])
        agent = HierarchicalAgent.from_config(config, OBS, ACTIONS)
        return [agent.hindsight_horizon(index) for index in (1, 2)]

    assert horizons() == [2, 3]  # one period of the level above, in steps of the level below
    assert horizons(("goal.hindsight_reach", 4)) == [8, 12]
    with pytest.raises(BoundsError, match="goal.hindsight_reach"):
        horizons(("goal.hindsight_reach", 0))


@pytest.mark.parametrize("top_model", ["stacked", "imagined"])
def test_both_tops_train_with_hindsight_goals_and_the_replayed_value_loss(top_model):
    """One train step each (compiling is the cost): the share of hindsight goals is reported, and
    ``agent.replay_value`` reaches the top's critic, which earns the task reward, and not level 0's."""
    from test_imagined_top import K, with_ticks

    config = load_config(["debug"], [("hierarchy.levels", 2), ("hierarchy.k", [K]), ("hierarchy.top_model", top_model),
                                     ("goal.hindsight", 0.5), ("agent.replay_value", 0.3)])
    agent = HierarchicalAgent.from_config(config, OBS, ACTIONS)
    state = agent.init(jax.random.PRNGKey(0))
    state, metrics = agent.train_step(state, with_ticks(synthetic_batch(np.random.default_rng(0)), agent.goal_action_dim))
    assert 0.1 < float(metrics["level1/goal/hindsight_fraction"]) < 0.6
    assert {"level1/goal/diversity", "level1/goal/spread_ratio", "level1/goal/governed_fraction"} <= set(metrics)
    assert float(metrics["level1/actor_critic/replay_value_loss"]) > 0
    assert "level0/actor_critic/replay_value_loss" not in metrics
    assert all(np.isfinite(float(value)) for value in jax.tree.leaves(metrics))
