"""Return estimates and their normalisation, written for time-major ``[H, N]`` arrays."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


def lambda_returns(
    rewards: jax.Array, discounts: jax.Array, values: jax.Array, lambda_: float | jax.Array
) -> jax.Array:
    """TD(λ) returns of an imagined trajectory.

    ``R_i = r_i + d_i * ((1 - λ_i) * V_{i+1} + λ_i * R_{i+1})`` with ``R_H = V_H``.

    Args:
      rewards: ``[H, N]``, ``r_i`` the reward of the step from state i to i+1.
      discounts: ``[H, N]``, ``d_i = discount * continue(s_{i+1})``.
      values: ``[H + 1, N]``, values of states ``s_0 .. s_H``.
      lambda_: mixing between one-step bootstraps (0) and Monte-Carlo returns (1); one value, or
        ``λ_i`` per step ``[H, N]`` (0 where ``R_{i+1}`` must not be followed).

    Returns:
      ``[H, N]`` returns ``R_0 .. R_{H-1}``.
    """
    chex.assert_equal_shape([rewards, discounts])
    chex.assert_equal(values.shape[0], rewards.shape[0] + 1)
    per_step = not isinstance(lambda_, (int, float))  # a constant λ stays a constant (its 1 - λ in double)
    extra = (jnp.broadcast_to(jnp.asarray(lambda_, rewards.dtype), rewards.shape),) if per_step else ()

    def body(next_return, inputs):
        reward, discount, next_value, *lam = inputs
        lam = lam[0] if per_step else lambda_
        ret = reward + discount * ((1.0 - lam) * next_value + lam * next_return)
        return ret, ret

    _, returns = jax.lax.scan(body, values[-1], (rewards, discounts, values[1:], *extra), reverse=True)
    return returns


def replayed_lambda_returns(rewards: jax.Array, terminal: jax.Array, first: jax.Array, boot: jax.Array,
                            discount: float, lambda_: float) -> tuple[jax.Array, jax.Array]:
    """TD(λ) returns along replayed sequences ``[T, B]``, bootstrapped from ``boot`` (each state's
    imagined return), for training the critic on real rewards (DreamerV3's replayed value loss).

    ``rewards[t]``, ``terminal[t]``, ``first[t]``: the reward of the step into state t, whether t
    ends its episode by termination, whether t begins one. Returns ``(R, weights)``, ``[T - 1, B]``
    each: ``R_t`` follows real rewards while the episode goes on and stops following them (uses
    ``boot``) at the last step of an episode; ``weights`` is 0 for a state whose next record is
    another episode's first, which has no return here.
    """
    chex.assert_equal_shape([rewards, terminal, first, boot])
    first = first.astype(rewards.dtype)
    same_episode = 1.0 - first[1:]  # [T - 1]: the step t -> t+1 stays in t's episode
    discounts = discount * (1.0 - terminal[1:].astype(rewards.dtype)) * same_episode
    # follow R_{t+1} only if t+1 is not its episode's last record (the record after it is no first)
    lambdas = lambda_ * jnp.concatenate([1.0 - first[2:], jnp.ones_like(first[:1])])
    returns = lambda_returns(rewards[1:] * same_episode, discounts, boot, lambdas)
    return returns, same_episode


class ReturnScale(NamedTuple):
    """Running estimates of low and high return percentiles (DreamerV3's return normalisation), one
    pair per reward term: ``[K]`` (or ``[]`` for a single, unnamed return)."""

    low: jax.Array
    high: jax.Array

    @classmethod
    def initial(cls, terms: int | None = None) -> "ReturnScale":
        shape = () if terms is None else (terms,)
        return cls(jnp.zeros(shape), jnp.zeros(shape))


def update_return_scale(
    scale: ReturnScale, returns: jax.Array, decay: float, percentiles: tuple[float, float]
) -> tuple[ReturnScale, jax.Array]:
    """Move the percentile estimates towards this batch; returns the new state and the divisor
    ``max(1, high - low)`` (returns are only ever scaled down, so small rewards stay visible).

    ``returns`` is ``[H, N]`` for a scale of shape ``[]``, or ``[H, N, K]`` for one of shape ``[K]``
    (percentiles per term over the other axes)."""
    axes = tuple(range(returns.ndim - scale.low.ndim))
    low = jnp.percentile(returns, percentiles[0], axis=axes)
    high = jnp.percentile(returns, percentiles[1], axis=axes)
    scale = ReturnScale(
        decay * scale.low + (1 - decay) * low, decay * scale.high + (1 - decay) * high
    )
    return scale, return_divisor(scale)


def return_divisor(scale: ReturnScale) -> jax.Array:
    """What returns are divided by: ``max(1, high - low)`` (only ever scaled down, so that small
    rewards stay visible)."""
    return jnp.maximum(1.0, scale.high - scale.low)


def discounted_sum(rewards: jax.Array, continues: jax.Array, discount: float) -> jax.Array:
    """``sum_i discount^i prod_{j<i} continues_j * rewards_i`` over the time axis of ``[H, N]``: ``[N]``
    (``continues[i]``: the episode goes on after the step that earned ``rewards[i]``; no bootstrap)."""
    weights = jnp.cumprod(jnp.concatenate([jnp.ones_like(continues[:1]), discount * continues[:-1]]), 0)
    return jnp.sum(weights * rewards, 0)
