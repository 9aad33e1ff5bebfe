"""The world model of one level represents a low-dimensional observation it is trained on."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from world_models.backbones import ssm_param_labels
from world_models.distributions import symexp, symlog
from world_models.rssm import state_features
from world_models.world_model import WorldModel, sown_means

ROOM = 0.5  # the side of one room of a 2x2 four-rooms maze on the unit square


def position_batch(rng: np.random.Generator, length: int = 16, batch: int = 16) -> dict:
    """A point moving on the unit square, ``[T, B, 2]``: it starts anywhere and each action moves it by
    up to 0.1 per axis (clipped at the walls), as in a continuous maze. The start is seen only
    through the encoder, points on one ray from the origin included."""
    actions = rng.uniform(-1.0, 1.0, (length, batch, 2)).astype(np.float32)
    actions[0] = 0.0  # the action "that led to" the first step: none
    positions = [rng.uniform(0.0, 1.0, (batch, 2))]
    for action in actions[1:]:
        positions.append(np.clip(positions[-1] + 0.1 * action, 0.0, 1.0))
    return {
        "position": np.stack(positions).astype(np.float32),
        "prev_action": actions,
        "reward": np.zeros((length, batch), np.float32),
        "is_first": np.eye(length, 1, dtype=bool).repeat(batch, 1),
        "is_terminal": np.zeros((length, batch), bool),
    }


@pytest.fixture(scope="module")
def trained_position_model():
    model = WorldModel({"position": (2,)}, {}, action_dim=2, deter=32, stoch=8, classes=8, units=64,
                       layers=1, lr=3e-3)
    params = model.init(jax.random.PRNGKey(0))
    opt_state = model.optimizer.init(params)

    @jax.jit
    def update(params, opt_state, batch, key):
        grads, (metrics, _) = jax.grad(model.loss, has_aux=True)(params, batch, key)
        updates, opt_state = model.optimizer.update(grads, opt_state, params)
        return jax.tree.map(jnp.add, params, updates), opt_state, metrics

    rng, key = np.random.default_rng(0), jax.random.PRNGKey(1)
    for _ in range(600):
        key, step_key = jax.random.split(key)
        params, opt_state, metrics = update(params, opt_state, position_batch(rng), step_key)
    return model, params, metrics


def test_world_model_decodes_position_well_under_a_room(trained_position_model):
    model, params, _ = trained_position_model
    batch = position_batch(np.random.default_rng(1))
    _, states, _, _ = model.observe(params, batch, jax.random.PRNGKey(2))
    decoded = symexp(model.decode(params, state_features(states))["position"])
    error = float(jnp.mean(jnp.linalg.norm(decoded - batch["position"], axis=-1)))
    assert error < 0.2 * ROOM, error  # a fifth of a room (scale-blind embeddings: 0.2 and more)


def test_r2_metric_reports_the_represented_key(trained_position_model):
    model, params, metrics = trained_position_model
    assert 0.9 < float(metrics["world_model/r2/position"]) <= 1.0
    # the same metric at initialisation: the decoder knows nothing yet
    batch = position_batch(np.random.default_rng(2))
    _, (untrained, _) = model.loss(model.init(jax.random.PRNGKey(5)), batch, jax.random.PRNGKey(3))
    assert float(untrained["world_model/r2/position"]) < 0.5


def test_r2_is_one_for_a_perfect_prediction_and_zero_for_the_mean():
    model = WorldModel({"position": (2,)}, {}, action_dim=2, deter=8, stoch=2, classes=2, units=8, layers=1)
    batch = position_batch(np.random.default_rng(3), length=4, batch=3)
    target = model.reconstruction_targets(batch)["position"]
    weights = jnp.ones((4, 3))
    perfect = model.explained_variance({"position": target}, batch, weights)["position"]
    mean = model.explained_variance({"position": jnp.broadcast_to(target.mean((0, 1)), target.shape)},
                                    batch, weights)["position"]
    np.testing.assert_allclose([perfect, mean], [1.0, 0.0], atol=1e-6)
    # masked steps do not count: a wrong prediction there changes nothing
    mask = weights.at[0].set(0.0)
    wrong_first = target.at[0].add(5.0)
    np.testing.assert_allclose(model.explained_variance({"position": wrong_first}, batch, mask)["position"], 1.0)


def test_open_loop_error_and_r2_equal_a_hand_loop_that_stops_at_episode_ends(trained_position_model):
    model, params, _ = trained_position_model
    batch = position_batch(np.random.default_rng(4), length=8, batch=6)
    batch["is_first"][3, :2] = True  # two columns start a new episode at step 3: they count at steps 1-2 only
    _, states, _, _ = model.observe(params, batch, jax.random.PRNGKey(2))
    horizon, key = 5, jax.random.PRNGKey(7)
    error, r2 = model.open_loop(params, batch, states, horizon, key)

    state, predicted = jax.tree.map(lambda leaf: leaf[0], states), []
    for step, step_key in enumerate(jax.random.split(key, horizon), start=1):
        state = model.img_step(params, state, jnp.asarray(batch["prev_action"][step]), step_key)
        predicted.append(np.asarray(model.decode(params, state_features(state))["position"]))
    predicted = np.stack(predicted)  # [H, B, 2]
    truth = np.asarray(symlog(jnp.asarray(batch["position"][1 : horizon + 1])))
    valid = np.ones((horizon, 6), bool)
    valid[2:, :2] = False
    squared = ((predicted - truth) ** 2 / (truth.var((0, 1)) + 1e-3)).sum(-1)  # variance-scaled loss
    expected = [squared[h][valid[h]].mean() for h in range(horizon)]
    np.testing.assert_allclose(error, expected, rtol=1e-4, atol=1e-6)
    last, seen = truth[-1][valid[-1]], predicted[-1][valid[-1]]
    expected_r2 = 1.0 - ((seen - last) ** 2).sum() / ((last - last.mean(0)) ** 2).sum()
    np.testing.assert_allclose(r2["position"], expected_r2, rtol=1e-4, atol=1e-6)
    assert 0.5 < float(r2["position"]) <= 1.0  # the trained model follows the actions 5 steps ahead


def event_camera_batch(representation: str, length: int = 3, batch: int = 2) -> dict:
    """A short batch of the event camera's observations on CartPole, ``[T, B, ...]``: the cart pushed
    right, recorded after a few steps of speeding up (a still cart fires no events)."""
    from envs.config import EventCameraConfig
    from envs.event_camera import EventCamera

    config = EventCameraConfig(representation=representation, max_events=96, voxel_bins=3,
                               contrast_pos=0.05, contrast_neg=0.05)
    env = EventCamera(gym.make("CartPole-v1", render_mode="rgb_array"), config, image_size=(16, 16), seed=0)
    observations = []
    for column in range(batch):
        env.reset(seed=column)
        for _ in range(4):
            env.step(1)
        observations.append([env.step(1)[0] for _ in range(length)])
    env.close()
    stack = lambda values: np.stack([np.stack(row) for row in values], axis=1)
    if representation == "events":
        obs = {key: stack([[o[key] for o in row] for row in observations]) for key in ("events", "count")}
    else:
        obs = {"obs": stack(observations)}
    actions = np.zeros((length, batch, 2), np.float32)
    return {**obs, "prev_action": actions, "reward": np.ones((length, batch), np.float32),
            "is_first": np.eye(length, 1, dtype=bool).repeat(batch, 1), "is_terminal": np.zeros((length, batch), bool)}


@pytest.mark.parametrize("representation", ["voxel", "events"])
def test_event_camera_observations_train_the_world_model(representation):
    """Voxel grids reach the CNN through symlog, raw events the event encoder; the targets are the
    symlog voxel grid and the symlog count frame of the camera's own ``events_to_frame``."""
    from envs.event_camera import Events, events_to_frame
    from world_models.event_encoder import EventStream

    batch = event_camera_batch(representation)
    sizes = dict(deter=16, stoch=2, classes=2, units=16, layers=1, cnn_depth=2)
    assert np.abs(batch["obs" if representation == "voxel" else "count"]).max() > 0  # events seen
    if representation == "voxel":
        model, key = WorldModel({}, {"obs": (16, 16, 3)}, action_dim=2, **sizes), "obs"
        np.testing.assert_allclose(model.reconstruction_targets(batch)["obs"], symlog(batch["obs"]), rtol=1e-6)
    else:
        stream = EventStream(96, "count", 16, 16, 0.033333)
        encoder = dict(features=8, units=16, chunk_size=32, backbones={"event_s5": dict(state_size=4, layers=1, blocks=1)})
        model, key = WorldModel({}, {}, action_dim=2, event_streams={"events": stream}, event_encoder=encoder, **sizes), "events"
        t, b = np.argwhere(batch["count"] > 0)[-1]
        rows = batch["events"][t, b, : batch["count"][t, b]]
        events = Events(rows[:, 0].astype(np.int32), rows[:, 1].astype(np.int32), rows[:, 2], rows[:, 3])
        frame = events_to_frame(events, (16, 16)).astype(np.float32)
        np.testing.assert_allclose(model.reconstruction_targets(batch)["events"][t, b], symlog(frame), rtol=1e-6)
    params = model.init(jax.random.PRNGKey(0))
    grads, (metrics, _) = jax.jit(jax.grad(model.loss, has_aux=True))(params, batch, jax.random.PRNGKey(1))
    assert np.isfinite(float(metrics["world_model/loss"])) and f"world_model/r2/{key}" in metrics
    for path, grad in jax.tree_util.tree_leaves_with_path(grads["encoder"]):
        assert np.all(np.isfinite(grad)), path
        # the embedding of an event-free step is read only when a step has no events
        assert np.any(grad != 0) or "empty" in jax.tree_util.keystr(path), path


