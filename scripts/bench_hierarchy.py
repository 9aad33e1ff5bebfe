"""The benchmark that decides whether the hierarchy wins (issue 15): arms at equal environment steps.

    python -m scripts.bench_hierarchy --config small --jobs 2          # A B C, 5 seeds, 50k steps
    python -m scripts.bench_hierarchy --arms A B C C3 D --seeds 0 1 2 3 4 --steps 50000 --novelty 0.1
    python -m scripts.bench_hierarchy --resume runs/bench-hierarchy-hmbrl_GridFourRooms-v0-<time>-<pid> --jobs 2

Arms (every one then takes the ``--config`` presets, e.g. ``small``, and the ``--set`` overrides):
  A   flat: the ``hierarchy2`` preset with ``hierarchy.levels=1``, no novelty term;
  B   flat with the same novelty term as C (``hierarchy.novelty=W``, from an autoencoder of its own
      states): without it a win could not be credited to the hierarchy;
  C   two levels with stacked world models: ``hierarchy2`` with ``hierarchy.novelty=W``;
  C3  three levels: ``hierarchy3`` with ``hierarchy.novelty=W`` (reported, not part of the decision);
  D   two levels, the top imagining through level 0's model with level 0's policy in the loop
      (Director-style, no abstract model): C with ``hierarchy.top_model=imagined``.
W is ``--novelty``. An arm's ``hierarchy.levels``, ``hierarchy.novelty`` and ``hierarchy.top_model``
cannot be ``--set``.

Per run: the greedy success rate at each evaluation (``eval/success_rate``; runs logged before it
existed fall back to the mean return, which equals it when the only reward is a terminal 1), the
steps to the first successful training episode, and coverage (``coverage/*``) at 25k and 50k steps
(half and all of ``--steps`` when shorter). The decision (``scripts.hierarchy_verdict``): C or D wins when
its final success (mean of the last evaluations) beats both A and B, one-sided Mann-Whitney U over
seeds p < 0.05, and its mean is at least 0.8. Prints a table per arm, each arm's diagnostics at the
last evaluation (why an arm fails) and the verdict; writes JSON and PNGs of success rate and coverage
(mean over seeds, band min-max; prefix ``benchmarks/out/hierarchy_<env>``). ``--jobs N`` runs N
single-threaded trainings side by side; ``--vmap`` trains each arm's seeds together in this process,
vmapped (``scripts.train --seeds``); ``--replot JSON`` redoes everything from a saved run.

Every run lives in ``runs/bench-hierarchy-<env>-<time>-<pid>/<arm>/seed<S>``, all written before the
first trains. Stop the benchmark at any time (Ctrl-C or SIGTERM: every run keeps a checkpoint) and
continue it with ``--resume <that directory>``: finished runs are not trained again, the others
continue from their last checkpoint (or start), and the summary covers every run.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from agents.logging import read_metrics
from configs.loader import load_config, parse_override
from scripts.benchmarking import Run, add_run_flags, check_run_flags, run_benchmark
from scripts.run_curves import evaluation_rows, mean_curve, plot, scalar_rows, successful_episodes
from scripts.common import UserError, report_user_errors
from scripts.hierarchy_verdict import (DIAGNOSTIC, MIN_SUCCESS, coverage_marks, print_diagnostics, print_table,
                                       summarise_arm, verdicts)

# Arm -> (preset, levels, whether it gets the novelty term, hierarchy.top_model). The same novelty
# weight goes to B, C, C3 and D; C and D differ only in the top's model.
ARMS = {"A": ("hierarchy2", 1, False, "stacked"), "B": ("hierarchy2", 1, True, "stacked"),
        "C": ("hierarchy2", 2, True, "stacked"), "C3": ("hierarchy3", 3, True, "stacked"),
        "D": ("hierarchy2", 2, True, "imagined")}
# What an arm is; --set must not change them.
ARM_KEYS = ("hierarchy.levels", "hierarchy.novelty", "hierarchy.top_model")
# What a benchmark keeps in its benchmark.json and --resume restores (the runs keep their config.yaml).
SETTINGS = ("env", "arms", "novelty", "steps", "seeds", "eval_every", "eval_episodes", "presets", "overrides")
# Scalars carried into each evaluation row (the latest logged value): what the verdict's diagnostics
# read (why an arm fails), and coverage.
PROBES = re.compile(f"{DIAGNOSTIC.pattern}|^coverage/")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="hmbrl/GridFourRooms-v0")
    parser.add_argument("--arms", nargs="+", default=["A", "B", "C"], choices=list(ARMS))
    parser.add_argument("--novelty", type=float, default=0.1, help="hierarchy.novelty of arms B, C, C3 and D")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--config", dest="presets", nargs="*", default=[], metavar="PRESET",
                        help="presets merged after each arm's preset (e.g. small)")
    add_run_flags(parser, together="each arm's seeds")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="applied to every arm (e.g. hierarchy.disagreement_penalty=0)")
    parser.add_argument("--out", help="output prefix (default benchmarks/out/hierarchy_<env>)")
    parser.add_argument("--replot", metavar="JSON", help="no training: the table and plots again from a saved JSON")
    args = parser.parse_args(argv)
    check_run_flags(parser, args, argv)
    for override in args.overrides:
        if parse_override(override)[0] in ARM_KEYS:
            parser.error(f"--set {override}: {', '.join(ARM_KEYS)} define the arms; use --arms and --novelty")
    return args


def arm_config(arm: str, novelty: float, presets: list[str] = (), overrides: list = ()) -> dict:
    """The config of one arm: its preset, then ``presets`` and ``overrides``, then the keys that make
    it that arm (last, so that nothing else can change them)."""
    preset, levels, with_novelty, top_model = ARMS[arm]
    arm_keys = [("hierarchy.levels", levels), ("hierarchy.novelty", novelty if with_novelty else 0.0),
                ("hierarchy.top_model", top_model)]
    return load_config([preset, *presets], [*overrides, *arm_keys])


def describe(arm: str) -> str:
    """What an arm is, in a few words (``flat + novelty``, ``2 levels + novelty``, ``2 levels, imagined
    top + novelty``)."""
    _, levels, with_novelty, top_model = ARMS[arm]
    imagined = ", imagined top" if top_model == "imagined" else ""
    return ("flat" if levels == 1 else f"{levels} levels") + imagined + (" + novelty" if with_novelty else "")


def run_record(logdir: Path) -> dict:
    """What the benchmark keeps of one run: its evaluation rows (each with ``success_rate``), its
    ``coverage/`` rows, the step of its first successful training episode and how many succeeded."""
    rows = read_metrics(logdir)
    evaluations = evaluation_rows(logdir, PROBES)
    # Before eval/success_rate was logged: with a terminal reward of 1 and no other, the mean return is the rate.
    evaluations = [{**row, "success_rate": row.get("success_rate", row["return"])} for row in evaluations]
    successes = successful_episodes(rows)
    return {"evaluations": evaluations, "coverage": scalar_rows(rows, "coverage/"),
            "first_success_step": successes[0]["step"] if successes else None, "training_successes": len(successes)}


def arm_of(config: dict) -> str:
    """The arm a run's config belongs to (the inverse of ``arm_config``)."""
    hierarchy = config["hierarchy"]
    found = (hierarchy["levels"], hierarchy["novelty"] > 0, hierarchy["top_model"])
    arm = next((arm for arm, (_, *what) in ARMS.items() if tuple(what) == found), None)
    if arm is None:
        raise UserError(f"a run with hierarchy levels {found[0]}, novelty {hierarchy['novelty']} and top model "
                        f"{found[2]} is none of the arms {', '.join(ARMS)}")
    return arm


