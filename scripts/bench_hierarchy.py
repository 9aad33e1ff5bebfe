"""Does the hierarchy pay off? 1 vs 2 vs 3 levels at equal environment-step budgets, several seeds.

    python -m scripts.bench_hierarchy --env hmbrl/PointFourRooms-v0 --steps 50000 --seeds 0 1 2
    python -m scripts.bench_hierarchy --env minigrid:MiniGrid-DoorKey-5x5-v0 --config small --jobs 2

Every run uses the same model sizes (the ``hierarchy2`` preset's; ``hierarchy3`` for three levels;
``levels: 1`` is the flat agent), then the ``--config`` presets (``small``: CPU-sized models) and
the ``--set`` overrides. ``--jobs N`` runs N trainings at once, each in its own single-threaded
process (on a CPU, several small runs side by side use the cores better than one).

Prints a table per number of levels: mean and spread (std, min, max over seeds) of the greedy
evaluation return at the end and at its best, the mean return of the training episodes, and each
level's exploitation gap (imagined minus real return of its own reward, ``agents.diagnostics``) and
goal-reach rate at the last evaluation. Writes the curves as JSON and, as PNGs (mean over seeds, band
from min to max), the evaluation return (``<prefix>.png``), the training-episode return
(``<prefix>_train.png``) and every level's exploitation gap (``<prefix>_gaps.png``); the default
prefix is ``benchmarks/out/hierarchy_<env>``. ``--replot JSON`` redoes table and plots from a saved run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from agents.trainer import Trainer
from configs.loader import load_config
from envs import make_vector_env
from scripts.benchmarking import evaluation_rows, mean_curve, plot, run_side_by_side

PRESETS = {1: ("hierarchy2", [("hierarchy.levels", 1)]), 2: ("hierarchy2", []), 3: ("hierarchy3", [])}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="hmbrl/PointFourRooms-v0")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3], choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--config", dest="presets", nargs="*", default=[], metavar="PRESET",
                        help="presets merged after each run's level preset (e.g. small)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own single-threaded process")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="applied to every run (e.g. hierarchy.disagreement_penalty=0)")
    parser.add_argument("--out", help="output prefix (default benchmarks/out/hierarchy_<env>)")
    parser.add_argument("--replot", metavar="JSON", help="no training: the table and plots again from a saved JSON")
    return parser.parse_args(argv)


def train_one(args: argparse.Namespace, levels: int, seed: int, logdir: Path) -> list[dict]:
    """One run; its evaluation rows: step, seconds, return and every level's exploitation scalars."""
    preset, preset_overrides = PRESETS[levels]
    overrides = [("env_id", args.env), ("seed", seed), ("steps", args.steps), ("run.eval_every", args.eval_every),
                 ("run.eval_episodes", args.eval_episodes), *preset_overrides, *args.overrides]
    config = load_config([preset, *args.presets], overrides)
    make_envs = lambda count: make_vector_env(config["env_id"], config["env"], count, config["run"]["env_parallel"])
    Trainer(config, logdir, make_envs, progress=False).run(config["steps"])
    return evaluation_rows(logdir)


def summarise(runs: dict[int, list[dict]], levels: int) -> dict:
    """Mean and spread over seeds of the final and best return; per level, the exploitation gap and
    goal-reach rate at the last evaluation (mean and std over seeds)."""
    curves = [curve for curve in runs.values() if curve]
    finals = np.array([curve[-1]["return"] for curve in curves])
    bests = np.array([max(p["return"] for p in curve) for curve in curves])
    per_level = {}
    for level in range(levels):
        entry = {}
        for name, key in (("gap", "exploitation/gap"), ("reach_rate", "goal/reach_rate")):
            values = [curve[-1][f"level{level}/{key}"] for curve in curves if f"level{level}/{key}" in curve[-1]]
            if values:
                entry[name] = float(np.mean(values))
                entry[f"{name}_std"] = float(np.std(values))
        every_evaluation = [p[f"level{level}/exploitation/gap"] for curve in curves for p in curve
                            if f"level{level}/exploitation/gap" in p]
        if every_evaluation:  # steadier than the last evaluation alone
            entry["gap_all_evaluations"] = float(np.mean(every_evaluation))
        per_level[level] = entry
    # Intervals between evaluations span equal step counts, so their mean is the run's mean.
    training = [[p["train_return"] for p in curve if p.get("train_return") is not None] for curve in curves]
    training = [float(np.mean(run)) for run in training if run]
    return {"final_mean": float(finals.mean()), "final_std": float(finals.std()), "final_min": float(finals.min()),
            "final_max": float(finals.max()), "best_mean": float(bests.mean()),
            "train_mean": float(np.mean(training)) if training else None,
            "train_std": float(np.std(training)) if training else None, "levels": per_level}


