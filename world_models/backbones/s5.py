"""S5: stacked simplified state-space layers (Smith et al. 2023) as a resettable sequence backbone.

Dimensions (sequences are time-major):
  T time, B batch, D input features, H = ``features`` (model width), P = ``state_size``,
  J = ``blocks``, P' the stored state size (``P / 2`` with ``conj_sym``, else P).

One ``S5Layer`` is a diagonal complex linear system ``x_t = Lambda_bar x_{t-1} + B_bar u_t``,
``y_t = Re(C~ x_t) + D u_t`` (``2 Re`` with conjugate symmetry) discretised from learned continuous
parameters (``Lambda``, ``B~``, ``C~``, ``D``, ``log Delta``; see ``s5_init.py``). ``S5`` projects
the input to H and applies ``layers`` blocks ``h + activation(S5Layer(LayerNorm(h)))``. Training
(``scan``) runs each layer as one linear recurrence through ``scan.linear_recurrence`` (``lax.scan``
or the associative scan); acting (``step``) advances the state by one element. At an episode start
every layer restarts from its learned initial state.

``ssm_param_labels`` marks the SSM parameters for their own optimiser (S5 trains ``Lambda``, ``B``
and ``Delta`` with a smaller learning rate and no weight decay).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from world_models.backbones.s5_init import (
    as_complex,
    as_real_pair,
    discretize,
    eigenvalue_imag_init,
    eigenvalue_real_log_init,
    input_matrix_init,
    log_step_init,
    output_matrix_init,
    stored_state_size,
)
from world_models.backbones.scan import ScanImpl, linear_recurrence, where_reset

SSM_PARAM_NAMES = ("Lambda_re_log", "Lambda_im", "B", "log_step")
ACTIVATIONS = ("gelu", "glu", "half_glu", "half_glu2")
MAX_EIGENVALUE_REAL = -1e-4  # with clip_eigs: every mode decays at least this fast
Carry = tuple[jax.Array, ...]  # one complex state [B, P'] per layer


class S5Layer(nn.Module):
    """One S5 SSM, ``[..., H] -> [..., H]``, with a learned complex initial state ``[P']``.

    ``Re(Lambda) = -exp(Lambda_re_log)`` stays negative, so the continuous system is stable whatever
    the optimiser does; ``clip_eigs`` also keeps it at most ``-1e-4``, so that no mode's decay
    ``|Lambda_bar|`` creeps up to 1 over long rollouts.

    Attributes:
      features: H. state_size: P. blocks: J. conj_sym: keep P/2 conjugate-paired modes.
      discretization: ``zoh | bilinear`` (``async | dirac`` for event streams, see ``s5_init``).
      clip_eigs: clip ``Re(Lambda)`` to ``<= -1e-4``. dt_min, dt_max: range of the initial Delta.
      scan_impl: ``auto | sequential | associative``, see ``scan.linear_recurrence``.
    """

    features: int
    state_size: int = 64
    blocks: int = 1
    conj_sym: bool = True
    discretization: str = "zoh"
    clip_eigs: bool = False
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    scan_impl: ScanImpl = "auto"

    def setup(self):
        stored = stored_state_size(self.state_size, self.blocks, self.conj_sym)
        layout = (self.state_size, self.blocks, self.conj_sym)
        real_log_init = eigenvalue_real_log_init(*layout)
        self.Lambda_re_log = self.param("Lambda_re_log", real_log_init, (stored,))
        self.Lambda_im = self.param("Lambda_im", eigenvalue_imag_init(*layout), (stored,))
        self.B = self.param("B", input_matrix_init(*layout), (stored, self.features, 2))
        self.C = self.param("C", output_matrix_init(*layout), (self.features, stored, 2))
        self.D = self.param("D", nn.initializers.normal(1.0), (self.features,))
        self.log_step = self.param("log_step", log_step_init(self.dt_min, self.dt_max), (stored,))
        self.initial = self.param("initial", nn.initializers.zeros, (stored, 2))

    def eigenvalues(self) -> jax.Array:
        """Continuous-time ``Lambda [P']`` (complex), real part negative."""
        real = -jnp.exp(self.Lambda_re_log)
        if self.clip_eigs:
            real = jnp.minimum(real, MAX_EIGENVALUE_REAL)
        return real + 1j * self.Lambda_im

    def initial_state(self, batch_size: int) -> jax.Array:
        """Learned state at an episode start, ``[B, P']`` complex."""
        initial = as_complex(self.initial)
        return jnp.broadcast_to(initial, (batch_size,) + initial.shape)

    def discretized(self, dt: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``(Lambda_bar, gain)``, ``[P']`` or ``[..., P']`` for intervals ``dt [...]`` that scale
        the learned step Delta (``None``: 1); ``B_bar = gain[..., None] * B~``."""
        interval = None if dt is None else dt[..., None]
        return discretize(self.discretization, self.eigenvalues(), jnp.exp(self.log_step), interval)

    def _drive(self, gain: jax.Array, u: jax.Array) -> jax.Array:
        """``B_bar u [..., P']`` from ``u [..., H]``: one real matmul against the (re, im) pair."""
        return gain * as_complex(jnp.einsum("...h,phc->...pc", u, self.B))

    def _readout(self, states: jax.Array, u: jax.Array) -> jax.Array:
        """``Re(C~ x) + D u`` (twice the real part with ``conj_sym``): ``states [..., P']``,
        ``u [..., H]`` -> ``[..., H]``. ``Re(c x) = c_re x_re - c_im x_im`` as one real matmul."""
        signed = self.C * jnp.array([1.0, -1.0], self.C.dtype)
        y = jnp.einsum("...pc,hpc->...h", as_real_pair(states), signed)
        return (2.0 if self.conj_sym else 1.0) * y + self.D * u

    def step(
        self, state: jax.Array, u: jax.Array, reset: jax.Array, dt: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """One element: ``state [B, P']``, ``u [B, H]``, ``reset [B]``, ``dt [B]`` or None
        -> ``(state, y [B, H])``."""
        state = where_reset(reset, self.initial_state(u.shape[0]), state)
        decay, gain = self.discretized(dt)
        state = decay * state + self._drive(gain, u)
        return state, self._readout(state, u)

    def scan(
        self, state: jax.Array, us: jax.Array, resets: jax.Array, dt: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """A sequence as one linear recurrence: ``state [B, P']``, ``us [T, B, H]``,
        ``resets [T, B]``, ``dt [T, B]`` or None
        -> ``(states [T, B, P']`` after every element, ``ys [T, B, H])``."""
        decay, gain = self.discretized(dt)
        drive = self._drive(gain, us)
        decay = jnp.broadcast_to(decay, drive.shape)
        initial = self.initial_state(us.shape[1])
        states = linear_recurrence(decay, drive, state, resets, initial, self.scan_impl)
        return states, self._readout(states, us)


class S5Activation(nn.Module):
    """The S5 nonlinearity after each SSM, ``[..., H] -> [..., H]`` (``g = gelu(y)``):

    ``gelu``: ``g``; ``glu``: ``W1 g * sigmoid(W2 g)``; ``half_glu``: ``g * sigmoid(W2 g)``;
    ``half_glu2``: ``y * sigmoid(W2 g)``.
    """

    features: int
    activation: str = "half_glu"

    def setup(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.activation == "glu":
            self.value = nn.Dense(self.features)
        if self.activation != "gelu":
            self.gate = nn.Dense(self.features)

    def __call__(self, y: jax.Array) -> jax.Array:
        activated = nn.gelu(y)
        if self.activation == "gelu":
            return activated
        gate = jax.nn.sigmoid(self.gate(activated))
        if self.activation == "glu":
            return self.value(activated) * gate
        return (activated if self.activation == "half_glu" else y) * gate


class S5(nn.Module):
    """S5 backbone: input Dense to H, then ``layers`` blocks
    ``h + activation(S5Layer(LayerNorm(h)))``.

    The carry is a tuple with one complex state ``[B, P']`` per layer; the output is ``[B, H]``.

    Attributes:
      features: H. state_size: P. layers: number of blocks. blocks: J HiPPO blocks per state.
      conj_sym: keep P/2 conjugate-paired modes. discretization: ``zoh | bilinear``.
      clip_eigs: clip ``Re(Lambda) <= -1e-4``. activation: ``gelu | glu | half_glu | half_glu2``.
      dt_min, dt_max: range of the initial Delta. scan_impl: ``auto | sequential | associative``.
    """

    features: int
    state_size: int = 64
    layers: int = 2
    blocks: int = 1
    conj_sym: bool = True
    discretization: str = "zoh"
    clip_eigs: bool = False
    activation: str = "half_glu"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    scan_impl: ScanImpl = "auto"

    discretizations = ("zoh", "bilinear")  # not a field: the choices this class accepts

    def setup(self):
        if self.discretization not in self.discretizations:
            raise ValueError(
                f"discretization must be one of {self.discretizations}, got {self.discretization!r}"
            )
        self.input_proj = nn.Dense(self.features)
        self.norms = [nn.LayerNorm() for _ in range(self.layers)]
        self.ssms = [
            S5Layer(
                features=self.features,
                state_size=self.state_size,
                blocks=self.blocks,
                conj_sym=self.conj_sym,
                discretization=self.discretization,
                clip_eigs=self.clip_eigs,
                dt_min=self.dt_min,
                dt_max=self.dt_max,
                scan_impl=self.scan_impl,
            )
            for _ in range(self.layers)
        ]
        self.activations = [
            S5Activation(self.features, self.activation) for _ in range(self.layers)
        ]

    def initial_state(self, batch_size: int) -> Carry:
        """Per layer, the learned state ``[B, P']`` (complex)."""
        return tuple(ssm.initial_state(batch_size) for ssm in self.ssms)

    def _step(
        self, carry: Carry, x: jax.Array, reset: jax.Array, dt: jax.Array | None
    ) -> tuple[Carry, jax.Array]:
        """``step`` with optional intervals ``dt [B]`` (shared with ``EventS5``)."""
        hidden, new_carry = self.input_proj(x), []
        for norm, ssm, activation, state in zip(self.norms, self.ssms, self.activations, carry):
            state, y = ssm.step(state, norm(hidden), reset, dt)
            hidden, new_carry = hidden + activation(y), new_carry + [state]
        return tuple(new_carry), hidden

    def _scan(
        self,
        carry: Carry,
        xs: jax.Array,
        resets: jax.Array,
        dt: jax.Array | None,
        return_carries: bool,
    ) -> tuple[Carry, jax.Array]:
        """``scan`` with optional intervals ``dt [T, B]`` (shared with ``EventS5``)."""
        if self.is_initializing():  # create every parameter before any lax.scan traces
            self._step(carry, xs[0], resets[0], None if dt is None else dt[0])
        hidden, layer_states = self.input_proj(xs), []
        for norm, ssm, activation, state in zip(self.norms, self.ssms, self.activations, carry):
            states, y = ssm.scan(state, norm(hidden), resets, dt)
            hidden, layer_states = hidden + activation(y), layer_states + [states]
        if return_carries:
            return tuple(layer_states), hidden
        return tuple(states[-1] for states in layer_states), hidden

    def step(self, carry: Carry, x: jax.Array, reset: jax.Array) -> tuple[Carry, jax.Array]:
        """One step: ``x [B, D]``, ``reset [B]`` -> ``(carry, y [B, H])``."""
        return self._step(carry, x, reset, None)

    def scan(
        self,
        carry: Carry,
        xs: jax.Array,
        resets: jax.Array,
        return_carries: bool = False,
    ) -> tuple[Carry, jax.Array]:
        """Whole sequence: ``xs [T, B, D]``, ``resets [T, B]`` -> ``(carry, ys [T, B, H])``.

        With ``return_carries`` the first output holds every layer's state after every step,
        ``[T, B, P']`` per layer.
        """
        return self._scan(carry, xs, resets, None, return_carries)

    def __call__(self, carry, xs, resets, return_carries: bool = False):
        return self.scan(carry, xs, resets, return_carries)


def ssm_param_labels(params: Any) -> Any:
    """Same-structure pytree of ``"ssm"`` (S5's ``Lambda``, ``B``, ``log_step``) or ``"regular"``.

    For ``optax.multi_transform({"ssm": ..., "regular": ...}, ssm_param_labels)``. A leaf is
    ``"ssm"`` when its name is in ``SSM_PARAM_NAMES`` and it sits beside ``Lambda_re_log`` (in an
    ``S5Layer``), so it works on any tree that holds S5 layers, a whole world model's included,
    and another module's parameter named ``B`` stays regular.
    """
    name = lambda key: getattr(key, "key", None)
    layers = {path[:-1] for path, _ in jax.tree_util.tree_leaves_with_path(params)
              if path and name(path[-1]) == "Lambda_re_log"}

    def label(path, leaf) -> str:
        del leaf  # the label depends on the path only
        is_ssm = bool(path) and path[:-1] in layers and name(path[-1]) in SSM_PARAM_NAMES
        return "ssm" if is_ssm else "regular"

    return jax.tree_util.tree_map_with_path(label, params)