def test_decoder_only_keys_are_targets_the_encoder_never_reads_and_encoder_only_keys_are_not_decoded():
    """Raw events in, their integrated image as the only target: changing the image changes the
    loss, never the embedding; the count frame is no target; gradients reach the event encoder."""
    from world_models.event_encoder import EventStream

    batch = event_camera_batch("events")
    rng = np.random.default_rng(0)
    batch["integrated"] = rng.normal(size=batch["count"].shape + (16, 16, 1)).astype(np.float32)
    stream = EventStream(96, "count", 16, 16, 0.033333)
    encoder = dict(features=8, units=16, chunk_size=32, backbones={"event_s5": dict(state_size=4, layers=1, blocks=1)})
    model = WorldModel({}, {"integrated": (16, 16, 1)}, action_dim=2, deter=16, stoch=2, classes=2, units=16,
                       layers=1, cnn_depth=2, event_streams={"events": stream}, event_encoder=encoder,
                       decoder_only=["integrated"], encoder_only=["events"])
    assert set(model.reconstruction_targets(batch)) == {"integrated"}
    np.testing.assert_allclose(model.reconstruction_targets(batch)["integrated"], symlog(batch["integrated"]), rtol=1e-6)
    params = model.init(jax.random.PRNGKey(0))
    other = {**batch, "integrated": batch["integrated"] + 1.0}
    np.testing.assert_array_equal(model.embed(params, batch), model.embed(params, other))
    key = jax.random.PRNGKey(1)
    loss = jax.jit(model.loss)
    assert float(loss(params, batch, key)[0]) != float(loss(params, other, key)[0])
    grads, (metrics, _) = jax.jit(jax.grad(model.loss, has_aux=True))(params, batch, key)
    assert set(model.decode(params, jnp.zeros((1, model.feature_dim)))) == {"integrated"}
    assert "world_model/r2/integrated" in metrics and "world_model/r2/events" not in metrics
    leaves = jax.tree_util.tree_leaves(grads["encoder"])
    assert leaves and all(np.all(np.isfinite(leaf)) for leaf in leaves) and any(np.any(leaf != 0) for leaf in leaves)
    for roles, match in [(dict(decoder_only=["events"]), "not vector or image keys"),
                         (dict(decoder_only=["integrated"], encoder_only=["integrated"]), "both"),
                         (dict(encoder_only=["nothing"]), "not observation keys")]:
        with pytest.raises(ValueError, match=match):
            WorldModel({}, {"integrated": (16, 16, 1)}, action_dim=2, event_streams={"events": stream}, **roles)
    with pytest.raises(ValueError, match="nothing to read"):
        WorldModel({}, {"integrated": (16, 16, 1)}, action_dim=2, decoder_only=["integrated"])


