"""Images for TensorBoard: observations beside their reconstructions, goals decoded to observations."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from world_models.distributions import symexp
from world_models.hierarchy import FEATURES
from world_models.rssm import state_features
from world_models.world_model import WorldModel


def reconstruction_images(
    world_model: WorldModel, params: Any, image_keys: tuple[str, ...], batch: Mapping[str, jax.Array], frames: int = 8
) -> dict[str, jax.Array]:
    """For each image key: the first ``frames`` steps of the first sequence, observation (top)
    above its reconstruction from the posterior (bottom), as one uint8 ``[2H, frames*W, C]``."""
    batch = jax.tree.map(lambda leaf: leaf[:frames, :1], dict(batch))
    _, states, _, _ = world_model.observe(params, batch, jax.random.PRNGKey(0))
    predictions = world_model.decode(params, state_features(states))
    images = {}
    for key in image_keys:
        truth = batch[key][:, 0].astype(jnp.float32)
        recon = jnp.clip((predictions[key][:, 0] + 0.5) * 255.0, 0.0, 255.0)
        rows = [jnp.concatenate(list(row), axis=1) for row in (truth, recon)]  # [H, frames*W, C]
        images[key] = jnp.concatenate(rows, axis=0).astype(jnp.uint8)
    return images


def decode_to_observations(world_models: Sequence[WorldModel], params: Sequence[Any], goal: jax.Array,
                           level: int) -> dict[str, jax.Array]:
    """A goal of level ``level`` (features of level ``level-1``) decoded down to observations through
    the decoders of every level below: float images in ``[-0.5, 0.5]`` per image key."""
    features = goal
    for below in reversed(range(level - 1)):
        decoded = world_models[below + 1].decode(params[below + 1], features)
        features = symexp(decoded[FEATURES])
    return world_models[0].decode(params[0], features)
