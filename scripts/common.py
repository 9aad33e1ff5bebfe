"""Command-line pieces shared by the scripts: config flags, run directories, environment set-up."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import importlib
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import yaml

from configs.bounds import BoundsError
from configs.loader import CONFIG_DIR, ConfigError, diff, load_config, parse_override, read_config, save_config

USER_ERROR_EXIT_CODE = 2
SIGNAL_EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # what a shell reports for a process ended by them

# Keys a resumed run may change: they steer the loop, not what was learned.
RESUME_SAFE_KEYS = (
    "steps", "logdir", "run.log_every", "run.checkpoint_every", "run.keep_checkpoints",
    "run.eval_every", "run.eval_episodes", "run.video_every", "run.gpu_recommended",
    "parallel.devices", "parallel.acting",  # where the same updates run (float rounding aside)
    "run.nonfinite",  # identical until the first non-finite step, which would have stopped the run
)
# Keys a resumed run may change to recover from a diverged update; the run then no longer
# reproduces an uninterrupted one, and --resume says so.
RESUME_RECOVERY_KEYS = (
    "world_model.lr", "world_model.grad_clip", "world_model.eps", "agent.actor_lr", "agent.critic_lr",
    "agent.grad_clip", "agent.eps", "hierarchy.lr",
)
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


class UserError(SystemExit):
    """A mistake in the command, config, environment or machine, not a bug of ours: reported as one
    paragraph on stderr, with exit status 2 and no traceback."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = USER_ERROR_EXIT_CODE


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
    add_debug_flag(parser)


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of errors that are reported as one paragraph")


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
            raise UserError(f"--import {module}: {error}") from error


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
    presets = _flatten_lists(args.config)
    check_yaml_syntax(presets)
    return load_config(presets, command_line_overrides(args))


def check_yaml_syntax(presets: Sequence[str]) -> None:
    """Report a YAML syntax error in a preset with its file name (the loader reads text only)."""
    for name in (part.strip() for preset in presets for part in str(preset).split(",")):
        path = Path(name) if Path(name).suffix in (".yaml", ".yml") else CONFIG_DIR / f"{name}.yaml"
        if path.exists():
            read_yaml_file(path)


def read_yaml_file(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None


def run_config(logdir: Path) -> dict[str, Any]:
    """The saved config of the run in ``logdir``; a clear error where there is none or it is not valid YAML."""
    path = logdir / "config.yaml"
    if not path.exists():
        raise UserError(f"{logdir} is not a run directory (no config.yaml)")
    read_yaml_file(path)
    return read_config(path)


def default_logdir(config: dict[str, Any], seeds: Sequence[int] | None = None) -> Path:
    """``runs/<env>-seed<S>-<time>``; with ``seeds`` (a multi-seed run's parent), ``-seeds<S1>-<S2>...``."""
    env = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(config["env_id"]))
    which = f"seeds{'-'.join(str(seed) for seed in seeds)}" if seeds else f"seed{config['seed']}"
    return Path("runs") / f"{env}-{which}-{time.strftime('%Y%m%d-%H%M%S')}"


