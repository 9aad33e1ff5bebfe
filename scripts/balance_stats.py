"""How well does a policy hold a pendulum at the top, and how hard does it brake there? From traces.

    python -m scripts.balance_stats TRACE.json [TRACE.json ...] [--cos-entry 0] [--sin-entry 1]
        [--velocity-entry 2] [--near 10] [--far 45] [--brake-from 5] [--brake-to 15] [--out F]

Reads the JSON that ``scripts.probe_episodes --trace`` writes (with ``--action-values S
--action-grid G`` for the action values) of a run whose environment's own observation (``source``,
or the vector observation ``obs``) holds an angle as its cosine and sine, upright at angle 0, and
its angular velocity, as Pendulum-v1's does (cos θ, sin θ, θ̇), and a one-dimensional torque whose
positive sign speeds θ up. Per trace file, over all its episodes:

- ``mean_return``: the episodes' mean return;
- ``top_value``: the critic's mean value over the steps in the highest fifth of cos θ (its value of
  the top);
- ``steps_near_top``: the steps within ``--near`` degrees of the top, and ``steps`` in all;
- ``falls``: how often the pendulum fell from the top: a step beyond ``--far`` degrees after one
  within ``--near``, counted again only after the next step within ``--near``;
- ``braking_steps``: the steps between ``--brake-from`` and ``--brake-to`` degrees moving away from
  the top (θ θ̇ > 0), and over them:
  - ``torque_towards_top``: the mean action towards the top (-sign(θ) a, in the agent's [-1, 1]);
  - with action values: ``q_full_minus_none``, Q of full torque towards the top minus Q of none, by
    the agent's own model and critic, also over its actor's ``return_scale``
    (``q_full_minus_none_scaled``), and ``q_full_minus_half``, full against half torque.

Prints a table (a column per file) and writes JSON (``--out``). The counts of
``docs/events/RESULTS.md``'s tables of Pendulum-v1 traces are this script's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scripts.common import UserError, report_user_errors
from scripts.probe_episodes import value_by_bins


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="+", help="JSON files written by scripts.probe_episodes --trace")
    parser.add_argument("--cos-entry", type=int, default=0, help="index of cos θ in the state (Pendulum-v1: 0)")
    parser.add_argument("--sin-entry", type=int, default=1, help="index of sin θ in the state (Pendulum-v1: 1)")
    parser.add_argument("--velocity-entry", type=int, default=2, help="index of θ̇ in the state (Pendulum-v1: 2)")
    parser.add_argument("--near", type=float, default=10.0, help="degrees from the top that count as at the top")
    parser.add_argument("--far", type=float, default=45.0, help="degrees from the top that count as fallen")
    parser.add_argument("--brake-from", type=float, default=5.0, help="braking region: from this many degrees")
    parser.add_argument("--brake-to", type=float, default=15.0, help="braking region: to this many degrees")
    parser.add_argument("--out", help="JSON path (default: print only)")
    return parser.parse_args(argv)


def count_falls(degrees: np.ndarray, near: float, far: float) -> int:
    """Falls in one episode's angles from the top (degrees, signed): a step beyond ``far`` after one
    within ``near``, armed again by the next step within ``near``."""
    falls, armed = 0, False
    for angle in np.abs(degrees):
        if angle < near:
            armed = True
        elif armed and angle > far:
            falls, armed = falls + 1, False
    return falls


def grid_column(value: float, grid: Sequence[float]) -> int:
    """The column of ``action_values`` holding the grid value ``value`` (column 0 is the greedy action)."""
    matches = np.flatnonzero(np.isclose(grid, value))
    if not len(matches):
        raise UserError(f"the trace's action grid {list(grid)} has no value {value}: run probe_episodes with an "
                        "--action-grid that holds -1, -0.5, 0, 0.5 and 1 (5, 9, 13, ... values)")
    return 1 + int(matches[0])


def state_entry_name(trace_episode: dict[str, Any]) -> str:
    """The recorded entry that holds the state: the camera's ``source``, else the vector ``obs``."""
    for name in ("source", "obs"):
        if name in trace_episode["entries"]:
            return name
    raise UserError(f"the trace records no state entry ('source' or 'obs'), only {sorted(trace_episode['entries'])}")


