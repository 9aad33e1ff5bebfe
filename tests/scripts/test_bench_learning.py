"""The learning benchmark's per-seed summary, against numbers worked out by hand."""

import json

import pytest

from scripts.bench_learning import main, summarise_seed


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


def test_hold_from_requires_every_later_evaluation():
    # final (last four) -150 meets -200, but the evaluation at step 4000 (>= 3000) does not
    dip = summarise_seed(_curve([-900, -150, -150, -250, -100, -100]), target=-200.0, hold_from=3000)
    assert dip["held"] is False
    steady = summarise_seed(_curve([-900, -300, -150, -150, -100, -100]), target=-200.0, hold_from=3000)
    assert steady["held"] is True


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



def test_runs_write_their_config_and_resume_from_it_to_more_steps(tmp_path, monkeypatch):
    """A benchmark run can be continued in a later session: it leaves config.yaml, and --resume
    trains from it (here a stand-in trainer records what it is asked)."""
    import agents.trainer
    from configs.loader import load_config
    from scripts import bench_learning
    from scripts.benchmarking import train_run

    calls = []

    class Recorder:
        def __init__(self, config, logdir, make_envs, progress):
            self.config, self.logdir = config, logdir

        def run(self, steps, resume=False):
            calls.append((self.logdir, steps, resume, self.config["seed"]))

    monkeypatch.setattr(agents.trainer, "Trainer", Recorder)
    logdir = tmp_path / "run"
    train_run(load_config(["debug"], [("seed", 7), ("steps", 300)]), logdir)
    assert (logdir / "config.yaml").exists()
    bench_learning.resume_one(logdir, 900)
    assert calls == [(logdir, 300, False, 7), (logdir, 900, True, 7)]


def test_vmap_trains_the_seeds_together_in_their_own_directories_and_refuses_jobs(tmp_path, monkeypatch):
    """``--vmap`` hands every seed's config and run directory to one multi-seed run (here a
    stand-in records what it is asked); with ``--jobs`` it is refused."""
    from scripts import bench_learning

    calls = []
    monkeypatch.setattr(bench_learning, "train_seeds_together",
                        lambda configs, logdirs, resume=False: calls.append(([c["seed"] for c in configs], logdirs, resume)))
    monkeypatch.setattr(bench_learning, "evaluation_rows",
                        lambda logdir, probes: [{"step": 100, "seconds": 1.0, "return": float(len(str(logdir)))}])
    main(["--config", "debug", "--seeds", "3", "4", "--vmap", "--steps", "100", "--out", str(tmp_path / "out")])
    (seeds, logdirs, resume), = calls
    assert seeds == [3, 4] and not resume and ["-seed3-" in logdirs[0].name, "-seed4-" in logdirs[1].name] == [True, True]
    with pytest.raises(SystemExit, match="leave out --jobs"):
        main(["--seeds", "0", "1", "--vmap", "--jobs", "2"])
