"""The hierarchy benchmark's arms and what it reads from a run, without training."""

import json
import re
from pathlib import Path

import pytest

from scripts.bench_hierarchy import arm_config, describe, main, parse_args, run_record
from scripts.run_curves import evaluation_rows, successful_episodes, value_at


def test_defaults_are_the_issue_15_benchmark():
    args = parse_args([])
    assert (args.env, args.arms, args.seeds) == ("hmbrl/GridFourRooms-v0", ["A", "B", "C"], [0, 1, 2, 3, 4])
    assert (args.steps, args.eval_episodes, args.novelty) == (50_000, 20, 0.1)


def test_arms_map_to_configs_with_one_novelty_weight_for_b_and_c():
    configs = {arm: arm_config(arm, 0.3, ["small"], ["hierarchy.disagreement_penalty=0"])
               for arm in ("A", "B", "C", "C3")}
    assert {arm: (c["hierarchy"]["levels"], c["hierarchy"]["novelty"]) for arm, c in configs.items()} == {
        "A": (1, 0.0), "B": (1, 0.3), "C": (2, 0.3), "C3": (3, 0.3)}
    # presets and overrides reach every arm
    assert all(c["world_model"]["deter"] == 64 and c["hierarchy"]["disagreement_penalty"] == 0 for c in configs.values())
    assert configs["C3"]["hierarchy"]["k"] == [4, 4]  # the hierarchy3 preset


def test_arm_d_is_c_with_the_top_imagining_through_level_zero():
    assert parse_args(["--arms", "A", "D"]).arms == ["A", "D"]
    c, d = (arm_config(arm, 0.3, ["small"]) for arm in ("C", "D"))
    assert (d["hierarchy"]["levels"], d["hierarchy"]["novelty"], d["hierarchy"]["top_model"]) == (2, 0.3, "imagined")
    assert c["hierarchy"]["top_model"] == "stacked"
    assert {**d, "hierarchy": {**d["hierarchy"], "top_model": "stacked"}} == c  # nothing else differs
    assert describe("D") == "2 levels, imagined top + novelty"


@pytest.mark.parametrize("override", ["hierarchy.novelty=0.5", "hierarchy.top_model=imagined"])
def test_set_cannot_change_what_makes_an_arm(capsys, override):
    with pytest.raises(SystemExit):
        parse_args(["--set", override])
    assert "--novelty" in capsys.readouterr().err


def test_value_at_takes_the_last_row_at_or_before_the_step():
    curve = [{"step": 10, "x": 1.0}, {"step": 20, "y": 5.0}, {"step": 30, "x": 3.0}]
    assert [value_at(curve, step, "x") for step in (5, 10, 29, 100)] == [None, 1.0, 1.0, 3.0]


def _write_metrics(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in rows))


def test_evaluation_rows_average_the_training_episodes_between_the_trainers_evaluations(tmp_path):
    _write_metrics(tmp_path, [
        {"step": 4, "episode/return": 1.0}, {"step": 6, "episode/return": 0.0},
        {"step": 8, "eval/return_mean": 0.5, "eval/success_rate": 0.5, "eval/elapsed_seconds": 3.0,
         "level0/exploitation/gap": 0.1, "level0/world_model/loss": 2.0},
        {"step": 12, "eval/return_mean": 0.0, "eval/elapsed_seconds": 5.0},
        {"step": 14, "episode/return": 0.25, "level0/world_model/loss": 1.0},
        {"step": 16, "episode/return": 0.75, "eval/return_mean": 1.0, "eval/elapsed_seconds": 7.0},
        {"step": 16, "eval/return_mean": 0.9, "eval/return_std": 0.1}])  # scripts.evaluate after training
    assert evaluation_rows(tmp_path) == [
        {"step": 8, "seconds": 3.0, "return": 0.5, "success_rate": 0.5, "train_return": 0.5,
         "level0/exploitation/gap": 0.1},
        {"step": 12, "seconds": 5.0, "return": 0.0, "train_return": None},
        {"step": 16, "seconds": 7.0, "return": 1.0, "train_return": 0.5},
    ]


