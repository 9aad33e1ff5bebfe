"""Test-wide settings: CPU only, cheap compiles, and a persistent compilation cache so that the many
small runs of the same debug model compile once."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# The tests' models are tiny, so compiling costs more than running. LLVM's cheapest optimisation level
# took a fifth off the CPU time of tests/world_models/test_world_model.py (198 -> 159 s); XLA's older
# loop emitters for fused computations halve the compile time of a two-level debug train step again
# (24-27 -> 13 s). XLA's own graph passes (fusion and the rest) still run, so the maths compiled is the
# one training runs. XLA aborts on a flag it does not know, so a flag that a later jaxlib may drop is
# tried in a child process first.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def _xla_accepts(flag: str) -> bool:
    environment = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=environment,
                           capture_output=True, timeout=120)
    return probe.returncode == 0


if "HMBRL_TEST_XLA_FLAGS" not in os.environ:  # set once, then inherited by xdist workers and subprocesses
    given = os.environ.get("XLA_FLAGS", "")
    chosen = [flag for flag in FAST_COMPILE_FLAGS if flag.split("=")[0] not in given and _xla_accepts(flag)]
    os.environ["XLA_FLAGS"] = " ".join([given, *chosen]).strip()
    os.environ["HMBRL_TEST_XLA_FLAGS"] = " ".join(chosen)

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "hmbrl-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
