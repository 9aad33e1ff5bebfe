"""The memory and disk a run will need, estimated before its first step and refused when it cannot
fit, so that a setting too large fails with a number and the key to change instead of the kernel's
out-of-memory killer hours later (a replay of numpy zeros is only paid for as it fills)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping


class ResourceError(RuntimeError):
    """A run needs more memory or disk than the machine has; the message says what to change."""


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


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
