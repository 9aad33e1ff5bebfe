"""What the benchmark scripts share: a benchmark directory whose runs can be stopped at any time and
continued with ``--resume``, and runs trained side by side (``scripts.side_by_side``) or vmapped
together. Reading a run's curves and plotting them is ``scripts.run_curves``.

A new benchmark writes its settings (``benchmark.json``) and every run's ``config.yaml`` into one
directory, ``runs/bench-<kind>-<env>-<time>-<pid>/``, before anything trains. ``--resume`` of that
directory therefore finds every run, started or not: a finished run is not trained again, a stopped
one continues from its last checkpoint, one that never started starts.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import itertools
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from scripts.common import SIGNAL_EXIT_CODES, UserError
from scripts.side_by_side import StopSignals, run_side_by_side

BENCHMARK_FILE = "benchmark.json"  # a benchmark directory's settings, beside its runs
RUN_FLAGS = ("resume", "jobs", "vmap", "steps", "out", "report")  # the flags --resume takes (the runs keep the rest)


# ----------------------------------------------------------------------------- command line
def add_run_flags(parser: argparse.ArgumentParser, together: str) -> None:
    """``--jobs``, ``--vmap`` and ``--resume``, alike in every benchmark that trains; ``together`` says
    which seeds ``--vmap`` trains in one process (e.g. ``"each arm's seeds"``)."""
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own single-threaded process")
    parser.add_argument("--vmap", action="store_true",
                        help=f"{together} in this one process, their updates and acting vmapped over a seed axis")
    parser.add_argument("--resume", nargs="+", metavar="DIR",
                        help="continue a stopped benchmark: its directory (or single run directories); finished "
                        "runs are not trained again. Only --steps, --jobs, --vmap and --out may change")
    parser.add_argument("--report", action="store_true",
                        help="with --resume: summarise the runs as they stand (their evaluations so far), training "
                        "nothing; a benchmark that runs over several sessions reports where it is")


def check_run_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None,
                    also_with_resume: Sequence[str] = ()) -> None:
    """Sets ``args.given`` (the flags on the command line) and refuses ``--vmap`` with ``--jobs`` and,
    with ``--resume``, the flags that would change the runs (each keeps its ``config.yaml``); the
    flags in ``RUN_FLAGS`` and ``also_with_resume`` are taken."""
    probe = copy.deepcopy(parser)  # the same parser without defaults: only what was given
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    args.given = set(vars(probe.parse_args(argv)))
    if args.vmap and args.jobs > 1:
        parser.error("--vmap trains the seeds in this one process: leave out --jobs")
    if args.report and not args.resume:
        parser.error("--report summarises a benchmark's runs as they stand: give its directory with --resume")
    refused = args.given - set(RUN_FLAGS) - set(also_with_resume) if args.resume else set()
    if refused:
        flags = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
        taken = ", ".join(flags[dest] for dest in (*RUN_FLAGS, *also_with_resume) if dest != "resume")
        parser.error(f"--resume continues the runs as they were started (each keeps its config.yaml): "
                     f"{', '.join(sorted(flags[dest] for dest in refused))} cannot be given with it, only {taken}")


def continue_command(script: str, directories: Sequence[str | Path], args: argparse.Namespace) -> str:
    """The one command that continues a benchmark (``--steps``, ``--jobs`` and ``--vmap`` as now)."""
    flags = [f"--steps {args.steps}"] if args.resume and "steps" in args.given else []
    flags += [f"--jobs {args.jobs}"] * (args.jobs > 1) + ["--vmap"] * args.vmap
    return " ".join([f"python -m scripts.{script} --resume", *map(str, directories), *flags])


# ----------------------------------------------------------------------------- a benchmark's runs
@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a benchmark: its directory, its name in messages, its config (``steps`` set to where
    it trains to) and the step of its last checkpoint (0 without one)."""

    logdir: Path
    name: str
    config: dict
    start: int = 0

    @property
    def finished(self) -> bool:
        return self.start >= self.config["steps"]

    def at_last_checkpoint(self) -> Run:
        """This run with ``start`` at its last checkpoint as the directory holds it now."""
        from agents.checkpoint import latest_checkpoint_step

        return dataclasses.replace(self, start=latest_checkpoint_step(self.logdir / "checkpoints") or 0)

    def describe(self) -> str:
        steps = self.config["steps"]
        if self.finished:
            return f"{self.name}: finished ({self.start:,} of {steps:,} steps), not trained again"
        if self.start:
            return f"{self.name}: resumes from step {self.start:,} to {steps:,}"
        return f"{self.name}: starts at step 0 (no checkpoint yet), to {steps:,}"

    def standing(self) -> str:
        """Where the run stands, for ``--report``."""
        if self.finished:
            return f"{self.name}: finished ({self.start:,} of {self.config['steps']:,} steps)"
        if self.start:
            return f"{self.name}: last checkpoint at step {self.start:,} of {self.config['steps']:,}"
        return f"{self.name}: no checkpoint yet"


