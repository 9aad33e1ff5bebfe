"""Does a trained run's top level see the way to the reward? Its value and imagined return per cell.

    python -m scripts.probe_value_map --logdir runs/X [--step N] [--seed S] [--out JSON]

For an environment whose cells can be enumerated (one-hot cell observations and
``reset(options={"cell": ...})``, such as ``hmbrl/GridFourRooms-v0``; flat or hierarchical runs):
steps every action from every cell reachable from the start to find each cell's distance to the
reward, starts the agent of the run's checkpoint in every cell, and reports the top level's critic
value and the task return it imagines over its horizon with its current policy (``agents.value_map``):
their rank correlation with minus the distance, and per distance band their means and the share of
cells from which the top imagines reaching the reward. For two or more levels, also where level 1's
greedy goal sends level 0 from each cell (the cell its goal features are nearest): how many steps
nearer the reward that is, against a random code's. And the ground truth: from which cells the
agent's greedy policy, and its sampling policy, started there, earn the reward before the episode ends. Prints a table and writes JSON (default
``<logdir>/value_map.json``); exit status 2 with one paragraph for a run it cannot probe.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import jax
import numpy as np

from scripts.common import UserError, report_user_errors, run_config, write_json
from scripts.hierarchy_gates import probe_target, require_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", required=True, help="the run directory")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the policy step and the imagination")
    parser.add_argument("--out", help="JSON path (default: <logdir>/value_map.json)")
    return parser.parse_args(argv)


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    logdir = Path(args.logdir)
    config = run_config(logdir)
    agent, make, obs_key, groups = probe_target(config)  # refuses an env without cells
    require_checkpoint(logdir)
    from agents.evaluation import load_train_state
    from agents.run_lock import RunLock
    from agents.value_map import explore_cells

    try:
        graph = explore_cells(make, obs_key, groups, agent.obs_layout.to_dict)
    except ValueError as error:
        raise UserError(f"{config['env_id']}: {error}") from None
    with RunLock(logdir):  # it reads the checkpoint and writes value_map.json: not while a run writes there
        state, step = load_train_state(agent, config, logdir, args.step)
        return _report(args, logdir, config, agent, state, step, graph, (make, obs_key, groups))


def _report(args: argparse.Namespace, logdir: Path, config: dict, agent, state, step: int, graph, target) -> dict:
    """The estimates in every cell of ``graph``, the agent's success from each and where its goals send
    it (``target``: the env factory, observation key and one-hot groups of ``probe_target``),
    summarised, printed and written as JSON."""
    make, obs_key, groups = target
    from agents.value_map import cell_estimates, distances_to_reward, goal_cells, success_from_cells, summarise

    observations = agent.obs_layout.to_dict(graph.observations)
    key = jax.random.PRNGKey(args.seed)
    value, imagined = cell_estimates(agent, state, observations, key)
    goals = goal_cells(agent, state, graph, observations, make, obs_key, groups, jax.random.fold_in(key, 1))
    runs = success_from_cells(agent, state, make, graph, jax.random.fold_in(key, 2))
    sampled = success_from_cells(agent, state, make, graph, jax.random.fold_in(key, 3), greedy=False)
    distance = distances_to_reward(graph)
    per_cell = [{"cell": list(cell), "distance": _finite(d), "value": float(v), "imagined_return": float(i),
                 "greedy_success_steps": _finite(s), "greedy_last_cell": list(graph.cells[last]),
                 "sampled_success_steps": _finite(sampled_steps)}
                for cell, d, v, i, s, last, sampled_steps in zip(graph.cells, distance, value, imagined, runs.steps,
                                                                 runs.last_cells, sampled.steps)]
    if goals is not None:
        for row, target, reached in zip(per_cell, goals.own, goals.reached):
            row["goal_cell"], row["worker_reached_goal"] = list(graph.cells[target]), bool(reached)
    report = {"logdir": str(logdir), "step": step, "env_id": config["env_id"], "top_level": agent.num_levels - 1,
              "seed": args.seed, **summarise(value, imagined, distance, goals, {"greedy": runs.steps, "sampled": sampled.steps}),
              "failures_end_in": stuck_cells(per_cell),
              "start": dict(per_cell[0]), "per_cell": per_cell}
    print(format_report(report))
    out = Path(args.out) if args.out else logdir / "value_map.json"
    write_json(report, out)
    return report


def _finite(distance: float) -> int | None:
    return int(distance) if np.isfinite(distance) else None


def stuck_cells(per_cell: list[dict], most: int = 5) -> list[dict]:
    """The cells the greedy agent's failed runs most often ended in, with how many: where it gets stuck."""
    ends = collections.Counter(tuple(row["greedy_last_cell"]) for row in per_cell
                               if row["greedy_success_steps"] is None and row["distance"] is not None)
    return [{"cell": list(cell), "runs": runs} for cell, runs in ends.most_common(most)]


