"""Goals handed from one level to the level below, and the ensemble that measures model doubt.

A level above 0 acts in a compact goal space; its action is decoded into a *goal*: a target in the
feature space of the level below, which that level is rewarded for reaching. Two goal spaces:

* ``direct``: a continuous action in ``[-1, 1]^dim``. The level's own world model decodes it: one
  imagined step of the level under that action, decoded back to the features of the level below
  (what the level's model expects the level below to reach after one abstract step).
* ``autoencoder``: a discrete code (``codes`` one-hot categoricals of ``classes`` classes) of a goal
  autoencoder trained on the states the level below actually visited, so that every code decodes
  to a state on that manifold (as in Director).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.optimization import make_optimizer, masked_mean
from world_models.distributions import OneHotCategorical, symexp, symlog, unimix_logits
from world_models.nets import MLP

GOAL_SPACES = ("direct", "autoencoder")


def goal_similarity(features: jax.Array, goal: jax.Array) -> jax.Array:
    """The goal reward: ``<s, g> / max(|s|, |g|)^2`` over the last axis.

    It is at most 1, and 1 exactly when ``s == g``: unlike the cosine it also penalises a state
    that points the right way with the wrong length.
    """
    norm = jnp.maximum(jnp.linalg.norm(features, axis=-1), jnp.linalg.norm(goal, axis=-1))
    return jnp.sum(features * goal, -1) / jnp.maximum(norm, 1e-6) ** 2


def goal_diversity(goals: jax.Array, mask: jax.Array) -> jax.Array:
    """Spread of the goals ``[..., F]`` over the (masked) batch: mean over features of their std."""
    mean = _masked_feature_mean(goals, mask)
    variance = _masked_feature_mean((goals - mean) ** 2, mask)
    return jnp.mean(jnp.sqrt(variance + 1e-12))


def _masked_feature_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    flat = values.reshape(-1, values.shape[-1])
    weights = mask.reshape(-1, 1)
    return jnp.sum(flat * weights, 0) / jnp.maximum(jnp.sum(weights), 1.0)


class _AutoencoderNet(nn.Module):
    feature_dim: int
    codes: int
    classes: int
    units: int
    layers: int

    def setup(self):
        self.encoder = MLP(self.units, self.layers)
        self.encoder_out = nn.Dense(self.codes * self.classes)
        self.decoder = MLP(self.units, self.layers)
        self.decoder_out = nn.Dense(self.feature_dim)

    def encode(self, features: jax.Array) -> jax.Array:
        logits = self.encoder_out(self.encoder(symlog(features)))
        return logits.reshape(features.shape[:-1] + (self.codes, self.classes))

    def decode(self, code: jax.Array) -> jax.Array:
        return self.decoder_out(self.decoder(code))

    def __call__(self, features: jax.Array) -> jax.Array:
        code = self.encode(features).reshape(features.shape[:-1] + (-1,))
        return self.decode(code)


class GoalAutoencoder:
    """A discrete-code autoencoder of the features of the level below (``goal.space: autoencoder``).

    Args:
      feature_dim: size of the features it encodes.
      codes, classes: the code is ``codes`` one-hot categoricals of ``classes`` classes.
      units, layers: MLP sizes; kl: weight of the KL to the uniform code prior; unimix: uniform mix
        of the code categoricals; lr, grad_clip: the optimiser (``agents.optimization``).
    """

    def __init__(self, feature_dim: int, codes: int, classes: int, units: int, layers: int,
                 kl: float, lr: float, grad_clip: float, unimix: float = 0.01):
        self.net = _AutoencoderNet(feature_dim, codes, classes, units, layers)
        self.feature_dim, self.codes, self.classes = feature_dim, codes, classes
        self.code_dim = codes * classes
        self.kl, self.unimix = kl, unimix
        self.optimizer = make_optimizer(lr, grad_clip)

    def init(self, key: jax.Array) -> Any:
        return self.net.init(key, jnp.zeros((1, self.feature_dim)))["params"]

    def decode(self, params, code: jax.Array) -> jax.Array:
        """The goal ``[..., F]`` of a flattened one-hot code ``[..., codes * classes]``."""
        return symexp(self.net.apply({"params": params}, code, method=_AutoencoderNet.decode))

    def loss(self, params, features: jax.Array, mask: jax.Array, key: jax.Array):
        """Reconstruction (symlog space) plus KL of the code to uniform, over masked ``[..., F]``."""
        logits = unimix_logits(self.net.apply({"params": params}, features, method=_AutoencoderNet.encode), self.unimix)
        code = OneHotCategorical(logits).sample(key).reshape(features.shape[:-1] + (-1,))
        recon = self.net.apply({"params": params}, code, method=_AutoencoderNet.decode)
        reconstruction = jnp.sum((recon - symlog(features)) ** 2, -1)
        kl = jnp.sum(jnp.exp(logits) * (logits + jnp.log(self.classes)), (-2, -1))
        total = masked_mean(reconstruction, mask) + self.kl * masked_mean(kl, mask)
        metrics = {"goal/autoencoder_loss": masked_mean(reconstruction, mask), "goal/autoencoder_kl": masked_mean(kl, mask)}
        return total, metrics


class _EnsembleNet(nn.Module):
    members: int
    units: int
    layers: int
    outputs: int

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        member = nn.vmap(
            _Head, variable_axes={"params": 0}, split_rngs={"params": True},
            in_axes=None, out_axes=0, axis_size=self.members,
        )
        return member(self.units, self.layers, self.outputs)(inputs)


class _Head(nn.Module):
    units: int
    layers: int
    outputs: int

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        return nn.Dense(self.outputs)(MLP(self.units, self.layers)(inputs))


class Ensemble:
    """Members that each predict the next latent of a level from its state and action.

    Where the world model has seen little data its members disagree; the variance of their
    predictions is the *disagreement*, which the hierarchy subtracts from imagined rewards of abstract
    levels (so that a level is not paid for visiting states its model merely guesses) and can add as
    an exploration bonus at the top level.
    """

    def __init__(self, input_dim: int, target_dim: int, members: int, units: int, layers: int, lr: float,
                 grad_clip: float):
        self.net = _EnsembleNet(members, units, layers, target_dim)
        self.input_dim = input_dim
        self.optimizer = make_optimizer(lr, grad_clip)

    def init(self, key: jax.Array) -> Any:
        return self.net.init(key, jnp.zeros((1, self.input_dim)))["params"]

    def loss(self, params, inputs: jax.Array, targets: jax.Array, mask: jax.Array):
        predictions = self.net.apply({"params": params}, inputs)  # [E, ..., D]
        error = jnp.sum((predictions - targets[None]) ** 2, -1).mean(0)
        return masked_mean(error, mask), {"ensemble/loss": masked_mean(error, mask)}

    def disagreement(self, params, inputs: jax.Array) -> jax.Array:
        """Variance over members, averaged over predicted features: ``[...]``."""
        return self.net.apply({"params": params}, inputs).var(0).mean(-1)
