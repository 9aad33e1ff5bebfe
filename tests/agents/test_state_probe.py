"""The regression of ``agents.state_probe`` against independent references (the whole probe, as
``scripts.probe_state`` and as an evaluation metric, on runs trained from events: tests/scripts/test_train)."""

import numpy as np
import pytest

from agents.state_probe import PENALTIES, flat_entries, ridge_fit, ridge_probe, split_probe


def test_ridge_fit_without_penalty_is_least_squares():
    rng = np.random.default_rng(0)
    features, targets = rng.normal(size=(50, 6)), rng.normal(size=(50, 2))
    design = np.concatenate([features, np.ones((50, 1))], 1)
    weights, *_ = np.linalg.lstsq(design, targets, rcond=None)
    rows = rng.normal(size=(7, 6))
    np.testing.assert_allclose(ridge_fit(features, targets, 0.0)(rows), np.concatenate([rows, np.ones((7, 1))], 1) @ weights,
                               rtol=1e-8, atol=1e-8)


def test_probe_recovers_a_linear_state_and_not_noise():
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(3, 20))
    episodes = []
    for _ in range(8):
        state = rng.normal(size=(60, 3))
        features = state @ mixing + 0.01 * rng.normal(size=(60, 20))  # the state, linearly mixed into 20 features
        targets = np.concatenate([state[:, :2], rng.normal(size=(60, 1)), np.ones((60, 1))], 1)
        episodes.append((features, targets))
    features, targets = [f for f, _ in episodes], [t for _, t in episodes]
    result = ridge_probe(features[0::2], targets[0::2], features[1::2], targets[1::2])
    recovered, noise, constant = result["r2"][:2], result["r2"][2], result["r2"][3]
    assert min(recovered) > 0.99
    assert noise < 0.1  # held-out episodes: a fit to noise does not carry over
    assert constant is None  # an entry that does not vary has no R^2
    assert result["penalty"] in PENALTIES
    test_targets = np.concatenate(targets[1::2])
    assert result["predictions"].shape == test_targets.shape  # one row per test step, test episodes in order
    np.testing.assert_allclose(result["predictions"][:, :2], test_targets[:, :2], atol=0.05)


def test_flat_entries_name_every_entry_of_arrays_and_dicts():
    values, names = flat_entries(np.arange(4.0).reshape(2, 2))
    assert names == ["[0]", "[1]", "[2]", "[3]"] and values.tolist() == [0, 1, 2, 3]
    values, names = flat_entries({"velocity": np.array([5.0]), "position": np.array([1.0, 2.0])})
    assert names == ["position[0]", "position[1]", "velocity[0]"] and values.tolist() == [1, 2, 5]
    values, names = flat_entries({"arm": {"angle": np.array([0.5])}})
    assert names == ["arm.angle[0]"] and values.tolist() == [0.5]


def test_probe_needs_four_episodes():
    with pytest.raises(ValueError, match="at least 4"):
        split_probe([np.zeros((2, 3))] * 3, [{"sources": np.zeros((2, 1))}] * 3)


