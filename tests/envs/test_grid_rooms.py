"""The four-rooms grid world: a valid Gymnasium env, walls that block, doors that connect, and a goal
far enough away that random actions almost never reach it."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401 - registers hmbrl/GridFourRooms-v0
from envs.grid_rooms import GridFourRooms, move, random_success_rate, shortest_path, shortest_path_length

UP, DOWN, LEFT, RIGHT = range(4)


def test_passes_the_gymnasium_checker_and_is_registered():
    env = gym.make("hmbrl/GridFourRooms-v0")
    check_env(env.unwrapped)  # the unwrapped env keeps its spec, so its render mode is checked too
    assert env.spec.max_episode_steps == 200
    image = GridFourRooms(render_mode="rgb_array").render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_observation_norm_is_constant_and_info_names_the_cell():
    env = GridFourRooms()
    obs, info = env.reset(seed=0)
    assert info["cell"] == env.start
    rng = np.random.default_rng(0)
    norms = []
    for action in rng.integers(0, 4, 300):
        obs, _, terminated, _, info = env.step(action)
        norms.append(np.linalg.norm(obs))
        row, column = info["cell"]
        assert obs[row - 1] == 1.0 and obs[env.size - 2 + column - 1] == 1.0
        if terminated:
            obs, info = env.reset()
    np.testing.assert_allclose(norms, np.sqrt(2.0), rtol=1e-6)


def test_walls_block():
    env = GridFourRooms()
    env.reset(seed=0)
    for action in (DOWN, LEFT):  # the start is the corner against the outer walls
        assert env.step(action)[4]["cell"] == env.start
    wall = (env.size - 1) // 2
    for _ in range(wall + 2):  # along the bottom row into the wall between the lower rooms
        _, _, _, _, info = env.step(RIGHT)
    assert info["cell"] == (env.start[0], wall - 1)


def test_the_shortest_path_goes_through_doors_to_the_goal_and_is_long():
    env = GridFourRooms()
    env.reset(seed=0)
    actions = shortest_path(env)
    assert len(actions) == shortest_path_length(env) >= 30
    wall = (env.size - 1) // 2
    cells = []
    for action in actions[:-1]:
        _, reward, terminated, _, info = env.step(action)
        cells.append(info["cell"])
        assert reward == 0.0 and not terminated and info["success"] is False
    _, reward, terminated, truncated, info = env.step(actions[-1])
    assert info["cell"] == env.goal and reward == 1.0 and terminated and not truncated and info["success"] is True
    assert sum(wall in cell for cell in cells) == 2  # two door cells, no other wall cell


def test_random_actions_almost_never_reach_the_goal():
    assert random_success_rate(GridFourRooms(), 300, 200, np.random.default_rng(0)) <= 0.02


def test_the_vectorised_random_walk_moves_as_step_does():
    env = GridFourRooms()
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    cells = np.array([env.start])
    for action in rng.integers(0, 4, 200):
        cells = move(env.free, cells, np.array([action]))
        assert tuple(cells[0]) == env.step(action)[4]["cell"]


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 4}, "size must be at least 5"),
    ({"doors": (3, 14, 3)}, "doors must be four positions"),
    ({"doors": (8, 14, 3, 14)}, "upper_row must be in \\[1, 7\\]"),
    ({"doors": (3, 14, 3, 17)}, "right_column must be in \\[9, 16\\]"),
    ({"render_mode": "human"}, "render_mode"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GridFourRooms(**kwargs)


def test_reset_can_place_the_agent_in_any_free_cell_and_the_groups_name_it():
    env = gym.make("hmbrl/GridFourRooms-v0")  # the option passes through the registered wrappers
    obs, info = env.reset(seed=0, options={"cell": (5, 12)})
    assert info["cell"] == (5, 12)
    groups = env.unwrapped.one_hot_groups
    indices = [int(np.argmax(part)) for part in np.split(obs, np.cumsum(groups)[:-1])]
    assert env.unwrapped.cell_of_groups(indices) == (5, 12)
    assert env.step(UP)[4]["cell"] == (4, 12)
    assert env.reset()[1]["cell"] == env.unwrapped.start  # without the option: the start corner again


@pytest.mark.parametrize("cell", [(0, 3), ((18 - 1) // 2, 1), (18, 2)])
def test_reset_refuses_a_wall_or_an_outside_cell(cell):
    with pytest.raises(ValueError, match="options\\['cell'\\] must be a free"):
        GridFourRooms().reset(options={"cell": cell})