def test_run_record_reads_success_first_success_coverage_and_diagnostics(tmp_path):
    _write_metrics(tmp_path, [
        {"step": 100, "episode/return": 0.0},
        {"step": 200, "coverage/cells_total": 12.0, "coverage/cells_per_1k_steps": 12.0,
         "level1/goal/code_perplexity": 31.0, "level1/model/controllability": 0.4, "replay/rewarded_fraction": 0.0},
        {"step": 300, "eval/return_mean": 0.25, "eval/elapsed_seconds": 9.0},  # logged before eval/success_rate
        {"step": 350, "episode/return": 1.0},
        {"step": 380, "episode/return": 1.0},
        {"step": 400, "coverage/cells_total": 20.0, "coverage/cells_per_1k_steps": 15.0,
         "level1/actor_critic/entropy_fraction": 0.99},
        {"step": 500, "eval/return_mean": 0.5, "eval/success_rate": 0.4, "eval/elapsed_seconds": 12.0,
         "level1/goal/reach_rate": 0.3}])
    record = run_record(tmp_path)
    assert record["first_success_step"] == 350 and record["training_successes"] == 2
    assert record["coverage"] == [{"step": 200, "coverage/cells_total": 12.0, "coverage/cells_per_1k_steps": 12.0},
                                  {"step": 400, "coverage/cells_total": 20.0, "coverage/cells_per_1k_steps": 15.0}]
    first, last = record["evaluations"]
    assert first["success_rate"] == 0.25  # the mean return stands in for it
    assert last["success_rate"] == 0.4 and last["level1/goal/reach_rate"] == 0.3
    assert last["level1/goal/code_perplexity"] == 31.0 and last["level1/model/controllability"] == 0.4
    assert last["replay/rewarded_fraction"] == 0.0 and last["coverage/cells_total"] == 20.0
    assert last["level1/actor_critic/entropy_fraction"] == 0.99  # carried to the evaluation, for the diagnostics



def test_every_scalar_the_diagnostics_read_is_carried_into_the_evaluations(tmp_path):
    """What the verdict's diagnostics list (``DIAGNOSTIC``) and what the run record carries are one
    pattern: a scalar cannot match the one and be missing from the other."""
    from scripts.hierarchy_verdict import DIAGNOSTIC

    names = ["level0/goal/reach_rate", "level1/model/controllability", "level1/model/goal_controllability",
             "level1/actor_critic/entropy_fraction", "level1/actor_critic/entropy", "level0/world_model/r2/obs",
             "level1/novelty/measured", "level0/world_model/reward_on_rewarded", "replay/rewarded_fraction",
             "level1/actor_critic/value_before_reward", "coverage/cells_total", "train/fps"]
    _write_metrics(tmp_path, [{"step": 10, **{name: 1.0 for name in names}},
                              {"step": 20, "eval/return_mean": 0.0, "eval/elapsed_seconds": 1.0}])
    carried = set(run_record(tmp_path)["evaluations"][0]) & set(names)
    assert carried == {name for name in names if DIAGNOSTIC.search(name) or name.startswith("coverage/")}
    assert {"level1/actor_critic/entropy", "level0/world_model/r2/obs", "train/fps"}.isdisjoint(carried)


def test_successes_are_the_reported_ones_where_the_run_logged_them():
    rows = [{"step": 100, "episode/return": 0.5, "episode/success": 0.0},  # a reward short of the goal
            {"step": 200, "episode/return": 0.9, "episode/success": 1.0},
            {"step": 200, "episode/return": 0.0, "episode/success": 0.0},  # another environment's episode
            {"step": 300, "episode/return": 0.9, "episode/success": 1.0}]
    assert [row["step"] for row in successful_episodes(rows)] == [200, 300]
    old_run = [{"step": 100, "episode/return": 0.5}, {"step": 150, "episode/return": 0.0}]  # before episode/success
    assert [row["step"] for row in successful_episodes(old_run)] == [100]


