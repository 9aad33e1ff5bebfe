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

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from agents.optimization import TrainState, gradient_step, make_optimizer, masked_mean
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


def reach_threshold(setting: float | str, step_similarities: Sequence[float] | np.ndarray) -> float | None:
    """The goal similarity that counts as reaching a goal: ``setting`` itself, or for ``"auto"`` the
    median of ``step_similarities``, a level's goal features one of its own steps apart
    (``one_step_similarities``): reached = as close as the next state usually is. None where there is
    nothing to calibrate on.

    A fixed number does not mean the same in every model: deterministic states share a large common
    component (measured on GridFourRooms: 0.94 of their norm), so with 0.9 states four cells away
    counted as reached 49% of the time, and shuffled goals half as often as the worker's own.
    """
    if setting != "auto":
        return float(setting)
    similarities = np.asarray(step_similarities, np.float64).reshape(-1)
    return float(np.median(similarities)) if similarities.size else None


def one_step_similarities(features: np.ndarray, is_first: np.ndarray) -> np.ndarray:
    """``goal_similarity`` of each state ``features [T, B, F]`` to the one before it in the same episode
    (``is_first [T, B]`` starts one): ``[M]``, one per consecutive pair."""
    features = np.asarray(features)
    similarity = np.asarray(goal_similarity(features[1:], features[:-1]))
    return similarity[~np.asarray(is_first, bool)[1:]]


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
    """A discrete-code autoencoder of the goal features of the level below (``goal.space: autoencoder``).

    Its KL weight is held at a target: after every update the weight grows by ``kl_rate`` (a factor
    ``exp(kl_rate)``) while the KL per code is above ``kl_target`` and shrinks while it is below, so
    that the codes neither collapse to the prior (every code decodes to one average state) nor
    memorise the batch. ``kl_target = 0`` keeps the weight fixed at ``kl``.

    Its parameters are ``{"net": ..., "log_kl_weight": []}``; the optimiser trains ``net`` only.

    Args:
      feature_dim: size of the features it encodes.
      codes, classes: the code is ``codes`` one-hot categoricals of ``classes`` classes.
      units, layers: MLP sizes; kl: (initial) weight of the KL to the uniform code prior;
      kl_target: nats per code the weight is tuned to hold; unimix: uniform mix of the code
      categoricals; lr, grad_clip: the optimiser (``agents.optimization``).
    """

    kl_rate = 0.01
    kl_weight_range = (1e-4, 1e2)

    def __init__(self, feature_dim: int, codes: int, classes: int, units: int, layers: int,
                 kl: float, lr: float, grad_clip: float, unimix: float = 0.01, kl_target: float = 0.0):
        self.net = _AutoencoderNet(feature_dim, codes, classes, units, layers)
        self.feature_dim, self.codes, self.classes = feature_dim, codes, classes
        self.code_dim = codes * classes
        self.kl, self.kl_target, self.unimix = kl, kl_target, unimix
        self.optimizer = make_optimizer(lr, grad_clip)

    def init(self, key: jax.Array) -> TrainState:
        """Parameters ``{"net", "log_kl_weight"}`` and the optimiser's state of ``net``."""
        net = self.net.init(key, jnp.zeros((1, self.feature_dim)))["params"]
        return TrainState({"net": net, "log_kl_weight": jnp.log(jnp.asarray(self.kl, jnp.float32))},
                          self.optimizer.init(net))

    def decode(self, params, code: jax.Array) -> jax.Array:
        """The goal ``[..., F]`` of a flattened one-hot code ``[..., codes * classes]``."""
        return symexp(self.net.apply({"params": params["net"]}, code, method=_AutoencoderNet.decode))

    def code_logits(self, params, features: jax.Array) -> jax.Array:
        """Normalised log-probabilities ``[..., codes, classes]`` of the code of ``features [..., F]``."""
        logits = self.net.apply({"params": params["net"]}, features, method=_AutoencoderNet.encode)
        return unimix_logits(logits, self.unimix)

    def novelty(self, params, features: jax.Array) -> jax.Array:
        """How badly the most likely code reconstructs ``features [..., F]`` (summed squared error in
        symlog space): high where the autoencoder has seen few such states. ``[...]``."""
        logits = self.code_logits(params, features)
        code = jax.nn.one_hot(jnp.argmax(logits, -1), self.classes).reshape(features.shape[:-1] + (-1,))
        recon = self.net.apply({"params": params["net"]}, code, method=_AutoencoderNet.decode)
        return jnp.sum((recon - symlog(features)) ** 2, -1)

    def loss(self, net_params, log_kl_weight: jax.Array, features: jax.Array, mask: jax.Array, key: jax.Array):
        """Reconstruction (symlog space) plus weighted KL of the code to uniform, over masked ``[..., F]``."""
        params = {"net": net_params}
        logits = self.code_logits(params, features)
        code = OneHotCategorical(logits).sample(key).reshape(features.shape[:-1] + (-1,))
        recon = self.net.apply({"params": net_params}, code, method=_AutoencoderNet.decode)
        reconstruction = jnp.sum((recon - symlog(features)) ** 2, -1)
        kl = jnp.sum(jnp.exp(logits) * (logits + jnp.log(self.classes)), (-2, -1))
        weight = jnp.exp(log_kl_weight)
        total = masked_mean(reconstruction, mask) + weight * masked_mean(kl, mask)
        metrics = {
            "goal/autoencoder_loss": masked_mean(reconstruction, mask),
            "goal/autoencoder_kl": masked_mean(kl, mask),
            "goal/autoencoder_kl_weight": weight,
            "goal/code_perplexity": code_perplexity(jnp.argmax(logits, -1), mask, self.classes),
        }
        return total, metrics

    def update(self, state: TrainState, features: jax.Array, mask: jax.Array, key: jax.Array
               ) -> tuple[TrainState, dict[str, jax.Array]]:
        """One optimiser step on the network, then the KL weight's step towards its target."""
        params = state.params
        step = gradient_step(self.loss, self.optimizer, TrainState(params["net"], state.opt_state),
                             params["log_kl_weight"], features, mask, key)
        log_weight = params["log_kl_weight"]
        if self.kl_target > 0:
            kl_per_code = step.aux["goal/autoencoder_kl"] / self.codes
            direction = jnp.sign(kl_per_code - self.kl_target)
            low, high = self.kl_weight_range
            log_weight = jnp.clip(log_weight + self.kl_rate * direction, jnp.log(low), jnp.log(high))
        metrics = {**step.aux, "goal_autoencoder/grad_norm": step.grad_norm}
        return TrainState({"net": step.state.params, "log_kl_weight": log_weight}, step.state.opt_state), metrics