def balance_stats(report: dict[str, Any], cos_entry: int = 0, sin_entry: int = 1, velocity_entry: int = 2,
                  near: float = 10.0, far: float = 45.0, brake_from: float = 5.0, brake_to: float = 15.0
                  ) -> dict[str, Any]:
    """The statistics of the module doc for one ``probe_episodes --trace`` report."""
    if not report.get("trace"):
        raise UserError("the report has no trace: run scripts.probe_episodes with --trace")
    name = state_entry_name(report["trace"][0])
    states = [np.asarray(episode["entries"][name], np.float64) for episode in report["trace"]]
    degrees = [np.degrees(np.arctan2(state[:, sin_entry], state[:, cos_entry])) for state in states]
    every_state, every_angle = np.concatenate(states), np.concatenate(degrees)
    actions = np.concatenate([np.asarray(episode["actions"], np.float64) for episode in report["trace"]])
    if actions.ndim != 2 or actions.shape[1] != 1:
        raise UserError(f"balance statistics need one continuous action (a torque), got actions of shape {actions.shape}")
    values = np.concatenate([np.asarray(episode["values"], np.float64) for episode in report["trace"]])
    bins = value_by_bins(every_state[:, cos_entry], values, 5)
    towards = -np.sign(every_angle)  # the sign of a torque that turns the pendulum back up
    braking = ((np.abs(every_angle) >= brake_from) & (np.abs(every_angle) <= brake_to)
               & (every_angle * every_state[:, velocity_entry] > 0))
    stats = {"episodes": len(states), "steps": len(every_angle),
             "mean_return": float(np.mean([episode["return"] for episode in report["episodes"]])),
             "top_value": bins[-1]["mean_value"] if bins else None,
             "steps_near_top": int(np.sum(np.abs(every_angle) < near)),
             "falls": int(sum(count_falls(angle, near, far) for angle in degrees)),
             "braking_steps": int(braking.sum()),
             "torque_towards_top": float(np.mean(towards[braking] * actions[braking, 0])) if braking.any() else None}
    if "action_values" in report["trace"][0] and report.get("continuous_actions"):
        grid = report["continuous_actions"]["grid"]
        q = np.concatenate([np.asarray(episode["action_values"], np.float64) for episode in report["trace"]])
        pick = lambda value: np.where(towards > 0, q[:, grid_column(value, grid)], q[:, grid_column(-value, grid)])
        full, half, none = pick(1.0), pick(0.5), q[:, grid_column(0.0, grid)]
        scale = report["continuous_actions"]["return_scale"]
        stats.update({"q_full_minus_none": float(np.mean((full - none)[braking])) if braking.any() else None,
                      "q_full_minus_half": float(np.mean((full - half)[braking])) if braking.any() else None,
                      "return_scale": scale})
        stats["q_full_minus_none_scaled"] = (None if stats["q_full_minus_none"] is None
                                             else stats["q_full_minus_none"] / scale)
    return stats


ROWS = {"mean_return": ("mean return", "{:.0f}"), "top_value": ("critic's value in the top fifth of cos θ", "{:.0f}"),
        "steps_near_top": ("steps near the top", "{:d}"), "steps": ("steps", "{:d}"), "falls": ("falls from the top", "{:d}"),
        "braking_steps": ("steps moving away in the braking region", "{:d}"),
        "torque_towards_top": ("torque towards the top there", "{:+.2f}"),
        "q_full_minus_none": ("Q(full) - Q(none) there", "{:.1f}"),
        "q_full_minus_none_scaled": ("the same in return scales", "{:.2f}"),
        "q_full_minus_half": ("Q(full) - Q(half) there", "{:.1f}")}


@report_user_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    results = {}
    for path in args.traces:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"{path}: cannot read a probe_episodes report ({error})") from None
        results[path] = balance_stats(report, args.cos_entry, args.sin_entry, args.velocity_entry, args.near, args.far,
                                      args.brake_from, args.brake_to)
    print(f"near the top: within {args.near:g}°; fallen: beyond {args.far:g}°; braking region: "
          f"{args.brake_from:g}-{args.brake_to:g}° moving away")
    print("| | " + " | ".join(Path(path).stem for path in results) + " |")
    print("| --- |" + " ---: |" * len(results))
    for key, (label, form) in ROWS.items():
        cells = ["-" if stats.get(key) is None else form.format(stats[key]) for stats in results.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")
    settings = {key: getattr(args, key) for key in ("near", "far", "brake_from", "brake_to")}
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": settings, "traces": results}, indent=2))
        print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
