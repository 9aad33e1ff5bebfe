"""``python -m scripts.train --seeds 0 1 2``: several seeds of one config in one process.

The seeds' updates and acting run as one vmapped computation (``agents.multi_seed``). Seed S writes
to ``<logdir>/seedS``, a complete run directory of its own (``config.yaml`` with its seed,
TensorBoard events, ``metrics.jsonl``, checkpoints): ``scripts.evaluate`` and ``scripts.train
--resume`` take it alone, and ``--resume --logdir <logdir>`` continues all the seeds together.
Exit statuses as ``scripts.train``.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Iterator

from scripts.common import (
    SIGNAL_EXIT_CODES,
    UserError,
    default_logdir,
    removed_unless_resumable,
    resolve_config,
    resume_config,
    write_config,
)
from scripts.train import has_steps_left, seed_run_dirs


def check_seed_flags(args: argparse.Namespace) -> None:
    """Refuse flags that cannot go with several seeds in one process."""
    if args.distributed or args.coordinator or args.num_processes is not None or args.process_id is not None:
        raise UserError("--seeds trains several seeds in one process, vmapped over a seed axis; it cannot be "
                        "combined with --distributed (multi-process data parallelism): drop one of them")
    if args.seeds and args.seed is not None:
        raise UserError("--seed and --seeds: give one of them")
    if args.resume and args.seeds:
        raise UserError("--resume takes the seeds from the runs in --logdir: leave out --seeds")


def seed_runs(args: argparse.Namespace) -> tuple[Path, list[Path], list[dict]]:
    """The parent directory, each seed's run directory and each seed's resolved config."""
    if args.resume:
        parent = Path(args.logdir)
        logdirs = seed_run_dirs(parent)
        return parent, logdirs, [resume_config(logdir, args) for logdir in logdirs]
    configs = [resolve_config(argparse.Namespace(**{**vars(args), "seed": seed})) for seed in args.seeds]
    parent = Path(args.logdir or configs[0]["logdir"] or default_logdir(configs[0], args.seeds))
    logdirs = [parent / f"seed{seed}" for seed in args.seeds]
    for logdir in logdirs:
        checkpoints = logdir / "checkpoints"
        if checkpoints.exists() and any(checkpoints.iterdir()):
            raise UserError(f"{logdir} already holds a run: continue it with --resume --logdir {parent} "
                            "or pick another --logdir")
    return parent, logdirs, configs


@contextlib.contextmanager
def removed_if_left_empty(directory: Path) -> Iterator[None]:
    """Remove a new ``directory`` that a failed start left empty (the seeds' own directories are
    removed by ``removed_unless_resumable``)."""
    existed = directory.exists()
    try:
        yield
    except BaseException:
        if not existed and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
        raise


def train_seeds(args: argparse.Namespace) -> int:
    check_seed_flags(args)
    parent, logdirs, configs = seed_runs(args)
    steps = configs[0]["steps"]
    if args.resume and not any([has_steps_left(logdir, steps) for logdir in logdirs]):
        return 0

    # Heavy imports after argument checks, so that mistakes are reported at once.
    from agents.multi_seed import MultiSeedTrainer, check_seed_configs
    from agents.run_lock import RunLock
    from configs.sections import run_sections
    from envs.probe import probe_env
    from envs.vector import make_vector_env

    config = configs[0]  # the seeds share everything but the seed (checked)
    env_parallel = run_sections(config).run.env_parallel

    def make_envs(num_envs: int):
        return make_vector_env(config["env_id"], config["env"], num_envs, env_parallel)

    check_seed_configs(configs)  # before anything is written
    probe_env(config["env_id"], config["env"], seed=int(config["seed"]))
    with contextlib.ExitStack() as held:
        held.enter_context(removed_if_left_empty(parent))
        for logdir, seed_config in zip(logdirs, configs):
            held.enter_context(removed_unless_resumable(logdir))
            held.enter_context(RunLock(logdir))
            write_config(seed_config, logdir)
        print(f"run directories: {', '.join(str(logdir) for logdir in logdirs)}  (tensorboard --logdir {parent})")
        trainer = MultiSeedTrainer(configs, logdirs, make_envs, progress=not args.no_progress)
        counters = trainer.run(steps, resume=args.resume)
    if trainer.stopped_by:
        print(f"stopped at step {counters[0].env_steps:,} ({trainer.stopped_by}), checkpoints written: "
              f"continue with --resume --logdir {parent}")
        return SIGNAL_EXIT_CODES[trainer.stopped_by]
    for seed_config, seed_counters in zip(configs, counters):
        print(f"seed {seed_config['seed']} done: {seed_counters.env_steps:,} environment steps, "
              f"{seed_counters.updates:,} updates, {seed_counters.episodes:,} episodes")
    return 0
