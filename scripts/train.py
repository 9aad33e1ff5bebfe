"""Train an agent: ``python -m scripts.train --env CartPole-v1 --config cartpole``.

Writes to the run directory: ``config.yaml`` (the resolved config), TensorBoard events,
``metrics.jsonl``, ``checkpoints/`` and, with ``replay.storage=disk``, ``replay/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from configs.loader import ConfigError
from scripts.common import (
    add_config_flags,
    default_logdir,
    import_modules,
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
            raise SystemExit("--coordinator, --num-processes and --process-id need --distributed")
        return 0
    from agents.parallel import initialize_distributed

    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    return jax.process_index()


def main(argv=None) -> int:
    args = parse_args(argv)
    import_modules(args.imports)
    process = start_processes(args)
    own_dir = (lambda logdir: logdir if process == 0 else logdir / f"process-{process}")
    try:
        if args.resume:
            if not args.logdir:
                raise SystemExit("--resume needs --logdir (the run to continue)")
            logdir = Path(args.logdir)
            config = resume_config(logdir, args)
        else:
            config = resolve_config(args)
            if args.distributed and not (args.logdir or config["logdir"]):
                raise SystemExit("--distributed needs --logdir: every process must name the same run directory")
            logdir = Path(args.logdir or config["logdir"] or default_logdir(config))
            if (own_dir(logdir) / "checkpoints").exists() and any((own_dir(logdir) / "checkpoints").iterdir()):
                raise SystemExit(f"{logdir} already holds a run: continue it with --resume or pick another --logdir")
    except ConfigError as error:
        raise SystemExit(f"config error: {error}") from None

    # Heavy imports after argument checks, so that mistakes are reported at once.
    from agents.parallel import check_resume_processes
    from agents.trainer import NonFiniteLossError, Trainer
    from envs.vector import make_vector_env

    def make_envs(num_envs: int):
        return make_vector_env(config["env_id"], config["env"], num_envs, config["run"]["env_parallel"])

    try:
        make_envs(1).close()  # fail fast, with the registry's message, on an unusable env id
    except (ValueError, ImportError) as error:
        raise SystemExit(f"environment error: {error}") from None
    if args.resume and args.distributed:
        check_resume_processes(logdir)
    say = print if process == 0 else (lambda line: print(f"[process {process}] {line}", flush=True))
    if process == 0:  # the others read the same file; only process 0 writes the run's files
        write_config(config, logdir)
    say(f"run directory: {logdir}  (tensorboard --logdir {logdir})")
    try:
        trainer = Trainer(config, logdir, make_envs, say=say, progress=not args.no_progress and process == 0)
        counters = trainer.run(config["steps"], resume=args.resume)
    except NonFiniteLossError as error:
        raise SystemExit(str(error)) from None
    say(f"done: {counters.env_steps:,} environment steps, {counters.updates:,} updates, "
          f"{counters.episodes:,} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
