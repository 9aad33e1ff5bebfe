"""Learning-curve benchmark: train a preset on several seeds side by side, evaluate on the way.

    python -m scripts.bench_learning --env CartPole-v1 --config control --seeds 0 1 2 --jobs 3
    python -m scripts.bench_learning --env Pendulum-v1 --config control --seeds 0 1 2 --jobs 3 --hold-from 20000
    python -m scripts.bench_learning --env CartPole-v1 --config control --seeds 0 1 2 --vmap   # one process
    python -m scripts.bench_learning --env CartPole-v1 --runs runs/bench-learning-CartPole-v1-<time>-<pid>/seed*   # summarise
    python -m scripts.bench_learning --resume runs/bench-learning-CartPole-v1-<time>-<pid> --jobs 3   # continue

Each seed trains ``--steps`` agent steps (environment steps, unless the preset repeats actions) and
evaluates the greedy policy every ``--eval-every`` steps; ``--jobs N`` runs N seeds at once, each in
its own single-threaded process; ``--vmap`` runs all seeds in this process instead, their updates and
acting vmapped (``scripts.train --seeds``; each seed still gets its own run directory). Prints a table per seed: the final return (mean of the last four
evaluations), the best, the first step that reached the target, whether the target was *held* (the
final return reaches it; with ``--hold-from S``, every evaluation from step S on does too), the
decoder's R^2 per observation key at the end, and the wall-clock. Writes the curves as JSON and a PNG
(mean over seeds, band from min to max; default prefix ``benchmarks/out/learning_<env>``).

The seeds' runs live in ``runs/bench-learning-<env>-<time>-<pid>/seed<S>``, all written before the
first trains. Stop the benchmark at any time (Ctrl-C or SIGTERM: every run keeps a checkpoint) and
continue it with ``--resume <that directory>`` (``--steps`` to train longer; also run directories
of earlier benchmarks): finished runs are not trained again, the others continue from their last
checkpoint (or start), and the summary covers every seed. ``--runs DIR ...`` summarises run
directories, finished or not, without training (each under its run's seed, with the presets and
overrides its benchmark kept); ``--replot JSON`` redoes table and plot from a saved JSON, and
``--replot A.json B.json ... --out P`` merges the seeds of several saved JSONs (seeds run at different
times, say) into one table, JSON and plot: one environment, each seed in one file; where their presets,
overrides or episodes per evaluation differ, the merged JSON keeps each seed's under ``sources``.
``--seeds`` with ``--replot`` keeps only those seeds of the files.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import gymnasium
import numpy as np

from configs.loader import load_config, read_config
from scripts.benchmarking import BENCHMARK_FILE, Run, add_run_flags, benchmark_home, check_run_flags, run_benchmark
from scripts.run_curves import evaluation_rows, mean_curve, plot, steps_label
from scripts.common import UserError, report_user_errors

# Targets of the issue; other environments fall back to Gymnasium's registered reward threshold.
TARGETS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}
FINAL_EVALUATIONS = 4  # the final return is the mean of this many last evaluations
# Scalars carried into each evaluation row: what a probe of a falling-back agent looks at first.
PROBES = ("world_model/r2/", "world_model/loss/reconstruction", "world_model/loss/reward", "actor_critic/entropy",
          "actor_critic/value", "actor_critic/return_scale", "actor_critic/imagined_return")
# What a benchmark keeps in its benchmark.json and --resume restores (the runs keep their config.yaml).
SETTINGS = ("env", "config", "steps", "seeds", "eval_every", "eval_episodes", "target", "hold_from", "overrides")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--config", default="control", help="presets, comma-separated (as scripts.train)")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_run_flags(parser, together="all seeds")
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--target", type=float, help="return to reach (default: known per env)")
    parser.add_argument("--hold-from", type=int, help="held: every evaluation from this step on reaches the target")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="output prefix (default benchmarks/out/learning_<env>)")
    parser.add_argument("--runs", nargs="+", metavar="DIR", help="no training: summarise these run directories")
    parser.add_argument("--replot", nargs="+", metavar="JSON",
                        help="no training: the table and plot again from a saved JSON; several (with --out): merged")
    args = parser.parse_args(argv)
    # --env and --config only name runs of earlier benchmarks, which kept no settings.
    check_run_flags(parser, args, argv, also_with_resume=("target", "hold_from", "env", "config"))
    if args.replot and len(args.replot) > 1 and not args.out:
        parser.error("--replot with several JSONs merges them: give --out, the merged result's prefix")
    args.sources = None  # where each seed's curve came from, when --replot merges differing files
    return args


def seed_config(args: argparse.Namespace, seed: int) -> dict:
    """The resolved config of one seed's run."""
    overrides = [("env_id", args.env), ("seed", seed), ("steps", args.steps),
                 ("run.eval_every", args.eval_every), ("run.eval_episodes", args.eval_episodes), *args.overrides]
    return load_config(args.config.split(","), overrides)


