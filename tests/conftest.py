"""Test-wide settings: CPU only, cheap compiles, and a persistent compilation cache so that the many
small runs of the same debug model compile once."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# The tests' models are tiny, so compiling costs more than running: LLVM's cheapest optimisation level
# took a fifth off the CPU time of tests/world_models/test_world_model.py (198 -> 159 s). XLA's own
# graph passes (fusion and the rest) still run, so the maths compiled is the one training runs.
# (--xla_cpu_use_fusion_emitters=false halves compile times again; it was backed out together with a
# jitted agent init after long serial runs with both segfaulted inside XLA, and is untried alone.)
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
os.environ["HMBRL_TEST_XLA_FLAGS"] = "--xla_backend_optimization_level=0"  # for children that reset XLA_FLAGS

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "hmbrl-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
