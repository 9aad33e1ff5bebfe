"""Feed-forward networks of the world model: MLPs, the multi-key encoder and decoder.

Observations are dicts of arrays. Vector entries ``[..., D]`` go through symlog and an MLP; image
entries ``[..., H, W, C]`` through a strided CNN (uint8 images scaled to [-0.5, 0.5], float ones
such as event voxel grids through symlog, see ``image_input``); event streams ``[..., N, 4]``
through an ``EventEncoder``. Keys are routed by the caller (see ``agents.spaces``); these modules
only take the lists of keys.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from world_models.distributions import symlog
from world_models.event_encoder import EventEncoder, EventStream


class MLP(nn.Module):
    """``layers`` blocks of Dense (with bias) -> LayerNorm -> SiLU (no output projection).

    The bias before the norm is what lets the first block see its input's magnitude: without it,
    ``LayerNorm(W (a x)) == LayerNorm(W x)`` for every ``a > 0``, so two observations on one ray
    from the origin would embed the same.
    """

    units: int
    layers: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(self.layers):
            x = nn.Dense(self.units)(x)
            x = jax.nn.silu(nn.LayerNorm(epsilon=1e-3)(x))
        return x


def image_to_float(image: jax.Array) -> jax.Array:
    """uint8 ``[0, 255]`` -> float ``[-0.5, 0.5]``."""
    return image.astype(jnp.float32) / 255.0 - 0.5


def image_input(image: jax.Array) -> jax.Array:
    """An image entry as the CNN sees it and the decoder predicts it: uint8 -> [-0.5, 0.5]
    (``image_to_float``); float (signed, unbounded: an event voxel grid) -> symlog, which keeps
    the sign and the single events near +-1 while compressing the rare pixels that fire dozens."""
    if image.dtype == jnp.uint8:
        return image_to_float(image)
    return symlog(image.astype(jnp.float32))


def cnn_stages(image_size: Sequence[int], minimum: int = 4) -> int:
    """Number of stride-2 stages that bring the smaller image side down to ``minimum``."""
    return max(1, int(math.log2(min(image_size) / minimum)))


class ConvEncoder(nn.Module):
    """Stride-2 convolutions ``depth, 2*depth, ...`` (with bias, as in :class:`MLP`) with LayerNorm
    and SiLU, then flatten."""

    depth: int
    stages: int

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        lead = image.shape[:-3]
        x = image.reshape((-1,) + image.shape[-3:])
        for stage in range(self.stages):
            x = nn.Conv(self.depth * 2**stage, (4, 4), strides=2, padding="SAME")(x)
            x = jax.nn.silu(nn.LayerNorm(epsilon=1e-3)(x))
        return x.reshape(lead + (-1,))


# For output phase p (row or column parity) and tap a of a 3-wide window over the input padded by
# one: the row (column) of the 4x4 transposed-convolution kernel that applies there (4: none). Output
# 2m + p of a stride-2, SAME-padded, 4-wide transposed convolution sums input m + p - 1 with kernel
# tap p and input m + p with tap p + 2, so each phase is a 2-tap correlation at its own offset.
_PHASE_TAPS = np.array([[0, 2, 4], [4, 1, 3]])


class ConvTranspose2x(nn.Module):
    """``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")``, the same parameters
    (``kernel [4, 4, in, features]`` and ``bias``, initialised alike) and the same output, computed
    as one 3x3 convolution at the input's resolution with 4 x ``features`` outputs (one per output
    phase) and a depth-to-space. XLA:CPU computes the transposed convolution over the input dilated
    with zeros, three quarters of its multiplies on them; this does not. ``scripts.bench_decoder``
    times both per layer of the decoder."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # index 4: a zero tap
        phases = padded[_PHASE_TAPS[:, :, None, None], _PHASE_TAPS[None, None, :, :]]  # [p, a, q, b, in, out]
        window = phases.transpose(1, 3, 4, 0, 2, 5).reshape(3, 3, channels, 4 * self.features)
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        z = jax.lax.conv_general_dilated(x, window.astype(x.dtype), (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        batch, height, width, _ = z.shape
        z = z.reshape(batch, height, width, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
        return z.reshape(batch, 2 * height, 2 * width, self.features) + bias


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: features -> image ``[..., H, W, C]`` in ``[-0.5, 0.5]``."""

    depth: int
    stages: int
    image_shape: tuple[int, int, int]

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        height, width, channels = self.image_shape
        scale = 2**self.stages
        # Sides that do not divide by the scale (MiniGrid's 7x7, say) start rounded up, and the
        # upsampled image is cropped back, mirroring the encoder's SAME padding.
        start_height, start_width = -(-height // scale), -(-width // scale)
        start_channels = self.depth * 2 ** (self.stages - 1)
        lead = features.shape[:-1]
        x = nn.Dense(start_height * start_width * start_channels)(features)
        x = x.reshape((-1, start_height, start_width, start_channels))
        # Named as the nn.ConvTranspose layers all were, so that earlier checkpoints load.
        for index, stage in enumerate(reversed(range(self.stages - 1))):
            x = ConvTranspose2x(self.depth * 2**stage, name=f"ConvTranspose_{index}")(x)
            x = jax.nn.silu(nn.LayerNorm(epsilon=1e-3)(x))
        # The output layer keeps the dilated form: with its few channels, ConvTranspose2x's kernel
        # gradient (a 3x3 x in x 4C reduction over every pixel) took 2.7-3x as long on the CPU.
        x = nn.ConvTranspose(channels, (4, 4), strides=(2, 2), padding="SAME",
                             name=f"ConvTranspose_{self.stages - 1}")(x)
        return x[:, :height, :width].reshape(lead + (height, width, channels))


class MultiEncoder(nn.Module):
    """Embeds a dict observation: CNN over ``cnn_keys`` (``image_input``, concatenated on channels),
    MLP over the symlog of ``mlp_keys`` (each ``[..., D_k]``, concatenated), one ``EventEncoder``
    per key of ``event_streams`` (``event_encoder`` its arguments besides the stream); outputs
    concatenated ``[..., E]``."""

    mlp_keys: tuple[str, ...]
    cnn_keys: tuple[str, ...]
    units: int
    layers: int
    cnn_depth: int
    event_streams: Mapping[str, EventStream] | None = None
    event_encoder: Mapping[str, Any] | None = None

    @nn.compact
    def __call__(self, obs: dict[str, jax.Array]) -> jax.Array:
        outputs = []
        if self.cnn_keys:
            image = jnp.concatenate([image_input(obs[k]) for k in self.cnn_keys], -1)
            outputs.append(ConvEncoder(self.cnn_depth, cnn_stages(image.shape[-3:-1]))(image))
        if self.mlp_keys:
            vector = jnp.concatenate([symlog(obs[k].astype(jnp.float32)) for k in self.mlp_keys], -1)
            outputs.append(MLP(self.units, self.layers)(vector))
        for key, stream in (self.event_streams or {}).items():
            encoder = EventEncoder(stream, **dict(self.event_encoder or {}), name=f"events_{key}")
            outputs.append(encoder(obs[key], obs[stream.count_key]))
        return jnp.concatenate(outputs, -1)


class MultiDecoder(nn.Module):
    """Reconstructs the observation keys from features.

    Returns predictions in the space the loss compares them in: symlog for vector keys,
    ``image_input``'s space for image keys (and for the count frames that stand for event streams).
    """

    mlp_shapes: dict[str, tuple[int, ...]]
    cnn_shapes: dict[str, tuple[int, int, int]]
    units: int
    layers: int
    cnn_depth: int

    @nn.compact
    def __call__(self, features: jax.Array) -> dict[str, jax.Array]:
        predictions = {}
        if self.cnn_shapes:
            keys = list(self.cnn_shapes)
            height, width = self.cnn_shapes[keys[0]][:2]
            channels = [self.cnn_shapes[k][2] for k in keys]
            stages = cnn_stages((height, width))
            image = ConvDecoder(self.cnn_depth, stages, (height, width, sum(channels)))(features)
            splits = list(itertools.accumulate(channels))[:-1]
            for key, part in zip(keys, jnp.split(image, splits, -1)):
                predictions[key] = part
        if self.mlp_shapes:
            hidden = MLP(self.units, self.layers)(features)
            for key, shape in self.mlp_shapes.items():
                size = int(math.prod(shape))
                predictions[key] = nn.Dense(size, name=f"out_{key}")(hidden).reshape(
                    features.shape[:-1] + shape
                )
        return predictions
