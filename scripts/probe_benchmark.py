"""Why did each run of a hierarchy benchmark succeed or fail? The probes of every run, in one table.

    python -m scripts.probe_benchmark runs/bench-hierarchy-<env>-<time>-<pid> [MORE DIRS] [--out JSON]

For every run below the directories (benchmark directories, arm directories or run directories)
that has a checkpoint, at its latest one: ``scripts.probe_value_map`` (does the top level value
and imagine the reward where it is, from which cells does its greedy policy earn it?) and, for runs of two or more levels, ``scripts.hierarchy_gates``
on the run's whole replay (does the worker reach its goals, enter the rewarded cell when asked, do
the codes name the rewarded states?). Each probe writes its JSON into the run directory as when run
alone; this prints one row per run and writes every result to ``--out`` (default
``<first directory>/probes.json``; a run it could not probe, such as one still training, which
holds its lock, is listed with the reason). Environments need enumerable cells
(``hmbrl/GridFourRooms-v0``). A probe takes minutes per run on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path
from typing import Any

from scripts import hierarchy_gates, probe_value_map
from scripts.benchmarking import resumed_benchmark
from scripts.common import UserError, report_user_errors
from scripts.evaluate import positive_int


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directories", nargs="+", help="benchmark, arm or run directories")
    parser.add_argument("--replay-steps", type=positive_int, default=1_000_000,
                        help="the last steps of each environment's replay the gates probe (default: all)")
    parser.add_argument("--pairs", type=positive_int, default=256, help="pairs of the reach gate and the reward reach")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON path (default <first directory>/probes.json)")
    parser.add_argument("--verbose", action="store_true", help="also print each probe's own tables")
    return parser.parse_args(argv)


@report_user_errors
def main(argv=None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    runs, _ = resumed_benchmark(args.directories, None)
    probed = [run for run in runs if run.start]
    if not probed:
        raise UserError(f"no run below {' '.join(args.directories)} has a checkpoint to probe: train them first")
    results, skipped = [], []
    for run in probed:
        print(f"probing {run.name} at step {run.start:,} ...", flush=True)
        try:
            results.append(probe_run(run.name, run.logdir, run.config["hierarchy"]["levels"], args))
        except UserError as error:  # e.g. a run still training holds its lock: probe the others
            skipped.append({"run": run.name, "logdir": str(run.logdir), "error": str(error)})
    if not results:
        raise UserError(f"no run could be probed: {skipped[0]['error']}")
    print(format_table(results))
    for run in skipped:
        print(f"not probed: {run['run']}: {run['error']}")
    out = Path(args.out) if args.out else Path(args.directories[0]) / "probes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results + skipped, indent=2))
    print(f"wrote {out}")
    return results


def probe_run(name: str, logdir: Path, levels: int, args: argparse.Namespace) -> dict[str, Any]:
    """The value map and, above one level, the gates of the run at ``logdir``."""
    shown = contextlib.nullcontext() if args.verbose else contextlib.redirect_stdout(io.StringIO())
    with shown:
        value_map = probe_value_map.main(["--logdir", str(logdir), "--seed", str(args.seed)])
        gates = None
        if levels > 1:
            gates = hierarchy_gates.main(["--logdir", str(logdir), "--replay-steps", str(args.replay_steps),
                                          "--pairs", str(args.pairs), "--seed", str(args.seed)])
    value_map = {key: value for key, value in value_map.items() if key != "per_cell"}  # in its own JSON
    return {"run": name, "logdir": str(logdir), "step": value_map["step"], "levels": levels,
            "value_map": value_map, "gates": gates}


def format_table(results: list[dict[str, Any]]) -> str:
    """One markdown row per run: what its top sees, and for a hierarchy what its worker does."""
    bands = results[0]["value_map"]["bands"]  # one environment: the same bands in every run
    band_names = " / ".join(probe_value_map.band_label(band) for band in bands)
    lines = ["| run | step | greedy success from the cells " f"({band_names} steps away) | sampled success | "
             "value corr. | imagined "
             f"corr. | value at the start | imagines the reward ({band_names}) | level 1's goals: steps nearer the "
             "reward, own / random code; how many cells they name; share level 0 reaches | reward reach: state / code / random goal (pairs) | worker reach by cell: "
             "own / shuffled goal | worker reach by cell of goals farther ahead: own / shuffled | code perplexity |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | --- | --- | --- | --- | --- | ---: |"]
    for result in results:
        value_map = result["value_map"]
        by_band = {band["from"]: band for band in value_map["bands"]}
        seen, succeeded, sampled = (" / ".join(_number(by_band.get(band["from"], {}).get(name), ".2f")
                                               for band in bands)
                                    for name in ("imagines_reward", "greedy_success", "sampled_success"))
        lines.append(f"| {result['run']} | {result['step']:,} | {succeeded} | {sampled} | "
                     f"{_number(value_map['value_rank_correlation'], '+.2f')} "
                     f"| {_number(value_map['imagined_rank_correlation'], '+.2f')} | "
                     f"{value_map['start']['value']:.3f} | {seen} | {_goal_progress(value_map.get('goals'))} | "
                     f"{_gates_cells(result['gates'])} |")
    return "\n".join(lines)


def _goal_progress(goals: dict[str, Any] | None) -> str:
    if goals is None:
        return "n/a (one level)"
    nearer = " / ".join(_number(None if progress is None else progress["progress"], "+.1f")
                        for progress in (goals["level1"], goals["random_code"]))
    return (f"{nearer}; {goals['distinct_goal_cells']} distinct cells; "
            f"level 0 reaches them from {goals['worker_reached']:.2f}")


def _gates_cells(gates: dict[str, Any] | None) -> str:
    if gates is None:
        return "n/a (one level) | n/a | n/a | n/a"
    reward = gates["reward_reach"]
    if reward["pairs"]:
        reach = reward["reach"]
        entered = (f"{_number(reach.get('state'), '.2f')} / {_number(reach.get('code'), '.2f')} / "
                   f"{_number(reach.get('random'), '.2f')} ({reward['pairs']})")
    else:
        entered = f"n/a ({reward['note']})"
    details = gates["gates"]["reach"]["details"]
    worker = (f"{details['cell_reach_own']:.2f} / {details['cell_reach_shuffled']:.2f}" if "cell_reach_own" in details
              else "n/a")
    farther = "; ".join(f"{row['from']}-{row['to']}: {hierarchy_gates.format_band_reach(row)}"
                        for row in gates.get("reach_by_distance", []))
    return f"{entered} | {worker} | {farther or 'n/a'} | {gates['gates']['perplexity']['value']:.0f}"


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
