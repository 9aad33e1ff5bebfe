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


def test_a_count_beside_no_event_stream_is_a_vector_and_unroutable_entries_still_fail():
    layout = observation_layout(gym.spaces.Dict({"count": gym.spaces.Box(0, 9, (), np.int32)}))
    assert layout.mlp_shapes == {"count": (1,)} and not layout.event_streams
    without_count = gym.spaces.Dict({"events": gym.spaces.Box(0, 1, (8, 4), np.float32)})
    with pytest.raises(SpaceError, match="'events'.*event streams"):
        observation_layout(without_count)
