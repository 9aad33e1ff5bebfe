"""Do a level's actions matter? The spread of what follows across actions, against its spread across
start states.

Logged as ``model/controllability`` (the next deterministic state) and
``model/reward_controllability`` (the predicted reward): near 0, the action changes nothing that
the model predicts, and a level above cannot steer the level below through it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from world_models.rssm import RSSMState, state_features
from world_models.world_model import WorldModel


def spread_ratio(outcomes: jax.Array) -> jax.Array:
    """``outcomes [S, A, D]``, what follows from start ``s`` under action ``a``: the variance across
    actions (mean over starts and entries) over the variance across starts of the mean outcome."""
    return outcomes.var(1).mean() / jnp.maximum(outcomes.mean(1).var(0).mean(), 1e-8)


def model_controllability(world_model: WorldModel, params: dict, posterior: RSSMState,
                          random_action: Callable[[jax.Array, int], jax.Array], key: jax.Array,
                          starts: int = 32, actions: int = 8) -> dict[str, jax.Array]:
    """From the first ``starts`` posterior states (leaves ``[T, B, ...]``), one imagined step under
    each of ``actions`` random actions (``random_action(key, count) -> [count, A]``): the
    ``spread_ratio`` of the next deterministic state and of the reward predicted there."""
    flat = jax.tree.map(lambda leaf: jax.lax.stop_gradient(leaf.reshape((-1,) + leaf.shape[2:])[:starts]), posterior)
    count = flat.deter.shape[0]
    tiled = jax.tree.map(lambda leaf: jnp.repeat(leaf, actions, axis=0), flat)
    action_key, step_key = jax.random.split(key)
    following = world_model.img_step(params, tiled, random_action(action_key, count * actions), step_key)
    outcomes = {"model/controllability": following.deter.reshape(count, actions, -1),
                "model/reward_controllability": world_model.reward(
                    params, state_features(following)).reshape(count, actions, 1)}
    return {name: spread_ratio(value) for name, value in outcomes.items()}
