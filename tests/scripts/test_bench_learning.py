"""The learning benchmark's per-seed summary, against numbers worked out by hand."""

import json

import pytest
import yaml

from configs.loader import load_config
from scripts.bench_learning import default_target, main, summarise_seed


def _curve(returns, r2=0.9):
    return [{"step": 1000 * (i + 1), "seconds": 10.0 * (i + 1), "return": value, "level0/world_model/r2/obs": r2}
            for i, value in enumerate(returns)]


def test_final_is_the_mean_of_the_last_four_and_held_needs_the_target():
    summary = summarise_seed(_curve([10, 500, 480, 470, 490, 500]), target=475.0, hold_from=None)
    assert summary["final"] == pytest.approx((480 + 470 + 490 + 500) / 4)
    assert summary["best"] == 500
    assert summary["first_step_at_target"] == 2000
    assert summary["held"] is True
    assert summary["r2"] == {"obs": 0.9}
    assert (summary["last_step"], summary["seconds"]) == (6000, 60.0)
    fell_back = summarise_seed(_curve([10, 500, 500, 300, 400, 450]), target=475.0, hold_from=None)
    assert fell_back["held"] is False and fell_back["first_step_at_target"] == 2000


def test_targets_are_the_issues_then_gymnasiums_registered_threshold():
    assert default_target("CartPole-v1") == 475.0 and default_target("Pendulum-v1") == -200.0
    assert default_target("Acrobot-v1") == -100.0  # not ours: Gymnasium's reward_threshold
    assert default_target("event:CartPole-v1") is None and default_target("no.such:Env") is None


def test_hold_from_requires_every_later_evaluation():
    # final (last four) -150 meets -200, but the evaluation at step 4000 (>= 3000) does not
    dip = summarise_seed(_curve([-900, -150, -150, -250, -100, -100]), target=-200.0, hold_from=3000)
    assert dip["held"] is False
    steady = summarise_seed(_curve([-900, -300, -150, -150, -100, -100]), target=-200.0, hold_from=3000)
    assert steady["held"] is True
    young = summarise_seed(_curve([-900, -150, -150]), target=-200.0, hold_from=20000)  # not evaluated from 20k on
    assert young["held"] is None


