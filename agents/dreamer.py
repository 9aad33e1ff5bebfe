"""The flat (single-level) agent: one world model and one actor-critic trained in its imagination.

Two jitted functions carry it: ``train_step`` (a world-model update, then an actor-critic update on
trajectories imagined from every posterior state of the batch) and ``policy_step`` (filter the new
observation, then act).

The trainer runs ``agents.hierarchical_agent.HierarchicalAgent``, which with ``hierarchy.levels: 1``
performs exactly these updates (tested). This module is the short statement of the flat algorithm,
for readers and for code that wants the flat agent alone, and the reference of that test.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from agents.actor_critic import ActorCritic, ActorCriticState, Trajectory
from agents.spaces import ActionLayout, ObsLayout, action_layout, observation_layout
from world_models.rssm import RSSMState, state_features
from world_models.world_model import WorldModel, count_parameters


@struct.dataclass
class TrainState:
    world_model: Any
    world_model_opt: Any
    actor_critic: ActorCriticState
    key: jax.Array
    updates: jax.Array  # number of train steps taken, 0-d int32


class PolicyState(NamedTuple):
    """What acting carries between steps, per environment."""

    latent: RSSMState
    prev_action: jax.Array  # [N, A]


class DreamerAgent:
    """Args:
    obs_layout, action_layout: what the environment gives and takes (``agents.spaces``).
    world_model: keyword arguments of ``WorldModel`` (the config's ``world_model`` section).
    backbones: keyword arguments of each backbone class (the ``backbones`` section).
    agent: keyword arguments of ``ActorCritic`` (the ``agent`` section).
    """

    def __init__(
        self,
        obs_layout: ObsLayout,
        action_layout: ActionLayout,
        world_model: Mapping[str, Any],
        backbones: Mapping[str, Mapping[str, Any]],
        agent: Mapping[str, Any],
    ):
        backbone = world_model.get("backbone", "gru")
        self.world_model = WorldModel(
            obs_layout.mlp_shapes, obs_layout.cnn_shapes, action_layout.dim,
            backbone_kwargs=backbones.get(backbone, {}), **world_model,
        )
        self.actor_critic = ActorCritic(action_layout.dim, action_layout.discrete, **agent)
        self.obs_layout, self.action_layout = obs_layout, action_layout
        self.action_dim = action_layout.dim
        self.train_step = jax.jit(self._train_step, donate_argnums=0)
        self.policy_step = jax.jit(self._policy_step, static_argnames="greedy")
        self.reconstruction_images = jax.jit(self._reconstruction_images, static_argnames="frames")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], observation_space, action_space) -> "DreamerAgent":
        """The agent a resolved config describes, for an environment's (single) spaces."""
        obs = observation_layout(observation_space, config["encoder"]["mlp_keys"], config["encoder"]["cnn_keys"])
        return cls(obs, action_layout(action_space), config["world_model"], config["backbones"], config["agent"])

    def init(self, key: jax.Array) -> TrainState:
        world_model_key, actor_critic_key, key = jax.random.split(key, 3)
        params = self.world_model.init(world_model_key)
        return TrainState(
            world_model=params,
            world_model_opt=self.world_model.optimizer.init(params),
            actor_critic=self.actor_critic.init(actor_critic_key, self.world_model.feature_dim),
            key=key,
            updates=jnp.zeros((), jnp.int32),
        )

    def parameter_counts(self, state: TrainState) -> dict[str, int]:
        return {
            "world_model": count_parameters(state.world_model),
            "actor": count_parameters(state.actor_critic.actor),
            "critic": count_parameters(state.actor_critic.critic),
        }

    def _train_step(self, state: TrainState, batch: Mapping[str, jax.Array]):
        key, world_model_key, actor_critic_key = jax.random.split(state.key, 3)
        (_, (metrics, posterior)), grads = jax.value_and_grad(self.world_model.loss, has_aux=True)(
            state.world_model, batch, world_model_key
        )
        updates, world_model_opt = self.world_model.optimizer.update(
            grads, state.world_model_opt, state.world_model
        )
        world_model = optax.apply_updates(state.world_model, updates)
        metrics["world_model/grad_norm"] = optax.tree.norm(grads)

        flatten = lambda leaf: jax.lax.stop_gradient(leaf.reshape((-1,) + leaf.shape[2:]))
        starts = jax.tree.map(flatten, posterior)
        start_continue = 1.0 - batch["is_terminal"].reshape(-1).astype(jnp.float32)

        def rollout(policy, rollout_key) -> Trajectory:
            states, actions = self.world_model.imagine(
                world_model, starts, policy, self.actor_critic.horizon, rollout_key
            )
            features = state_features(states)
            return Trajectory(
                features=features,
                actions=actions,
                rewards=self.world_model.reward(world_model, features[1:]),
                continues=self.world_model.continue_prob(world_model, features[1:]),
                start_continue=start_continue,
            )

        actor_critic, actor_critic_metrics, _ = self.actor_critic.update(
            state.actor_critic, rollout, actor_critic_key
        )
        metrics.update(actor_critic_metrics)
        new_state = TrainState(world_model, world_model_opt, actor_critic, key, state.updates + 1)
        return new_state, metrics

    def _reconstruction_images(
        self, state: TrainState, batch: Mapping[str, jax.Array], frames: int = 8
    ) -> dict[str, jax.Array]:
        return reconstruction_images(self.world_model, state.world_model, tuple(self.obs_layout.cnn_shapes), batch, frames)

    def initial_policy_state(self, state: TrainState, batch_size: int) -> PolicyState:
        return PolicyState(
            self.world_model.initial(state.world_model, batch_size),
            jnp.zeros((batch_size, self.action_dim)),
        )

    def _policy_step(
        self,
        state: TrainState,
        policy_state: PolicyState,
        obs: Mapping[str, jax.Array],
        is_first: jax.Array,
        key: jax.Array,
        greedy: bool = False,
    ) -> tuple[jax.Array, PolicyState]:
        """Observe ``obs`` (keys ``[N, ...]``) and pick actions ``[N, A]``."""
        filter_key, action_key = jax.random.split(key)
        latent = self.world_model.obs_step(
            state.world_model, policy_state.latent, policy_state.prev_action, obs, is_first, filter_key
        )
        action = self.actor_critic.act(
            state.actor_critic.actor, state_features(latent), action_key, greedy
        )
        return action, PolicyState(latent, action)


def reconstruction_images(
    world_model: WorldModel, params: Any, image_keys: tuple[str, ...], batch: Mapping[str, jax.Array], frames: int = 8
) -> dict[str, jax.Array]:
    """For each image key: the first ``frames`` steps of the first sequence, observation (top)
    above its reconstruction from the posterior (bottom), as one uint8 ``[2H, frames*W, C]``."""
    batch = jax.tree.map(lambda leaf: leaf[:frames, :1], dict(batch))
    _, states, _, _ = world_model.observe(params, batch, jax.random.PRNGKey(0))
    predictions = world_model.decode(params, state_features(states))
    images = {}
    for key in image_keys:
        truth = batch[key][:, 0].astype(jnp.float32)
        recon = jnp.clip((predictions[key][:, 0] + 0.5) * 255.0, 0.0, 255.0)
        rows = [jnp.concatenate(list(row), axis=1) for row in (truth, recon)]  # [H, frames*W, C]
        images[key] = jnp.concatenate(rows, axis=0).astype(jnp.uint8)
    return images
