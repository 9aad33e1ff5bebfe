"""``python -m scripts.hierarchy_gates``, ``scripts.probe_value_map`` and ``scripts.probe_benchmark`` end
to end on a tiny two-level GridFourRooms run (one training for all), and their refusals. The run is far too short to pass a gate
or to know where the reward is: only the structure and ranges are checked."""

import json

import numpy as np
import pytest

from configs.loader import load_config, save_config
from scripts import hierarchy_gates, probe_benchmark, probe_value_map, train

GATES = {"decoding", "reach", "perplexity", "coverage"}
FAST = ["--pairs", "32", "--code-samples", "256"]


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """200 steps of two levels (K = 4) with 25-step episodes, so that replay holds several."""
    logdir = tmp_path_factory.mktemp("runs") / "grid"
    assert train.main(["--config", "debug", "--logdir", str(logdir), "--no-progress", "--env", "hmbrl/GridFourRooms-v0",
                       "--steps", "200", "--set", "hierarchy.levels=2", "hierarchy.k=[4]", "env.time_limit=25"]) == 0
    return logdir


def check_result(result: dict) -> None:
    gates = result["gates"]
    assert set(gates) == GATES
    for key, gate in gates.items():
        assert isinstance(gate["passed"], bool) and gate["threshold"], key
    for key in ("decoding", "reach", "coverage"):
        assert 0.0 <= gates[key]["value"] <= 1.0, key
    assert 1.0 <= gates["perplexity"]["value"] <= gates["perplexity"]["details"]["states"]
    reach = gates["reach"]["details"]
    assert reach["K"] == 4 and reach["policy"] == "greedy" and 2 <= reach["pairs"] <= 32
    for name in ("reach_shuffled", "cell_reach_own", "cell_reach_shuffled"):
        assert 0.0 <= reach[name] <= 1.0, name
    coverage = gates["coverage"]["details"]
    assert 1 <= coverage["cells_covered"] <= coverage["cells_visited"] <= 16 * 16
    assert result["passed"] == all(gate["passed"] for gate in gates.values())


def test_the_gates_probe_the_saved_replay_print_a_table_and_write_json(grid_run, capsys):
    result = hierarchy_gates.main(["--logdir", str(grid_run), *FAST])
    assert result["source"] == "replay" and result["step"] == 200 and result["probed_steps"] == 200
    check_result(result)
    assert json.loads((grid_run / "gates.json").read_text()) == json.loads(json.dumps(result))
    table = capsys.readouterr().out
    for gate in result["gates"].values():
        assert gate["name"] in table
    # goals farther ahead: bands 1-4, 5-8, 9-16 steps (K = 4), each own and shuffled where it has pairs
    bands = result["reach_by_distance"]
    assert [(row["from"], row["to"]) for row in bands] == [(1, 4), (5, 8), (9, 16)]
    for row in bands:
        assert 0 <= row["pairs"] <= 32
        if row["pairs"] >= 2:
            assert 0.0 <= row["cell_reach_own"] <= 1.0 and 0.0 <= row["cell_reach_shuffled"] <= 1.0
    assert "worker reach by cell with goals farther ahead" in table
    assert table.count("PASS") + table.count("FAIL") == 4


def test_fresh_episodes_of_the_policy_when_asked(grid_run, tmp_path):
    out = tmp_path / "fresh.json"
    result = hierarchy_gates.main(["--logdir", str(grid_run), "--fresh", "--episodes", "2", "--out", str(out), *FAST])
    assert result["source"] == "fresh" and result["probed_steps"] >= 2 * 25
    check_result(json.loads(out.read_text()))


def write_run(logdir, *overrides):
    logdir.mkdir()
    save_config(load_config(["debug"], list(overrides)), logdir / "config.yaml")
    return logdir


@pytest.mark.parametrize("overrides, message", [
    (["env_id=hmbrl/GridFourRooms-v0"], "is a flat run"),
    (["env_id=hmbrl/GridFourRooms-v0", "hierarchy.levels=2"], "no checkpoint in"),
    (["env_id=CartPole-v1", "hierarchy.levels=2"], "has no one-hot cell observations"),
])
def test_runs_it_cannot_probe_are_refused_with_a_clear_message(tmp_path, overrides, message):
    logdir = write_run(tmp_path / "run", *overrides)
    with pytest.raises(SystemExit, match=message) as error:
        hierarchy_gates.main(["--logdir", str(logdir)])
    assert error.value.code == 2


