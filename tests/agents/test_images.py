"""Images for TensorBoard from any observation the CNN takes: always RGB uint8 ``[..., H, W, 3]``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX import summary

from agents.images import OFF_COLOUR, ON_COLOUR, display_image
from world_models.nets import image_input

WHITE = [255, 255, 255]
display_image = jax.jit(display_image, static_argnums=(1, 2))  # one compilation per shape, not per op


def test_uint8_grey_and_rgb_map_back_from_the_decoder_space():
    grey = jnp.array([[[-0.5], [0.0], [0.5]]])  # [1, 3, 1]
    np.testing.assert_array_equal(np.asarray(display_image(grey, True)),
                                  [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]])
    rgb = jnp.array([[[-0.5, 0.0, 0.5]]])
    np.testing.assert_array_equal(np.asarray(display_image(rgb, True)), [[[0, 128, 255]]])


@pytest.mark.parametrize("channels", [2, 5])  # 2 bins is not an ON/OFF frame
def test_signed_float_voxel_grids_of_any_bin_count_show_on_red_and_off_blue(channels):
    voxel = jnp.zeros((2, 3, 3, channels))  # [frames, H, W, bins], symlog-ed as image_input gives them
    voxel = voxel.at[0, 0, 0, 0].set(0.7).at[0, 1, 1, -1].set(-2.0).at[1, 2, 2, 0].set(0.1)
    image = np.asarray(display_image(voxel, False))
    assert image.shape == (2, 3, 3, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, 1, 1], OFF_COLOUR)  # the frame's strongest: full colour
    assert image[0, 0, 0, 0] > image[0, 0, 0, 2] and image[0, 0, 0, 1] < 255  # ON: reddish, weaker
    np.testing.assert_array_equal(image[0, 2, 2], WHITE)  # no events
    # Normalised per frame, but never by less than one event (symlog(1) = log 2): a faint frame stays faint.
    strength = 0.1 / np.log(2.0)
    np.testing.assert_array_equal(image[1, 2, 2], np.round(255 * (1 - strength) + np.array(ON_COLOUR) * strength))


def test_uint8_on_off_count_frames_show_on_red_and_off_blue():
    counts = np.zeros((4, 4, 2), np.uint8)  # the event camera's "frame": per-polarity counts
    counts[0, 0, 0], counts[1, 1, 1], counts[2, 2, 0] = 4, 4, 1
    image = np.asarray(display_image(image_input(jnp.asarray(counts)), True))
    assert image.shape == (4, 4, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, 0], ON_COLOUR)
    np.testing.assert_array_equal(image[1, 1], OFF_COLOUR)
    np.testing.assert_array_equal(image[3, 3], WHITE)
    np.testing.assert_array_equal(image[2, 2], [246, 199, 199])  # one event of four: a quarter red


def test_float_on_off_count_frames_show_on_red_and_off_blue():
    counts = np.zeros((4, 4, 2), np.float32)  # the event camera's "frame": per-polarity counts
    counts[0, 0, 0], counts[1, 1, 1], counts[2, 2, 0], counts[3, 0] = 4, 4, 1, (2, 2)
    image = np.asarray(display_image(image_input(jnp.asarray(counts)), False, True))
    np.testing.assert_array_equal(image[0, 0], ON_COLOUR)
    np.testing.assert_array_equal(image[1, 1], OFF_COLOUR)  # summed as time bins, it would be red
    np.testing.assert_array_equal(image[3, 3], WHITE)
    strength = np.log(2.0) / np.log(5.0)  # one event of four, symlog-ed: log 2 / log 5
    np.testing.assert_array_equal(image[2, 2], np.round(255 * (1 - strength) + np.array(ON_COLOUR) * strength))
    assert not np.array_equal(image[3, 0], WHITE)  # as many ON as OFF: shown, not cancelled


def test_uint8_images_of_other_channel_counts_are_grey_means():
    stack = jnp.stack([jnp.full((2, 2), -0.5), jnp.full((2, 2), 0.5)] * 2, axis=-1)  # 4 stacked frames
    np.testing.assert_array_equal(np.asarray(display_image(stack, True)), np.full((2, 2, 3), 128))


@pytest.mark.parametrize("from_uint8", [True, False])
@pytest.mark.parametrize("channels", [1, 2, 4, 5])
def test_every_image_is_finite_rgb_uint8_that_tensorboard_takes(channels, from_uint8):
    values = jnp.asarray(np.random.default_rng(channels).normal(0.0, 3.0, (6, 5, channels)), jnp.float32)
    values = values.at[0, 0, 0].set(jnp.nan)  # a diverged reconstruction still draws
    image = np.asarray(display_image(values, from_uint8))
    assert image.shape == (6, 5, 3) and image.dtype == np.uint8
    assert summary.image("x", image, dataformats="HWC").value[0].image.colorspace == 3
