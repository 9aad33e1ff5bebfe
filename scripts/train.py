"""Train an agent: ``python -m scripts.train --env CartPole-v1 --config control``.

Writes to the run directory: ``config.yaml`` (the resolved config), TensorBoard events,
``metrics.jsonl``, ``checkpoints/`` and, with ``replay.storage=disk``, ``replay/``; ``.lock`` keeps
a second process from writing the same run. ``--seeds S1 S2 ...`` trains several seeds in this
one process, their updates and acting vmapped (``scripts/train_seeds.py``), seed S in ``<logdir>/seedS``.

Exit status: 0 done; 2 an error you can fix (one paragraph on stderr, the traceback with --debug;
a new run directory is removed if no checkpoint was written); 130 / 143 stopped by Ctrl-C / SIGTERM
with a checkpoint (continue with --resume); a traceback for a bug of ours.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from scripts.common import (
    SIGNAL_EXIT_CODES,
    UserError,
    add_config_flags,
    default_logdir,
    import_modules,
    removed_unless_resumable,
    report_user_errors,
    resolve_config,
    resume_config,
    write_config,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser)
    parser.add_argument("--logdir", help="run directory (default: runs/<env>-seed<seed>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --logdir from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs and CI)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="train these seeds in one process, their updates and acting vmapped (README: Many "
                        "seeds in one process); seed S runs in --logdir/seedS. --resume --logdir continues them")
    group = parser.add_argument_group("multi-process training (README: Scaling out)")
    group.add_argument("--distributed", action="store_true",
                       help="join a multi-process run with jax.distributed.initialize (SLURM and Open MPI are detected)")
    group.add_argument("--coordinator", help="host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", type=int, help="processes in the run (default: $JAX_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, help="this process's index (default: $JAX_PROCESS_ID)")
    return parser.parse_args(argv)


def start_processes(args: argparse.Namespace) -> int:
    """Join the multi-process run when asked to; returns this process's index (0 otherwise)."""
    if not args.distributed:
        if args.coordinator or args.num_processes is not None or args.process_id is not None:
            raise UserError("--coordinator, --num-processes and --process-id need --distributed")
        return 0
    from agents.parallel import initialize_distributed

    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    return jax.process_index()


def run_directory_and_config(args: argparse.Namespace, process: int) -> tuple[Path, dict]:
    """The run directory and the resolved config, after every check that needs neither JAX nor the env."""
    if args.resume:
        if not args.logdir:
            raise UserError("--resume needs --logdir (the run to continue)")
        logdir = Path(args.logdir)
        return logdir, resume_config(logdir, args)
    config = resolve_config(args)
    if args.distributed and not (args.logdir or config["logdir"]):
        raise UserError("--distributed needs --logdir: every process must name the same run directory")
    logdir = Path(args.logdir or config["logdir"] or default_logdir(config))
    checkpoints = process_dir(logdir, process) / "checkpoints"
    if checkpoints.exists() and any(checkpoints.iterdir()):
        raise UserError(f"{logdir} already holds a run: continue it with --resume or pick another --logdir")
    return logdir, config


def process_dir(logdir: Path, process: int) -> Path:
    """Where this process writes: the run directory, or its own folder in it for process i > 0."""
    return logdir if process == 0 else logdir / f"process-{process}"


def seed_run_dirs(logdir: Path) -> list[Path]:
    """The seeds' run directories of a multi-seed run (``seed<S>/`` with a ``config.yaml``); none for
    a single-seed run directory."""
    if (logdir / "config.yaml").exists():
        return []
    runs = [path.parent for path in logdir.glob("seed*/config.yaml") if path.parent.name[4:].isdigit()]
    return sorted(runs, key=lambda path: int(path.name[4:]))


def has_steps_left(logdir: Path, steps: int) -> bool:
    """Whether a resumed run still has steps to go; says how to train longer when it has none."""
    from agents.checkpoint import latest_checkpoint_step

    latest = latest_checkpoint_step(logdir / "checkpoints")
    if latest is None or latest < steps:
        return True
    print(f"--resume: the run in {logdir} already reached {latest:,} of --steps {steps:,}; nothing to do. "
          f"Raise --steps to train longer, e.g. --resume --steps {2 * latest}.")
    return False


@report_user_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    import_modules(args.imports)
    if args.seeds or (args.resume and args.logdir and seed_run_dirs(Path(args.logdir))):
        from scripts.train_seeds import train_seeds

        return train_seeds(args)
    process = start_processes(args)
    logdir, config = run_directory_and_config(args, process)
    if args.resume and not has_steps_left(process_dir(logdir, process), config["steps"]):
        return 0

    # Heavy imports after argument checks, so that mistakes are reported at once.
    from agents.parallel import check_resume_processes
    from agents.run_lock import RunLock
    from agents.trainer import Trainer
    from configs.sections import run_sections
    from envs.probe import probe_env
    from envs.vector import make_vector_env

    env_parallel = run_sections(config).run.env_parallel

    def make_envs(num_envs: int):
        return make_vector_env(config["env_id"], config["env"], num_envs, env_parallel)

    probe_env(config["env_id"], config["env"], seed=int(config["seed"]))  # before anything is written
    if args.resume and args.distributed:
        check_resume_processes(logdir)
    say = print if process == 0 else (lambda line: print(f"[process {process}] {line}", flush=True))
    # Process 0 holds the run's lock: the others only write their shards, inside its directory.
    with removed_unless_resumable(logdir), (RunLock(logdir) if process == 0 else contextlib.nullcontext()):
        if process == 0:  # the others read the same file; only process 0 writes the run's files
            write_config(config, logdir)
        say(f"run directory: {logdir}  (tensorboard --logdir {logdir})")
        trainer = Trainer(config, logdir, make_envs, say=say, progress=not args.no_progress and process == 0)
        counters = trainer.run(config["steps"], resume=args.resume)
    if trainer.stopped_by:
        say(f"stopped at step {counters.env_steps:,} ({trainer.stopped_by}), checkpoint written: "
            f"continue with --resume --logdir {logdir}")
        return SIGNAL_EXIT_CODES[trainer.stopped_by]
    say(f"done: {counters.env_steps:,} environment steps, {counters.updates:,} updates, "
        f"{counters.episodes:,} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