HELD_TEXT = {True: "yes", False: "no", None: "not yet"}


def default_target(env_id: str) -> float | None:
    """The issue's target for ``env_id``, else its registered ``reward_threshold`` (None: neither)."""
    if env_id in TARGETS:
        return TARGETS[env_id]
    try:
        return gymnasium.spec(env_id).reward_threshold
    except gymnasium.error.Error:  # prefixed ids (event:, dmc:) and module:Class are not registered
        return None


def summarise_seed(curve: list[dict], target: float | None, hold_from: int | None) -> dict:
    """Final (mean of the last ``FINAL_EVALUATIONS``), best, first step at the target, held, R^2."""
    returns = [p["return"] for p in curve]
    final = float(np.mean(returns[-FINAL_EVALUATIONS:]))
    summary = {"final": final, "best": float(max(returns)), "evaluations": len(curve),
               "last_step": curve[-1]["step"], "seconds": curve[-1]["seconds"],
               "r2": {name.rsplit("/", 1)[-1]: value for name, value in curve[-1].items() if "/r2/" in name}}
    if target is not None:
        summary["first_step_at_target"] = next((p["step"] for p in curve if p["return"] >= target), None)
        tail = [p["return"] for p in curve if hold_from is not None and p["step"] >= hold_from]
        # None: not known yet, for a run that has not been evaluated from hold_from on
        summary["held"] = (None if hold_from is not None and not tail
                           else bool(final >= target and all(value >= target for value in tail)))
    return summary


def print_table(env: str, config: str, runs: dict[int, list[dict]], summaries: dict[int, dict],
                target: float | None, hold_from: int | None) -> None:
    held = f" (target {target:g}" + (f", every evaluation from {hold_from:,} steps on" if hold_from else "") + ")"
    print(f"\n{env} / {config}: greedy evaluation return{held if target is not None else ''}")
    print("| seed | env steps | final (last 4) | best | first at target | held | decoder R² | wall-clock (s) |")
    print("| ---: | ---: | ---: | ---: | ---: | :---: | --- | ---: |")
    for seed, s in summaries.items():
        first = s.get("first_step_at_target")
        r2 = ", ".join(f"{key} {value:.3f}" for key, value in s["r2"].items()) or "n/a"
        print(f"| {seed} | {s['last_step']:,} | {s['final']:.1f} | {s['best']:.1f} | "
              f"{'-' if first is None else f'{first:,}'} | {HELD_TEXT[s.get('held', False)]} | {r2} | "
              f"{s['seconds']:.0f} |")
    finals = [s["final"] for s in summaries.values()]
    print(f"final return over seeds: mean {np.mean(finals):.1f}, min {np.min(finals):.1f}, max {np.max(finals):.1f}; "
          f"held on {sum(bool(s.get('held')) for s in summaries.values())} of {len(summaries)} seeds"
          + (f" (not known yet on {unknown}: not evaluated from the hold step on)"
             if (unknown := sum(s.get("held", False) is None for s in summaries.values())) else ""))


def collect(args: argparse.Namespace) -> dict[int, list[dict]]:
    """Evaluation rows per seed: trained now (or continued, ``--resume``), read from ``--runs``
    directories, or from ``--replot``."""
    if args.replot:
        return replotted(args)
    if args.runs:
        return summarised_runs(args)

    def report(run: Run) -> None:
        rows = evaluation_rows(run.logdir, PROBES)
        print(f"seed {run.config['seed']}: last evaluation {rows[-1]['return'] if rows else None}", flush=True)

    new_configs = lambda: {f"seed{seed}": seed_config(args, seed) for seed in args.seeds}
    runs, = run_benchmark(args, "bench_learning", new_configs, lambda run: "the benchmark", SETTINGS, report).values()
    curves = {run.config["seed"]: evaluation_rows(run.logdir, PROBES) for run in runs}
    return {seed: curve for seed, curve in curves.items() if curve}


REPLOT_SETTINGS = ("env", "config", "steps", "hold_from", "overrides", "eval_episodes")
SOURCE_SETTINGS = ("config", "overrides", "eval_episodes")  # may differ between merged files, kept per seed