def run_config(args: argparse.Namespace, arm: str, seed: int) -> dict:
    """The config of one arm's run on one seed."""
    overrides = [("env_id", args.env), ("seed", seed), ("steps", args.steps), ("run.eval_every", args.eval_every),
                 ("run.eval_episodes", args.eval_episodes), *args.overrides]
    return arm_config(arm, args.novelty, args.presets, overrides)


def run_all(args: argparse.Namespace) -> dict[str, dict[int, dict]]:
    """Every (arm, seed) run trained (``<arm>/seed<S>`` in the benchmark's directory), or continued
    with ``--resume``; their records, by arm in ``ARMS`` order."""
    def report(run: Run) -> None:
        evaluations = run_record(run.logdir)["evaluations"]
        last = evaluations[-1]["success_rate"] if evaluations else None
        print(f"arm {arm_of(run.config)} seed {run.config['seed']}: last success rate {last}", flush=True)

    new_configs = lambda: {f"{arm}/seed{seed}": run_config(args, arm, seed) for arm in args.arms for seed in args.seeds}
    groups = run_benchmark(args, "bench_hierarchy", new_configs, lambda run: f"arm {arm_of(run.config)}", SETTINGS, report)
    args.arms = [arm for arm in ARMS if f"arm {arm}" in groups]  # what was found is what is summarised
    args.unfinished = [run.name for group in groups.values() for run in group if not run.finished]  # --report
    return {arm: {run.config["seed"]: run_record(run.logdir) for run in groups[f"arm {arm}"]} for arm in args.arms}


