"""Images for TensorBoard: observations beside their reconstructions, goals decoded to observations."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from world_models.distributions import symexp
from world_models.hierarchy import FEATURES
from world_models.rssm import state_features
from world_models.world_model import WorldModel


def display_image(values: jax.Array, from_uint8: bool) -> jax.Array:
    """An image in the decoder's space (``WorldModel.reconstruction_targets``) as uint8 ``[..., H, W, C]``
    for TensorBoard: a uint8 observation maps back from ``[-0.5, 0.5]``; a float one (an event voxel
    grid or frame, signed and symlog-ed, with any number of channels) becomes one grey channel, mid-grey
    for no events, brighter for ON and darker for OFF (two channels are an ON/OFF count frame)."""
    if from_uint8:
        return jnp.clip((values + 0.5) * 255.0, 0.0, 255.0).astype(jnp.uint8)
    signed = values[..., :1] - values[..., 1:2] if values.shape[-1] == 2 else jnp.sum(values, -1, keepdims=True)
    return jnp.clip(127.5 + 127.5 * jnp.tanh(signed), 0.0, 255.0).astype(jnp.uint8)


def reconstruction_images(
    world_model: WorldModel, params: Any, image_keys: tuple[str, ...], batch: Mapping[str, jax.Array], frames: int = 8
) -> dict[str, jax.Array]:
    """For each image key: the first ``frames`` steps of the first sequence, observation (top)
    above its reconstruction from the posterior (bottom), as one uint8 ``[2H, frames*W, C]``."""
    batch = jax.tree.map(lambda leaf: leaf[:frames, :1], dict(batch))
    _, states, _, _ = world_model.observe(params, batch, jax.random.PRNGKey(0))
    predictions = world_model.decode(params, state_features(states))
    targets = world_model.reconstruction_targets(batch)
    images = {}
    for key in image_keys:
        from_uint8 = batch[key].dtype == jnp.uint8
        truth, recon = (display_image(values[:, 0], from_uint8) for values in (targets[key], predictions[key]))
        rows = [jnp.concatenate(list(row), axis=1) for row in (truth, recon)]  # [H, frames*W, C]
        images[key] = jnp.concatenate(rows, axis=0)
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