def tiny_model(**kwargs) -> WorldModel:
    return WorldModel({"position": (2,)}, {}, action_dim=2, deter=8, stoch=2, classes=2, units=8, layers=1, **kwargs)


def updated_params(model: WorldModel, updates: int, seed: int = 0):
    """Parameters before and after ``updates`` optimiser steps on small position batches."""
    params = jax.jit(model.init)(jax.random.PRNGKey(seed))  # a jitted init: a few times cheaper than eager
    opt_state = model.optimizer.init(params)

    @jax.jit
    def update(params, opt_state, batch, key):
        grads, _ = jax.grad(model.loss, has_aux=True)(params, batch, key)
        changes, opt_state = model.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), opt_state

    rng, new = np.random.default_rng(seed), params
    for step in range(updates):
        new, opt_state = update(new, opt_state, position_batch(rng, length=4, batch=3), jax.random.PRNGKey(step))
    return params, new


def test_ssm_lr_leaves_a_gru_world_model_bit_identical():
    """A GRU model has no SSM parameter: the labelled optimiser is exactly the single Adam."""
    _, single = updated_params(tiny_model(backbone="gru"), updates=3)
    _, labelled = updated_params(tiny_model(backbone="gru", ssm_lr=3e-5), updates=3)
    assert set(jax.tree.leaves(ssm_param_labels(single))) == {"regular"}
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(labelled)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ssm_lr", [0.0, 1e-4])
def test_ssm_lr_moves_the_s5_parameters_at_their_own_rate(ssm_lr):
    """Adam's first step moves a parameter by at most its rate (about the rate where its gradient is
    clear of eps): S5's Lambda, B and log Delta by ``ssm_lr``, everything else by ``lr``."""
    lr = 1e-2
    model = tiny_model(backbone="s5", backbone_kwargs=dict(state_size=4, layers=1, blocks=1), lr=lr, ssm_lr=ssm_lr)
    before, after = updated_params(model, updates=1)
    labels = ssm_param_labels(before)
    ssm_paths = [jax.tree_util.keystr(path) for path, label in jax.tree_util.tree_leaves_with_path(labels)
                 if label == "ssm"]
    assert len(ssm_paths) == 4 and all("['rssm']['core']" in path for path in ssm_paths), ssm_paths
    moved = jax.tree.map(lambda new, old: float(jnp.max(jnp.abs(new - old))), after, before)
    by_label = {"ssm": [], "regular": []}
    for label, amount in zip(jax.tree.leaves(labels), jax.tree.leaves(moved)):
        by_label[label].append(amount)
    rate = {"ssm": ssm_lr or lr, "regular": lr}
    for label, amounts in by_label.items():
        assert 0.5 * rate[label] < max(amounts) < 1.05 * rate[label], (label, amounts)  # float32 rounding


