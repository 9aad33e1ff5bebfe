"""Does the hierarchy pay off? 1 vs 2 vs 3 levels at equal environment-step budgets, several seeds.

    python -m scripts.bench_hierarchy --env hmbrl/PointFourRooms-v0 --steps 50000 --seeds 0 1 2
    python -m scripts.bench_hierarchy --env minigrid:MiniGrid-DoorKey-5x5-v0 --levels 1 2

Every run uses the same model sizes (the ``hierarchy2`` preset's; ``hierarchy3`` for three levels;
``levels: 1`` is the flat agent). Prints a table per number of levels: mean and spread (std, min,
max over seeds) of the greedy evaluation return at the end and at its best, and each level's
exploitation gap (imagined minus real return of its own reward, ``agents.diagnostics``) at the last
evaluation. Writes the curves as JSON and the mean learning curve per number of levels as a PNG
(default ``benchmarks/out/hierarchy_<env>.*``).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from agents.logging import read_metrics
from agents.trainer import Trainer
from configs.loader import load_config
from envs import make_vector_env
from scripts.bench_learning import plot

PRESETS = {1: ("hierarchy2", [("hierarchy.levels", 1)]), 2: ("hierarchy2", []), 3: ("hierarchy3", [])}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="hmbrl/PointFourRooms-v0")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3], choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="applied to every run (e.g. hierarchy.disagreement_penalty=0)")
    parser.add_argument("--out", help="output prefix (default benchmarks/out/hierarchy_<env>)")
    return parser.parse_args(argv)


def train_one(args: argparse.Namespace, levels: int, seed: int, logdir: Path) -> list[dict]:
    """One run; its evaluation rows: step, seconds, return and every level's exploitation scalars."""
    preset, preset_overrides = PRESETS[levels]
    overrides = [("env_id", args.env), ("seed", seed), ("steps", args.steps), ("run.eval_every", args.eval_every),
                 ("run.eval_episodes", args.eval_episodes), *preset_overrides, *args.overrides]
    config = load_config([preset], overrides)
    make_envs = lambda count: make_vector_env(config["env_id"], config["env"], count, config["run"]["env_parallel"])
    Trainer(config, logdir, make_envs, progress=False).run(config["steps"])
    rows = [row for row in read_metrics(logdir) if "eval/return_mean" in row]
    return [{"step": row["step"], "seconds": row["eval/elapsed_seconds"], "return": row["eval/return_mean"],
             **{name: value for name, value in row.items() if "/exploitation/" in name or "/goal/" in name}}
            for row in rows]


def summarise(runs: dict[int, list[dict]], levels: int) -> dict:
    finals = np.array([curve[-1]["return"] for curve in runs.values() if curve])
    bests = np.array([max(p["return"] for p in curve) for curve in runs.values() if curve])
    gaps = {}
    for level in range(levels):
        values = [curve[-1].get(f"level{level}/exploitation/gap") for curve in runs.values() if curve]
        values = [v for v in values if v is not None]
        if values:
            gaps[level] = float(np.mean(values))
    return {"final_mean": float(finals.mean()), "final_std": float(finals.std()), "final_min": float(finals.min()),
            "final_max": float(finals.max()), "best_mean": float(bests.mean()), "gaps": gaps}


def mean_curve(runs: dict[int, list[dict]]) -> list[dict]:
    steps = sorted({p["step"] for curve in runs.values() for p in curve})
    curve = []
    for step in steps:
        values = [p["return"] for c in runs.values() for p in c if p["step"] == step]
        curve.append({"step": step, "return": float(np.mean(values))})
    return curve


def main(argv=None) -> dict:
    args = parse_args(argv)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.env)
    prefix = Path(args.out or f"benchmarks/out/hierarchy_{name}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[int, dict[int, list[dict]]] = {}
    for levels in args.levels:
        results[levels] = {}
        for seed in args.seeds:
            logdir = Path("runs") / f"bench-hierarchy-{name}-L{levels}-seed{seed}-{stamp}"
            results[levels][seed] = train_one(args, levels, seed, logdir)
            print(f"levels {levels} seed {seed}: final return {results[levels][seed][-1]['return']:.2f}", flush=True)

    summaries = {levels: summarise(runs, levels) for levels, runs in results.items()}
    print(f"\n{args.env}: greedy evaluation return after {args.steps:,} environment steps, "
          f"seeds {args.seeds} ({args.eval_episodes} episodes each)")
    print("| levels | final return: mean ± std [min, max] | best return (mean) | exploitation gap per level (last eval) |")
    print("| ---: | --- | ---: | --- |")
    for levels, summary in summaries.items():
        gaps = ", ".join(f"L{level}: {gap:+.3f}" for level, gap in summary["gaps"].items()) or "n/a"
        print(f"| {levels} | {summary['final_mean']:.2f} ± {summary['final_std']:.2f} "
              f"[{summary['final_min']:.2f}, {summary['final_max']:.2f}] | {summary['best_mean']:.2f} | {gaps} |")
    result = {"env": args.env, "steps": args.steps, "seeds": args.seeds, "overrides": args.overrides,
              "curves": {str(k): {str(s): c for s, c in v.items()} for k, v in results.items()},
              "summary": {str(k): v for k, v in summaries.items()}}
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=2))
    curves = {levels: mean_curve(runs) for levels, runs in results.items()}
    plot(curves, prefix.with_suffix(".png"), f"{args.env}: mean over seeds {args.seeds}", None,
         label=lambda levels: f"{levels} level{'s' if levels > 1 else ''}")
    print(f"wrote {prefix.with_suffix('.json')} and {prefix.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
