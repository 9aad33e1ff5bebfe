"""Mamba: stacked selective state-space blocks (Gu & Dao 2023) as a resettable sequence backbone.

Dimensions (sequences are time-major):
  T time, B batch, D input features, F = ``features`` (model width),
  E = ``expand * features`` inner channels, N = ``state_size``, R = ``dt_rank``, W = ``conv_width``.

Each block is ``h + MambaMixer(RMSNorm(h))``. The mixer projects to ``x`` and a gate ``z`` (``E``
each), runs ``x`` through a causal depthwise convolution of width W and SiLU, then through the
selective SSM ``h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t``, ``y_t = C_t h_t + D x_t``, whose
``Delta``, ``B`` and ``C`` depend on ``x_t``, and returns ``out_proj(y * SiLU(z))``.

Training (``scan``) runs the convolution as one windowed op over time and the SSM through
``mamba_scan.chunked_selective_scan``: chunks of ``chunk_size`` steps, each solved step by step
in a ``lax.scan`` (its gradient written out) or with the associative scan (``scan_impl``, then
rematerialised in the backward pass), so the ``[T, B, N, E]`` terms are never held whole; acting
(``step``) carries the last ``W - 1`` convolution inputs and the SSM state per layer. At an episode
start the window is cleared (zeros, as the causal padding of a fresh sequence) and the SSM restarts
from a learned state.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from world_models.backbones.mamba_init import a_log_init, conv_init, dt_bias_init, dt_kernel_init
from world_models.backbones.mamba_scan import (
    SelectionTerms,
    chunked_selective_scan,
    discretise,
    ssm_output,
)
from world_models.backbones.scan import ScanImpl, where_reset


class MambaLayerState(NamedTuple):
    """Carry of one mixer: ``conv_window [B, W-1, E]`` (oldest first) and ``ssm [B, N, E]``."""

    conv_window: jax.Array
    ssm: jax.Array


def resolve_dt_rank(dt_rank: int | str, features: int) -> int:
    """``"auto"`` means ``ceil(features / 16)``, as in the reference implementation."""
    if dt_rank == "auto":
        return math.ceil(features / 16)
    if not isinstance(dt_rank, int) or dt_rank < 1:
        raise ValueError(f"dt_rank must be a positive int or 'auto', got {dt_rank!r}")
    return dt_rank


def episode_starts(resets: jax.Array, width: int) -> jax.Array:
    """Index of the latest reset at or before each step, ``[T, B]`` from ``resets [T, B]``.

    Steps with no reset since the sequence began get ``-width``, below every index the
    convolution window can reach (the carried-in inputs sit at ``-(W-1) .. -1``).
    """
    time = jnp.arange(resets.shape[0])[:, None]
    return jax.lax.cummax(jnp.where(resets, time, -width), axis=0)


def causal_conv_sequence(
    window: jax.Array, xs: jax.Array, resets: jax.Array, kernel: jax.Array, bias: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Causal depthwise convolution over a sequence with episode resets.

    Each output sees only inputs of its own episode: taps that reach before the latest reset are
    zeroed, exactly as ``step`` clears its window at a reset. Without a reset in between, the first
    outputs read the carried-in ``window``.

    Args:
      window: ``[B, W-1, E]`` inputs carried from the previous call, oldest first.
      xs: ``[T, B, E]`` inputs.
      resets: ``[T, B]`` booleans.
      kernel: ``[W, E]``, tap ``k`` weighting the input ``W-1-k`` steps back.
      bias: ``[E]``.

    Returns:
      ``([T, B, E]`` outputs, ``[T, B, W-1, E]`` the window ``step`` would carry after each step).
    """
    width, length = kernel.shape[0], xs.shape[0]
    padded = jnp.concatenate([jnp.swapaxes(window, 0, 1).astype(xs.dtype), xs], 0)  # [T+W-1, B, E]
    starts = episode_starts(resets, width)  # [T, B]
    time = jnp.arange(length)[:, None]

    def taps_back(offset: int) -> jax.Array:
        """Inputs ``offset`` steps before each step (``[T, B, E]``), zero before its episode."""
        valid = (time - offset >= starts)[..., None]
        return jnp.where(valid, padded[width - 1 - offset : width - 1 - offset + length], 0.0)

    outputs = bias
    for tap in range(width):  # a loop over the W taps (static, small), not over time
        outputs = outputs + taps_back(width - 1 - tap) * kernel[tap]
    windows = jnp.stack([taps_back(width - 2 - slot) for slot in range(width - 1)], axis=2)
    return outputs, windows