def test_sown_means_average_each_name_over_steps_and_calls():
    sown = {"rssm": {"core": {"activity": (jnp.array([0.2, 0.4]),), "sparsity": (jnp.array(0.5), jnp.array(0.7))}}}
    means = sown_means(sown)
    assert set(means) == {"activity", "sparsity"}
    np.testing.assert_allclose([means["activity"], means["sparsity"]], [0.3, 0.6], rtol=1e-6)
    assert sown_means({}) == {}


@pytest.mark.parametrize("posterior", ["state", "embedding"])  # EGRU.step under nn.scan; EGRU.scan
def test_egru_activity_regulariser_enters_the_loss_with_its_weight(posterior):
    weight = 0.5
    batch, key = position_batch(np.random.default_rng(4), length=5, batch=3), jax.random.PRNGKey(6)
    unweighted, weighted = (tiny_model(backbone="egru", posterior=posterior, activity_weight=w) for w in (0.0, weight))
    params = jax.jit(unweighted.init)(jax.random.PRNGKey(0))  # jitted: op by op, this test took 15-27 s
    (loss, (metrics, _)), grads = jax.jit(jax.value_and_grad(unweighted.loss, has_aux=True))(params, batch, key)
    (loss_w, (metrics_w, _)), grads_w = jax.jit(jax.value_and_grad(weighted.loss, has_aux=True))(params, batch, key)
    activity, sparsity = metrics["world_model/loss/activity"], metrics["world_model/sparsity"]
    assert 0.0 < activity < 1.0
    np.testing.assert_allclose(activity, 1.0 - sparsity, rtol=1e-5)  # an output is zero without an event
    # weight 0: the loss is the weighted sum of the usual parts alone
    parts = sum(scale * metrics[f"world_model/loss/{name}"] for name, scale in unweighted.loss_scales.items())
    np.testing.assert_allclose(loss, parts, rtol=1e-6)
    np.testing.assert_allclose(loss_w, loss + weight * activity, rtol=1e-6)  # float32 rounding of the loss
    assert metrics_w["world_model/loss"] == loss_w
    # the regulariser's gradient reaches the thresholds through the pseudo-derivative
    threshold = lambda tree: tree["rssm"]["core"]["threshold_logit"]
    activity_grad = threshold(jax.jit(jax.grad(lambda p: weighted.loss(p, batch, key)[1][0]["world_model/loss/activity"]))(params))
    assert np.all(np.isfinite(activity_grad)) and np.any(activity_grad != 0)
    # a difference of two float32 gradients of size ~1 (the activity term's share is ~1e-3 of them) carries
    # their rounding, so the tolerance scales with them: ~1e-6 absolute here, 0.05% of the term itself
    rounding = 1e-6 * float(np.abs(threshold(grads)).max())
    np.testing.assert_allclose(threshold(grads_w) - threshold(grads), weight * activity_grad, rtol=1e-4, atol=rounding)


