"""Test-wide settings: CPU only, cheap compiles, and a persistent compilation cache so that the many
small runs of the same debug model compile once."""

import gc
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
_CACHE_MAX_BYTES = 8 * 2**30  # the persistent compilation cache's limit (see below)


def _xla_accepts(flags: str) -> bool:
    """Whether this jaxlib's XLA knows ``flags``: an unknown flag aborts the process at backend start,
    and a debug flag may be dropped by a later release, so a child process tries them first."""
    probe = [sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"]
    try:
        return subprocess.run(probe, env={**os.environ, "XLA_FLAGS": flags}, capture_output=True,
                              timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# The tests' models are tiny, so compiling costs more than running: LLVM's cheapest optimisation level
# took a fifth off the CPU time of tests/world_models/test_world_model.py (198 -> 159 s), and XLA:CPU's
# older loop emitters instead of its fusion emitters halve the compile time of a two-level train step
# (24-27 -> 11-13 s, three alternating pairs), and skipping LLVM's expensive passes (what
# jax_disable_most_optimizations also does) took a further 12.4 -> 9.8 s off it (40 -> 32 s for a whole
# two-level debug run, 2026-12-04). XLA's graph passes (fusion and the rest) still run, so the maths
# compiled is the one training runs.
_CHEAP_COMPILES = "--xla_backend_optimization_level=0"
for _flag in ("--xla_cpu_use_fusion_emitters=false", "--xla_llvm_disable_expensive_passes=true"):
    if _xla_accepts(f"{_CHEAP_COMPILES} {_flag}"):
        _CHEAP_COMPILES += f" {_flag}"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_CHEAP_COMPILES}".strip()
os.environ["HMBRL_TEST_XLA_FLAGS"] = _CHEAP_COMPILES  # for children that reset XLA_FLAGS

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "hmbrl-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
# The pytest-xdist workers (pyproject's addopts), and the training processes some tests start with
# this cache, share it. JAX writes an entry in place, so a process could read one that another is
# still writing; a size limit turns on its file lock around every read and write (and never evicts at
# this size). Also in the environment, so that every child process takes the lock too.
os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(_CACHE_MAX_BYTES)
jax.config.update("jax_compilation_cache_max_size", _CACHE_MAX_BYTES)


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most four (each holds a JAX runtime and its programs)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 4)


def _memory_mappings() -> tuple[int, int]:
    """(mappings this process holds, the kernel's limit), or (0, 1) where /proc does not tell."""
    try:
        with open("/proc/self/maps", "rb") as maps, open("/proc/sys/vm/max_map_count") as limit:
            return sum(1 for _ in maps), int(limit.read())
    except OSError:
        return 0, 1


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """Free the compiled programs once they hold half the process's allowed memory mappings. XLA:CPU
    maps each executable's code, and jit caches keep every executable (and every agent passed as a
    static argument) alive: one module of end-to-end runs reached Linux's default limit of 65,530
    mappings, where XLA segfaulted. Later tests read what they need again from the persistent cache."""
    yield
    held, limit = _memory_mappings()
    if held > limit // 2:
        jax.clear_caches()
        gc.collect()
