"""Test-wide settings: CPU only, cheap compiles, and a persistent compilation cache so that the many
small runs of the same debug model compile once."""

import gc
import os
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# The tests' models are tiny, so compiling costs more than running: LLVM's cheapest optimisation level
# took a fifth off the CPU time of tests/world_models/test_world_model.py (198 -> 159 s). XLA's own
# graph passes (fusion and the rest) still run, so the maths compiled is the one training runs.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
os.environ["HMBRL_TEST_XLA_FLAGS"] = "--xla_backend_optimization_level=0"  # for children that reset XLA_FLAGS

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "hmbrl-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


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
