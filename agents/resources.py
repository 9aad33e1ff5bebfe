"""The memory and disk a run will need, estimated before its first step and refused when it cannot
fit, so that a setting too large fails with a number and the key to change instead of the kernel's
out-of-memory killer hours later (a replay of numpy zeros is only paid for as it fills)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from configs.sections import run_sections
from envs.config import as_env_config
from envs.event_camera import EVENT_BYTES, worst_case_events
from envs.registry import EVENT_PREFIX


class ResourceError(RuntimeError):
    """A run needs more memory or disk than the machine has; the message says what to change."""


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (Linux); empty where it cannot be read."""
    try:
        return {line.split(":")[0]: int(line.split()[1]) * 1024
                for line in Path("/proc/meminfo").read_text().splitlines() if line.endswith(" kB")}
    except (OSError, ValueError, IndexError):
        return {}


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), None where it cannot be read."""
    return _meminfo().get("MemAvailable")


def _overcommit_mode() -> int | None:
    """``vm.overcommit_memory`` (Linux): 0 heuristic, 1 always, 2 strict; None where it cannot be read."""
    try:
        return int(Path("/proc/sys/vm/overcommit_memory").read_text())
    except (OSError, ValueError):
        return None


def reservable_memory_bytes() -> int | None:
    """The largest allocation the kernel grants now, under its overcommit policy: memory plus swap
    (``MemTotal + SwapTotal``) under the default heuristic, what is left of ``CommitLimit`` under the
    strict one; None where there is no such limit (overcommit always) or it cannot be read."""
    info, mode = _meminfo(), _overcommit_mode()
    if mode == 1 or "MemTotal" not in info:
        return None
    if mode == 2 and "CommitLimit" in info:
        return max(0, info["CommitLimit"] - info.get("Committed_AS", 0))
    return info["MemTotal"] + info.get("SwapTotal", 0)


def check_fits(needs: Mapping[str, int], available: int | None, where: str, remedy: str) -> None:
    """Raise `ResourceError` when the parts of ``needs`` (bytes by description) exceed ``available``."""
    total = sum(needs.values())
    if available is None or total <= available:
        return
    parts = ", ".join(f"{name} {_gib(size)}" for name, size in needs.items() if size)
    raise ResourceError(
        f"this run needs about {_gib(total)} of {where} ({parts}) but {_gib(available)} is available. {remedy}"
    )


def free_disk_bytes(path: Path) -> int | None:
    """Free space of the file system holding ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return None


def _gib(size: int) -> str:
    return f"{size / 2**30:,.2f} GiB"


def check_run_fits(config: Mapping[str, Any], spec: Mapping[str, tuple[tuple[int, ...], Any]], logdir: Path,
                   runs: int = 1) -> None:
    """Refuse a run whose replay (``spec`` per step, filled up to ``steps``), checkpoints or event
    simulation will not fit in this machine's free memory and disk, before anything is allocated.

    ``runs``: how many such runs this process holds at once (one per seed of a multi-seed run): a
    replay of zeros is paid for only as it fills, so each run alone would see the memory free.
    """
    sections = run_sections(config)
    run, replay = sections.run, sections.replay
    step_bytes = sum(math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in spec.values())
    per_env = replay.capacity // run.num_envs
    replay_bytes = runs * step_bytes * run.num_envs * min(per_env, math.ceil(config["steps"] / run.num_envs))
    in_memory = replay.storage == "memory"
    events = 0
    if str(config["env_id"]).startswith(EVENT_PREFIX):
        env = as_env_config(config["env"])  # one simulator per env, plus the evaluation env
        events = runs * worst_case_events(env.event_camera, env.image_size) * EVENT_BYTES * (run.num_envs + 1)
    memory = {"replay": replay_bytes if in_memory else 0, "worst-case event simulation": events}
    check_fits(memory, available_memory_bytes(), "memory",
               "Lower replay.capacity or --steps, set replay.storage=disk, shrink the observation "
               "(env.image_size, env.event_camera.voxel_bins), or run fewer jobs (or seeds) side by side.")
    if in_memory:
        _check_reservable(spec, replay.capacity, run.num_envs, reservable_memory_bytes(), config["steps"])
    disk = {"replay files": 0 if in_memory else replay_bytes,
            "checkpoints": replay_bytes * (run.keep_checkpoints + 1) if in_memory else 0}
    check_fits(disk, free_disk_bytes(logdir), f"disk space in {logdir}",
               "Free some space, pick another --logdir, lower replay.capacity or run.keep_checkpoints.")


def _check_reservable(spec: Mapping[str, tuple[tuple[int, ...], Any]], capacity: int, num_envs: int,
                      reservable: int | None, steps: int) -> None:
    """Refuse an in-memory replay with a field whose array at full ``capacity`` is larger than one
    allocation may be: it is reserved whole at the start (zeros the OS maps as they fill), so a run
    that would fill a sliver of it still fails there, with numpy's bare MemoryError."""
    if reservable is None:
        return
    per_env = capacity // num_envs
    sizes = {name: num_envs * per_env * math.prod(shape) * np.dtype(dtype).itemsize
             for name, (shape, dtype) in spec.items()}
    name = max(sizes, key=sizes.get)
    if sizes[name] <= reservable:
        return
    fits = reservable // max(1, sizes[name] // (num_envs * per_env))  # steps of this field that fit
    raise ResourceError(
        f"replay.capacity={capacity:,} steps of the replay field {name!r} take {_gib(sizes[name])}, more than "
        f"this machine's memory and swap ({_gib(reservable)}), and an in-memory replay reserves its full "
        f"capacity at the start, however few steps the run fills. Lower replay.capacity (this run takes "
        f"{steps:,} steps; at most about {fits:,} steps of this field fit), or set replay.storage=disk.")