def test_the_value_map_covers_every_cell_of_the_grid(grid_run, capsys):
    report = probe_value_map.main(["--logdir", str(grid_run)])
    assert report["top_level"] == 1 and report["step"] == 200
    assert report["cells"] == report["cells_reaching_reward"] == len(report["per_cell"]) == 228  # all free but the goal
    assert report["start"]["distance"] == 30 and report["per_cell"][0]["cell"] == report["start"]["cell"]
    assert sum(band["cells"] for band in report["bands"]) == 228
    for name in ("value_rank_correlation", "imagined_rank_correlation"):
        assert report[name] is None or -1.0 <= report[name] <= 1.0
    assert all(np.isfinite([cell["value"], cell["imagined_return"]]).all() for cell in report["per_cell"])
    assert json.loads((grid_run / "value_map.json").read_text()) == json.loads(json.dumps(report))
    # where level 1 sends level 0: a cell of the grid, nearer or farther by at most the grid's span
    cells = {tuple(cell["cell"]) for cell in report["per_cell"]}
    assert all(tuple(cell["goal_cell"]) in cells for cell in report["per_cell"])
    goals = report["goals"]
    assert 1 <= goals["distinct_goal_cells"] <= 228 and 0.0 <= goals["worker_reached"] <= 1.0
    assert goals["worker_reached"] == pytest.approx(np.mean([cell["worker_reached_goal"] for cell in report["per_cell"]]))
    for progress in (goals["level1"], goals["random_code"]):
        assert abs(progress["progress"]) < 60 and 0.0 <= progress["nearer"] <= 1.0
    steps = [cell["greedy_success_steps"] for cell in report["per_cell"]]
    assert all(s is None or cell["distance"] <= s <= 25 for s, cell in zip(steps, report["per_cell"]))  # time limit 25
    assert report["greedy_success"] == pytest.approx(np.mean([s is not None for s in steps]))
    sampled = [cell["sampled_success_steps"] for cell in report["per_cell"]]
    assert report["sampled_success"] == pytest.approx(np.mean([s is not None for s in sampled]))
    assert all(0.0 <= band["sampled_success"] <= 1.0 for band in report["bands"])
    failed = [tuple(cell["greedy_last_cell"]) for cell in report["per_cell"] if cell["greedy_success_steps"] is None]
    assert sum(end["runs"] for end in report["failures_end_in"]) == min(len(failed), sum(
        sorted((failed.count(c) for c in set(failed)), reverse=True)[:5]))
    assert all(tuple(end["cell"]) in cells for end in report["failures_end_in"])
    out = capsys.readouterr().out
    assert "| steps to the reward |" in out and "level 1's greedy goals name" in out


@pytest.mark.parametrize("overrides, message", [
    (["env_id=CartPole-v1"], "has no one-hot cell observations"),
    (["env_id=hmbrl/GridFourRooms-v0"], "no checkpoint in"),
])
def test_the_value_map_refuses_runs_it_cannot_probe(tmp_path, overrides, message):
    logdir = write_run(tmp_path / "run", *overrides)
    with pytest.raises(SystemExit, match=message) as error:
        probe_value_map.main(["--logdir", str(logdir)])
    assert error.value.code == 2


def test_probe_benchmark_runs_both_probes_on_every_run_below_a_directory(grid_run, tmp_path, capsys):
    out = tmp_path / "probes.json"
    results = probe_benchmark.main([str(grid_run.parent), "--pairs", "32", "--out", str(out)])
    assert [result["logdir"] for result in results] == [str(grid_run)]
    result = results[0]
    assert result["step"] == 200 and result["levels"] == 2 and "per_cell" not in result["value_map"]
    assert result["value_map"]["cells"] == 228 and result["value_map"]["start"]["distance"] == 30
    assert result["gates"]["probed_steps"] == 200  # the whole replay
    check_result(result["gates"])
    assert result["gates"] == json.loads((grid_run / "gates.json").read_text())
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    table = capsys.readouterr().out.split("probing")[-1]
    assert "| steps to the reward |" not in table  # the probes' own tables only with --verbose
    rows = [line for line in table.splitlines() if line.startswith(f"| {grid_run} | 200 |")]
    assert len(rows) == 1 and rows[0].count("|") == 14
    assert f"{result['value_map']['goals']['distinct_goal_cells']} distinct cells; level 0 reaches them" in rows[0]


def test_probe_benchmark_refuses_directories_without_a_checkpoint(tmp_path):
    (tmp_path / "bench" / "C").mkdir(parents=True)
    write_run(tmp_path / "bench" / "C" / "seed0", "env_id=hmbrl/GridFourRooms-v0", "hierarchy.levels=2")
    with pytest.raises(SystemExit, match="has a checkpoint to probe") as error:
        probe_benchmark.main([str(tmp_path / "bench")])
    assert error.value.code == 2


def test_probe_benchmark_skips_a_run_that_is_training_and_says_why(grid_run):
    from agents.run_lock import RunLock

    with RunLock(grid_run), pytest.raises(SystemExit, match="no run could be probed: .* is in use by process") as error:
        probe_benchmark.main([str(grid_run)])
    assert error.value.code == 2
