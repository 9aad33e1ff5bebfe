"""Images for TensorBoard: observations beside their reconstructions, goals decoded to observations."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from world_models.distributions import symexp
from world_models.hierarchy import FEATURES
from world_models.rssm import state_features
from world_models.world_model import WorldModel


ON_COLOUR = (220, 30, 30)  # red, as scripts/plot_events.py draws ON events
OFF_COLOUR = (30, 60, 220)  # blue, OFF events


def display_image(values: jax.Array, from_uint8: bool, on_off: bool = False) -> jax.Array:
    """An image in the decoder's space (``WorldModel.reconstruction_targets``) as RGB uint8
    ``[..., H, W, 3]`` for TensorBoard, whatever its channel count ``C``.

    A uint8 observation maps back from ``[-0.5, 0.5]``: 1 channel is grey, 3 are RGB, 2 are ON/OFF
    counts (``polarity_image``), any other number is shown as their mean in grey (TensorBoard takes 1,
    3 or 4 channels only, and 2 or 4 would show as transparency). A float one is symlog-ed: with
    ``on_off`` the event camera's count frame (channel 0 ON, 1 OFF, ``ObsLayout.count_frames``), else
    an event voxel grid (signed, one channel per time bin, however many), its bins summed, positive ON
    and negative OFF (``polarity_image``); one symlog-ed event, ``symlog(1)``, is the faintest full
    colour."""
    channels = values.shape[-1]
    if not from_uint8:
        values = values.astype(jnp.float32)
        if on_off:
            return polarity_image(jax.nn.relu(values[..., 0]), jax.nn.relu(values[..., 1]), one_event=math.log(2.0))
        signed = jnp.sum(values, axis=-1)
        return polarity_image(jax.nn.relu(signed), jax.nn.relu(-signed), one_event=math.log(2.0))
    brightness = jnp.clip(jnp.nan_to_num(values.astype(jnp.float32) + 0.5), 0.0, 1.0)  # [..., H, W, C]
    if channels == 2:
        return polarity_image(brightness[..., 0], brightness[..., 1], one_event=1.0 / 255.0)
    if channels != 3:
        brightness = jnp.repeat(jnp.mean(brightness, axis=-1, keepdims=True), 3, axis=-1)
    return jnp.round(brightness * 255.0).astype(jnp.uint8)


def polarity_image(on: jax.Array, off: jax.Array, one_event: float) -> jax.Array:
    """ON and OFF strengths ``[..., H, W]`` (non-negative) as RGB uint8 ``[..., H, W, 3]``: white where
    there is none, else the stronger polarity's colour (ON red, OFF blue) at its strength, normalised
    per image ``[H, W]`` by its largest strength but never by less than ``one_event`` (so an empty or
    nearly empty prediction stays white instead of showing noise at full colour)."""
    strength = jnp.maximum(on, off)
    scale = jnp.maximum(jnp.max(strength, axis=(-2, -1), keepdims=True), one_event)
    strength = jnp.clip(jnp.nan_to_num(strength / scale), 0.0, 1.0)[..., None]
    colour = jnp.where((on >= off)[..., None], jnp.array(ON_COLOUR, jnp.float32), jnp.array(OFF_COLOUR, jnp.float32))
    return jnp.round(255.0 * (1.0 - strength) + colour * strength).astype(jnp.uint8)


def reconstruction_images(
    world_model: WorldModel, params: Any, image_keys: tuple[str, ...], batch: Mapping[str, jax.Array], frames: int = 8,
    count_frames: frozenset[str] = frozenset(),
) -> dict[str, jax.Array]:
    """For each image key: the first ``frames`` steps of the first sequence, observation (top)
    above its reconstruction from the posterior (bottom), as one RGB uint8 ``[2H, frames*W, 3]``
    (``display_image``)."""
    batch = jax.tree.map(lambda leaf: leaf[:frames, :1], dict(batch))
    _, states, _, _ = world_model.observe(params, batch, jax.random.PRNGKey(0))
    predictions = world_model.decode(params, state_features(states))
    targets = world_model.reconstruction_targets(batch)
    images = {}
    for key in image_keys:
        from_uint8 = batch[key].dtype == jnp.uint8
        truth, recon = (display_image(values[:, 0], from_uint8, key in count_frames)
                        for values in (targets[key], predictions[key]))
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
