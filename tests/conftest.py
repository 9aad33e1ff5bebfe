"""Test-wide settings: CPU only, and a persistent compilation cache so that the many small runs of
the same debug model compile once."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "hmbrl-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
