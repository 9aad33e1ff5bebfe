"""The world-model stack: how the sequences of level l are built from those of level l-1.

Level 0 models the environment step by step. Level l > 0 steps once per decision of level l: while
acting, level l picks a new abstract action ("ticks") every ``K_1 * ... * K_l`` environment steps,
counted from the start of each episode, and holds it in between. Training replays what acting did:

* an abstract step of level l sits at every step of level l-1 where level l ticked, and at the last
  step of every episode (so that an episode's final, possibly shorter, abstract step ends on its
  terminal state and two episodes are never stitched into one abstract step);
* its observation is level l-1's latent features there (the caller stops their gradient);
* its reward is the discounted sum of the rewards since the previous abstract step (discounted per
  environment step, so a level's reward is in the same units at every level);
* it is terminal when the episode ended there, so its continue flag is the product of the continue
  flags it spans (only the last can be zero);
* it is an episode start (``is_first``) where level l-1's step was one, and at the first abstract step
  of every sampled chunk (the model starts the chunk from its initial state).

Chunks are sampled from replay at arbitrary positions, so the steps of level l-1 before its first
tick in a chunk belong to no abstract step; they are dropped. Abstract sequences have a fixed length
``M`` (a multiple of ``T / K`` leaves room for the extra steps that episode ends add); the steps that
exist are packed at the front and ``mask`` marks them. Everything is time-major ``[T, B, ...]``.
"""

from __future__ import annotations

import math
from typing import Mapping

import chex
import jax
import jax.numpy as jnp

# Fields every level's sequence carries besides its observation and actions.
BOOKKEEPING = ("reward", "is_first", "is_terminal", "mask", "duration", "env_index")

FEATURES = "features"  # the observation key of levels above 0: the latent features of the level below


def abstract_length(lower_length: int, k: int, slack: float = 2.0) -> int:
    """Length ``M`` of level l's sequences built from ``lower_length`` steps of level l-1: room for
    ``slack`` times the regular ``lower_length / k`` steps (episode ends add steps), at most
    ``lower_length``."""
    return max(1, min(lower_length, math.ceil(slack * lower_length / k)))


