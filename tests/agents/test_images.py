"""Images for TensorBoard from any observation the CNN takes."""

import jax.numpy as jnp
import numpy as np

from agents.images import display_image


def test_uint8_images_map_back_and_float_images_become_signed_grey():
    pixels = jnp.array([[[-0.5, 0.0, 0.5]]])
    np.testing.assert_array_equal(np.asarray(display_image(pixels, True)), [[[0, 127, 255]]])
    voxel = jnp.zeros((2, 2, 5)).at[0, 0, 2].set(1.0).at[1, 1, 0].set(-2.0)  # 5 time bins, signed
    grey = np.asarray(display_image(voxel, False))
    assert grey.shape == (2, 2, 1) and grey.dtype == np.uint8
    assert grey[0, 0, 0] > 200 and grey[1, 1, 0] < 10 and grey[0, 1, 0] == 127
    counts = jnp.zeros((1, 2, 2)).at[0, 0, 0].set(1.0).at[0, 1, 1].set(1.0)  # ON / OFF count frame
    assert list(np.asarray(display_image(counts, False))[0, :, 0]) == [224, 30]