def new_benchmark(kind: str, env: str, configs: Mapping[str, Mapping[str, Any]]) -> tuple[Path, list[Run]]:
    """A new benchmark's directory, ``runs/bench-<kind>-<env>-<time>-<pid>`` (the process id keeps two
    started in the same second apart), and its runs; ``configs`` maps a run's path in the directory
    (e.g. ``C/seed3``) to its config. Nothing is written before ``write_benchmark``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", env)
    directory = first = Path("runs") / f"bench-{kind}-{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    while directory.exists():  # a second benchmark of this process within the second
        directory = first.with_name(f"{first.name}-{len(list(first.parent.glob(first.name + '*'))) + 1}")
    return directory, [Run(directory / path, path, dict(config)) for path, config in configs.items()]


def write_benchmark(directory: Path, settings: Mapping[str, Any], runs: Sequence[Run], command: str) -> None:
    """Write a new benchmark's settings and every run's ``config.yaml`` before any run trains, and
    say how to continue it."""
    from scripts.common import write_config

    directory.mkdir(parents=True)
    (directory / BENCHMARK_FILE).write_text(json.dumps(dict(settings), indent=2))
    for run in runs:
        write_config(run.config, run.logdir)
    print(f"benchmark directory: {directory}. Stop it at any time (Ctrl-C or SIGTERM: every run keeps a "
          f"checkpoint) and continue it with\n  {command}", flush=True)


def resumed_benchmark(directories: Sequence[str | Path], steps: int | None) -> tuple[list[Run], dict]:
    """The runs in ``directories`` (benchmark directories, or run directories), each to ``steps`` (None:
    the steps it was started with), and the settings of their benchmark (``{}`` for runs of a benchmark
    that wrote none)."""
    from configs.loader import read_config

    runs, settings = {}, {}
    for directory in map(Path, directories):
        found = [directory] if (directory / "config.yaml").exists() else sorted(
            (path.parent for path in directory.rglob("config.yaml")), key=_natural_order)
        if not found:
            raise UserError(f"--resume {directory}: no run there or below it (no config.yaml)")
        home = benchmark_home(directory)
        if home is not None and not settings:
            settings = json.loads((home / BENCHMARK_FILE).read_text())
        for logdir in found:
            config = read_config(logdir / "config.yaml")
            config["steps"] = steps or config["steps"]
            name = str(logdir.relative_to(home)) if home is not None else str(logdir)
            runs.setdefault(logdir, Run(logdir, name, config).at_last_checkpoint())
    return list(runs.values()), settings


def benchmark_home(directory: Path) -> Path | None:
    """The benchmark directory that ``directory`` is (or lies in): the nearest with a ``benchmark.json``."""
    return next((path for path in (directory, *directory.parents) if (path / BENCHMARK_FILE).is_file()), None)


def _natural_order(path: Path) -> list:
    """``seed2`` before ``seed10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def train_benchmark(groups: Mapping[str, Sequence[Run]], jobs: int, vmap: bool, command: str,
                    report: Callable[[Run], None] = lambda run: None) -> None:
    """Train every unfinished run to its steps from its last checkpoint: ``jobs`` at a time, each alone,
    or (``vmap``) each group's runs (the seeds of one configuration) together in this process;
    ``report(run)`` as each ends. Ctrl-C or SIGTERM stops every run with a checkpoint; then this says
    how to continue (``command``) and exits with 130 or 143."""
    for run in (run for group in groups.values() for run in group):
        print(run.describe(), flush=True)
    todo = {label: [run for run in group if not run.finished] for label, group in groups.items()}
    todo = {label: group for label, group in todo.items() if group}
    if vmap:
        check_seeds_together(todo)
    with StopSignals() as stop:
        if vmap:
            for label, group in todo.items():
                if stop.requested:
                    break
                prefix = label if len(groups) > 1 else None  # each seed's lines start with [seed S] anyway
                stop.request(train_seeds_together([run.config for run in group], [run.logdir for run in group], prefix))
                if not stop.requested:
                    for run in group:
                        report(run)
        else:
            runs = {run.logdir: run for run in interleaved(groups.values()) if not run.finished}

            def ended(logdir: Path, stopped_by: str | None) -> None:
                stop.request(stopped_by)
                if not stopped_by:
                    report(runs[logdir])

            calls = {logdir: (run.config, logdir, run.name) for logdir, run in runs.items()}
            run_side_by_side(train_run, calls, jobs, ended, stop)
    if stop.requested:
        print(f"stopped ({stop.requested}); every run that was training kept a checkpoint. Continue with\n"
              f"  {command}", flush=True)
        raise SystemExit(SIGNAL_EXIT_CODES[stop.requested])


