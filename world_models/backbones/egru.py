"""EGRU: event-based, activity-sparse GRU (Subramoney et al., ICLR 2023).

Shapes: B batch, T time, D input features, H = ``features`` units. Sequences are time-major.

Each unit keeps an internal state ``c`` and emits ``y = o * c~`` only when ``c~`` crosses its
learned threshold ``theta`` (``o = H(c~ - theta)``, an event); otherwise it outputs zero, so most
outputs are zero. Gates read the sparse output of the previous step, not the internal state:

  u  = sigmoid(W_u x + U_u y_{t-1} + b_u)          update gate
  r  = sigmoid(W_r x + U_r y_{t-1} + b_r)          reset gate
  g  = tanh(W_g x + U_g (r * y_{t-1}) + b_g)       candidate
  c~ = u * c_{t-1} + (1 - u) * g
  o  = H(c~ - theta),  c_t = c~ - o * theta  (reset by subtraction),  y_t = o * c~

The Heaviside step back-propagates through the pseudo-derivative
``gamma * max(0, 1 - eps * |c~ - theta|)``. The paper's activity regulariser is the mean event
rate ``mean(o)``, whose gradient flows through that pseudo-derivative (``activity_regularizer``).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from world_models.backbones.scan import scan_steps, where_reset


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def heaviside_event(x: jax.Array, gamma: float, eps: float) -> jax.Array:
    """``1`` where ``x > 0``, else ``0``; its derivative is replaced by the pseudo-derivative
    ``gamma * max(0, 1 - eps * |x|)`` (a triangle of height ``gamma`` and half-width ``1/eps``)."""
    return (x > 0).astype(x.dtype)


@heaviside_event.defjvp
def _heaviside_event_jvp(gamma, eps, primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return heaviside_event(x, gamma, eps), x_dot * pseudo_derivative(x, gamma, eps)


def pseudo_derivative(x: jax.Array, gamma: float, eps: float) -> jax.Array:
    """``gamma * max(0, 1 - eps * |x|)``, element-wise."""
    return gamma * jnp.maximum(0.0, 1.0 - eps * jnp.abs(x))


def activity_regularizer(
    c_tilde: jax.Array, threshold: jax.Array, gamma: float = 0.3, eps: float = 1.0
) -> jax.Array:
    """Mean event rate ``mean(H(c~ - theta))``, the EGRU paper's activity regulariser.

    Its value is the fraction of units that emit an event; its gradient is the mean
    pseudo-derivative, so adding it to a loss pushes units inside the pseudo-derivative window
    below their thresholds (and thresholds up). ``c_tilde [..., H]``, ``threshold [H]`` -> scalar.
    """
    return jnp.mean(heaviside_event(c_tilde - threshold, gamma, eps))


def output_sparsity(outputs: jax.Array) -> jax.Array:
    """Fraction of exactly-zero outputs (no event), a scalar; not differentiable."""
    return jnp.mean(outputs == 0)


def threshold_logit_init(mean: float = 0.3, concentration: float = 3.0):
    """Flax initialiser ``(key, shape, dtype)`` of threshold logits, ``theta = sigmoid(logit)``.

    As in the reference code, thresholds are drawn per unit from ``Beta(a, concentration)`` with
    mean ``mean`` (``a = concentration * mean / (1 - mean)``), so they start spread over roughly
    0.05-0.7; they are clipped away from 0 and 1 so that the sigmoid still has a gradient.
    """
    if not 0.0 < mean < 1.0:
        raise ValueError(f"threshold mean must lie in (0, 1), got {mean}")

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        alpha = concentration * mean / (1.0 - mean)
        threshold = jax.random.beta(key, alpha, concentration, shape, dtype)
        threshold = jnp.clip(threshold, 0.02, 0.98)
        return jnp.log(threshold) - jnp.log1p(-threshold)

    return init


class EGRU(nn.Module):
    """Event-based GRU cell. Carry ``(c, y)``, each ``[B, H]``; output ``y [B, H]`` (sparse).

    Sown in the ``intermediates`` collection (when it is mutable and not during ``init``):
    ``sparsity`` (fraction of zero outputs) and ``activity`` (``activity_regularizer``, the
    differentiable mean event rate), per call: of the step in ``step``, of the sequence in ``scan``.

    Attributes:
      features: H.
      pseudo_gamma: height of the pseudo-derivative (dampening factor).
      pseudo_eps: inverse half-width of the pseudo-derivative window.
      threshold_mean: mean of the initial thresholds.
    """

    features: int
    pseudo_gamma: float = 0.3
    pseudo_eps: float = 1.0
    threshold_mean: float = 0.3

    def setup(self):
        xavier = nn.initializers.glorot_normal()
        self.input_gates = nn.Dense(3 * self.features, kernel_init=xavier)  # W_u, W_r, W_g; biases
        self.recurrent_gates = nn.Dense(2 * self.features, use_bias=False, kernel_init=xavier)
        self.recurrent_candidate = nn.Dense(self.features, use_bias=False, kernel_init=xavier)
        self.threshold_logit = self.param(
            "threshold_logit", threshold_logit_init(self.threshold_mean), (self.features,)
        )
        self.initial_cell = self.param("initial_cell", nn.initializers.zeros, (self.features,))
        self.initial_output = self.param("initial_output", nn.initializers.zeros, (self.features,))

    def threshold(self) -> jax.Array:
        """Per-unit thresholds ``theta [H]`` in ``(0, 1)``."""
        return jax.nn.sigmoid(self.threshold_logit)

    def initial_state(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """Learned ``(c, y)`` at an episode start, each ``[B, H]``."""
        shape = (batch_size, self.features)
        cell = jnp.broadcast_to(self.initial_cell, shape)
        return cell, jnp.broadcast_to(self.initial_output, shape)

    def _cell(
        self, carry: tuple[jax.Array, jax.Array], x: jax.Array, reset: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        """One step without sowing (safe inside ``lax.scan``): returns ``(carry, (y, c~))``."""
        cell, output = where_reset(reset, self.initial_state(x.shape[0]), carry)
        input_update, input_reset, input_candidate = jnp.split(self.input_gates(x), 3, axis=-1)
        recurrent_update, recurrent_reset = jnp.split(self.recurrent_gates(output), 2, axis=-1)
        update = jax.nn.sigmoid(input_update + recurrent_update)
        reset_gate = jax.nn.sigmoid(input_reset + recurrent_reset)
        candidate = jnp.tanh(input_candidate + self.recurrent_candidate(reset_gate * output))
        c_tilde = update * cell + (1.0 - update) * candidate
        threshold = self.threshold()
        event = heaviside_event(c_tilde - threshold, self.pseudo_gamma, self.pseudo_eps)
        cell = c_tilde - event * threshold
        output = event * c_tilde
        return (cell, output), (output, c_tilde)

    def _sow_activity(self, outputs: jax.Array, c_tilde: jax.Array) -> None:
        """Record sparsity and the activity regulariser; skipped in ``init`` so that ``init``
        returns parameters only (and a later ``apply`` does not append to stale values)."""
        if self.is_initializing():
            return
        self.sow("intermediates", "sparsity", output_sparsity(outputs))
        self.sow(
            "intermediates",
            "activity",
            activity_regularizer(c_tilde, self.threshold(), self.pseudo_gamma, self.pseudo_eps),
        )

    def step(
        self, carry: tuple[jax.Array, jax.Array], x: jax.Array, reset: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        """One step: ``carry (c, y)``, ``x [B, D]``, ``reset [B]`` -> ``(carry, y [B, H])``."""
        carry, (output, c_tilde) = self._cell(carry, x, reset)
        self._sow_activity(output, c_tilde)
        return carry, output

    def scan(
        self,
        carry: tuple[jax.Array, jax.Array],
        xs: jax.Array,
        resets: jax.Array,
        return_carries: bool = False,
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        """Whole sequence: ``xs [T, B, D]``, ``resets [T, B]`` -> ``(carry, ys [T, B, H])``.

        With ``return_carries`` the first output is ``(c, y)`` after every step, each ``[T, B, H]``.
        """
        if self.is_initializing():  # parameters must exist before lax.scan traces the step
            self._cell(carry, xs[0], resets[0])

        def cell_with_carry(carry, x, reset):
            carry, (output, c_tilde) = self._cell(carry, x, reset)
            return carry, (output, c_tilde, carry)

        carry, (outputs, c_tilde, carries) = scan_steps(cell_with_carry, carry, xs, resets)
        self._sow_activity(outputs, c_tilde)  # outside the lax.scan body: no tracer leaks
        return (carries if return_carries else carry), outputs

    def __call__(self, carry, xs, resets, return_carries: bool = False):
        return self.scan(carry, xs, resets, return_carries)
