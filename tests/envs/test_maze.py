"""The continuous four-rooms maze: a valid Gymnasium env whose goal is reachable only through doors."""

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401 - registers hmbrl/PointFourRooms-v0
from envs.maze import PointFourRooms


def steer(env, obs, waypoint, limit=80):
    for _ in range(limit):
        delta = np.asarray(waypoint) - obs
        if np.linalg.norm(delta) < 0.01:
            break
        obs, reward, terminated, truncated, _ = env.step(np.clip(delta / env.speed, -1, 1))
        if terminated:
            return obs, reward, True
    return obs, 0.0, False


def test_passes_the_gymnasium_checker_and_is_registered():
    check_env(PointFourRooms())
    env = gym.make("hmbrl/PointFourRooms-v0")
    assert env.spec.max_episode_steps == 400
    assert PointFourRooms(render_mode="rgb_array").render().shape == (64, 64, 3)


def test_walls_block_and_doors_lead_to_the_goal():
    env = PointFourRooms()
    obs, _ = env.reset(seed=0)
    obs, _, _ = steer(env, obs, (0.7, 0.15))  # straight at the wall between the lower rooms
    assert obs[0] < 0.5
    obs, _ = env.reset(seed=0)
    reward, done = 0.0, False
    for waypoint in [(0.4, 0.25), (0.6, 0.25), (0.75, 0.4), (0.75, 0.6), (0.85, 0.85)]:
        obs, reward, done = steer(env, obs, waypoint)
        if done:
            break
    assert done and reward == 1.0


def test_info_reports_success_at_the_goal_only():
    env = PointFourRooms()
    env.reset(seed=0)
    assert env.step(np.zeros(2, np.float32))[4] == {"success": False}
    env.position = env.goal.copy()
    _, reward, terminated, _, info = env.step(np.zeros(2, np.float32))
    assert info == {"success": True} and reward == 1.0 and terminated