def replotted(args: argparse.Namespace) -> dict[int, list[dict]]:
    """``--replot``: the curves of one saved JSON, or the seeds of several merged (only ``--seeds``
    where given). Settings come from the first file; merged files must share the environment and hold
    no (kept) seed twice."""
    curves, sources = {}, {}
    saved = [(path, json.loads(Path(path).read_text())) for path in args.replot]
    wanted = set(args.seeds) if "seeds" in args.given else None
    for path, result in saved:
        if result["env"] != saved[0][1]["env"]:
            raise UserError(f"--replot: {path} is a benchmark of {result['env']}, {args.replot[0]} of "
                            f"{saved[0][1]['env']}; merge the JSONs of one environment")
        for seed, curve in result["curves"].items():
            if wanted is not None and int(seed) not in wanted:
                continue
            if int(seed) in curves:
                raise UserError(f"--replot: seed {seed} is in {sources[int(seed)]['file']} and in {path}; "
                                "give each seed in one file")
            curves[int(seed)] = curve
            # A file that is itself a merge knows where each of its seeds came from.
            sources[int(seed)] = (result.get("sources") or {}).get(seed) or {
                "file": str(path), **{key: result.get(key) for key in SOURCE_SETTINGS}}
    if wanted is not None and wanted - set(curves):
        raise UserError(f"--replot: seed(s) {sorted(wanted - set(curves))} are in none of {', '.join(args.replot)}")
    for key in REPLOT_SETTINGS:
        setattr(args, key, saved[0][1].get(key, getattr(args, key)))
    differing = [key for key in SOURCE_SETTINGS if len({json.dumps(s[key]) for s in sources.values()}) > 1]
    args.sources = saved[0][1].get("sources") if len(saved) == 1 else (sources if differing else None)
    if differing:
        print(f"note: the merged seeds differ in {', '.join(differing)}: "
              + "; ".join(f"seed {seed}: " + ", ".join(f"{key} {source[key]}" for key in differing)
                          for seed, source in sorted(sources.items())))
    return curves


def summarised_runs(args: argparse.Namespace) -> dict[int, list[dict]]:
    """``--runs``: each directory's evaluations under its run's seed (from its ``config.yaml``; its
    position in ``--runs`` where it has none). The settings its benchmark kept (``benchmark.json``:
    presets, overrides, episodes per evaluation ...) come back into ``args`` but for the flags given."""
    curves, settings = {}, {}
    for index, run in enumerate(map(Path, args.runs)):
        seed = read_config(run / "config.yaml")["seed"] if (run / "config.yaml").is_file() else index
        if seed in curves:
            raise UserError(f"--runs: two of the directories are runs of seed {seed}; give one run per seed")
        home = benchmark_home(run)
        if home is not None and not settings:
            settings = json.loads((home / BENCHMARK_FILE).read_text())
        curves[seed] = evaluation_rows(run, PROBES)
    for key in set(SETTINGS) - {"seeds"} - args.given:
        setattr(args, key, settings.get(key, getattr(args, key)))
    return {seed: curve for seed, curve in curves.items() if curve}


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    runs = collect(args)
    target = args.target if args.target is not None else default_target(args.env)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.env)
    prefix = Path(args.out or (Path(args.replot[0]).with_suffix("") if args.replot else f"benchmarks/out/learning_{name}"))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if not runs:
        raise SystemExit("no evaluations to summarise: the runs have not reached their first evaluation yet")
    summaries = {seed: summarise_seed(curve, target, args.hold_from) for seed, curve in runs.items()}
    print_table(args.env, args.config, runs, summaries, target, args.hold_from)
    result = {"env": args.env, "config": args.config, "steps": args.steps, "target": target,
              "hold_from": args.hold_from, "overrides": args.overrides, "eval_episodes": args.eval_episodes,
              "curves": {str(seed): curve for seed, curve in runs.items()},
              "summary": {str(seed): summary for seed, summary in summaries.items()}}
    if args.sources:
        result["sources"] = {str(seed): source for seed, source in args.sources.items()}
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=2))
    title = f"{args.env} ({args.config}): mean over {len(runs)} seeds, band min-max"
    repeat = seed_config(args, next(iter(runs)))["env"]["action_repeat"]
    plot({args.config: mean_curve(runs)}, prefix.with_suffix(".png"), title, target, label=str,
         steps=steps_label(repeat))
    print(f"wrote {prefix.with_suffix('.json')} and {prefix.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
