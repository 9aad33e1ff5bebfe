"""The world-model probe's per-entry R^2, against numbers worked out by hand, and its output."""

import json
import math

import numpy as np
import pytest

from scripts.bench_world_model import action_response, format_r2, main
from agents.state_probe import entry_r2


def test_world_model_probe_scores_each_entry_on_its_own():
    # entry 0 wide and exact, entry 1 narrow and predicted by its mean: a pooled R^2 would be near 1
    target = np.asarray([[0.0, 0.01], [10.0, -0.01], [-10.0, 0.01], [0.0, -0.01]])  # [N=4, D=2]
    prediction = target.copy()
    prediction[:, 1] = 0.0
    assert entry_r2(prediction, target) == [pytest.approx(1.0), pytest.approx(0.0, abs=1e-6)]


def test_an_entry_that_never_varies_has_no_r2():
    # an unvisited cell of a one-hot grid: always 0, so any error would give an R^2 of minus millions
    target = np.asarray([[1.0, 0.0], [-1.0, 0.0]])
    assert entry_r2(target + 0.5, target) == [pytest.approx(0.75), None]  # 1 - (2 x 0.25) / 2
    assert format_r2([0.5, None]) == "0.500, -"
    assert format_r2([None] * 6 + [0.2, 0.4, 0.9]) == "min 0.200 / median 0.400 / max 0.900 over 3 of 9 entries"


def test_r2_is_reported_after_each_update_count(tmp_path):
    main(["--env", "CartPole-v1", "--config", "debug", "--steps", "300", "--updates", "4", "2",
          "--compare", "world_model.vector_loss", "mse", "--out", str(tmp_path / "wm")])
    marks = json.loads((tmp_path / "wm.json").read_text())["results"]["mse"]
    assert [mark["updates"] for mark in marks] == [2, 4]
    assert all(len(mark["r2_per_entry"]["obs"]) == 4 and math.isfinite(mark["kl"]) for mark in marks)


def test_action_response_against_a_hand_made_linear_system():
    # x' = 0.9 x + 0.3 a in the environment; the "model" imagines x' = x + 0.2 a from every step
    T, B = 7, 3
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (T, B, 1))
    obs = np.zeros((T, B, 1))
    obs[0] = rng.normal(size=(B, 1))
    is_first = np.zeros((T, B), bool)
    is_first[4, 1] = True  # a new episode: its first step is no transition of the last one, and must be left out
    for t in range(T - 1):
        obs[t + 1] = 0.9 * obs[t] + 0.3 * actions[t]
        obs[t + 1, is_first[t + 1]] = 50.0
    prev_action = np.concatenate([np.zeros((1, B, 1)), actions[:-1]])  # the action at t is prev_action[t + 1]
    batch = {"obs": obs, "is_first": is_first, "prev_action": prev_action}
    candidates = np.array([-1.0, 1.0])[None, :, None, None]  # [1, C, 1, 1]
    imagined = obs[:-1, None] + 0.2 * candidates  # [T-1, C, B, D]
    response = action_response([batch], [imagined], "obs", discrete=False)
    assert response["effects"] == ["a[0]"]
    np.testing.assert_allclose(response["imagined"], [[0.2]], atol=1e-6)
    np.testing.assert_allclose(response["real"], [[0.3]], atol=1e-6)
    assert response["real_r2"] == [pytest.approx(1.0)]


def test_action_response_of_discrete_actions_is_each_against_action_0():
    T, B = 9, 2
    rng = np.random.default_rng(1)
    taken = rng.integers(0, 3, (T, B))
    obs = np.zeros((T, B, 2))
    for t in range(T - 1):  # action 1 adds 1 to entry 0, action 2 subtracts 2 from entry 1
        obs[t + 1] = obs[t] + np.stack([taken[t] == 1, -2.0 * (taken[t] == 2)], -1)
    one_hot = np.eye(3)[taken]
    prev_action = np.concatenate([np.zeros((1, B, 3)), one_hot[:-1]])
    batch = {"obs": obs, "is_first": np.zeros((T, B), bool), "prev_action": prev_action}
    effects = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, -1.0]])  # the model's, per candidate action
    imagined = obs[:-1, None] + effects[None, :, None, :]
    response = action_response([batch], [imagined], "obs", discrete=True)
    assert response["effects"] == ["a=1 - a=0", "a=2 - a=0"]
    np.testing.assert_allclose(response["imagined"], [[0.5, 0.0], [0.0, -1.0]], atol=1e-6)
    np.testing.assert_allclose(response["real"], [[1.0, 0.0], [0.0, -2.0]], atol=1e-6)


def test_a_camera_env_gets_the_state_probe_and_cartpoles_own_action_effect(tmp_path):
    camera = ["env.image_size=[16,16]", "env.event_camera.representation=frame", "env.event_camera.contrast_pos=0.05",
              "env.event_camera.contrast_neg=0.05"]
    out = main(["--env", "event:CartPole-v1", "--config", "debug", "--steps", "200", "--updates", "2",
                "--probe-steps", "60", "--compare", "world_model.dynamics_input", "joint", "--set", *camera,
                "--out", str(tmp_path / "wm")])
    state = out["results"]["joint"][0]["state"]
    assert len(state["entries"]) == 4 and len(state["r2"]) == 4  # x, x', theta, theta'
    response = state["action_response"]
    assert response["effects"] == ["a=1 - a=0"] and np.shape(response["imagined"]) == (1, 4)
    # pushing right instead of left for one 0.02 s step: 20 N on 1.1 kg speeds the cart by about 0.36 m/s
    # and turns the pole the other way (CartPole's equations)
    real = np.asarray(response["real"])[0]
    assert 0.25 < real[1] < 0.5 and real[3] < -0.25
