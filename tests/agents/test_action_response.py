"""The first action's effect on the imagined state against hand loops, and on the real state against
a linear system whose effects are known in closed form."""

import numpy as np
import pytest


def linear_episodes(rng, transition, effects, discrete: bool, lengths=(60, 45, 70)):
    """Episodes of ``s' = transition @ s + effects @ code(a)``: random actions (continuous in [-1, 1],
    or one-hot), the action taken at step t stored as ``prev_action[t + 1]``."""
    dims, actions = transition.shape[0], effects.shape[1]
    episodes = []
    for length in lengths:
        if discrete:
            taken = np.eye(actions)[rng.integers(0, actions, length)]
        else:
            taken = rng.uniform(-1.0, 1.0, (length, actions))
        states = [rng.normal(size=dims)]
        for t in range(length - 1):
            states.append(transition @ states[-1] + effects @ taken[t])
        prev_action = np.concatenate([np.zeros((1, actions)), taken[:-1]])
        episodes.append({"sources": np.stack(states), "inputs": {"prev_action": prev_action.astype(np.float32)}})
    return episodes


@pytest.mark.parametrize("discrete", [False, True])
def test_real_effects_are_the_first_actions_effect_in_a_linear_system(discrete):
    """In ``s' = M s + B a`` the first action's effect h steps ahead (the later actions held) is
    ``M^(h-1) B``: per unit of each continuous dimension, or, for one-hot actions, column k minus
    column 0."""
    from agents.action_response import effect_names, real_action_effects

    rng = np.random.default_rng(0)
    transition = np.array([[0.9, 0.2], [-0.1, 0.8]])
    effects = rng.normal(size=(2, 3))
    result = real_action_effects(linear_episodes(rng, transition, effects, discrete), horizon=3, discrete=discrete)
    assert sorted(result) == [1, 2, 3]
    for h, fitted in result.items():
        exact = np.linalg.matrix_power(transition, h - 1) @ effects  # [D, A]
        expected = (exact[:, 1:] - exact[:, :1]) if discrete else exact
        np.testing.assert_allclose(fitted["effect"], expected.T, atol=1e-8)  # [E, D]
        assert fitted["r2"] == pytest.approx([1.0, 1.0]) and fitted["rows"] == sum(n - h for n in (60, 45, 70))
        assert min(fitted["own_share"]) > 0.5  # random actions: the first is not explained by the rest
    assert len(effect_names(3, discrete)) == fitted["effect"].shape[0]
    # in a region of states: the same exact effects, from the transitions that start there alone
    episodes = linear_episodes(rng, transition, effects, discrete)
    near = real_action_effects(episodes, horizon=2, discrete=discrete, where=lambda states: states[:, 0] > 0.0)
    exact = transition @ effects
    np.testing.assert_allclose(near[2]["effect"], ((exact[:, 1:] - exact[:, :1]) if discrete else exact).T, atol=1e-8)
    assert near[2]["rows"] == sum(int(np.sum(episode["sources"][:-2, 0] > 0.0)) for episode in episodes)
    assert real_action_effects(episodes, horizon=2, discrete=discrete,
                               where=lambda states: states[:, 0] > 1e9) == {}  # nothing to regress: no distance


def test_own_share_says_when_a_policy_makes_the_action_a_function_of_the_state():
    from agents.action_response import own_share

    rng = np.random.default_rng(1)
    state = rng.normal(size=(200, 2))
    independent = rng.normal(size=200)
    x = np.column_stack([np.ones(200), state, independent])
    assert own_share(x, 3) == pytest.approx(1.0, abs=0.05)
    greedy = np.column_stack([np.ones(200), state, state @ [0.5, -2.0] + 1e-3 * independent])
    assert own_share(greedy, 3) < 1e-4