def gap_curves(results: dict[int, dict[int, list[dict]]]) -> dict[str, list[dict]]:
    """Each level's exploitation gap at each evaluation, per number of levels (mean, min and max over
    seeds), keyed ``"<levels> levels: level <l>"``."""
    curves = {}
    for levels, runs in results.items():
        for level in range(levels):
            points = mean_curve(runs, f"level{level}/exploitation/gap")
            if points:
                curves[f"{levels} level{'s' if levels > 1 else ''}: level {level}"] = points
    return curves


def run_all(args: argparse.Namespace, name: str, stamp: str) -> dict[int, dict[int, list[dict]]]:
    """Every (levels, seed) run, ``args.jobs`` at a time; their evaluation rows."""
    runs = [(levels, seed) for levels in args.levels for seed in args.seeds]
    # The process id keeps two benchmarks started in the same second out of each other's run directories.
    logdirs = {run: Path("runs") / f"bench-hierarchy-{name}-L{run[0]}-seed{run[1]}-{stamp}-{os.getpid()}" for run in runs}
    results: dict[int, dict[int, list[dict]]] = {levels: {} for levels in args.levels}

    def report(run, rows):
        results[run[0]][run[1]] = rows
        print(f"levels {run[0]} seed {run[1]}: final return {rows[-1]['return']:.3f}", flush=True)

    run_side_by_side(train_one, {run: (args, *run, logdirs[run]) for run in runs}, args.jobs, report)
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        for key in ("env", "steps", "seeds", "presets", "overrides", "eval_episodes"):
            setattr(args, key, saved.get(key, getattr(args, key)))
        results = {int(levels): {int(seed): curve for seed, curve in runs.items()}
                   for levels, runs in saved["curves"].items()}
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.env)
    prefix = Path(args.out or (Path(args.replot).with_suffix("") if args.replot else f"benchmarks/out/hierarchy_{name}"))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if not args.replot:
        results = run_all(args, name, time.strftime("%Y%m%d-%H%M%S"))

    summaries = {levels: summarise(runs, levels) for levels, runs in results.items()}
    print(f"\n{args.env}: greedy evaluation return after {args.steps:,} environment steps, "
          f"seeds {args.seeds} ({args.eval_episodes} episodes each)")
    print("| levels | final return: mean ± std [min, max] | best return (mean) | training-episode return, whole "
          "run (mean ± std) | exploitation gap per level (last eval, mean ± std) | goal-reach rate per level |")
    print("| ---: | --- | ---: | ---: | --- | --- |")
    for levels, summary in summaries.items():
        per_level = summary["levels"].items()
        gaps = ", ".join(f"L{l}: {e['gap']:+.3f} ± {e['gap_std']:.3f}" for l, e in per_level if "gap" in e) or "n/a"
        training = "n/a" if summary["train_mean"] is None else f"{summary['train_mean']:.3f} ± {summary['train_std']:.3f}"
        reach = ", ".join(f"L{l}: {e['reach_rate']:.2f}" for l, e in per_level if "reach_rate" in e) or "n/a"
        print(f"| {levels} | {summary['final_mean']:.3f} ± {summary['final_std']:.3f} "
              f"[{summary['final_min']:.3f}, {summary['final_max']:.3f}] | {summary['best_mean']:.3f} | {training} | "
              f"{gaps} | {reach} |")
    print("\nexploitation gap per level, mean over every evaluation and seed:")
    for levels, summary in summaries.items():
        print(f"  {levels} level{'s' if levels > 1 else ''}: " + ", ".join(
            f"L{l}: {e['gap_all_evaluations']:+.3f}" for l, e in summary["levels"].items() if "gap_all_evaluations" in e))
    result = {"env": args.env, "steps": args.steps, "seeds": args.seeds, "presets": args.presets,
              "overrides": args.overrides, "eval_episodes": args.eval_episodes,
              "curves": {str(k): {str(s): c for s, c in v.items()} for k, v in results.items()},
              "summary": {str(k): v for k, v in summaries.items()}}
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=2))
    name_levels = lambda levels: f"{levels} level{'s' if levels > 1 else ''}"
    plots = {
        ".png": ({levels: mean_curve(runs) for levels, runs in results.items()}, "greedy evaluation return", None),
        "_train.png": ({levels: mean_curve(runs, "train_return") for levels, runs in results.items()},
                       "return of the training episodes between evaluations", None),
        "_gaps.png": (gap_curves(results), "exploitation gap (imagined - real return) per level", 0.0),
    }
    for suffix, (curves, what, reference) in plots.items():
        if any(curves.values()):
            path = prefix.with_name(prefix.name + suffix)
            plot(curves, path, f"{args.env}: {what}, mean over seeds {args.seeds}, band min-max", reference,
                 label=name_levels if suffix != "_gaps.png" else str, target_label="gap")
            print(f"wrote {path}")
    print(f"wrote {prefix.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
