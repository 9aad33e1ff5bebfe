"""A world model of one level: encoder, RSSM dynamics, decoder, reward and continue heads.

``WorldModelNet`` holds the Flax networks; ``WorldModel`` adds the loss, the optimiser and
imagination as plain functions of a parameter pytree. Batches are dicts of time-major arrays:
observation keys ``[T, B, ...]`` (an event stream's key ``[T, B, N, 4]`` with its count
``[T, B]``), ``prev_action [T, B, A]`` (the action that led to this step, zero
at an episode start), ``reward [T, B]``, ``is_first [T, B]``, ``is_terminal [T, B]``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Collection, Mapping

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from world_models.distributions import TwoHotSymlog, balanced_kl_losses, symlog, symlog_bins
from world_models.event_encoder import EventStream, count_frame
from world_models.nets import MLP, MultiDecoder, MultiEncoder, image_input
from world_models.optimizer import make_optimizer
from world_models.rssm import RSSM, RSSMState, resolve_posterior, state_features

LOSS_NAMES = ("reconstruction", "reward", "continue", "dynamics", "representation")
VECTOR_LOSSES = ("variance", "mse")
# Floor of the per-entry variance in ``vector_loss: variance``: an input that is constant in a batch
# weighs at most 1/floor as much, not infinitely (symlog values; 1e-3 is a spread of about 0.03).
VARIANCE_FLOOR = 1e-3


class WorldModelNet(nn.Module):
    """The networks of one world-model level (see ``WorldModel`` for the attributes)."""

    mlp_shapes: dict
    cnn_shapes: dict
    action_dim: int
    backbone: str
    backbone_kwargs: dict
    posterior: str
    deter: int
    stoch: int
    classes: int
    units: int
    layers: int
    cnn_depth: int
    unimix: float
    bins: int
    dynamics_input: str
    event_streams: dict
    event_encoder: dict
    decoded_mlp_shapes: dict  # mlp_shapes less the keys only encoded
    decoded_cnn_shapes: dict  # cnn_shapes less the keys only encoded, plus event streams' count frames
    decoder_only: tuple  # keys of mlp_shapes and cnn_shapes the encoder does not read

    def setup(self):
        self.encoder = MultiEncoder(
            tuple(k for k in self.mlp_shapes if k not in self.decoder_only),
            tuple(k for k in self.cnn_shapes if k not in self.decoder_only),
            self.units, self.layers, self.cnn_depth, self.event_streams, self.event_encoder,
        )
        self.rssm = RSSM(
            self.backbone, self.backbone_kwargs, self.deter, self.stoch, self.classes,
            self.units, self.unimix, resolve_posterior(self.posterior, self.backbone), self.dynamics_input,
        )
        self.decoder = MultiDecoder(
            dict(self.decoded_mlp_shapes), dict(self.decoded_cnn_shapes), self.units, self.layers, self.cnn_depth
        )
        self.reward_net = MLP(self.units, self.layers)
        self.reward_out = nn.Dense(self.bins, kernel_init=nn.initializers.zeros)
        self.continue_net = MLP(self.units, self.layers)
        self.continue_out = nn.Dense(1)

    def initial(self, batch_size: int) -> RSSMState:
        return self.rssm.initial(batch_size)

    def embed(self, obs: Mapping[str, jax.Array]) -> jax.Array:
        return self.encoder(obs)

    def observe(self, state, prev_actions, embeds, is_first, key):
        return self.rssm.observe(state, prev_actions, embeds, is_first, key)

    def obs_step(self, state, prev_action, embed, is_first, key):
        return self.rssm.obs_step(state, prev_action, embed, is_first, key)

    def img_step(self, state, action, key):
        return self.rssm.img_step(state, action, key)

    def decode(self, features: jax.Array) -> dict[str, jax.Array]:
        return self.decoder(features)

    def prior_logits(self, deter: jax.Array) -> jax.Array:
        return self.rssm.prior_logits(deter)

    def reward_logits(self, features: jax.Array) -> jax.Array:
        return self.reward_out(self.reward_net(features))

    def continue_logit(self, features: jax.Array) -> jax.Array:
        return self.continue_out(self.continue_net(features))[..., 0]

    def __call__(self, obs, prev_actions, is_first, key):
        """Every network once, for ``init``."""
        embeds = self.embed(obs)
        _, states, _, _ = self.observe(self.initial(embeds.shape[1]), prev_actions, embeds, is_first, key)
        features = state_features(states)
        self.img_step(jax.tree.map(lambda leaf: leaf[0], states), prev_actions[0], key)
        return self.decode(features), self.reward_logits(features), self.continue_logit(features)


class WorldModel:
    """Loss, optimiser and imagination of one world-model level.

    Args:
      mlp_shapes: vector observation keys and their per-step shapes ``(D,)``.
      cnn_shapes: image observation keys and their shapes ``(H, W, C)``: uint8 images, or float
        ones (event voxel grids) that the encoder and the loss see through symlog.
      action_dim: size of the action vector (one-hot for discrete actions).
      backbone: backbone name; ``backbone_kwargs`` its constructor arguments.
      posterior: ``auto``, ``state`` or ``embedding`` (see ``world_models.rssm``).
      dynamics_input: ``joint`` or ``split``, how the latent and the action enter the backbone
        (``world_models.rssm.RSSM``).
      deter, stoch, classes, units, layers, cnn_depth, unimix, bins: network sizes.
      free_bits: KL free nats per step; loss_scales: weight of each loss in ``LOSS_NAMES``.
      activity_weight: with an EGRU backbone, the weight of its activity regulariser (the EGRU
        paper's mean event rate, differentiable through the pseudo-derivative) in the loss; the
        model logs it as ``world_model/loss/activity`` beside ``world_model/sparsity`` whatever
        the weight. Other backbones sow nothing, and the weight does nothing there.
      vector_loss: ``variance``: each vector entry's squared error (symlog space) is divided by that
        entry's variance in the batch, so a narrow input (a pole angle of +-0.2, a position in a unit
        square) weighs as much as a wide one and the reconstruction is not drowned by the KL's
        free-bits floor; ``mse``: the plain summed squared error (DreamerV3's).
      lr, eps, grad_clip: Adam optimiser with global-norm clipping (``world_models.optimizer``).
      ssm_lr: Adam's rate for S5's ``Lambda``, ``B`` and ``log Delta`` (of an S5 or EventS5
        backbone or event encoder; ``backbones.ssm_param_labels``); 0: ``lr``, like the rest.
      event_streams: event-stream observation keys (``world_models.event_encoder.EventStream``,
        which names each one's count key); each is embedded by an ``EventEncoder`` and
        reconstructed as its per-polarity count frame ``[H, W, 2]`` (symlog), a cheap summary.
      event_encoder: the ``EventEncoder`` arguments besides the stream (backbone, features, ...).
      decoder_only: keys of ``mlp_shapes`` / ``cnn_shapes`` that are reconstruction targets only: the
        encoder does not read them (an event camera's integrated image beside the raw events).
      encoder_only: keys (of those, or event streams: then no count frame) read and not reconstructed.
    """

    def __init__(
        self,
        mlp_shapes: Mapping[str, tuple[int, ...]],
        cnn_shapes: Mapping[str, tuple[int, int, int]],
        action_dim: int,
        backbone: str = "gru",
        backbone_kwargs: Mapping[str, Any] | None = None,
        posterior: str = "auto",
        dynamics_input: str = "joint",
        deter: int = 512,
        stoch: int = 32,
        classes: int = 32,
        units: int = 512,
        layers: int = 2,
        cnn_depth: int = 32,
        unimix: float = 0.01,
        bins: int = 255,
        free_bits: float = 1.0,
        vector_loss: str = "variance",
        loss_scales: Mapping[str, float] | None = None,
        activity_weight: float = 0.0,
        lr: float = 1e-4,
        eps: float = 1e-8,
        grad_clip: float = 1000.0,
        ssm_lr: float = 0.0,
        event_streams: Mapping[str, EventStream] | None = None,
        event_encoder: Mapping[str, Any] | None = None,
        decoder_only: Collection[str] = (),
        encoder_only: Collection[str] = (),
    ):
        scales = dict(zip(LOSS_NAMES, (1.0, 1.0, 1.0, 0.5, 0.1)))
        unknown = set(loss_scales or {}) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"unknown world-model loss scales {sorted(unknown)}; valid: {LOSS_NAMES}")
        scales.update(loss_scales or {})
        self.loss_scales = scales
        self.free_bits = free_bits
        self.activity_weight = activity_weight
        if vector_loss not in VECTOR_LOSSES:
            raise ValueError(f"vector_loss must be one of {VECTOR_LOSSES}, got {vector_loss!r}")
        self.vector_loss = vector_loss
        self.mlp_shapes = {k: tuple(v) for k, v in mlp_shapes.items()}
        self.cnn_shapes = {k: tuple(v) for k, v in cnn_shapes.items()}
        self.event_streams = {k: EventStream(*v) for k, v in (event_streams or {}).items()}
        self.decoder_only, self.encoder_only = tuple(decoder_only), tuple(encoder_only)
        check_key_roles(self.mlp_shapes, self.cnn_shapes, self.event_streams, self.decoder_only, self.encoder_only)
        self.decoded_mlp_shapes = {k: s for k, s in self.mlp_shapes.items() if k not in self.encoder_only}
        decoded_cnn_shapes = {k: s for k, s in self.cnn_shapes.items() if k not in self.encoder_only}
        decoded_cnn_shapes.update({k: (s.height, s.width, 2) for k, s in self.event_streams.items()
                                   if k not in self.encoder_only})
        if len({shape[:2] for shape in decoded_cnn_shapes.values()}) > 1:
            raise ValueError(f"images and event count frames must share height and width, got {decoded_cnn_shapes}")
        self.action_dim = action_dim
        self.net = WorldModelNet(
            self.mlp_shapes, self.cnn_shapes, action_dim, backbone, dict(backbone_kwargs or {}),
            posterior, deter, stoch, classes, units, layers, cnn_depth, unimix, bins, dynamics_input,
            self.event_streams, dict(event_encoder or {}), self.decoded_mlp_shapes, decoded_cnn_shapes,
            self.decoder_only,
        )
        self.bins = symlog_bins(bins)
        self.feature_dim = deter + stoch * classes
        self.optimizer = make_optimizer(lr, grad_clip, eps, ssm_lr)

    def dummy_batch(self, batch_size: int = 1, length: int = 2) -> dict[str, jax.Array]:
        """A zero batch of the right structure, ``[T, B, ...]``."""
        lead = (length, batch_size)
        batch = {k: jnp.zeros(lead + s, jnp.float32) for k, s in self.mlp_shapes.items()}
        batch.update({k: jnp.zeros(lead + s, jnp.uint8) for k, s in self.cnn_shapes.items()})
        for key, stream in self.event_streams.items():
            batch[key] = jnp.zeros(lead + (stream.max_events, 4), jnp.float32)
            batch[stream.count_key] = jnp.zeros(lead, jnp.int32)
        batch["prev_action"] = jnp.zeros(lead + (self.action_dim,))
        batch["is_first"] = jnp.ones(lead, bool)
        return batch

    @functools.partial(jax.jit, static_argnums=0)  # op by op, init compiles hundreds of tiny programs
    def init(self, key: jax.Array) -> Any:
        batch = self.dummy_batch()
        obs = {k: batch[k] for k in self.obs_keys}
        return self.net.init(key, obs, batch["prev_action"], batch["is_first"], key)["params"]

    @property
    def obs_keys(self) -> tuple[str, ...]:
        events = tuple(k for key, s in self.event_streams.items() for k in (key, s.count_key))
        return tuple(self.mlp_shapes) + tuple(self.cnn_shapes) + events

    def initial(self, params: Any, batch_size: int) -> RSSMState:
        return self.net.apply({"params": params}, batch_size, method=WorldModelNet.initial)

    def embed(self, params, batch: Mapping[str, jax.Array]) -> jax.Array:
        """The encoder's embedding ``[..., E]`` of each step's observation keys in ``batch``, alone."""
        obs = {k: batch[k] for k in self.obs_keys}
        return self.net.apply({"params": params}, obs, method=WorldModelNet.embed)

    def observe(self, params, batch: Mapping[str, jax.Array], key: jax.Array):
        """Posterior states of a batch from the initial state: ``(last, states, post, prior)``."""
        return self._observe(params, batch, key, mutable=False)

    def _observe(self, params, batch: Mapping[str, jax.Array], key: jax.Array, mutable):
        """``observe``; with ``mutable=["intermediates"]`` also what the RSSM's backbone sows:
        ``(observation, {"intermediates": ...})`` (the event encoder's sown values are not kept)."""
        embeds = self.embed(params, batch)
        start = self.initial(params, batch["is_first"].shape[1])
        return self.net.apply(
            {"params": params}, start, batch["prev_action"], embeds, batch["is_first"], key,
            method=WorldModelNet.observe, mutable=mutable,
        )

    def loss(self, params, batch: Mapping[str, jax.Array], key: jax.Array):
        """Total loss and ``(metrics, posterior states [T, B, ...])``.

        An optional ``mask [T, B]`` in the batch restricts the losses to the steps where it is 1 (the
        padded abstract sequences of the hierarchy).
        """
        chex.assert_rank(batch["is_first"], 2)
        (_, states, posterior, prior), variables = self._observe(params, batch, key, mutable=["intermediates"])
        sown = sown_means(variables.get("intermediates", {}))
        features = state_features(states)
        apply = lambda method, *args: self.net.apply({"params": params}, *args, method=method)
        predictions = apply(WorldModelNet.decode, features)
        reward = TwoHotSymlog(apply(WorldModelNet.reward_logits, features), self.bins)
        losses = {
            "reconstruction": self.reconstruction_loss(predictions, batch),
            "reward": -reward.log_prob(batch["reward"]),
            "continue": optax.sigmoid_binary_cross_entropy(
                apply(WorldModelNet.continue_logit, features), 1.0 - batch["is_terminal"].astype(jnp.float32)
            ),
        }
        losses["dynamics"], losses["representation"] = balanced_kl_losses(posterior, prior, self.free_bits)
        mean = _mean if "mask" not in batch else functools.partial(_masked_mean, mask=batch["mask"])
        total = sum(self.loss_scales[name] * mean(value) for name, value in losses.items())
        metrics = {f"world_model/loss/{name}": mean(value) for name, value in losses.items()}
        if "activity" in sown:  # EGRU: mean event rate over the whole batch (padded steps included)
            metrics["world_model/loss/activity"] = sown["activity"]
            metrics["world_model/sparsity"] = sown["sparsity"]
            if self.activity_weight:  # a Python branch: with 0 the loss is the very same program
                total = total + self.activity_weight * sown["activity"]
        metrics["world_model/loss"] = total
        weights = batch["mask"] if "mask" in batch else jnp.ones(batch["is_first"].shape)
        for key, r2 in self.explained_variance(predictions, batch, weights).items():
            metrics[f"world_model/r2/{key}"] = r2
        metrics.update(reward_head_metrics(reward.mean(), batch["reward"], weights))
        metrics["world_model/posterior_entropy"] = mean(_entropy(posterior))
        metrics["world_model/prior_entropy"] = mean(_entropy(prior))
        return total, (metrics, states)

    def reconstruction_targets(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Each observation key in the space the decoder predicts: symlog for vectors, [-0.5, 0.5]
        for uint8 images, symlog for float images (``nets.image_input``), and for an event stream
        the symlog of its count frame ``[..., H, W, 2]`` (its count key is input only)."""
        targets = {key: symlog(batch[key].astype(jnp.float32)) for key in self.decoded_mlp_shapes}
        targets.update({key: image_input(batch[key]) for key in self.cnn_shapes if key not in self.encoder_only})
        for key, stream in self.event_streams.items():
            if key not in self.encoder_only:
                targets[key] = symlog(count_frame(batch[key], batch[stream.count_key], stream))
        return targets

    def reconstruction_loss(self, predictions: Mapping[str, jax.Array], batch) -> jax.Array:
        """Summed squared error per step ``[T, B]``: symlog space for vectors (each entry divided by
        its batch variance with ``vector_loss: variance``), ``reconstruction_targets``' space for
        images and event count frames."""
        total = jnp.zeros(batch[self.obs_keys[0]].shape[:2])  # nothing to reconstruct: reward and continue alone
        for key, target in self.reconstruction_targets(batch).items():
            squared = (predictions[key] - target) ** 2
            if key in self.mlp_shapes and self.vector_loss == "variance":
                spread = jax.lax.stop_gradient(jnp.var(target, axis=(0, 1)))
                squared = squared / (spread + VARIANCE_FLOOR)
            total = total + jnp.sum(squared, axis=tuple(range(2, squared.ndim)))
        return total

    def explained_variance(self, predictions: Mapping[str, jax.Array], batch, weights: jax.Array):
        """The decoder's R^2 per observation key: ``1 - SSE / SST`` over the steps where
        ``weights [T, B]`` is 1, in the space the loss compares in, summed over the key's entries.

        1 means the latent state carries the input exactly, 0 no better than the batch mean; a key
        the model ignores shows up here at once, however small its share of the loss.
        """
        count = jnp.maximum(jnp.sum(weights), 1.0)
        r2 = {}
        for key, target in self.reconstruction_targets(batch).items():
            w = weights.reshape(weights.shape + (1,) * (target.ndim - 2))
            mean = jnp.sum(target * w, (0, 1)) / count
            total = jnp.sum(w * (target - mean) ** 2)
            error = jnp.sum(w * (jax.lax.stop_gradient(predictions[key]) - target) ** 2)
            r2[key] = 1.0 - error / jnp.maximum(total, 1e-8)
        return r2

    def reward(self, params, features: jax.Array) -> jax.Array:
        logits = self.net.apply({"params": params}, features, method=WorldModelNet.reward_logits)
        return TwoHotSymlog(logits, self.bins).mean()

    def continue_prob(self, params, features: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(
            self.net.apply({"params": params}, features, method=WorldModelNet.continue_logit)
        )

    def decode(self, params, features: jax.Array) -> dict[str, jax.Array]:
        return self.net.apply({"params": params}, features, method=WorldModelNet.decode)

    def complete_features(self, params, partial: jax.Array) -> jax.Array:
        """Latent features ``[..., F]`` from the deterministic state alone ``[..., D]`` (the most likely
        stochastic state under the prior beside it), or ``partial`` itself if it is already complete."""
        if partial.shape[-1] == self.feature_dim:
            return partial
        logits = self.net.apply({"params": params}, partial, method=WorldModelNet.prior_logits)
        stoch = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1])
        return jnp.concatenate([partial, stoch.reshape(partial.shape[:-1] + (-1,))], -1)

    def obs_step(self, params, state, prev_action, obs, is_first, key):
        """Filter one step while acting: ``obs`` keys ``[B, ...]``; returns the posterior state."""
        embed = self.embed(params, obs)
        state, _ = self.net.apply(
            {"params": params}, state, prev_action, embed, is_first, key, method=WorldModelNet.obs_step
        )
        return state

    def img_step(self, params, state: RSSMState, action: jax.Array, key: jax.Array) -> RSSMState:
        """One imagined step from ``state`` under ``action [B, A]``."""
        next_state, _ = self.net.apply({"params": params}, state, action, key, method=WorldModelNet.img_step)
        return next_state

    def open_loop(self, params, batch: Mapping[str, jax.Array], states: RSSMState, horizon: int,
                  key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """How well the model predicts ``1 .. horizon`` steps ahead (``open_loop_predictions``): the
        reconstruction loss at each step ``[horizon]``, and each key's R^2 at the last step
        (``explained_variance``), which says which inputs imagination still represents as far ahead
        as the actor looks."""
        decoded, truth, valid = self.open_loop_predictions(params, batch, states, horizon, key)
        error = self.reconstruction_loss(decoded, truth)  # [horizon, B]
        per_step = jnp.sum(error * valid, 1) / jnp.maximum(jnp.sum(valid, 1), 1.0)
        last = lambda tree: jax.tree.map(lambda leaf: leaf[-1:], tree)
        return per_step, self.explained_variance(last(decoded), last(truth), valid[-1:])

    def open_loop_states(self, params, start: RSSMState, actions: jax.Array, key: jax.Array) -> RSSMState:
        """The states imagined from ``start`` (leaves ``[B, ...]``) under ``actions [H, B, A]``, one
        after each action (leaves ``[H, B, ...]``); step h draws its prior with ``split(key, H)[h]``."""

        def body(state, inputs):
            action, step_key = inputs
            state = self.img_step(params, state, action, step_key)
            return state, state

        _, predicted = jax.lax.scan(body, start, (actions, jax.random.split(key, actions.shape[0])))
        return predicted

    def open_loop_predictions(self, params, batch: Mapping[str, jax.Array], states: RSSMState, horizon: int,
                              key: jax.Array) -> tuple[dict[str, jax.Array], dict[str, jax.Array], jax.Array]:
        """From the posterior state at the first step of each sequence, imagine ``1 .. horizon`` steps
        with the actions really taken and decode. Returns what was decoded (``reconstruction_targets``'
        space) and what was observed (as in the batch), ``[H, B, ...]`` per key, and ``valid [H, B]``: 1 while the episode goes
        on (no ``is_first`` in ``1 .. h``) inside ``mask``. ``horizon`` is cut to the batch's length."""
        horizon = min(horizon, batch["is_first"].shape[0] - 1)
        start = jax.tree.map(lambda leaf: leaf[0], states)
        predicted = self.open_loop_states(params, start, batch["prev_action"][1 : horizon + 1], key)
        decoded = self.decode(params, state_features(predicted))
        truth = {k: batch[k][1 : horizon + 1] for k in self.obs_keys}
        valid = jnp.cumprod(~batch["is_first"][1 : horizon + 1].astype(bool), 0).astype(jnp.float32)
        if "mask" in batch:
            valid = valid * batch["mask"][1 : horizon + 1]
        return decoded, truth, valid

    def imagine(
        self,
        params,
        start: RSSMState,
        policy: Callable[[jax.Array, jax.Array], jax.Array],
        horizon: int,
        key: jax.Array,
    ) -> tuple[RSSMState, jax.Array]:
        """Roll out ``policy(features [N, F], key) -> action [N, A]`` for ``horizon`` steps.

        Returns states ``s_0 .. s_H`` (``s_0 = start``, leaves ``[H + 1, N, ...]``) and actions
        ``a_0 .. a_{H-1}`` ``[H, N, A]`` where ``a_i`` was taken in ``s_i``.
        """

        def body(state, step_key):
            policy_key, dynamics_key = jax.random.split(step_key)
            action = policy(state_features(state), policy_key)
            next_state, _ = self.net.apply(
                {"params": params}, state, action, dynamics_key, method=WorldModelNet.img_step
            )
            return next_state, (next_state, action)

        _, (states, actions) = jax.lax.scan(body, start, jax.random.split(key, horizon))
        states = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), start, states)
        return states, actions


def check_key_roles(mlp_shapes, cnn_shapes, event_streams, decoder_only, encoder_only) -> None:
    """``ValueError`` unless ``decoder_only`` names observation keys (not event streams),
    ``encoder_only`` names observation keys or event streams, no key is both, and something is encoded."""
    keys = set(mlp_shapes) | set(cnn_shapes)
    if set(decoder_only) - keys:
        raise ValueError(f"decoder_only keys {sorted(set(decoder_only) - keys)} are not vector or image keys {sorted(keys)}")
    if set(encoder_only) - keys - set(event_streams):
        raise ValueError(f"encoder_only keys {sorted(set(encoder_only) - keys - set(event_streams))} are not observation keys")
    if set(decoder_only) & set(encoder_only):
        raise ValueError(f"keys {sorted(set(decoder_only) & set(encoder_only))} are both decoder_only and encoder_only")
    if not (keys - set(decoder_only)) and not event_streams:
        raise ValueError("every observation key is decoder_only: the encoder has nothing to read")


def sown_means(intermediates: Mapping[str, Any]) -> dict[str, jax.Array]:
    """The mean of each value sown into ``intermediates``, by its name: ``{"rssm": {"core":
    {"activity": (a,)}}}`` -> ``{"activity": mean(a)}``. A name sown more than once (once per step
    under ``nn.scan``, stacked ``[T]``; once per call) gets the mean of its values' means."""
    values: dict[str, list[jax.Array]] = {}
    for path, value in jax.tree_util.tree_leaves_with_path(intermediates):
        name = path[-2].key  # the path ends in (name, index into the tuple sow appends to)
        values.setdefault(name, []).append(jnp.mean(value))
    return {name: jnp.mean(jnp.stack(means)) for name, means in values.items()}


def reward_head_metrics(predicted: jax.Array, reward: jax.Array, weights: jax.Array) -> dict[str, jax.Array]:
    """Does the reward head fire where reward was paid? ``world_model/reward_on_rewarded``: its mean
    prediction ``[T, B]`` over the steps (where ``weights`` is 1) with a non-zero ``reward``, beside
    ``world_model/reward_paid``, the reward paid there; ``world_model/reward_on_unrewarded``: its mean
    absolute prediction elsewhere. Means over some steps only, they carry their step counts
    (``agents.metrics_window``): with a sparse reward most batches hold no rewarded step."""
    rewarded = weights * (reward != 0)
    unrewarded = weights * (reward == 0)
    count, others = jnp.sum(rewarded), jnp.sum(unrewarded)
    share = lambda values, where, total: jnp.sum(values * where) / jnp.maximum(total, 1.0)
    return {
        "world_model/reward_on_rewarded": share(predicted, rewarded, count),
        "world_model/reward_on_rewarded#weight": count,
        "world_model/reward_paid": share(reward, rewarded, count),
        "world_model/reward_paid#weight": count,
        "world_model/reward_on_unrewarded": share(jnp.abs(predicted), unrewarded, others),
        "world_model/reward_on_unrewarded#weight": others,
    }


def _mean(values: jax.Array) -> jax.Array:
    return values.mean()


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _entropy(logits: jax.Array) -> jax.Array:
    return -jnp.sum(jnp.exp(logits) * logits, (-2, -1))


def count_parameters(params: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
