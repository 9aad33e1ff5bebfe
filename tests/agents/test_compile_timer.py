"""The first call of each jitted function announces its compilation; later calls are silent."""

import jax
import jax.numpy as jnp

from agents.compile_timer import CompileTimer


def test_only_the_first_call_of_a_name_is_announced():
    lines = []
    timed = CompileTimer(lines.append)
    double = jax.jit(lambda x: 2 * x)
    assert float(timed("double", double, jnp.ones(()))) == 2.0
    assert float(timed("double", double, jnp.ones(()))) == 2.0
    assert lines[0] == "compiling double ..." and lines[1].startswith("compiled double in ") and len(lines) == 2