class MambaMixer(nn.Module):
    """The selective SSM mixer of one Mamba block; maps ``[..., F]`` to ``[..., F]``.

    Attributes:
      features: F. state_size: N. expand: E / F. conv_width: W. dt_rank: R (or "auto").
      dt_min, dt_max: range of the initial Delta. scan_impl: see ``scan.linear_recurrence``.
      chunk_size: steps per chunk of the selective scan in ``scan``; 0 (or at least T) solves the
        whole sequence at once, holding ``[T, B, N, E]`` terms (see ``chunked_selective_scan``).
      depth: blocks in the stack; the output projection's init variance is divided by it, the
        reference's rescaling of pre-norm residual branches.
    """

    features: int
    state_size: int = 16
    expand: int = 2
    conv_width: int = 4
    dt_rank: int | str = "auto"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    scan_impl: ScanImpl = "auto"
    chunk_size: int = 32
    depth: int = 1

    def setup(self):
        inner, rank = self.expand * self.features, resolve_dt_rank(self.dt_rank, self.features)
        self.in_proj = nn.Dense(2 * inner, use_bias=False)
        self.conv_kernel = self.param(
            "conv_kernel", conv_init(self.conv_width), (self.conv_width, inner)
        )
        self.conv_bias = self.param("conv_bias", conv_init(self.conv_width), (inner,))
        self.x_proj = nn.Dense(rank + 2 * self.state_size, use_bias=False)
        self.dt_proj = nn.Dense(
            inner,
            kernel_init=dt_kernel_init(rank),
            bias_init=dt_bias_init(self.dt_min, self.dt_max),
        )
        self.A_log = self.param("A_log", a_log_init(), (inner, self.state_size))
        self.D = self.param("D", nn.initializers.ones, (inner,))
        self.initial_ssm = self.param(
            "initial_ssm", nn.initializers.zeros, (inner, self.state_size)
        )
        rescaled = nn.initializers.variance_scaling(1.0 / self.depth, "fan_in", "truncated_normal")
        self.out_proj = nn.Dense(self.features, use_bias=False, kernel_init=rescaled)

    def initial_state(self, batch_size: int) -> MambaLayerState:
        """Empty convolution window and the learned SSM state, both with leading axis B."""
        inner = self.expand * self.features
        window = jnp.zeros((batch_size, self.conv_width - 1, inner), self.conv_kernel.dtype)
        ssm = jnp.broadcast_to(self.initial_ssm.T, (batch_size, self.state_size, inner))
        return MambaLayerState(window, ssm)

    def _selection(self, x: jax.Array) -> SelectionTerms:
        """Input-dependent SSM terms for conv outputs ``x [..., E]``: ``Delta [..., E]``, ``x``,
        ``B`` and ``C [..., N]``."""
        rank = resolve_dt_rank(self.dt_rank, self.features)
        low_rank_dt, b_input, c_output = jnp.split(
            self.x_proj(x), [rank, rank + self.state_size], axis=-1
        )
        dt = jax.nn.softplus(self.dt_proj(low_rank_dt))  # [..., E]
        return SelectionTerms(dt, x, b_input, c_output)

    def _a(self) -> jax.Array:
        """``A = -exp(A_log)`` as ``[N, E]``, the states' layout; negative so the state decays."""
        return -jnp.exp(self.A_log).T

    def step(
        self, state: MambaLayerState, u: jax.Array, reset: jax.Array
    ) -> tuple[MambaLayerState, jax.Array]:
        """One step: ``u [B, F]``, ``reset [B]`` -> ``(state, [B, F])``."""
        state = where_reset(reset, self.initial_state(u.shape[0]), state)
        x, gate = jnp.split(self.in_proj(u), 2, axis=-1)
        taps = jnp.concatenate([state.conv_window.astype(x.dtype), x[:, None]], axis=1)  # [B, W, E]
        x = jax.nn.silu(jnp.einsum("bwe,we->be", taps, self.conv_kernel) + self.conv_bias)
        terms = self._selection(x)
        decay, drive = discretise(terms.dt, x, terms.b_input, self._a())
        ssm = decay * state.ssm + drive
        y = ssm_output(ssm, terms.c_output, x, self.D)
        return MambaLayerState(taps[:, 1:], ssm), self.out_proj(y * jax.nn.silu(gate))

    def scan(
        self, state: MambaLayerState, us: jax.Array, resets: jax.Array, return_carries: bool = False
    ) -> tuple[MambaLayerState, jax.Array]:
        """Whole sequence: ``us [T, B, F]``, ``resets [T, B]`` -> ``(state, [T, B, F])``.

        With ``return_carries`` the state after every step is returned (leaves ``[T, B, ...]``);
        its SSM states ``[T, B, N, E]`` are then an output and materialise, chunked or not.
        """
        xs, gates = jnp.split(self.in_proj(us), 2, axis=-1)
        xs, windows = causal_conv_sequence(
            state.conv_window, xs, resets, self.conv_kernel, self.conv_bias
        )
        xs = jax.nn.silu(xs)
        initial = self.initial_state(us.shape[1])
        ys, ssm = chunked_selective_scan(
            self._selection(xs),
            state.ssm,
            resets,
            initial.ssm,
            self._a(),
            self.D,
            self.chunk_size,
            self.scan_impl,
            return_states=return_carries,
        )
        carries = MambaLayerState(windows if return_carries else windows[-1], ssm)
        return carries, self.out_proj(ys * jax.nn.silu(gates))


