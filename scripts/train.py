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
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import_modules(args.imports)
    try:
        if args.resume:
            if not args.logdir:
                raise SystemExit("--resume needs --logdir (the run to continue)")
            logdir = Path(args.logdir)
            config = resume_config(logdir, args)
        else:
            config = resolve_config(args)
            logdir = Path(args.logdir or config["logdir"] or default_logdir(config))
            if (logdir / "checkpoints").exists() and any((logdir / "checkpoints").iterdir()):
                raise SystemExit(f"{logdir} already holds a run: continue it with --resume or pick another --logdir")
    except ConfigError as error:
        raise SystemExit(f"config error: {error}") from None

    # Heavy imports after argument checks, so that mistakes are reported at once.
    from agents.trainer import NonFiniteLossError, Trainer
    from envs.vector import make_vector_env

    def make_envs(num_envs: int):
        return make_vector_env(config["env_id"], config["env"], num_envs, config["run"]["env_parallel"])

    try:
        make_envs(1).close()  # fail fast, with the registry's message, on an unusable env id
    except (ValueError, ImportError) as error:
        raise SystemExit(f"environment error: {error}") from None
    write_config(config, logdir)
    print(f"run directory: {logdir}  (tensorboard --logdir {logdir})")
    try:
        trainer = Trainer(config, logdir, make_envs, progress=not args.no_progress)
        counters = trainer.run(config["steps"], resume=args.resume)
    except NonFiniteLossError as error:
        raise SystemExit(str(error)) from None
    print(f"done: {counters.env_steps:,} environment steps, {counters.updates:,} updates, "
          f"{counters.episodes:,} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
