"""The CNN encoder and decoder handle any image size, not only powers of two."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from world_models.nets import MultiDecoder, MultiEncoder


@pytest.mark.parametrize("shape", [(7, 7, 3), (64, 64, 3), (60, 80, 1)])
def test_decoder_reconstructs_every_image_size(shape):
    image = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 5) + shape, np.uint8))
    encoder = MultiEncoder((), ("image",), units=16, layers=1, cnn_depth=4)
    decoder = MultiDecoder({}, {"image": shape}, units=16, layers=1, cnn_depth=4)
    encoder_params = encoder.init(jax.random.PRNGKey(0), {"image": image})
    embedding = encoder.apply(encoder_params, {"image": image})
    assert embedding.shape[:2] == (2, 5)
    decoder_params = decoder.init(jax.random.PRNGKey(1), embedding)
    target = image.astype(jnp.float32) / 255.0 - 0.5

    def loss(params):
        return jnp.mean((decoder.apply(params, embedding)["image"] - target) ** 2)

    reconstruction = decoder.apply(decoder_params, embedding)["image"]
    assert reconstruction.shape == (2, 5) + shape
    grads = jax.grad(loss)(decoder_params)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and sum(norms) > 0