class Mamba(nn.Module):
    """Mamba backbone: input projection to F, ``layers`` residual pre-norm mixer blocks, final norm.

    The carry is a tuple with one ``MambaLayerState`` per layer; the output is ``[B, F]`` per step.

    Attributes:
      features: F. layers: number of blocks. state_size: N. expand: E / F. conv_width: W.
      dt_rank: R or "auto" (``ceil(F / 16)``). dt_min, dt_max: range of the initial Delta.
      scan_impl: ``auto | sequential | associative`` for the SSM in ``scan``.
      chunk_size: steps per chunk of the selective scan in ``scan`` (0: the whole sequence at once).
    """

    features: int
    layers: int = 2
    state_size: int = 16
    expand: int = 2
    conv_width: int = 4
    dt_rank: int | str = "auto"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    scan_impl: ScanImpl = "auto"
    chunk_size: int = 32

    def setup(self):
        if self.conv_width < 2:
            raise ValueError(f"conv_width must be at least 2, got {self.conv_width}")
        self.input_proj = nn.Dense(self.features)
        self.norms = [nn.RMSNorm(epsilon=1e-5) for _ in range(self.layers)]
        self.mixers = [
            MambaMixer(
                features=self.features,
                state_size=self.state_size,
                expand=self.expand,
                conv_width=self.conv_width,
                dt_rank=self.dt_rank,
                dt_min=self.dt_min,
                dt_max=self.dt_max,
                scan_impl=self.scan_impl,
                chunk_size=self.chunk_size,
                depth=self.layers,
            )
            for _ in range(self.layers)
        ]
        self.final_norm = nn.RMSNorm(epsilon=1e-5)

    def initial_state(self, batch_size: int) -> tuple[MambaLayerState, ...]:
        """Per layer: an empty convolution window and the learned SSM state."""
        return tuple(mixer.initial_state(batch_size) for mixer in self.mixers)

    def step(
        self, carry: tuple[MambaLayerState, ...], x: jax.Array, reset: jax.Array
    ) -> tuple[tuple[MambaLayerState, ...], jax.Array]:
        """One step: ``x [B, D]``, ``reset [B]`` -> ``(carry, y [B, F])``."""
        hidden, new_carry = self.input_proj(x), []
        for norm, mixer, state in zip(self.norms, self.mixers, carry):
            state, update = mixer.step(state, norm(hidden), reset)
            hidden, new_carry = hidden + update, new_carry + [state]
        return tuple(new_carry), self.final_norm(hidden)

    def scan(
        self,
        carry: tuple[MambaLayerState, ...],
        xs: jax.Array,
        resets: jax.Array,
        return_carries: bool = False,
    ) -> tuple[tuple[MambaLayerState, ...], jax.Array]:
        """Whole sequence: ``xs [T, B, D]``, ``resets [T, B]`` -> ``(carry, ys [T, B, F])``.

        With ``return_carries`` the first output is the carry after every step (leaves
        ``[T, B, ...]``), from which imagination can start.
        """
        if self.is_initializing():  # create every parameter before any lax.scan traces
            self.step(carry, xs[0], resets[0])
        hidden, new_carry = self.input_proj(xs), []
        for norm, mixer, state in zip(self.norms, self.mixers, carry):
            state, update = mixer.scan(state, norm(hidden), resets, return_carries)
            hidden, new_carry = hidden + update, new_carry + [state]
        return tuple(new_carry), self.final_norm(hidden)

    def __call__(self, carry, xs, resets, return_carries: bool = False):
        return self.scan(carry, xs, resets, return_carries)