def test_backbones_that_sow_nothing_log_no_activity():
    batch = position_batch(np.random.default_rng(4), length=3, batch=2)
    model = tiny_model(backbone="gru", activity_weight=1.0)
    _, (metrics, _) = model.loss(model.init(jax.random.PRNGKey(0)), batch, jax.random.PRNGKey(1))
    assert not {"world_model/loss/activity", "world_model/sparsity"} & set(metrics)


def test_a_block_gru_world_model_trains():
    """``backbones.gru.blocks`` reaches the RSSM's core: its recurrent kernel is block-diagonal (stored
    as ``[G, H/G + D, 3H/G]``) and a few updates move every core parameter and keep them finite."""
    before, after = updated_params(tiny_model(backbone="gru", backbone_kwargs={"blocks": 4}), updates=3)
    core = lambda params: params["rssm"]["core"]
    assert core(before)["gates"]["kernel"].shape == (4, 8 // 4 + 8, 3 * 8 // 4)
    for path, (old, new) in zip(jax.tree_util.tree_leaves_with_path(core(before)),
                                zip(jax.tree.leaves(core(before)), jax.tree.leaves(core(after)))):
        assert np.all(np.isfinite(new)) and np.any(new != old), path[0]
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(after))


def test_reward_head_metrics_average_over_rewarded_and_unrewarded_steps_apart():
    """The head's prediction where reward was paid, beside the reward paid, and elsewhere; masked
    steps do not count, and each mean carries the number of steps it averaged."""
    from world_models.world_model import reward_head_metrics

    predicted = jnp.array([[0.5, -0.2], [0.1, 0.9], [3.0, 0.3]])
    reward = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    weights = jnp.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])  # the last rewarded step is padding
    metrics = {name: float(value) for name, value in reward_head_metrics(predicted, reward, weights).items()}
    assert metrics == pytest.approx({
        "world_model/reward_on_rewarded": (0.5 + 0.9) / 2, "world_model/reward_on_rewarded#weight": 2.0,
        "world_model/reward_paid": (1.0 + 2.0) / 2, "world_model/reward_paid#weight": 2.0,
        "world_model/reward_on_unrewarded": (0.2 + 0.1 + 0.3) / 3, "world_model/reward_on_unrewarded#weight": 3.0})
    none = reward_head_metrics(predicted, jnp.zeros_like(reward), weights)
    assert float(none["world_model/reward_on_rewarded"]) == 0.0 and float(none["world_model/reward_on_rewarded#weight"]) == 0.0