def test_latent_features_of_padded_batches_equal_each_episode_filtered_alone():
    """Episodes of unequal length, padded into shared batches, give the features ``WorldModel.observe``
    gives each of them alone and unpadded (the posterior is sampled: one key, so with the same noise)."""
    import jax

    from agents.state_probe import latent_features
    from world_models.rssm import state_features
    from world_models.world_model import WorldModel

    model = WorldModel({"position": (2,)}, {}, action_dim=2, deter=8, stoch=2, classes=2, units=8, layers=1)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    episodes = []
    for length in (5, 3, 7):
        inputs = {"position": rng.normal(size=(length, 2)).astype(np.float32),
                  "prev_action": np.eye(2, dtype=np.float32)[rng.integers(0, 2, length)],
                  "is_first": np.arange(length) == 0}
        episodes.append({"inputs": inputs, "sources": np.zeros((length, 1))})
    key = jax.random.PRNGKey(3)
    features = latent_features(model, params, episodes, batch=1, key=key)  # one episode per batch, padded to 16
    for start, (episode, feature) in enumerate(zip(episodes, features)):
        alone = {name: value[:, None] for name, value in episode["inputs"].items()}
        expected = state_features(model.observe(params, alone, jax.random.fold_in(key, start))[1])[:, 0]
        assert feature.shape == expected.shape
        np.testing.assert_allclose(feature, expected, rtol=1e-5, atol=1e-5)
    deter = latent_features(model, params, episodes, batch=1, key=key, kind="deter")
    stoch = latent_features(model, params, episodes, batch=1, key=key, kind="stoch")
    for feature, deter_part, stoch_part in zip(features, deter, stoch):  # the latent is deter then stoch
        np.testing.assert_allclose(np.concatenate([deter_part, stoch_part], -1), feature, rtol=1e-6, atol=1e-6)
        assert deter_part.shape[-1] == 8 and stoch_part.shape[-1] == 2 * 2
    embeddings = latent_features(model, params, episodes, batch=2, key=key, kind="embedding")
    for episode, embedding in zip(episodes, embeddings):  # the encoder on each step alone
        np.testing.assert_allclose(embedding, model.embed(params, episode["inputs"]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="latent"):
        latent_features(model, params, episodes, batch=2, key=key, kind="decoder")


def test_open_loop_features_equal_a_hand_loop_of_imagined_steps_from_each_posterior():
    """Each row ``[t, h - 1]`` is the posterior at t (filtered alone and unpadded) imagined h steps
    with the episode's own actions ``prev_action[t + 1 .. t + h]``, one ``img_step`` at a time."""
    import jax

    from agents.state_probe import open_loop_features
    from world_models.rssm import state_features
    from world_models.world_model import WorldModel

    model = WorldModel({"position": (2,)}, {}, action_dim=2, deter=8, stoch=2, classes=2, units=8, layers=1)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    episodes = []
    for length in (6, 4):
        inputs = {"position": rng.normal(size=(length, 2)).astype(np.float32),
                  "prev_action": np.eye(2, dtype=np.float32)[rng.integers(0, 2, length)],
                  "is_first": np.arange(length) == 0}
        episodes.append({"inputs": inputs, "sources": np.zeros((length, 1))})
    key, horizon = jax.random.PRNGKey(3), 3
    imagined = open_loop_features(model, params, episodes, batch=1, key=key, horizon=horizon)
    for index, (episode, rows) in enumerate(zip(episodes, imagined)):
        length = len(episode["sources"])
        assert rows.shape == (length, horizon, model.feature_dim)
        filter_key = jax.random.fold_in(key, index)
        alone = {name: value[:, None] for name, value in episode["inputs"].items()}
        states = model.observe(params, alone, filter_key)[1]
        for t in range(length):
            state = jax.tree.map(lambda leaf: leaf[t], states)
            step_keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(filter_key, 1), t), horizon)
            for h in range(1, min(horizon, length - 1 - t) + 1):
                state = model.img_step(params, state, episode["inputs"]["prev_action"][t + h][None], step_keys[h - 1])
                np.testing.assert_allclose(rows[t, h - 1], state_features(state)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at least 1"):
        open_loop_features(model, params, episodes, batch=1, key=key, horizon=0)


def test_open_loop_probe_reads_each_distance_on_the_states_that_follow():
    """With imagination that is exact (row ``[t, h - 1]`` holds the features of step t + h), the probe
    fitted on posteriors and one fitted on imagined states recover the state at every distance, and
    ``steps`` index the targets; imagination in rotated coordinates only the second recovers."""
    from agents.state_probe import fitted_probe, open_loop_probe

    rng = np.random.default_rng(2)
    mixing = rng.normal(size=(2, 12))
    targets = [rng.normal(size=(length, 2)) for length in (9, 5, 2)]
    features = [target @ mixing for target in targets]
    _, predict = fitted_probe(features, targets)
    horizon = 3
    imagined = []
    for feature in features:
        rows = np.full((len(feature), horizon, 12), 1e6)  # past the episode's end: must be left out
        for t in range(len(feature)):
            for h in range(1, horizon + 1):
                if t + h < len(feature):
                    rows[t, h - 1] = feature[t + h]
        imagined.append(rows)
    laid_end_to_end = np.concatenate(targets)
    posterior_readout = open_loop_probe(imagined, targets, predict=predict)
    own_readout = open_loop_probe(imagined, targets, fit_imagined=imagined, fit_targets=targets)
    for result in (posterior_readout, own_readout):
        for h in range(1, horizon + 1):
            assert len(result["steps"][h]) == sum(max(0, len(target) - h) for target in targets)
            assert min(result["r2"][h]) > 0.99
            np.testing.assert_allclose(result["predictions"][h], laid_end_to_end[result["steps"][h]], atol=1e-3)
        assert result["steps"][1][:3].tolist() == [1, 2, 3] and 10 in result["steps"][1] and 9 not in result["steps"][1]
    # imagination in other coordinates than the posterior's: only a readout fitted on it recovers the state
    rotation = np.linalg.qr(rng.normal(size=(12, 12)))[0]
    rotated = [rows @ rotation for rows in imagined]
    rotated = [np.where(np.abs(original) > 1e5, original, rows) for original, rows in zip(imagined, rotated)]
    assert max(open_loop_probe(rotated, targets, predict=predict)["r2"][1]) < 0.9
    assert min(open_loop_probe(rotated, targets, fit_imagined=rotated, fit_targets=targets)["r2"][1]) > 0.99


def test_source_entries_refuse_a_missing_or_image_sized_source():
    from agents.state_probe import NoSourceObservation, source_entries

    values, names = source_entries({"source_observation": np.array([[0.5, -1.0]]), "_source_observation": [True]})
    assert values.tolist() == [0.5, -1.0] and names == ["[0]", "[1]"]
    with pytest.raises(NoSourceObservation, match="pixels or events"):
        source_entries({"episode": {}})
    with pytest.raises(NoSourceObservation, match="12288 entries"):
        source_entries({"source_observation": np.zeros((1, 64, 64, 3))})
