"""Environments: ``make_env`` from string ids, wrappers, the event camera, dm-env adapters, vector
envs and the collector. Imports nothing from the rest of hmbrl."""

import gymnasium

from envs.config import EnvConfig, EventCameraConfig
from envs.registry import list_env_ids, make_env
from envs.vector import make_vector_env

if "hmbrl/PointFourRooms-v0" not in gymnasium.registry:
    gymnasium.register("hmbrl/PointFourRooms-v0", entry_point="envs.maze:PointFourRooms", max_episode_steps=400)
if "hmbrl/GridFourRooms-v0" not in gymnasium.registry:
    gymnasium.register("hmbrl/GridFourRooms-v0", entry_point="envs.grid_rooms:GridFourRooms", max_episode_steps=200)

__all__ = ["EnvConfig", "EventCameraConfig", "list_env_ids", "make_env", "make_vector_env"]