def test_replot_prints_the_table_and_verdict_and_writes_json_and_plots(tmp_path, capsys):
    def record(rate):
        return {"evaluations": [{"step": s, "seconds": 1.0, "return": rate, "success_rate": rate} for s in (500, 1000)],
                "coverage": [{"step": 1000, "coverage/cells_total": 40.0 * (1 + rate)}],
                "first_success_step": 300 if rate else None, "training_successes": 7 if rate else 0}
    saved = {"env": "hmbrl/GridFourRooms-v0", "arms": ["A", "B", "C"], "novelty": 0.1, "steps": 1000,
             "seeds": [0, 1, 2, 3, 4], "runs": {"A": {str(s): record(0.0) for s in range(5)},
                                                "B": {str(s): record(0.0) for s in range(5)},
                                                "C": {str(s): record(0.9) for s in range(5)}}}
    (tmp_path / "saved.json").write_text(json.dumps(saved))
    result = main(["--replot", str(tmp_path / "saved.json"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert result["verdict"]["hierarchy_wins"] is True and "the hierarchy WINS" in out
    assert ("| C 2 levels + novelty | 0.900 ± 0.000 [0.900, 0.900] | 0.90, 0.90, 0.90, 0.90, 0.90 | 5/5, 300 | "
            "7, 7, 7, 7, 7 | n/a / 76 |") in out  # no coverage row by step 500
    assert result["coverage_marks"] == [500, 1000]
    assert all((tmp_path / name).exists() for name in ("out.json", "out.png", "out_cells_total.png"))


TINY = ["--arms", "A", "C", "--seeds", "0", "1", "--steps", "40", "--eval-every", "10"]


def _continue_command(out):
    """The benchmark directory in the command printed to continue a benchmark."""
    return re.search(r"python -m scripts\.bench_hierarchy --resume (\S+)", out).group(1)


def test_a_stopped_benchmark_continues_where_it_stopped_to_the_summary_of_an_uninterrupted_one(stand_in, capsys):
    flags = ["--arms", "A", "--seeds", "0", "1", "2", "--steps", "40", "--eval-every", "10"]
    whole = main([*flags, "--out", "whole"])
    capsys.readouterr()
    stand_in.budget, stand_in.started = 6, []  # seed 0's four evaluations and two of seed 1's, then SIGTERM
    with pytest.raises(SystemExit) as stopped:
        main([*flags, "--out", "parts"])
    out = capsys.readouterr().out
    assert stopped.value.code == 143 and "stopped (SIGTERM)" in out
    directory = _continue_command(out)
    assert sorted(path.name for path in Path(directory, "A").iterdir()) == ["seed0", "seed1", "seed2"]  # all written first
    stand_in.budget, stand_in.started = None, []
    resumed = main(["--resume", directory, "--out", "parts"])
    out = capsys.readouterr().out
    assert stand_in.started == [("A/seed1", 20), ("A/seed2", 0)]
    for line in ("A/seed0: finished (40 of 40 steps), not trained again", "A/seed1: resumes from step 20 to 40",
                 "A/seed2: starts at step 0 (no checkpoint yet), to 40"):
        assert line in out
    assert resumed["summary"] == whole["summary"] and resumed["runs"] == whole["runs"]
    assert whole["unfinished"] == resumed["unfinished"] == []  # what training just finished counts as finished
    assert (resumed["arms"], resumed["seeds"], resumed["steps"]) == (["A"], [0, 1, 2], 40)


def test_resume_refuses_flags_that_would_change_the_runs(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--resume", "runs/x", "--seeds", "0", "--jobs", "2"])
    assert "--seeds cannot be given with it" in capsys.readouterr().err


def test_vmap_trains_each_arms_seeds_together_and_refuses_what_it_cannot(stand_in, monkeypatch, capsys):
    import agents.multi_seed

    together = []

    class StandInSeeds:
        def __init__(self, configs, logdirs, make_envs, say=print, progress=True):
            self.trainers = [stand_in(config, logdir, make_envs) for config, logdir in zip(configs, logdirs)]

        def run(self, steps, resume=False):
            together.append(([trainer.config["hierarchy"]["levels"] for trainer in self.trainers],
                             [trainer.config["seed"] for trainer in self.trainers]))
            for trainer in self.trainers:
                trainer.run(steps, resume)
            self.stopped_by = self.trainers[0].stopped_by

    monkeypatch.setattr(agents.multi_seed, "MultiSeedTrainer", StandInSeeds)
    result = main([*TINY, "--vmap", "--out", "vmap"])
    capsys.readouterr()
    assert together == [([1, 1], [0, 1]), ([2, 2], [0, 1])]  # arm A's seeds, then arm C's
    assert {arm: sorted(runs) for arm, runs in result["runs"].items()} == {"A": ["0", "1"], "C": ["0", "1"]}
    assert all(len(record["evaluations"]) == 4 for runs in result["runs"].values() for record in runs.values())
    with pytest.raises(SystemExit) as refused:
        main([*TINY, "--vmap", "--jobs", "2"])
    assert refused.value.code == 2 and "leave out --jobs" in capsys.readouterr().err

    stand_in.budget = 2  # alone: A/seed0 stopped at step 20, the others not started
    with pytest.raises(SystemExit):
        main([*TINY, "--out", "alone"])
    directory, together[:] = _continue_command(capsys.readouterr().out), []
    stand_in.budget = None
    with pytest.raises(SystemExit) as refused:  # C's seeds could go together, A's not: refused before anything trains
        main(["--resume", directory, "--vmap"])
    message = str(refused.value)
    assert refused.value.code == 2 and together == [] and "Resume without --vmap" in message
    assert "A/seed0 at 20, A/seed1 at 0" in message
    assert f"python -m scripts.train --resume --logdir {directory}/A/seed1 --steps 20" in message

    class DataParallelOverTwoDevices:
        enabled, num_devices, process_count = True, 2, 1

    monkeypatch.setattr(agents.multi_seed.DataParallel, "from_config", lambda config: DataParallelOverTwoDevices)
    before = set(Path("runs").iterdir())
    with pytest.raises(SystemExit) as refused:
        main([*TINY, "--vmap"])
    assert refused.value.code == 2 and "parallel.devices=1" in str(refused.value)
    assert set(Path("runs").iterdir()) == before  # refused before anything was written


def test_side_by_side_runs_start_seed_by_seed_across_the_arms(monkeypatch, tmp_path):
    """A benchmark stopped part way has every arm on its first seeds, not all seeds of arm A."""
    import scripts.benchmarking as benchmarking
    from scripts.benchmarking import Run, train_benchmark

    started = []
    monkeypatch.setattr(benchmarking, "run_side_by_side",
                        lambda function, calls, jobs, ended, stop: started.extend(name for _, _, name in calls.values()))
    groups = {arm: [Run(tmp_path / arm / f"seed{seed}", f"{arm}/seed{seed}", {"steps": 10}) for seed in seeds]
              for arm, seeds in (("A", [0, 1, 2]), ("B", [0]), ("C", [0, 1]))}
    groups["A"][1] = Run(tmp_path / "A" / "seed1", "A/seed1", {"steps": 10}, start=10)  # finished: not run again
    train_benchmark(groups, jobs=2, vmap=False, command="")
    assert started == ["A/seed0", "B/seed0", "C/seed0", "C/seed1", "A/seed2"]


def test_report_summarises_a_benchmark_under_way_without_training_or_a_verdict(stand_in, capsys):
    stand_in.budget = 3  # A/seed0 to 30 of 40, then SIGTERM; the rest not started
    with pytest.raises(SystemExit):
        main([*TINY, "--out", "under_way"])
    directory = _continue_command(capsys.readouterr().out)
    stand_in.budget, stand_in.started = None, []
    report = main(["--resume", directory, "--report", "--out", "report"])
    out = capsys.readouterr().out
    assert stand_in.started == []  # nothing trained
    assert "A/seed0: last checkpoint at step 30 of 40" in out and "C/seed1: no checkpoint yet" in out
    assert "no verdict yet: 4 of 4 runs have not reached 40 steps" in out and "does NOT win" not in out
    assert report["verdict"] is None and report["unfinished"] == ["A/seed0", "A/seed1", "C/seed0", "C/seed1"]
    assert [row["step"] for row in report["runs"]["A"]["0"]["evaluations"]] == [10, 20, 30]
    replotted = main(["--replot", "report.json", "--out", "replotted"])  # a report stays one when redrawn
    assert replotted["verdict"] is None and "no verdict yet" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main([*TINY, "--report"])
    assert refused.value.code == 2 and "give its directory with --resume" in capsys.readouterr().err
