"""Calling jitted functions so that a slow first call is explained: it compiles."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax


class CompileTimer:
    """Calls jitted functions by name; the first call of each name announces its compilation and
    says how long it took (``say``), since a silent minute-long first step looks like a hang."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.compiled: set[str] = set()

    def __call__(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
        if name in self.compiled:
            return function(*args)
        self.say(f"compiling {name} ...")
        start = time.time()
        result = jax.block_until_ready(function(*args))
        self.say(f"compiled {name} in {time.time() - start:.1f}s")
        self.compiled.add(name)
        return result
