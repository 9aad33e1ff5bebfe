"""The flat (single-level) Dreamer update, written out plainly: the reference that
``HierarchicalAgent`` with ``hierarchy.levels: 1`` is checked against (``test_hierarchical_agent``),
as a fast kernel keeps a plain reference beside it.

``train_step`` is a world-model update, then an actor-critic update on trajectories imagined from
every posterior state of the batch. It shares the parts (``WorldModel``, ``ActorCritic``) with the
package, not the update code, so a change to how the agent wires them shows up as a difference.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import struct

from agents.actor_critic import ActorCritic, ActorCriticState, Trajectory
from agents.spaces import ActionLayout, ObsLayout, action_layout, observation_layout
from world_models.rssm import state_features
from world_models.world_model import WorldModel


@struct.dataclass
class TrainState:
    world_model: Any
    world_model_opt: Any
    actor_critic: ActorCriticState
    key: jax.Array
    updates: jax.Array  # number of train steps taken, 0-d int32


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
        self.world_model = WorldModel(
            obs_layout.mlp_shapes, obs_layout.cnn_shapes, action_layout.dim,
            backbone_kwargs=backbones[world_model["backbone"]], **world_model,
        )
        self.actor_critic = ActorCritic(action_layout.dim, action_layout.discrete, **agent)
        self.train_step = jax.jit(self._train_step, donate_argnums=0)

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
                rewards=self.world_model.reward(world_model, features[1:])[..., None],
                continues=self.world_model.continue_prob(world_model, features[1:]),
                start_continue=start_continue,
            )

        actor_critic, actor_critic_metrics, _ = self.actor_critic.update(
            state.actor_critic, rollout, actor_critic_key
        )
        metrics.update(actor_critic_metrics)
        new_state = TrainState(world_model, world_model_opt, actor_critic, key, state.updates + 1)
        return new_state, metrics
