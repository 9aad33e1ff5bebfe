"""The encoder and decoder nets: any image size, and inputs seen with their magnitude."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from world_models.nets import MLP, ConvDecoder, ConvEncoder, ConvTranspose2x, MultiDecoder, MultiEncoder


@pytest.mark.parametrize("shape", [(7, 7, 3), (64, 64, 3), (60, 80, 1)])
def test_decoder_reconstructs_every_image_size(shape):
    image = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 5) + shape, np.uint8))
    encoder = MultiEncoder((), ("image",), units=16, layers=1, cnn_depth=4)
    decoder = MultiDecoder({}, {"image": shape}, units=16, layers=1, cnn_depth=4)
    target = image.astype(jnp.float32) / 255.0 - 0.5

    @jax.jit  # one program: eagerly, each of the many small convolution ops compiles on its own
    def embed_reconstruct_and_differentiate(image):
        encoder_params = encoder.init(jax.random.PRNGKey(0), {"image": image})
        embedding = encoder.apply(encoder_params, {"image": image})
        decoder_params = decoder.init(jax.random.PRNGKey(1), embedding)
        loss = lambda params: jnp.mean((decoder.apply(params, embedding)["image"] - target) ** 2)
        return embedding, decoder.apply(decoder_params, embedding)["image"], jax.grad(loss)(decoder_params)

    embedding, reconstruction, grads = embed_reconstruct_and_differentiate(image)
    assert embedding.shape[:2] == (2, 5)
    assert reconstruction.shape == (2, 5) + shape
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and sum(norms) > 0


def perturbed(params, seed: int = 0):
    """Parameters moved off their initial values, as training moves them (zero-initialised biases
    included), so that the test is about the function class, not one initialisation."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return treedef.unflatten([leaf + 0.3 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)])


def assert_embeddings_differ(first, second):
    """Apart by at least a tenth of their size (a norm's epsilon alone moves a scale-blind net's
    embedding by about a hundredth)."""
    distance = jnp.linalg.norm(first - second, axis=-1)
    size = jnp.linalg.norm(first, axis=-1)
    assert bool(jnp.all(distance > 0.1 * size)), (distance, size)


@pytest.mark.parametrize("scale", [2.0, 0.5])
def test_mlp_sees_the_input_magnitude(scale):
    # LayerNorm(W (a x)) == LayerNorm(W x) for a > 0: an MLP block without a bias before its norm
    # embeds every point of a ray from the origin alike (a 2-D maze's start and goal, say).
    x = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, (8, 2)), jnp.float32)
    mlp = MLP(units=16, layers=2)
    params = perturbed(mlp.init(jax.random.PRNGKey(0), x))
    assert_embeddings_differ(mlp.apply(params, x), mlp.apply(params, scale * x))


@pytest.mark.parametrize("scale", [2.0, 0.5])
def test_cnn_sees_the_image_contrast(scale):
    image = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 8, 8, 1)), jnp.float32)
    encoder = ConvEncoder(depth=16, stages=2)
    params = perturbed(encoder.init(jax.random.PRNGKey(0), image))
    assert_embeddings_differ(encoder.apply(params, image), encoder.apply(params, scale * image))


@pytest.mark.parametrize("shape, features", [((3, 5, 6, 3), 7), ((2, 6, 6, 8), 4), ((2, 1, 1, 2), 3)])
def test_conv_transpose_2x_equals_flax_conv_transpose_with_its_parameters(shape, features):
    """The same parameters (shapes and initial values) give the same output and the same gradients
    as ``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")``, odd sides included."""
    reference = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")
    layer = ConvTranspose2x(features)
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    initial = layer.init(jax.random.PRNGKey(1), x)
    jax.tree.map(np.testing.assert_array_equal, initial, reference.init(jax.random.PRNGKey(1), x))
    params = jax.tree.map(lambda v: jax.random.normal(jax.random.PRNGKey(2), v.shape), initial)  # bias too
    np.testing.assert_allclose(layer.apply(params, x), reference.apply(params, x), atol=1e-5)
    target = jax.random.normal(jax.random.PRNGKey(3), reference.apply(params, x).shape)
    gradient = lambda module: jax.grad(lambda p, x: jnp.sum((module.apply(p, x) - target) ** 2), argnums=(0, 1))
    (ours, ours_x), (theirs, theirs_x) = gradient(layer)(params, x), gradient(reference)(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), ours, theirs)
    np.testing.assert_allclose(ours_x, theirs_x, rtol=1e-4, atol=1e-4)
    assert float(jnp.abs(ours["params"]["kernel"]).sum()) > 0


def test_decoder_parameters_are_named_and_shaped_as_before():
    """Checkpoints from before ConvTranspose2x load: the decoder's tree is the all-flax one's."""
    params = ConvDecoder(4, 3, (48, 48, 2)).init(jax.random.PRNGKey(0), jnp.zeros((1, 8)))["params"]
    shapes = {name: {key: value.shape for key, value in leaves.items()} for name, leaves in params.items()}
    assert shapes == {"Dense_0": {"kernel": (8, 6 * 6 * 16), "bias": (6 * 6 * 16,)},
                      "ConvTranspose_0": {"kernel": (4, 4, 16, 8), "bias": (8,)},
                      "LayerNorm_0": {"scale": (8,), "bias": (8,)},
                      "ConvTranspose_1": {"kernel": (4, 4, 8, 4), "bias": (4,)},
                      "LayerNorm_1": {"scale": (4,), "bias": (4,)},
                      "ConvTranspose_2": {"kernel": (4, 4, 4, 2), "bias": (2,)}}