def code_perplexity(code_index: jax.Array, mask: jax.Array, classes: int) -> jax.Array:
    """``exp(entropy)`` of the empirical distribution of whole codes ``[..., codes]`` (class indices
    below ``classes``) over the masked batch: how many codes are in use, as if used equally often."""
    flat = code_index.reshape(-1, code_index.shape[-1]).astype(jnp.float32)
    # one float id per whole code: exact while classes ** codes <= 2 ** 24 (8 x 8 codes: exactly)
    ids = jnp.sum(flat * float(classes) ** jnp.arange(flat.shape[-1]), -1)
    weights = mask.reshape(-1).astype(jnp.float32)
    same = (ids[:, None] == ids[None, :]).astype(jnp.float32)  # [N, N]: small batches of tick states
    share = (same @ weights) / jnp.maximum(jnp.sum(weights), 1.0)  # each sample's code's frequency
    entropy = -jnp.sum(weights * jnp.log(jnp.maximum(share, 1e-12))) / jnp.maximum(jnp.sum(weights), 1.0)
    return jnp.exp(entropy)


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

    def init(self, key: jax.Array) -> TrainState:
        return TrainState.create(self.optimizer, self.net.init(key, jnp.zeros((1, self.input_dim)))["params"])

    def update(self, state: TrainState, inputs: jax.Array, targets: jax.Array, mask: jax.Array
               ) -> tuple[TrainState, dict[str, jax.Array]]:
        """One optimiser step."""
        step = gradient_step(self.loss, self.optimizer, state, inputs, targets, mask)
        return step.state, {**step.aux, "ensemble/grad_norm": step.grad_norm}

    def loss(self, params, inputs: jax.Array, targets: jax.Array, mask: jax.Array):
        predictions = self.net.apply({"params": params}, inputs)  # [E, ..., D]
        error = jnp.sum((predictions - targets[None]) ** 2, -1).mean(0)
        return masked_mean(error, mask), {"ensemble/loss": masked_mean(error, mask)}

    def disagreement(self, params, inputs: jax.Array) -> jax.Array:
        """Variance over members, averaged over predicted features: ``[...]``."""
        return self.net.apply({"params": params}, inputs).var(0).mean(-1)


