"""scripts.probe_observations at toy sizes: every input is recorded under the policy asked for and
probed on steps of another seed; the linear feedback acts as written; bad gains are a clear error."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from scripts import probe_observations


def test_every_input_is_probed_on_another_seeds_steps(tmp_path, capsys):
    out = tmp_path / "observations.json"
    report = probe_observations.main(["--image-size", "16", "--inputs", "pixels", "integrated", "events",
                                      "--gains", "0.05", "0.1", "1", "0.3", "--train-steps", "60", "--test-steps", "30",
                                      "--cnn-updates", "3", "--decoder-updates", "3", "--out", str(out),
                                      "--set", "env.event_camera.contrast_pos=0.05"])
    assert set(report["results"]) == {"pixels", "integrated", "events"}
    for source, result in report["results"].items():
        assert len(result["r2"]) == 4 and all(np.isfinite(result["r2"])), source
        assert len(result["state_std"]) == 4 and result["episode_length"] > 1
        assert len(result["cnn_r2"]) == 4 and all(np.isfinite(result["cnn_r2"])), source
        assert np.isfinite(result["decoder_r2"]) and result["decoder_r2"] <= 1.0, source
    pixels = report["results"]
    assert pixels["pixels"]["pixels"] == 16 * 16 * 3 and pixels["integrated"]["pixels"] == 16 * 16
    assert pixels["events"]["pixels"] == 16 * 16 * 2  # an event stream as its count frame
    assert report["overrides"] == ["env.event_camera.contrast_pos=0.05"] and report["cnn_updates"] == 3
    assert report["noise"] is None
    assert all(result["cnn_depth"] == 32 for result in report["results"].values())  # the preset's
    assert json.loads(out.read_text())["results"].keys() == report["results"].keys()
    table = capsys.readouterr().out
    assert "| integrated |" in table and "| events, CNN |" in table


def test_noise_configures_the_camera_as_the_learning_benchmark_does():
    from scripts.bench_events import NOISE

    for flags, noisy in (([], False), (["--noise"], True)):
        args = probe_observations.parse_args(["--env", "Pendulum-v1", *flags,
                                              "--set", "env.event_camera.contrast_pos=0.1"])
        camera = probe_observations.input_config("frame", args)["env"]["event_camera"]
        assert camera["contrast_pos"] == 0.1 and camera["frame_interval"] == pytest.approx(0.1)  # 2 steps of 0.05 s
        for key, value in NOISE.items():
            assert (camera[key] == value) == noisy, (key, flags)


def test_the_linear_feedback_acts_as_written():
    gains, state = np.array([0.0, 0.0, 1.0, 0.5]), np.array([9.0, 9.0, -0.1, 0.1])
    assert probe_observations.feedback_action(gains, state, gym.spaces.Discrete(2)) == 0  # -0.05 <= 0
    assert probe_observations.feedback_action(gains, -state, gym.spaces.Discrete(2)) == 1
    box = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    np.testing.assert_allclose(probe_observations.feedback_action(np.array([3.0]), np.array([1.0]), box), [2.0])
    np.testing.assert_allclose(probe_observations.feedback_action(np.array([3.0]), np.array([-0.1]), box), [-0.3], rtol=1e-6)


def test_gains_that_do_not_fit_the_env_are_a_clear_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        probe_observations.main(["--image-size", "16", "--inputs", "pixels", "--gains", "1", "2", "--train-steps", "5"])
    assert stopped.value.code == 2 and "--gains has 2 values" in capsys.readouterr().err


def test_the_ridge_path_equals_each_penalty_solved_alone_and_each_entry_gets_its_own_penalty():
    """Against ``agents.state_probe.ridge_fit`` (normal equations), penalty by penalty; then an entry
    read from a few features and one from none get the penalties that suit each."""
    from agents.state_probe import ridge_fit

    rng = np.random.default_rng(0)
    features, targets = rng.normal(size=(40, 60)), rng.normal(size=(40, 2))
    rows = rng.normal(size=(7, 60))
    path = probe_observations.ridge_path(features, targets, [0.1, 10.0])(rows)
    for index, penalty in enumerate([0.1, 10.0]):
        np.testing.assert_allclose(path[index], ridge_fit(features, targets, penalty)(rows), rtol=1e-6, atol=1e-8)
    episodes = []
    for _ in range(8):
        x = rng.normal(size=(50, 30))
        episodes.append((x, np.stack([x[:, 0] - 2.0 * x[:, 1], rng.normal(size=50)], -1)))
    r2, penalties = probe_observations.per_entry_probe(episodes[:6], episodes[6:])
    assert r2[0] > 0.95 and r2[1] < 0.1 and penalties[0] < penalties[1]


def test_the_decoder_probe_redraws_what_the_state_determines_and_not_noise():
    rng = np.random.default_rng(0)
    rows, cols = np.meshgrid(np.linspace(-1, 1, 8), np.linspace(-1, 1, 8), indexing="ij")
    def episodes(count, noise):
        made = []
        for _ in range(count):
            states = rng.uniform(-1, 1, size=(50, 2))
            images = 2.0 * (states[:, :1, None] * rows + states[:, 1:, None] * cols)[..., None]
            made.append(((rng.normal(size=images.shape) if noise else images).astype(np.float32), states))
        return made
    config = {"world_model": {"cnn_depth": 8, "units": 32, "layers": 1}}
    determined = probe_observations.decoder_probe(config, episodes(8, False), episodes(2, False), updates=300)
    unrelated = probe_observations.decoder_probe(config, episodes(8, True), episodes(2, True), updates=300)
    assert determined > 0.7 and unrelated < 0.05