def interleaved(groups: Iterable[Sequence[Run]]) -> list[Run]:
    """The groups' runs taken in turn, the first of every group before any second: a benchmark stopped
    part way has every configuration on its first seeds, not all seeds of the first configurations."""
    return [run for rank in itertools.zip_longest(*groups) for run in rank if run is not None]


def run_benchmark(args: argparse.Namespace, script: str, new_configs: Callable[[], Mapping[str, Mapping]],
                  group_of: Callable[[Run], str], settings: Sequence[str],
                  report: Callable[[Run], None] = lambda run: None,
                  env_of: Callable[[Run], str] = lambda run: run.config["env_id"]) -> dict[str, list[Run]]:
    """Train a new benchmark of ``script`` (``new_configs()`` maps each run's path in its directory to
    its config), or continue a stopped one (``args.resume``: the ``settings`` it kept come back into
    ``args``, but for the flags given now). ``group_of(run)`` names the runs that ``--vmap`` trains
    together; ``env_of(run)`` what every run of one benchmark shares (by default its env id; a new
    benchmark's directory is named after ``args.env``). Sets ``args.env``, ``args.seeds`` and
    ``args.steps`` from the runs; returns them by group, each group in seed order."""
    if args.resume:
        runs, saved = resumed_benchmark(args.resume, args.steps if "steps" in args.given else None)
        for key in set(settings) - args.given:
            setattr(args, key, saved.get(key, getattr(args, key)))
        directories = list(args.resume)
    else:
        directory, runs = new_benchmark(script.removeprefix("bench_"), args.env, new_configs())
        directories = [directory]
    envs = {env_of(run) for run in runs}
    if len(envs) > 1 or ("env" in args.given and envs != {args.env}):
        raise UserError(f"--resume: the runs train {', '.join(sorted(envs))}: give one benchmark's runs")
    groups: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda run: run.config["seed"]):
        groups.setdefault(group_of(run), []).append(run)
    for label, group in groups.items():
        seeds = [run.config["seed"] for run in group]
        if len(set(seeds)) < len(seeds):
            raise UserError(f"--resume: the runs of {label} repeat a seed ({', '.join(map(str, seeds))}): "
                            "give one benchmark's runs")
    args.env, args.steps = envs.pop(), max(run.config["steps"] for run in runs)
    args.seeds = sorted({run.config["seed"] for run in runs})
    command = continue_command(script, directories, args)
    if not args.resume:
        if args.vmap:
            check_seeds_together(groups)  # before anything is written
        write_benchmark(directories[0], {key: getattr(args, key) for key in settings}, runs, command)
    if args.report:
        for run in runs:
            print(run.standing(), flush=True)
        print(f"--report: nothing trained; the summary below covers the runs as they stand. Continue them with\n"
              f"  {command}", flush=True)
    else:
        train_benchmark(groups, args.jobs, args.vmap, command, report)
        # the runs as training left them: a summary must not call a run it just finished unfinished
        groups = {label: [run.at_last_checkpoint() for run in group] for label, group in groups.items()}
    return groups


