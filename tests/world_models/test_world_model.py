"""The world model of one level represents a low-dimensional observation it is trained on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from world_models.distributions import symexp
from world_models.rssm import state_features
from world_models.world_model import WorldModel

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