def level_zero_bookkeeping(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The bookkeeping fields of level 0 for an environment batch (every step is real)."""
    is_first = batch["is_first"]
    steps, batch_size = is_first.shape
    return {
        "reward": batch["reward"].astype(jnp.float32),
        "is_first": is_first.astype(bool),
        "is_terminal": batch["is_terminal"].astype(bool),
        "mask": jnp.ones((steps, batch_size), jnp.float32),
        "duration": jnp.where(is_first, 0.0, 1.0),
        "env_index": jnp.broadcast_to(jnp.arange(steps)[:, None], (steps, batch_size)),
    }


def stride(
    lower: Mapping[str, jax.Array],
    features: jax.Array,
    tick: jax.Array,
    length: int,
    discount: float,
) -> dict[str, jax.Array]:
    """Level l's sequence from level l-1's.

    Args:
      lower: level l-1's bookkeeping fields (``BOOKKEEPING``), each ``[T, B]``.
      features: level l-1's latent features ``[T, B, F]``: what level l observes.
      tick: ``[T, B]`` whether level l ticked (picked an abstract action) at that step of level l-1.
      length: ``M``, the length of the returned sequences (see ``abstract_length``).
      discount: per-environment-step discount of the aggregated reward.

    Returns ``BOOKKEEPING`` fields ``[M, B]`` for level l plus ``features [M, B, F]`` (its
    observation), ``tick [M, B]`` (a real decision point, not only an episode end) and
    ``lower_index [M, B]`` (the position of each abstract step in level l-1's sequence).
    """
    chex.assert_rank(features, 3)
    chex.assert_equal_shape([tick, lower["is_first"], lower["mask"]])
    columns = jax.vmap(_stride_column, in_axes=(1, 1, 1, None, None), out_axes=1)
    return columns(dict(lower), features, tick, length, discount)


def _stride_column(lower, features, tick, length: int, discount: float) -> dict[str, jax.Array]:
    """``stride`` for one sequence (leaves ``[T, ...]``)."""
    steps = tick.shape[0]
    valid = lower["mask"] > 0
    next_first = jnp.concatenate([lower["is_first"][1:], jnp.zeros((1,), bool)])
    episode_end = (lower["is_terminal"] | next_first) & valid
    selected = valid & (tick | episode_end)
    count = selected.sum()
    rank = jnp.cumsum(selected) - 1
    # Position of abstract step j in the lower sequence (steps past ``count`` repeat the last one,
    # so that their gathered values stay ordinary; ``mask`` excludes them from every loss).
    index = jnp.zeros((length,), jnp.int32).at[jnp.where(selected, rank, length)].set(
        jnp.arange(steps, dtype=jnp.int32), mode="drop"
    )
    exists = jnp.arange(length) < count
    index = jnp.where(exists, index, index[jnp.maximum(jnp.minimum(count, length) - 1, 0)])

    # Every lower step belongs to the abstract step that closes its window: the first selected
    # step at or after it. Steps after the last selected one (or beyond M) belong to none.
    window = jnp.cumsum(selected) - selected  # selected steps strictly before t
    window = jnp.where(valid & (window < jnp.minimum(count, length)), window, length)
    elapsed = jnp.cumsum(lower["duration"])  # environment steps up to and including t
    window_start = jnp.where(window > 0, elapsed[index[jnp.maximum(window - 1, 0)]], 0.0)
    offset = elapsed - lower["duration"] - window_start  # environment steps from window start to t
    weighted = lower["reward"] * discount**offset
    reward = jax.ops.segment_sum(weighted, window, num_segments=length)

    is_first = (lower["is_first"][index] | (jnp.arange(length) == 0)) & exists
    previous = jnp.concatenate([jnp.zeros((1,), elapsed.dtype), elapsed[index[:-1]]])
    duration = jnp.where(is_first | ~exists, 0.0, elapsed[index] - previous)
    return {
        "features": features[index],
        "reward": jnp.where(is_first | ~exists, 0.0, reward),
        "is_first": is_first,
        "is_terminal": lower["is_terminal"][index] & exists,
        "mask": exists.astype(jnp.float32),
        "duration": duration,
        "env_index": lower["env_index"][index],
        "tick": tick[index] & exists,
        "lower_index": index,
    }


def abstract_batch(
    lower: Mapping[str, jax.Array],
    features: jax.Array,
    ticks: jax.Array,
    goal_actions: jax.Array,
    length: int,
    discount: float,
    policy_acted: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Level l's world-model batch and its bookkeeping, from level l-1's.

    Args:
      lower: level l-1's bookkeeping (``level_zero_bookkeeping`` or a previous ``stride``), ``[T, B]``.
      features: level l-1's latent features ``[T, B, F]`` (the caller stops their gradient).
      ticks: ``[T_env, B]`` whether level l ticked at each environment step (recorded while acting).
      goal_actions: ``[T_env, B, G]`` level l's abstract action in effect at each environment step.
      length, discount: as in ``stride``.
      policy_acted: ``[T_env, B]`` whether the agent's policy acted at each environment step (None:
        everywhere). An abstract step whose action was issued while it did not (random prefill: a
        random code that a random level below never followed) is masked out of the batch, so that the
        abstract model does not learn that its actions do not matter.

    Returns ``(batch, bookkeeping)``: the batch has ``FEATURES [M, B, F]``, ``prev_action``,
    ``reward``, ``is_first``, ``is_terminal`` and ``mask`` (``[M, B]``); the bookkeeping is ``stride``'s.
    """
    tick = gather_time(ticks, lower["env_index"]) & (lower["mask"] > 0)
    book = stride(lower, features, tick, length, discount)
    batch = {
        FEATURES: book["features"],
        "prev_action": previous_actions(goal_actions, book),
        **{name: book[name] for name in ("reward", "is_first", "is_terminal", "mask")},
    }
    if policy_acted is not None:
        followed = previous_actions(policy_acted[..., None].astype(jnp.float32), book)[..., 0] > 0
        batch["mask"] = book["mask"] * (book["is_first"] | followed)
    return batch, book


def previous_actions(actions: jax.Array, upper: Mapping[str, jax.Array]) -> jax.Array:
    """Level l's ``prev_action [M, B, G]``: the abstract action issued at the previous abstract step.

    Args:
      actions: ``[T_env, B, G]`` the abstract action of level l in effect at each environment step
        (recorded while acting: it changes only where level l ticked).
      upper: level l's sequence from ``stride`` (uses ``env_index`` and ``is_first``).
    """
    gathered = jnp.take_along_axis(actions, upper["env_index"][..., None], axis=0)
    shifted = jnp.concatenate([jnp.zeros_like(gathered[:1]), gathered[:-1]], 0)
    return jnp.where(upper["is_first"][..., None], 0.0, shifted)


def gather_time(values: jax.Array, index: jax.Array) -> jax.Array:
    """``values [T, B, ...]`` at time ``index [M, B]`` of each column: ``[M, B, ...]``."""
    index = index.reshape(index.shape + (1,) * (values.ndim - 2))
    return jnp.take_along_axis(values, index, axis=0)


def governing_step(upper: Mapping[str, jax.Array], lower_length: int) -> jax.Array:
    """For each step of level l-1 ``[T, B]``: the index of the abstract step of level l whose action
    was in effect there (the latest tick of level l at or before it), or -1 before the first tick."""

    def column(lower_index, tick):
        marks = jnp.zeros((lower_length,), jnp.int32).at[jnp.where(tick, lower_index, lower_length)].max(
            jnp.arange(1, lower_index.shape[0] + 1, dtype=jnp.int32), mode="drop"
        )
        return jax.lax.cummax(marks) - 1

    return jax.vmap(column, in_axes=(1, 1), out_axes=1)(upper["lower_index"], upper["tick"])
