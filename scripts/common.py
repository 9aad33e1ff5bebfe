"""Command-line pieces shared by the scripts: config flags, run directories, environment set-up."""

from __future__ import annotations

import argparse
import importlib
import re
import time
from pathlib import Path
from typing import Any, Sequence

from configs.loader import ConfigError, diff, load_config, parse_override, read_config, save_config

# Keys a resumed run may change: they steer the loop, not what was learned.
RESUME_SAFE_KEYS = (
    "steps", "logdir", "run.log_every", "run.checkpoint_every", "run.keep_checkpoints",
    "run.eval_every", "run.eval_episodes", "run.video_every", "run.gpu_recommended",
    "parallel.devices", "parallel.acting",  # where the same updates run (float rounding aside)
)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", help="environment: a Gymnasium id, event:<id>, dmc:<domain>-<task>, "
                        "minigrid:<id>, ale:<game> or module:Class (default: the config's env_id)")
    parser.add_argument("--config", action="append", default=[],
                        help="preset name(s) from configs/ or YAML path(s), merged in order (comma-separated or repeated)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        nargs="+", help="override any config key, e.g. --set agent.entropy=3e-4")
    parser.add_argument("--env-kwargs", action="append", default=[], metavar="KEY=VALUE", nargs="+",
                        help="keyword arguments for the environment's constructor")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import a module first (e.g. one that registers your Gymnasium envs)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--steps", type=int)


def _flatten_lists(values: Sequence) -> list[str]:
    flat = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    return flat


def import_modules(modules: Sequence[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise SystemExit(f"--import {module}: {error}") from error


def command_line_overrides(args: argparse.Namespace) -> list[str | tuple[str, Any]]:
    """Every config change the flags ask for, as ``key=value`` strings or ``(key, value)`` pairs."""
    overrides: list[str | tuple[str, Any]] = list(_flatten_lists(args.overrides))
    if args.env:
        overrides.append(("env_id", args.env))
    if args.seed is not None:
        overrides.append(("seed", args.seed))
    if args.steps is not None:
        overrides.append(("steps", args.steps))
    env_kwargs = dict(parse_override(item) for item in _flatten_lists(args.env_kwargs))
    if env_kwargs:
        overrides.append(("env.kwargs", env_kwargs))
    return overrides


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    return load_config(_flatten_lists(args.config), command_line_overrides(args))


def default_logdir(config: dict[str, Any]) -> Path:
    env = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(config["env_id"]))
    return Path("runs") / f"{env}-seed{config['seed']}-{time.strftime('%Y%m%d-%H%M%S')}"


def resume_config(logdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The saved config of a run plus the flags given now; refuses changes to what was learned."""
    path = logdir / "config.yaml"
    if not path.exists():
        raise SystemExit(f"--resume: no run in {logdir} (missing config.yaml)")
    saved = read_config(path)
    requested = load_config(_flatten_lists(args.config), command_line_overrides(args), base=saved)
    changes = diff(saved, requested)
    unsafe = {k: v for k, v in changes.items() if k not in RESUME_SAFE_KEYS}
    lines = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())
    if unsafe:
        raise SystemExit(
            "--resume: these changes would alter what the run learns and are refused "
            f"(start a new run instead):\n{lines}"
        )
    if changes:
        print(f"--resume: applying config changes:\n{lines}")
    return requested


def write_config(config: dict[str, Any], logdir: Path) -> None:
    logdir.mkdir(parents=True, exist_ok=True)
    save_config(config, logdir / "config.yaml")


__all__ = [
    "ConfigError", "add_config_flags", "default_logdir", "import_modules", "resolve_config",
    "resume_config", "write_config",
]