class NoveltyPredictor:
    """Predicts the novelty of a level's state from its latent features, learned on real states only
    (``hierarchy.novelty_reward: predicted``).

    An autoencoder's reconstruction error is largest off the manifold of the states it learned, by
    construction, so paying it on imagined states pays a policy for steering its world model into
    states no real trajectory reaches (measured on GridFourRooms: a flat agent pushed into walls 82%
    of the time, imagining itself through them). This head learns the novelty of the level's replayed
    posterior states, as the reward head learns the task reward, and imagination reads it, so the
    novelty term is exploitable no more than the task reward is.
    """

    def __init__(self, input_dim: int, units: int, layers: int, lr: float, grad_clip: float):
        self.net = _Head(units, layers, 1)
        self.input_dim = input_dim
        self.optimizer = make_optimizer(lr, grad_clip)

    def init(self, key: jax.Array) -> TrainState:
        return TrainState.create(self.optimizer, self.net.init(key, jnp.zeros((1, self.input_dim)))["params"])

    def predict(self, params, features: jax.Array) -> jax.Array:
        """The predicted novelty ``[...]`` of the states ``features [..., input_dim]``, never below 0
        (the loss reads the raw output, so the floor costs the head no gradient)."""
        return jnp.maximum(symexp(self.net.apply({"params": params}, features)[..., 0]), 0.0)

    def loss(self, params, features: jax.Array, targets: jax.Array, mask: jax.Array):
        error = (self.net.apply({"params": params}, features)[..., 0] - symlog(targets)) ** 2
        return masked_mean(error, mask), {"novelty/predictor_loss": masked_mean(error, mask)}

    def update(self, state: TrainState, features: jax.Array, targets: jax.Array, mask: jax.Array
               ) -> tuple[TrainState, dict[str, jax.Array]]:
        """One optimiser step towards the measured novelty ``targets [...]`` of real states ``features``."""
        step = gradient_step(self.loss, self.optimizer, state, features, targets, mask)
        return step.state, {**step.aux, "novelty/predictor_grad_norm": step.grad_norm}


def hindsight_goals(goals: jax.Array, features: jax.Array, is_first: jax.Array, share: float, horizon: int,
                    key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Hindsight goals for a level below the top: ``share`` of its steps get, instead of the goal
    ``goals [T, B, G]`` handed down from above, the goal features (``features [T, B, >= G]``, first
    ``G``) of its own state ``k`` steps later, ``k`` uniform in ``1..horizon``, where that state is in
    the same episode (``is_first [T, B]``) and inside the sequence. So the level practises reaching
    states it did reach, the rare ones among them (a rewarded state that ends the episode), which the
    policy above may seldom propose. Returns the goals and a mask ``[T, B]`` of those replaced."""
    length = goals.shape[0]
    choose_key, offset_key = jax.random.split(key)
    chosen = jax.random.uniform(choose_key, goals.shape[:2]) < share
    offset = jax.random.randint(offset_key, goals.shape[:2], 1, horizon + 1)
    times = jnp.arange(length)[:, None]
    target = times + offset
    # the latest episode start at or before each step: a later one inside (t, t + k] means another episode
    started = jax.lax.cummax(jnp.where(is_first, times, 0), axis=0)
    clipped = jnp.minimum(target, length - 1)
    same_episode = jnp.take_along_axis(started, clipped, 0) <= times
    replaced = chosen & (target < length) & same_episode
    later = jnp.take_along_axis(features[..., : goals.shape[-1]], clipped[..., None], 0)
    return jnp.where(replaced[..., None], later, goals), replaced
