"""Layer-normalised GRU: the baseline backbone (the recurrent core of DreamerV3's RSSM).

Shapes: B batch, T time, D input features, H = ``features`` hidden units. Sequences are time-major.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from world_models.backbones.scan import scan_steps, where_reset


class GRU(nn.Module):
    """GRU cell with layer normalisation on the gate pre-activations.

    ``update = sigmoid(u - 1)`` biases the cell towards keeping its state early in training, as in
    DreamerV3. The carry is the hidden state ``[B, H]``; the output equals the new hidden state.

    Attributes:
      features: hidden units H.
    """

    features: int

    def setup(self):
        self.gates = nn.Dense(3 * self.features, use_bias=False)
        self.norm = nn.LayerNorm(epsilon=1e-3)
        self.initial = self.param("initial", nn.initializers.zeros, (self.features,))

    def initial_state(self, batch_size: int) -> jax.Array:
        """Learned state at an episode start, ``[B, H]``."""
        return jnp.broadcast_to(jnp.tanh(self.initial), (batch_size, self.features))

    def step(self, carry: jax.Array, x: jax.Array, reset: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step: ``carry [B, H]``, ``x [B, D]``, ``reset [B]`` -> ``(carry, y [B, H])``."""
        carry = where_reset(reset, self.initial_state(x.shape[0]), carry)
        parts = self.norm(self.gates(jnp.concatenate([carry, x], -1)))
        reset_gate, candidate, update = jnp.split(parts, 3, -1)
        candidate = jnp.tanh(jax.nn.sigmoid(reset_gate) * candidate)
        update = jax.nn.sigmoid(update - 1.0)
        carry = update * candidate + (1.0 - update) * carry
        return carry, carry

    def scan(
        self, carry: jax.Array, xs: jax.Array, resets: jax.Array, return_carries: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        """Whole sequence: ``xs [T, B, D]``, ``resets [T, B]`` -> ``(carry [B, H], ys [T, B, H])``.

        With ``return_carries`` the first output is the carry after every step, ``[T, B, H]``.
        """
        if self.is_initializing():  # parameters must exist before lax.scan traces the step
            self.step(carry, xs[0], resets[0])
        carry, ys = scan_steps(self.step, carry, xs, resets)
        return (ys if return_carries else carry), ys

    def __call__(self, carry, xs, resets, return_carries: bool = False):
        return self.scan(carry, xs, resets, return_carries)
