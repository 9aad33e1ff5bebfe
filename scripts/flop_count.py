"""Matmul FLOPs of a JAX function, counted from its jaxpr (what the benchmarks divide time into).

Only ``dot_general`` and ``conv_general_dilated`` are counted: on the sizes we train they are
where the arithmetic is, and their cost follows from shapes alone. Elementwise work, reductions
and gathers are left out, so a memory-bound step shows up as a low share of the matmul peak.

Sub-jaxprs are walked recursively: a ``scan`` body counts ``length`` times; a ``while`` body (and
its condition) once, since its trip count is only known at run time (``FlopCount.while_loops``
says how many were met); a ``cond`` its most expensive branch (one runs); every other primitive
that carries jaxprs (``jit``/``pjit``, ``custom_jvp_call``, ``custom_vjp_call``, ``remat``, ...)
the sum of them. For a gradient, count the jaxpr of the gradient function itself: it holds the
forward and the backward pass as they will run. ``count_flops`` first drops the equations whose
results are never used (as XLA will; ``make_jaxpr`` keeps them, e.g. a primal output that a
gradient discards).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
from jax._src.interpreters import partial_eval  # dce_jaxpr: no public counterpart in jax 0.10
from jax.extend import core


@dataclasses.dataclass
class FlopCount:
    """FLOPs (one multiply-add = 2) of one call, by primitive, and what could not be counted exactly."""

    dot_general: int = 0
    conv: int = 0
    while_loops: int = 0  # while bodies met, each counted for one iteration

    @property
    def total(self) -> int:
        return self.dot_general + self.conv

    def add(self, other: "FlopCount", times: int = 1) -> None:
        self.dot_general += times * other.dot_general
        self.conv += times * other.conv
        self.while_loops += other.while_loops


def dot_general_flops(lhs_shape: tuple[int, ...], output_shape: tuple[int, ...], lhs_contracting: tuple[int, ...]) -> int:
    """``2 * prod(batch) * M * N * K``: each output element (batch and free dims) is a K-long dot."""
    return 2 * math.prod(output_shape) * math.prod(lhs_shape[d] for d in lhs_contracting)


def conv_flops(rhs_shape: tuple[int, ...], output_shape: tuple[int, ...], rhs_out_feature_dim: int) -> int:
    """Each output element is a dot over one kernel slice: ``in features per group x kernel window``
    (the kernel's size over its output features), also with feature or batch groups. Padding and
    dilation zeros are counted as issued."""
    return 2 * math.prod(output_shape) * math.prod(rhs_shape) // rhs_shape[rhs_out_feature_dim]


def _sub_jaxprs(value: Any) -> list[core.Jaxpr]:
    """The jaxprs held by one equation parameter (a jaxpr, a closed one, or a tuple of them)."""
    if isinstance(value, core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, core.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [jaxpr for item in value for jaxpr in _sub_jaxprs(item)]
    return []


def count_jaxpr(jaxpr: core.Jaxpr | core.ClosedJaxpr) -> FlopCount:
    """The FLOPs of one evaluation of ``jaxpr`` (see the module docstring for the rules)."""
    if isinstance(jaxpr, core.ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    count = FlopCount()
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
            count.dot_general += dot_general_flops(eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape, lhs_contracting)
        elif name == "conv_general_dilated":
            rhs_out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
            count.conv += conv_flops(eqn.invars[1].aval.shape, eqn.outvars[0].aval.shape, rhs_out_feature_dim)
        elif name == "scan":
            count.add(count_jaxpr(eqn.params["jaxpr"]), times=eqn.params["length"])
        elif name == "while":
            count.add(count_jaxpr(eqn.params["cond_jaxpr"]))
            count.add(count_jaxpr(eqn.params["body_jaxpr"]))
            count.while_loops += 1
        elif name == "cond":
            branches = [count_jaxpr(branch) for branch in eqn.params["branches"]]
            count.add(max(branches, key=lambda branch: branch.total))
        else:
            for value in eqn.params.values():
                for sub in _sub_jaxprs(value):
                    count.add(count_jaxpr(sub))
    return count


def count_flops(function: Callable[..., Any], *args: Any, **kwargs: Any) -> FlopCount:
    """The matmul FLOPs of one call ``function(*args, **kwargs)``, traced (not run) on ``args``,
    without the work whose results are never used."""
    jaxpr = jax.make_jaxpr(function)(*args, **kwargs).jaxpr
    live, _ = partial_eval.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
    return count_jaxpr(live)