def test_summarises_existing_run_directories(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": 500, "level0/world_model/r2/obs": 0.5}, {"step": 1000, "eval/return_mean": 20.0, "eval/elapsed_seconds": 5.0},
            {"step": 1500, "level0/world_model/r2/obs": 0.8, "episode/return": 30.0},
            {"step": 2000, "eval/return_mean": 480.0, "eval/elapsed_seconds": 9.0}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    result = main(["--env", "CartPole-v1", "--runs", str(run), "--out", str(tmp_path / "out")])
    summary = result["summary"]["0"]
    assert summary["final"] == pytest.approx(250.0) and summary["first_step_at_target"] == 2000
    assert result["curves"]["0"][-1]["level0/world_model/r2/obs"] == 0.8  # the latest value before the evaluation
    assert (tmp_path / "out.png").exists() and "| 0 | 2,000 | 250.0 | 480.0 | 2,000 | no |" in capsys.readouterr().out



def test_resume_continues_the_runs_of_an_earlier_benchmark_from_their_checkpoints(tmp_path, monkeypatch, capsys):
    """Run directories of a benchmark from before benchmark directories (``bench-<env>-seed<S>-...``,
    no benchmark.json) continue from their config.yaml: the finished one is left alone, the stopped
    one continues (here a stand-in trainer records what it is asked)."""
    import agents.multi_seed  # noqa: F401 - before the patch: imported under it, it would keep the stand-in for good
    import agents.trainer
    from configs.loader import load_config
    from scripts.benchmarking import train_run

    calls = []

    class Recorder:
        def __init__(self, config, logdir, make_envs, say=print, progress=True):
            self.config, self.logdir, self.stopped_by = config, logdir, None

        def run(self, steps, resume=False):
            calls.append((self.logdir.name, steps, resume, self.config["seed"]))
            (self.logdir / "checkpoints" / str(steps)).mkdir(parents=True)
            (self.logdir / "metrics.jsonl").write_text(json.dumps(
                {"step": steps, "eval/return_mean": float(steps), "eval/elapsed_seconds": 1.0}) + "\n")

    monkeypatch.setattr(agents.trainer, "Trainer", Recorder)
    monkeypatch.chdir(tmp_path)
    for seed, steps in ((7, 300), (8, 900)):
        train_run(load_config(["debug"], [("seed", seed), ("steps", steps), ("env_id", "Pendulum-v1")]),
                  tmp_path / f"bench-Pendulum-v1-seed{seed}")
    calls.clear()
    result = main(["--resume", "bench-Pendulum-v1-seed7", "bench-Pendulum-v1-seed8", "--steps", "900", "--out", "out"])
    assert calls == [("bench-Pendulum-v1-seed7", 900, True, 7)]  # seed 8 is finished
    assert "bench-Pendulum-v1-seed8: finished (900 of 900 steps), not trained again" in capsys.readouterr().out
    assert (result["env"], result["target"], sorted(result["summary"])) == ("Pendulum-v1", -200.0, ["7", "8"])


def test_vmap_trains_the_seeds_together_in_their_own_directories_and_refuses_jobs(tmp_path, monkeypatch, capsys):
    """``--vmap`` hands every seed's config and run directory to one multi-seed run (here a
    stand-in records what it is asked); with ``--jobs`` it is refused."""
    import agents.multi_seed

    calls = []

    class Recorder:
        def __init__(self, configs, logdirs, make_envs, say=print, progress=True):
            self.configs, self.logdirs, self.stopped_by = configs, logdirs, None

        def run(self, steps, resume=False):
            calls.append(([config["seed"] for config in self.configs], self.logdirs, resume))
            for logdir in self.logdirs:
                (logdir / "metrics.jsonl").write_text(json.dumps(
                    {"step": steps, "eval/return_mean": 1.0, "eval/elapsed_seconds": 1.0}) + "\n")

    monkeypatch.setattr(agents.multi_seed, "MultiSeedTrainer", Recorder)
    monkeypatch.chdir(tmp_path)
    result = main(["--config", "debug", "--seeds", "3", "4", "--vmap", "--steps", "100", "--out", "out"])
    (seeds, logdirs, resume), = calls
    assert seeds == [3, 4] and not resume and [logdir.name for logdir in logdirs] == ["seed3", "seed4"]
    assert logdirs[0].parent.name.startswith("bench-learning-CartPole-v1-") and sorted(result["summary"]) == ["3", "4"]
    with pytest.raises(SystemExit):
        main(["--seeds", "0", "1", "--vmap", "--jobs", "2"])
    assert "leave out --jobs" in capsys.readouterr().err
def test_runs_of_a_benchmark_are_summarised_under_their_seeds_with_its_settings(tmp_path):
    benchmark = tmp_path / "bench"
    settings = {"env": "CartPole-v1", "config": "control", "steps": 50000, "eval_episodes": 3,
                "overrides": ["agent.replay_value=0.3"]}
    (benchmark / "seed2").mkdir(parents=True)
    (benchmark / "benchmark.json").write_text(json.dumps(settings))
    (benchmark / "seed2" / "config.yaml").write_text(yaml.safe_dump({**load_config(["debug"]), "seed": 2}))
    rows = [{"step": 1000, "eval/return_mean": 20.0, "eval/elapsed_seconds": 5.0}]
    (benchmark / "seed2" / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    result = main(["--runs", str(benchmark / "seed2"), "--out", str(tmp_path / "out")])
    assert list(result["curves"]) == ["2"]
    assert (result["config"], result["overrides"], result["eval_episodes"]) == ("control", ["agent.replay_value=0.3"], 3)
    given = main(["--runs", str(benchmark / "seed2"), "--config", "small", "--out", str(tmp_path / "out")])
    assert given["config"] == "small"  # a flag given now wins
    with pytest.raises(SystemExit, match="seed 2"):
        main(["--runs", str(benchmark / "seed2"), str(benchmark / "seed2"), "--out", str(tmp_path / "out")])


def _saved(path, env, curves, **settings):
    result = {"env": env, "config": "control", "steps": 6000, "target": 475.0, "hold_from": None, "overrides": [],
              "eval_episodes": 5, "curves": {str(seed): curve for seed, curve in curves.items()}, **settings}
    path.write_text(json.dumps(result))
    return str(path)


def test_replot_merges_the_seeds_of_several_saved_benchmarks(tmp_path, capsys):
    first = _saved(tmp_path / "a.json", "CartPole-v1", {0: _curve([10, 500, 500, 500, 500])})
    second = _saved(tmp_path / "b.json", "CartPole-v1", {2: _curve([10, 300, 400, 400, 420])},
                    overrides=["agent.replay_value=0.3"])
    result = main(["--replot", first, second, "--out", str(tmp_path / "merged")])
    assert set(result["summary"]) == {"0", "2"}
    assert result["summary"]["0"]["held"] is True and result["summary"]["2"]["held"] is False
    assert result["sources"]["2"] == {"file": second, "config": "control", "overrides": ["agent.replay_value=0.3"],
                                      "eval_episodes": 5}
    out = capsys.readouterr().out
    assert "differ in overrides" in out and "held on 1 of 2 seeds" in out
    assert (tmp_path / "merged.png").exists()
    # the merged JSON replots alone and keeps where its seeds came from
    again = main(["--replot", str(tmp_path / "merged.json"), "--out", str(tmp_path / "again")])
    assert again["sources"] == result["sources"] and again["summary"] == result["summary"]
    # merged again with a third file, each earlier seed keeps its own source, not the merged file's
    third = _saved(tmp_path / "c.json", "CartPole-v1", {3: _curve([10, 200, 300, 350, 360])})
    grown = main(["--replot", str(tmp_path / "merged.json"), third, "--out", str(tmp_path / "grown")])
    assert grown["sources"]["2"] == result["sources"]["2"] and grown["sources"]["0"] == result["sources"]["0"]
    assert grown["sources"]["3"]["file"] == third and grown["sources"]["3"]["overrides"] == []


def test_replot_refuses_a_seed_twice_another_env_and_a_merge_without_out(tmp_path):
    first = _saved(tmp_path / "a.json", "CartPole-v1", {0: _curve([10, 500])})
    twice = _saved(tmp_path / "b.json", "CartPole-v1", {0: _curve([20, 400])})
    other = _saved(tmp_path / "c.json", "Pendulum-v1", {1: _curve([-900, -150])})
    with pytest.raises(SystemExit, match="seed 0 is in"):
        main(["--replot", first, twice, "--out", str(tmp_path / "m")])
    with pytest.raises(SystemExit, match="Pendulum-v1"):
        main(["--replot", first, other, "--out", str(tmp_path / "m")])
    with pytest.raises(SystemExit):
        main(["--replot", first, twice])
    with pytest.raises(SystemExit, match=r"seed\(s\) \[3\] are in none"):
        main(["--replot", first, "--seeds", "0", "3", "--out", str(tmp_path / "m")])


def test_replot_keeps_only_the_seeds_asked_for(tmp_path):
    both = _saved(tmp_path / "a.json", "CartPole-v1", {0: _curve([10, 500]), 2: _curve([10, 300])})
    other = _saved(tmp_path / "b.json", "CartPole-v1", {0: _curve([20, 400])})
    kept = main(["--replot", both, "--seeds", "2", "--out", str(tmp_path / "two")])
    assert set(kept["curves"]) == {"2"}
    merged = main(["--replot", other, str(tmp_path / "two.json"), "--out", str(tmp_path / "m")])
    assert merged["summary"]["0"]["best"] == 400 and merged["summary"]["2"]["best"] == 300


def test_curves_say_what_their_steps_count():  # the trainer's steps are environment steps only without a repeat
    from scripts.run_curves import steps_label
    assert steps_label(1) == "environment steps"
    assert steps_label(2) == "agent steps (2 environment steps each)"