def resume_config(logdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The saved config of a run plus the flags given now; refuses changes to what was learned."""
    path = logdir / "config.yaml"
    if not path.exists():
        raise UserError(f"--resume: no run in {logdir} (missing config.yaml)")
    read_yaml_file(path)
    saved = read_config(path)
    presets = _flatten_lists(args.config)
    check_yaml_syntax(presets)
    requested = load_config(presets, command_line_overrides(args), base=saved)
    changes = diff(saved, requested)
    unsafe = {k: v for k, v in changes.items() if k not in RESUME_SAFE_KEYS + RESUME_RECOVERY_KEYS}
    lines = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())
    if unsafe:
        raise UserError(
            "--resume: these changes would alter what the run learns and are refused "
            f"(start a new run instead):\n{lines}"
        )
    if changes:
        print(f"--resume: applying config changes:\n{lines}")
    if set(changes) & set(RESUME_RECOVERY_KEYS):
        print("--resume: optimiser settings changed: the run no longer reproduces an uninterrupted one")
    return requested


def write_json(data: Any, out: Path) -> None:
    """A script's result as indented JSON at ``out`` (its folder made), and a line saying where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(f"wrote {out}")


def write_config(config: dict[str, Any], logdir: Path) -> None:
    logdir.mkdir(parents=True, exist_ok=True)
    save_config(config, logdir / "config.yaml")


def user_error_message(error: BaseException) -> str | None:
    """The one-paragraph message for an error the user can fix, None for a bug of ours."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, SystemExit):  # raise SystemExit("message"): a refusal worded for the user
        return error.code if isinstance(error.code, str) else None
    if isinstance(error, (ConfigError, BoundsError)):
        return f"config error: {error}"
    if isinstance(error, _user_error_types()):
        return str(error)
    os_error = _os_error_in_chain(error)
    if os_error is not None and os_error.errno in DISK_FULL_ERRNOS:
        return (f"the disk is full ({os_error.strerror}) while writing {os_error.filename or 'the run'}. "
                "Complete checkpoints are kept: free some space, then run again (with --resume once a "
                "checkpoint was written).")
    if os_error is not None and os_error.errno in NOT_WRITABLE_ERRNOS:
        return (f"cannot write {os_error.filename or 'the run directory'} ({os_error.strerror}): "
                "pick a --logdir you can write to.")
    return None


def _user_error_types() -> tuple[type[BaseException], ...]:
    # Imported here: these modules are heavier than the argument checks that run first.
    from agents.checkpoint import CheckpointLayoutError
    from agents.resources import ResourceError
    from agents.run_errors import NonFiniteLossError
    from agents.run_lock import RunLockedError
    from agents.spaces import SpaceError
    from envs.collector import NonFiniteObservationError
    from envs.config import EnvConfigError
    from envs.probe import EnvProbeError

    types: list[type[BaseException]] = [RunLockedError, SpaceError, NonFiniteObservationError, EnvConfigError,
                                        EnvProbeError, ResourceError, NonFiniteLossError, CheckpointLayoutError]
    if "agents.multi_seed" in sys.modules:
        types.append(sys.modules["agents.multi_seed"].SeedStackError)
    return tuple(types)


def _os_error_in_chain(error: BaseException | None) -> OSError | None:
    """The first OSError among ``error`` and its causes (checkpoint libraries wrap them)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno is not None:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def report_user_errors(main: Callable[[Sequence[str] | None], Any]) -> Callable[[Sequence[str] | None], Any]:
    """Decorates an entry point's ``main(argv)``: an error the user can fix is printed as one
    paragraph and re-raised as `UserError` (exit status 2); with ``--debug`` it keeps its
    traceback. Bugs of ours always show theirs."""

    @functools.wraps(main)
    def guarded(argv: Sequence[str] | None = None) -> Any:
        debug = "--debug" in (sys.argv[1:] if argv is None else argv)
        try:
            return main(argv)
        except (Exception, SystemExit) as error:
            message = user_error_message(error)
            if message is None or (debug and not isinstance(error, SystemExit)):
                raise
            print(f"error: {message}", file=sys.stderr, flush=True)
            raise UserError(message) from None

    return guarded


@contextlib.contextmanager
def removed_unless_resumable(logdir: Path) -> Iterator[None]:
    """Remove ``logdir`` if it is new and the block fails before its first checkpoint, so that a
    failed start leaves no half-written run directory behind."""
    existed = logdir.exists()
    try:
        yield
    except (Exception, UserError):  # not a simulated kill or an abort: those leave the disk as it is
        checkpoints = logdir / "checkpoints"
        if not existed and not (checkpoints.exists() and any(checkpoints.iterdir())):
            shutil.rmtree(logdir, ignore_errors=True)
        raise


@contextlib.contextmanager
def trained_run(logdir: Path, step: int | None) -> Iterator[tuple[dict, Any, Any, int, Any]]:
    """``(config, agent, train state, step, one-environment vector env)`` of a run's checkpoint (the
    latest, or ``step``), with the run directory locked (not while a training run rewrites its
    checkpoints); the env is closed on leaving."""
    from agents.evaluation import load_train_state
    from agents.hierarchical_agent import HierarchicalAgent
    from agents.run_lock import RunLock
    from envs.vector import make_vector_env

    config = run_config(logdir)
    with RunLock(logdir):
        envs = make_vector_env(config["env_id"], config["env"], 1, "sync")
        try:
            agent = HierarchicalAgent.from_config(config, envs.single_observation_space, envs.single_action_space)
            state, step = load_train_state(agent, config, logdir, step)
            yield config, agent, state, step, envs
        finally:
            envs.close()


@contextlib.contextmanager
def trained_vector_run(logdir: Path, step: int | None, probe: str) -> Iterator[tuple[dict, Any, Any, int, Any]]:
    """`trained_run` for a probe of the run's vector observations: ``probe`` names the probe in the
    error for a run without vector keys."""
    with trained_run(logdir, step) as (config, agent, state, step, envs):
        if not agent.obs_layout.mlp_shapes:
            raise UserError(f"{logdir}: the run observes no vector keys (only {sorted(agent.obs_layout.keys)}); "
                            f"{probe} reports vector entries")
        yield config, agent, state, step, envs


__all__ = [
    "ConfigError", "UserError", "add_config_flags", "default_logdir", "import_modules", "report_user_errors",
    "removed_unless_resumable", "resolve_config", "resume_config", "run_config", "trained_run", "trained_vector_run",
    "write_config",
]