def _success(steps: int | None) -> str:
    return "never earns the reward" if steps is None else f"earns the reward in {steps} steps"


def _correlation(value: float | None) -> str:
    return "n/a (constant)" if value is None else f"{value:+.2f}"


def format_report(report: dict) -> str:
    """The correlations, the start cell, where level 1's goals point (two or more levels) and one row
    per distance band."""
    start = report["start"]
    lines = [f"{report['logdir']} at step {report['step']:,}: level {report['top_level']}'s estimates in "
             f"{report['cells']} cells ({report['cells_reaching_reward']} can reach a reward)",
             f"rank correlation with nearness to the reward (5-95% spread): value "
             f"{_correlation(report['value_rank_correlation'])} ({report['value_spread']:.3f}), imagined return "
             f"{_correlation(report['imagined_rank_correlation'])} ({report['imagined_spread']:.3f})",
             f"start {tuple(start['cell'])}: distance {start['distance']}, value {start['value']:.3f}, "
             f"imagined return {start['imagined_return']:.3f}"
             + (f", level 1's goal {tuple(start['goal_cell'])}" if "goal_cell" in start else "")
             + f", greedy agent {_success(start['greedy_success_steps'])}",
             f"the greedy agent earns the reward from {report['greedy_success']:.0%} of the cells (sampling its "
             f"actions: {report['sampled_success']:.0%})"
             + ("; the runs that fail end in " + ", ".join(f"{tuple(end['cell'])} x{end['runs']}"
                                                          for end in report["failures_end_in"])
                if report["failures_end_in"] else "")]
    goals = report.get("goals")
    if goals is not None:
        lines.append(f"level 1's greedy goals name {goals['distinct_goal_cells']} cells and lie "
                     f"{format_progress(goals['level1'])} the reward than the cells they are set in; a random "
                     f"code's {format_progress(goals['random_code'])}; level 0, holding the goal, reaches it from "
                     f"{goals['worker_reached']:.0%} of the cells")
    goal_column = (" level 1's goals: steps nearer the reward (share nearer) | level 0 reaches them |"
                   if goals is not None else "")
    lines += ["| steps to the reward | cells | value | imagined return | imagines the reward | success: greedy / "
              "sampled |" + goal_column,
              "| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if goals is not None else "")]
    for band in report["bands"]:
        progress = (f" {format_progress(band['goal_progress'], short=True)} | {band['worker_reached']:.2f} |"
                    if goals is not None else "")
        lines.append(f"| {band_label(band)} | {band['cells']} | {band['value']:.3f} | {band['imagined_return']:.3f} | "
                     f"{band['imagines_reward']:.2f} | {band['greedy_success']:.2f} / {band['sampled_success']:.2f} |"
                     + progress)
    return "\n".join(lines)


def format_progress(progress: dict | None, short: bool = False) -> str:
    """``goal_progress`` in words: ``+3.2 steps nearer (61% of cells)``, or ``+3.2 (0.61)`` short."""
    if progress is None:
        return "n/a"
    if short:
        return f"{progress['progress']:+.1f} ({progress['nearer']:.2f})"
    return f"{progress['progress']:+.1f} steps nearer ({progress['nearer']:.0%} of cells)"


def band_label(band: dict) -> str:
    """A distance band's steps: ``1``, ``5-9``, ``40+``."""
    last = None if band["below"] is None else band["below"] - 1
    return f"{band['from']}+" if last is None else str(last) if last == band["from"] else f"{band['from']}-{last}"


if __name__ == "__main__":
    main()
