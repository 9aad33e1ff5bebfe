"""Several seeds of one agent as one: states stacked on a leading seed axis, the agent's train and
policy steps vmapped over it.

Small models leave most of a CPU's (or GPU's) matrix units idle; running ``S`` independent seeds as
one batched computation fills them. Nothing is shared between seeds but the code: seed ``s`` of
every stacked array is exactly that seed's own state, and the vmapped step computes for each seed
what the plain step computes for it alone (to float rounding: a batched matmul may round its last
bits differently from ``S`` separate ones).

Dimension names: ``S`` seeds, ``N`` environments per seed, ``T`` and ``B`` a batch's time and batch axes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from agents.hierarchical_agent import HierarchicalAgent, HierarchicalTrainState
from agents.hierarchical_policy import HierarchicalPolicyState

Tree = TypeVar("Tree")


def stack(trees: Sequence[Tree]) -> Tree:
    """Pytrees of one structure as one pytree whose leaves gain a leading seed axis ``[S, ...]``
    (device arrays: train and policy states, keys)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def stack_host(dicts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dicts of numpy arrays (batches, observations) stacked on a leading seed axis, on the host, so
    that each reaches the device in one transfer."""
    return {key: np.stack([d[key] for d in dicts]) for key in dicts[0]}


def unstack(tree: Tree, count: int) -> list[Tree]:
    """The ``count`` per-seed pytrees of a stacked one (``stack``'s inverse)."""
    return [jax.tree.map(lambda leaf, index=index: leaf[index], tree) for index in range(count)]


def seed_slice(tree: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Seed ``index`` of a dict of stacked host arrays (metrics, replay extras)."""
    return {key: value[index] for key, value in tree.items()}


class SeedStack:
    """The agent's jitted steps over stacked states ``[S, ...]``.

    Each step also splits the seeds' acting keys inside the jitted call, as the trainer splits its
    own key before each call, so that seed ``s`` draws what its single-seed run draws.

    Args:
      agent: the agent every seed runs (one config; the seeds differ in their states only).
    """

    def __init__(self, agent: HierarchicalAgent):
        self.agent = agent
        self.train_step = jax.jit(jax.vmap(agent.train_step), donate_argnums=0)
        self.policy_step = jax.jit(jax.vmap(self._policy_step))
        self.prefill_step = jax.jit(jax.vmap(self._prefill_step))

    def _policy_step(self, state: HierarchicalTrainState, policy_state: HierarchicalPolicyState,
                     obs: Mapping[str, jax.Array], is_first: jax.Array, act_key: jax.Array):
        """One seed: ``(action [N, A], policy_state, act_key)`` (vmapped over seeds in ``policy_step``)."""
        act_key, key = jax.random.split(act_key)
        action, policy_state = self.agent.policy_step(state, policy_state, obs, is_first, key)
        return action, policy_state, act_key

    def _prefill_step(self, policy_state: HierarchicalPolicyState, is_first: jax.Array, act_key: jax.Array):
        """One seed during random prefill: ``(policy_state, act_key)``, the levels' clocks advanced."""
        act_key, key = jax.random.split(act_key)
        return self.agent.prefill_step(policy_state, is_first, key), act_key