def write_plots(results: dict[str, dict[int, dict]], prefix: Path, env: str, seeds: list[int]) -> None:
    """Success rate and coverage over environment steps, per arm (mean over seeds, band min-max)."""
    evaluations = {arm: {seed: record["evaluations"] for seed, record in runs.items()} for arm, runs in results.items()}
    coverage = {arm: {seed: record["coverage"] for seed, record in runs.items()} for arm, runs in results.items()}
    keys = {key for runs in coverage.values() for rows in runs.values() for row in rows for key in row} - {"step"}
    plots = {".png": ({arm: mean_curve(runs, "success_rate") for arm, runs in evaluations.items()},
                      "greedy success rate", MIN_SUCCESS)}
    for key in sorted(keys):  # coverage/cells_total -> <prefix>_cells_total.png, and cells_per_1k_steps
        curves = {arm: mean_curve(runs, key) for arm, runs in coverage.items()}
        plots[f"_{key.split('/')[-1]}.png"] = (curves, key, None)
    for suffix, (curves, what, target) in plots.items():
        if any(curves.values()):
            path = prefix.with_name(prefix.name + suffix)
            plot(curves, path, f"{env}: {what}, mean over seeds {seeds}, band min-max", target,
                 label=lambda arm: f"arm {arm}", target_label="win at")
            print(f"wrote {path}")


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        for key in ("env", "arms", "novelty", "steps", "seeds", "presets", "overrides", "eval_episodes"):
            setattr(args, key, saved.get(key, getattr(args, key)))
        results = {arm: {int(seed): record for seed, record in runs.items()} for arm, runs in saved["runs"].items()}
        args.unfinished = saved.get("unfinished", [])  # a report of a benchmark under way stays one
    else:
        results = run_all(args)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.env)
    default = Path(args.replot).with_suffix("") if args.replot else f"benchmarks/out/hierarchy_{name}"
    prefix = Path(args.out or default)
    prefix.parent.mkdir(parents=True, exist_ok=True)

    marks = coverage_marks(args.steps)
    evaluated = {arm: runs for arm, runs in results.items() if any(record["evaluations"] for record in runs.values())}
    summaries = {arm: summarise_arm(runs, marks) for arm, runs in evaluated.items()}
    decision = verdicts({arm: summary["finals"] for arm, summary in summaries.items()})
    print(f"\n{args.env}: arms at {args.steps:,} environment steps, seeds {args.seeds}, novelty {args.novelty:g}, "
          f"greedy success over {args.eval_episodes} evaluation episodes")
    print_table(summaries, marks, {arm: describe(arm) for arm in summaries})
    print_diagnostics(summaries)
    unfinished = getattr(args, "unfinished", [])
    if unfinished:  # --report on a benchmark still under way
        total = sum(len(runs) for runs in results.values())
        print(f"\nno verdict yet: {len(unfinished)} of {total} runs have not reached {args.steps:,} steps "
              f"({', '.join(unfinished)}); the success columns are those runs' latest evaluations")
    else:
        print("\n" + decision["line"])
    result = {"env": args.env, "arms": args.arms, "novelty": args.novelty, "steps": args.steps, "seeds": args.seeds,
              "presets": args.presets, "overrides": args.overrides, "eval_episodes": args.eval_episodes,
              "coverage_marks": list(marks), "verdict": None if unfinished else decision,
              "unfinished": unfinished, "summary": summaries,
              "runs": {arm: {str(seed): record for seed, record in runs.items()} for arm, runs in results.items()}}
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=2))
    write_plots(results, prefix, args.env, args.seeds)
    print(f"wrote {prefix.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
