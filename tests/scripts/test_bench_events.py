"""The events benchmark's cheap parts: each input's config builds the env it names, summaries
against hand-worked numbers, the table and plots from a saved JSON, and the two measurements."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from agents.spaces import observation_layout
from configs.loader import load_config
from envs import make_env
from scripts.bench_events import (encoder_throughput, events_per_step, filter_sweep, input_of, main, parse_args,
                                  run_config, run_overrides, summarise_input)


@pytest.mark.parametrize("source, space", [("state", "(4,)"), ("pixels", "(16, 16, 3)"), ("frame", "(16, 16, 2)"),
                                           ("voxel", "(16, 16, 5)"), ("events", "(64, 4)"),
                                           ("integrated", "(16, 16, 1)"), ("events_integrated", "'integrated'")])
def test_every_input_builds_its_observation(source, space):
    config = load_config(["control"], run_overrides("CartPole-v1", source, 16, 2, 64, noise=False))
    env = make_env(config["env_id"], config["env"], seed=0)
    assert space in str(env.observation_space)
    env.close()
    if source != "events_integrated":
        assert not config["env"]["event_camera"]["extra_representations"] and config["decoder"]["cnn_keys"] is None
    else:  # raw events read, their integrated image (no leak) the only target
        assert "(64, 4)" in str(env.observation_space) and config["env"]["event_camera"]["integration_time"] == np.inf
        layout = observation_layout(env.observation_space, config["encoder"]["mlp_keys"], config["encoder"]["cnn_keys"],
                                    config["decoder"]["mlp_keys"], config["decoder"]["cnn_keys"])
        assert layout.decoder_only == {"integrated"} and layout.encoder_only == {"events"}
    if source not in ("state", "pixels"):  # one agent step of simulated time: two CartPole steps
        assert config["env"]["event_camera"]["frame_interval"] == pytest.approx(0.04)
    # every camera input measures whether its latent holds the state; state runs cannot (nothing to probe)
    assert config["run"]["state_probe_steps"] == (0 if source == "state" else 1000)


def test_noise_sets_the_camera_noise_only_for_event_inputs():
    noisy = dict(run_overrides("Pendulum-v1", "voxel", 16, 1, 64, noise=True))
    assert noisy["env.event_camera.shot_noise_rate"] > 0 and noisy["env.event_camera.threshold_sigma"] > 0
    assert not any("event_camera" in key for key, _ in run_overrides("Pendulum-v1", "pixels", 16, 1, 64, noise=True))


def test_the_camera_steps_the_envs_own_time_where_it_is_known():
    assert dict(run_overrides("CartPole-v1", "events", 16, 2, 64, noise=False))["env.event_camera.frame_interval"] == 0.04
    elsewhere = dict(run_overrides("MountainCar-v0", "events", 16, 2, 64, noise=False))
    assert "env.event_camera.frame_interval" not in elsewhere  # the camera's own default stands


def _curve(returns, r2, seconds=100.0):
    return [{"step": 1000 * (i + 1), "seconds": seconds, "return": value, "level0/world_model/r2/events": r2}
            for i, value in enumerate(returns)]


def test_summary_over_seeds():
    curves = {0: _curve([0, 400, 420, 440, 460], 0.5), 1: _curve([0, 10, 20, 30, 40], 0.3, seconds=200.0)}
    summary = summarise_input(curves, target=400.0)
    assert summary["final"] == pytest.approx((430.0 + 25.0) / 2)  # each seed: mean of its last four
    assert (summary["final_min"], summary["final_max"]) == (25.0, 430.0)
    assert (summary["reached"], summary["seeds"], summary["steps"]) == (1, 2, 5000)
    assert summary["first_at_target"] == [2000, None]  # the evaluation, not the mean of four, first >= 400
    assert summary["at_target_since"] == [2000, None] and summary["last"] == [460, 40]
    assert summary["imagined_real"] == [None, None] and summary["reward_loss"] is None  # neither logged
    curves[0][-1].update({"level0/exploitation/imagined_return": -30.0, "level0/exploitation/real_return": -60.0,
                          "level0/world_model/loss/reward": 0.8})
    curves[1][-2]["level0/world_model/loss/reward"] = 0.1  # not the last evaluation's
    summary = summarise_input(curves, target=400.0)
    assert summary["imagined_real"] == [[-30.0, -60.0], None] and summary["reward_loss"] == pytest.approx(0.8)
    assert summary["value_ranking"] == [None, None]  # logged by neither
    curves[1][-1]["level0/actor_critic/value_reward_corr"] = 0.25
    assert summarise_input(curves, target=400.0)["value_ranking"] == [None, 0.25]
    assert summary["r2"] == {"events": pytest.approx(0.4)} and summary["seconds"] == 150.0
    assert summary["state_r2"] == {}  # no state probe logged
    curves[0][-1]["eval/state_r2/[2]"], curves[1][-1]["eval/state_r2/[2]"] = 0.9, 0.5
    curves[1][-2]["eval/state_r2/[0]"] = 0.7  # not the last evaluation: not the final state R^2
    assert summarise_input(curves, target=400.0)["state_r2"] == {"[2]": pytest.approx(0.7)}


def test_a_seed_is_at_the_target_since_the_evaluation_that_began_its_last_run_at_it():
    # reached at 2k, lost at 3k, back from 4k on; a short run at the target from its second evaluation
    # counts although the mean of its last four (with the first, far below) does not reach it
    curves = {0: _curve([0, 400, 10, 410, 420], 0.5), 1: _curve([-500, 450, 460], 0.5), 2: _curve([500, 0], 0.5)}
    summary = summarise_input(curves, target=400.0)
    assert summary["first_at_target"] == [2000, 2000, 1000]
    assert summary["at_target_since"] == [4000, 2000, None] and summary["reached"] == 2
    assert summary["final_min"] < 400.0  # seed 1's mean of four: (-500 + 450 + 460) / 3


def test_replot_prints_the_table_and_draws_one_plot_per_env(tmp_path, capsys):
    saved = {"noise": True, "measured": {}, "curves": {"CartPole-v1": {
        "events": {"0": _curve([0, 400, 420, 440, 460], 0.5)}, "state": {"0": _curve([500] * 4, 0.9)}}}}
    path = tmp_path / "events.json"
    path.write_text(json.dumps(saved))
    result = main(["--replot", str(path)])
    out = capsys.readouterr().out
    assert ("| CartPole-v1 | events | 5,000 | 430.0 [430.0, 430.0] | 460.0 | 2,000 | 2,000 (1/1 at 400) "
            "| events 0.500 | n/a | n/a | n/a | n/a | 100 |") in out
    assert "noisy camera" in out and (tmp_path / "events_CartPole-v1.png").exists()
    assert result["summary"]["CartPole-v1"]["state"]["final"] == 500.0


def _saved(path: Path, noise: bool, curves: dict, overrides: list[str], action_repeat: int = 2) -> str:
    path.write_text(json.dumps({"noise": noise, "measured": {}, "curves": {"Pendulum-v1": curves}, "settings": {
        "steps": 50_000, "image_size": 48, "action_repeat": action_repeat, "max_events": 2048, "seeds": [0],
        "overrides": overrides}}))
    return str(path)


def test_replot_merges_several_benchmarks_naming_what_each_file_does_not_share(tmp_path, capsys):
    clean = _saved(tmp_path / "clean.json", False, {"frame": {"0": _curve([-1200, -600], 0.6)},
                                                    "events": {"1": _curve([-1300, -500], 0.5)}}, ["cnn_depth=16"])
    noisy = _saved(tmp_path / "noisy.json", True, {"frame": {"0": _curve([-1250, -900], 0.05)}}, ["cnn_depth=16"])
    bins = _saved(tmp_path / "bins.json", False, {"voxel": {"0": _curve([-1200, -1100], 0.4)}},
                  ["cnn_depth=16", "env.event_camera.voxel_bins=2"])
    # denser checkpoints change what a run keeps, not what it learns: still a seed of the noisy `frame`
    checkpointed = _saved(tmp_path / "checkpointed.json", True, {"frame": {"1": _curve([-1300, -700], 0.05)}},
                          ["cnn_depth=16", "run.checkpoint_every=2500", "run.keep_checkpoints=20"])
    result = main(["--replot", clean, noisy, bins, checkpointed, "--out", str(tmp_path / "merged")])
    assert list(result["curves"]["Pendulum-v1"]) == [
        "frame", "events", "frame (noisy camera)", "voxel (env.event_camera.voxel_bins=2)"]
    assert list(result["curves"]["Pendulum-v1"]["frame (noisy camera)"]) == ["0", "1"]
    assert result["summary"]["Pendulum-v1"]["frame (noisy camera)"]["final"] == pytest.approx(-1037.5)
    assert result["settings"] == {"action_repeat": 2, "merged_from": [clean, noisy, bins, checkpointed]}
    assert (tmp_path / "merged_Pendulum-v1.png").exists() and "noisy camera: " not in capsys.readouterr().out
    # one file replots where it was and keeps its settings (a second replot still knows its action repeat)
    kept = json.loads(Path(clean).read_text())["settings"]
    main(["--replot", clean])
    assert json.loads(Path(clean).read_text())["settings"] == kept
    # the merged file replots alone, as it was
    assert main(["--replot", str(tmp_path / "merged.json")])["curves"] == result["curves"]
    # all noisy: the table's title says so, the inputs keep their names
    noisy_events = _saved(tmp_path / "noisy_events.json", True, {"events": {"0": _curve([-1300, -800], 0.05)}},
                          ["cnn_depth=16"])
    capsys.readouterr()
    both = main(["--replot", noisy, noisy_events, "--out", str(tmp_path / "noisy_merged")])
    assert list(both["curves"]["Pendulum-v1"]) == ["frame", "events"] and both["noise"]
    assert "(noisy camera: " in capsys.readouterr().out


def test_replot_refuses_a_run_given_twice_and_files_of_different_action_repeats(tmp_path):
    one = _saved(tmp_path / "one.json", False, {"frame": {"0": _curve([-1200, -600], 0.6)}}, [])
    again = _saved(tmp_path / "again.json", False, {"frame": {"0": _curve([-1200, -700], 0.6)}}, [])
    with pytest.raises(SystemExit, match="frame seed 0 is in .*one.json and in .*again.json"):
        main(["--replot", one, again, "--out", str(tmp_path / "merged")])
    other = _saved(tmp_path / "other.json", False, {"events": {"0": _curve([-1200, -700], 0.6)}}, [], action_repeat=4)
    with pytest.raises(SystemExit, match="differ in action repeat"):
        main(["--replot", one, other, "--out", str(tmp_path / "merged")])
    with pytest.raises(SystemExit):  # the filter sweep belongs to the measurement, which a replot does not run
        parse_args(["--replot", one, "--filter-times", "0.005"])


def test_events_per_step_and_encoder_throughput_measure_something():
    counts = events_per_step("CartPole-v1", 16, 1, noise=True, steps=10)
    assert 0 < counts["mean"] <= counts["max"]  # 5 Hz shot noise alone fires on 256 pixels
    sensitive = ["env.event_camera.contrast_pos=0.02", "env.event_camera.contrast_neg=0.02"]  # the benchmark's --set
    assert (events_per_step("CartPole-v1", 16, 1, noise=False, steps=10, overrides=sensitive)["mean"]
            > events_per_step("CartPole-v1", 16, 1, noise=False, steps=10)["mean"])
    small = dict(backbones={"event_s5": dict(state_size=4, layers=1, blocks=1)}, features=8, units=8, chunk_size=8)
    measured = encoder_throughput(32, 0.5, 4, repeats=1, encoder_kwargs=small)
    assert measured["events_per_step"] == 16
    assert np.isfinite(measured["forward_events_per_second"]) and measured["train_events_per_second"] > 0


def test_the_filter_sweep_starts_unfiltered_and_drops_more_noise_than_signal():
    rows = filter_sweep("Pendulum-v1", 16, 2, [0.002], steps=20)
    assert [row["filter_time"] for row in rows] == [0.0, 0.002]
    unfiltered, filtered = rows
    assert unfiltered["clean_kept"] == 1.0 and unfiltered["noisy"] > unfiltered["clean"] > 0
    assert filtered["clean"] <= unfiltered["clean"]
    # 2 ms over 8 neighbours at 5 Hz keeps about 8% of isolated noise; a swinging rod's edge keeps more
    assert filtered["noisy"] / unfiltered["noisy"] < filtered["clean_kept"]


TINY = ["--envs", "CartPole-v1", "--inputs", "state", "events", "--seeds", "0", "1", "--steps", "20",
        "--eval-every", "10", "--image-size", "16", "--max-events", "64", "--set", "replay.capacity=100"]


@pytest.fixture
def measured_once(monkeypatch):
    """Stands in for the measurement before training (it renders and compiles), counting its calls."""
    import scripts.bench_events

    calls = []
    monkeypatch.setattr(scripts.bench_events, "measure", lambda args: calls.append(args.envs) or {"calls": len(calls)})
    return calls


def test_a_stopped_benchmark_resumes_from_its_directory_and_reports_where_it_stands(stand_in, measured_once, capsys):
    """Every run is written first; seed 0 of every input trains before any seed 1; a stopped benchmark
    continues from its checkpoints with the measurement it kept, and --report trains nothing."""
    stand_in.budget = 3  # state/seed0 to 20, events/seed0 to 10, then SIGTERM
    with pytest.raises(SystemExit) as stopped:
        main([*TINY, "--out", "parts"])
    out = capsys.readouterr().out
    assert stopped.value.code == 143 and stand_in.started == [("state/seed0", 0), ("events/seed0", 0)]
    directory = Path(re.search(r"python -m scripts\.bench_events --resume (\S+)", out).group(1))
    assert directory.name.startswith("bench-events-CartPole-v1-")
    assert sorted(str(path.parent.relative_to(directory)) for path in directory.rglob("config.yaml")) == [
        "CartPole-v1/events/seed0", "CartPole-v1/events/seed1", "CartPole-v1/state/seed0", "CartPole-v1/state/seed1"]

    stand_in.budget, stand_in.started = None, []
    report = main(["--resume", str(directory), "--report", "--out", "report"])
    out = capsys.readouterr().out
    assert stand_in.started == [] and "CartPole-v1/events/seed0: last checkpoint at step 10 of 20" in out
    assert "| CartPole-v1 | events | 10 |" in out and "| CartPole-v1 | state | 20 |" in out
    assert report["measured"] == {"calls": 1}  # kept in benchmark.json, not measured again

    resumed = main(["--resume", str(directory), "--out", "resumed"])
    assert stand_in.started == [("events/seed0", 10), ("events/seed1", 0), ("state/seed1", 0)]  # seed 0 first
    assert measured_once == [["CartPole-v1"]]
    summary = resumed["summary"]["CartPole-v1"]
    assert summary["events"]["seeds"] == summary["state"]["seeds"] == 2 and summary["events"]["steps"] == 20
    with pytest.raises(SystemExit) as refused:
        main(["--resume", str(directory), "--noise"])
    assert refused.value.code == 2 and "--noise cannot be given with it" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["state", "pixels", "frame", "voxel", "events", "integrated", "events_integrated"])
def test_a_runs_input_is_read_back_from_its_config(source):
    args = parse_args(["--image-size", "16", "--max-events", "64", "--steps", "100"])
    assert input_of(run_config("Pendulum-v1", source, 3, args)) == ("Pendulum-v1", source)


def test_a_report_before_the_first_evaluation_says_so(stand_in, measured_once, capsys):
    stand_in.budget = 0  # SIGTERM before the first evaluation
    with pytest.raises(SystemExit):
        main([*TINY, "--out", "parts"])
    directory = re.search(r"--resume (\S+)", capsys.readouterr().out).group(1)
    report = main(["--resume", directory, "--report", "--out", "report"])
    assert "no evaluations yet" in capsys.readouterr().out and report["summary"] == {}


def test_resuming_the_runs_of_two_benchmarks_together_is_refused(stand_in, measured_once, capsys):
    directories = []
    for _ in range(2):
        stand_in.budget = 0
        with pytest.raises(SystemExit):
            main(TINY)
        directories.append(re.search(r"--resume (\S+)", capsys.readouterr().out).group(1))
    with pytest.raises(SystemExit) as refused:
        main(["--resume", *directories])
    assert refused.value.code == 2 and "repeat a seed" in capsys.readouterr().err
