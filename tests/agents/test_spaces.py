"""Observation routing of the event camera's representations: frames and voxel grids to the CNN
(with their own dtypes), raw event streams to the event encoder with the camera's sizes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from agents.spaces import SpaceError, observation_layout
from agents.spaces import replay_spec
from envs.config import EventCameraConfig
from envs.event_camera import event_observation_space
from world_models.event_encoder import EventStream

IMAGE_SIZE = (12, 20)  # height, width


def camera_space(representation: str) -> gym.Space:
    config = EventCameraConfig(representation=representation, max_events=64, voxel_bins=3, frame_interval=0.05)
    return event_observation_space(config, IMAGE_SIZE)


def test_frames_and_voxel_grids_go_to_the_cnn_with_their_dtype():
    frame, voxel = observation_layout(camera_space("frame")), observation_layout(camera_space("voxel"))
    assert frame.cnn_shapes == {"obs": (12, 20, 2)} and frame.dtypes["obs"] == np.float32
    assert frame.count_frames == {"obs"} and voxel.count_frames == frozenset()  # counts vs signed bins
    assert voxel.cnn_shapes == {"obs": (12, 20, 3)} and voxel.dtypes["obs"] == np.float32
    signed = np.array([[[[-1.5, 0.25, 3.0]]]], np.float64)  # a batch of one 1x1 pixel
    assert voxel.to_dict(signed)["obs"].dtype == np.float32
    np.testing.assert_array_equal(voxel.to_dict(signed)["obs"], signed.astype(np.float32))
    assert replay_spec(voxel, 2)["obs"] == ((12, 20, 3), np.float32)  # not truncated to uint8 in replay


def test_raw_events_go_to_the_event_encoder_with_the_cameras_sizes():
    layout = observation_layout(camera_space("events"))
    assert not layout.mlp_shapes and not layout.cnn_shapes
    duration = float(np.float32(0.05))  # the space's float32 bound
    assert layout.event_streams == {"events": EventStream(64, "count", width=20, height=12, duration=duration)}
    assert layout.keys == ("events", "count")
    batch = {"events": np.ones((2, 64, 4), np.float64), "count": np.array([3, 0], np.int64)}
    routed = layout.to_dict(batch)
    assert routed["events"].dtype == np.float32 and routed["count"].dtype == np.int32
    assert routed["count"].shape == (2,)
    spec = replay_spec(layout, 2)
    assert spec["events"] == ((64, 4), np.float32) and spec["count"] == ((), np.int32)


def test_decoder_patterns_make_keys_reconstruction_targets_only_or_inputs_only():
    """Raw events read beside their integrated image as the decoder's target only; by default the
    decoder follows the encoder's patterns (nothing changes), and a key neither matches is dropped."""
    config = EventCameraConfig(representation="events", extra_representations=("integrated",), max_events=64)
    space = event_observation_space(config, IMAGE_SIZE)
    layout = observation_layout(space, cnn_keys="", decoder_cnn_keys="integrated")
    assert layout.cnn_shapes == {"integrated": (12, 20, 1)} and set(layout.event_streams) == {"events"}
    assert layout.decoder_only == {"integrated"} and layout.encoder_only == {"events"}  # no count frame
    assert layout.decoded_images == ("integrated",) and layout.keys == ("integrated", "events", "count")
    both = observation_layout(space)
    assert both.decoder_only == both.encoder_only == frozenset() and both.decoded_images == ("integrated",)
    events_alone = observation_layout(space, cnn_keys="")  # the image dropped, the count frame still a target
    assert not events_alone.cnn_shapes and events_alone.encoder_only == frozenset()
    vectors = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (3,)), "goal": gym.spaces.Box(-1, 1, (2,)),
                               "noise": gym.spaces.Box(-1, 1, (4,))})
    layout = observation_layout(vectors, mlp_keys="state|noise", decoder_mlp_keys="state|goal")
    assert set(layout.mlp_shapes) == {"state", "goal", "noise"}
    assert layout.decoder_only == {"goal"} and layout.encoder_only == {"noise"}
    assert set(observation_layout(vectors, mlp_keys="state").mlp_shapes) == {"state"}  # dropped as before
    with pytest.raises(SpaceError, match="no observation entry"):  # targets alone: nothing to read
        observation_layout(vectors, mlp_keys="", decoder_mlp_keys=".*")


def test_a_count_beside_no_event_stream_is_a_vector_and_unroutable_entries_still_fail():
    layout = observation_layout(gym.spaces.Dict({"count": gym.spaces.Box(0, 9, (), np.int32)}))
    assert layout.mlp_shapes == {"count": (1,)} and not layout.event_streams
    without_count = gym.spaces.Dict({"events": gym.spaces.Box(0, 1, (8, 4), np.float32)})
    with pytest.raises(SpaceError, match="'events'.*event streams"):
        observation_layout(without_count)