def test_response_region_reads_an_entry_by_name_and_says_what_is_wrong():
    from scripts.common import UserError
    from scripts.probe_state import response_region

    assert response_region(["[0]", "[1]"], None) is None
    inside = response_region(["[0]", "[1]"], ["[1]", "-0.5", "1"])
    np.testing.assert_array_equal(inside(np.array([[9.0, 0.0], [0.0, 2.0], [0.0, -0.5]])), [True, False, True])
    with pytest.raises(UserError, match=r"its entries are \['\[0\]', '\[1\]'\]"):
        response_region(["[0]", "[1]"], ["cos", "0", "1"])
    with pytest.raises(UserError, match="must be numbers"):
        response_region(["[0]", "[1]"], ["[0]", "top", "1"])


@pytest.mark.parametrize("discrete", [False, True])
def test_imagined_effects_equal_hand_loops_of_each_first_action(discrete):
    """Row ``[t, e, h - 1]`` is the readout of the posterior at t (filtered alone, unpadded) imagined h
    steps with candidate first actions (the same noise for each) and the episode's own later actions,
    contrasted as the module says."""
    import jax

    from agents.action_response import imagined_action_effects, valid_rows
    from world_models.rssm import state_features
    from world_models.world_model import WorldModel

    actions = 3
    model = WorldModel({"position": (2,)}, {}, action_dim=actions, deter=8, stoch=2, classes=2, units=8, layers=1)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    episodes = []
    for length in (6, 4):
        taken = (np.eye(actions)[rng.integers(0, actions, length)] if discrete
                 else rng.uniform(-1.0, 1.0, (length, actions)))
        inputs = {"position": rng.normal(size=(length, 2)).astype(np.float32),
                  "prev_action": taken.astype(np.float32), "is_first": np.arange(length) == 0}
        episodes.append({"inputs": inputs, "sources": np.zeros((length, 2))})
    img_step = jax.jit(model.img_step)
    weights = rng.normal(size=(model.feature_dim, 2))
    predict = lambda features: np.asarray(features) @ weights  # a linear readout, as the state probe's
    key, horizon = jax.random.PRNGKey(3), 3
    effects = imagined_action_effects(model, params, episodes, 1, key, horizon, discrete, predict)
    contrasts = actions - 1 if discrete else actions
    for index, (episode, rows) in enumerate(zip(episodes, effects)):
        length = len(episode["sources"])
        assert rows.shape == (length, contrasts, horizon, 2)
        filter_key = jax.random.fold_in(key, index)
        alone = {name: value[:, None] for name, value in episode["inputs"].items()}
        states = model.observe(params, alone, filter_key)[1]
        for t in range(length - 1):
            step_keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(filter_key, 1), t), horizon)
            taken = episode["inputs"]["prev_action"][t + 1]
            if discrete:
                firsts = list(np.eye(actions))
            else:
                firsts = [np.where(np.arange(actions) == d, end, taken) for d in range(actions) for end in (-1.0, 1.0)]
            readouts = []
            for first in firsts:
                state = jax.tree.map(lambda leaf: leaf[t], states)
                readout = []
                for h in range(1, min(horizon, length - 1 - t) + 1):
                    action = first if h == 1 else episode["inputs"]["prev_action"][t + h]
                    state = img_step(params, state, np.asarray(action, np.float32)[None], step_keys[h - 1])
                    readout.append(predict(state_features(state))[0])
                readouts.append(np.stack(readout))  # [h, D]
            readouts = np.stack(readouts)
            expected = (readouts[1:] - readouts[:1]) if discrete else 0.5 * (readouts[1::2] - readouts[0::2])
            np.testing.assert_allclose(rows[t, :, :expected.shape[1]], expected, rtol=1e-4, atol=1e-4)
            assert np.abs(expected).max() > 1e-3  # the first action matters to this random model
    assert valid_rows(effects, 2).shape == (6 - 2 + 4 - 2, contrasts, 2)
    with pytest.raises(ValueError, match="at least 1"):
        imagined_action_effects(model, params, episodes, 1, key, 0, discrete, predict)