def check_seeds_together(groups: Mapping[str, Sequence[Run]]) -> None:
    """Refuse, before anything trains, what ``--vmap`` cannot train together: seeds whose last
    checkpoints are at different steps, and what ``agents.multi_seed`` refuses (data parallelism,
    configs that differ in more than the seed)."""
    from agents.multi_seed import SeedStackError, check_seed_configs

    for label, runs in groups.items():
        ahead = max(run.start for run in runs)
        behind = [run for run in runs if run.start < ahead]
        if behind:
            where = ", ".join(f"{run.name} at {run.start:,}" for run in runs)
            catch_up = "; ".join(f"python -m scripts.train --resume --logdir {run.logdir} --steps {ahead}" for run in behind)
            raise UserError(f"--vmap trains the seeds of {label} together from one step, but their last checkpoints "
                            f"are at different steps ({where}). Resume without --vmap (each run alone, --jobs N "
                            f"side by side), or first bring the ones behind to step {ahead:,} ({catch_up}) and then "
                            "resume with --vmap.")
        try:
            check_seed_configs([run.config for run in runs])
        except SeedStackError as error:
            raise UserError(f"--vmap, {label}: {error}") from None


# ----------------------------------------------------------------------------- training
def train_run(config: Mapping[str, Any], logdir: Path, label: str | None = None) -> str | None:
    """Train one run of a benchmark to ``config["steps"]``, as ``scripts.train`` would: from its last
    checkpoint if it has one, holding the run's lock, after writing its ``config.yaml`` (so that
    ``scripts.train --resume --logdir`` can continue it too). Returns the name of the signal that
    stopped it (Ctrl-C or SIGTERM, with a checkpoint), None when it reached its steps. ``label``
    starts the trainer's lines."""
    from agents.checkpoint import latest_checkpoint_step
    from agents.run_lock import RunLock
    from agents.trainer import Trainer  # here: spawned workers import jax only when they train
    from configs.sections import run_sections
    from envs import make_vector_env
    from scripts.common import write_config

    resume = latest_checkpoint_step(logdir / "checkpoints") is not None
    env_parallel = run_sections(config).run.env_parallel
    make_envs = lambda count: make_vector_env(config["env_id"], config["env"], count, env_parallel)
    with RunLock(logdir):
        write_config(dict(config), logdir)
        trainer = Trainer(dict(config), logdir, make_envs, say=_say_as(label), progress=False)
        trainer.run(config["steps"], resume=resume)
    return trainer.stopped_by


def train_seeds_together(configs: Sequence[Mapping[str, Any]], logdirs: Sequence[Path],
                         label: str | None = None) -> str | None:
    """Train several seeds of one config in this process, their updates and acting vmapped
    (``agents.multi_seed``), as ``scripts.train --seeds`` would: from their last checkpoints if they
    have them (at one step: ``MultiSeedTrainer`` checks), each holding its lock, after writing each
    ``config.yaml``. Returns the name of the signal that stopped them, None when they reached their steps."""
    from agents.checkpoint import latest_checkpoint_step
    from agents.multi_seed import MultiSeedTrainer
    from agents.run_lock import RunLock
    from configs.sections import run_sections
    from envs import make_vector_env
    from scripts.common import write_config

    configs = [dict(config) for config in configs]
    resume = any(latest_checkpoint_step(Path(logdir) / "checkpoints") is not None for logdir in logdirs)
    first = configs[0]  # the seeds share everything but the seed (MultiSeedTrainer checks)
    env_parallel = run_sections(first).run.env_parallel
    make_envs = lambda count: make_vector_env(first["env_id"], first["env"], count, env_parallel)
    with contextlib.ExitStack() as held:
        for config, logdir in zip(configs, logdirs, strict=True):
            held.enter_context(RunLock(logdir))
            write_config(config, logdir)
        trainer = MultiSeedTrainer(configs, logdirs, make_envs, say=_say_as(label), progress=False)
        trainer.run(first["steps"], resume=resume)
    return trainer.stopped_by


def _say_as(label: str | None) -> Callable[[str], None]:
    return print if label is None else functools.partial(_print_with, f"[{label}] ")


def _print_with(prefix: str, line: str) -> None:
    print(prefix + line, flush=True)
