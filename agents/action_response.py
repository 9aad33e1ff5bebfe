"""How much does the state a world model imagines move with its first action, against the environment?

An actor trained in imagination can only value an action as much as its model says the action
changes what follows. ``imagined_action_effects`` imagines ``1 .. H`` steps ahead of each recorded
step's posterior (as ``agents.state_probe.open_loop_features``) once per candidate first action, with
the same noise and the actions really taken after it, and reads every imagined state with the
state probe's regression: the difference between candidates is the effect the model gives the first
action on each entry of the env's own state, h steps ahead. ``real_action_effects`` is the
independent reference, from the recorded transitions alone: a least-squares regression of the state
``h`` steps ahead on the state now and the ``h`` actions taken, whose coefficients on the first
action are its effect in the environment (holding the later actions fixed, as imagination does).

The effects, per candidate contrast ``E``:
- continuous actions: per unit of each dimension (the agent's ``[-1, 1]`` scale), imagined as half
  the difference between that dimension at +1 and at -1 (the others as taken; ``E = A``);
- discrete actions: each action against action 0 (``E = A - 1``).
Used by ``scripts.probe_state --action-response H``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from agents.state_probe import entry_r2, in_padded_batches
from world_models.rssm import state_features


def effect_names(action_dim: int, discrete: bool) -> list[str]:
    """A name per effect contrast: ``a[d]`` per unit of dimension d, or ``a=k - a=0``."""
    if discrete:
        return [f"a={k} - a=0" for k in range(1, action_dim)]
    return [f"a[{d}]" for d in range(action_dim)]


def first_action_candidates(taken: jax.Array, discrete: bool) -> jax.Array:
    """The first actions imagined from each start ``[C, B, A]``, given the action really taken
    ``[B, A]``: every one-hot action (``C = A``), or per dimension the taken action with that
    dimension at -1 and at +1 (``C = 2 A``, dimension-major)."""
    batch, dims = taken.shape
    if discrete:
        return jnp.broadcast_to(jnp.eye(dims, dtype=taken.dtype)[:, None, :], (dims, batch, dims))
    chosen = jnp.repeat(jnp.eye(dims, dtype=bool), 2, axis=0)[:, None, :]  # [2A, 1, A]
    ends = jnp.tile(jnp.array([-1.0, 1.0], taken.dtype), dims)[:, None, None]  # [2A, 1, 1]
    return jnp.where(chosen, ends, taken[None])


def effects_of_candidates(readouts: np.ndarray, discrete: bool) -> np.ndarray:
    """Readouts with the candidates on axis 1 ``[T, C, ...]`` -> effect contrasts ``[T, E, ...]``
    (see the module doc)."""
    if discrete:
        return readouts[:, 1:] - readouts[:, :1]
    return 0.5 * (readouts[:, 1::2] - readouts[:, 0::2])


@functools.lru_cache(maxsize=8)
def _candidate_features(world_model, horizon: int, discrete: bool):
    """The jitted features imagined under each first-action candidate, one per model and horizon."""
    def run(params, inputs, key):
        _, states, _, _ = world_model.observe(params, inputs, key)
        imagine_key = jax.random.fold_in(key, 1)

        def from_step(t):
            start = jax.tree.map(lambda leaf: jax.lax.dynamic_index_in_dim(leaf, t, 0, keepdims=False), states)
            actions = jax.lax.dynamic_slice_in_dim(inputs["prev_action"], t + 1, horizon, 0)  # [H, B, A]
            step_key = jax.random.fold_in(imagine_key, t)  # one draw of noise for every candidate

            def imagine(first):
                return state_features(world_model.open_loop_states(params, start, actions.at[0].set(first),
                                                                    step_key))
            return jax.vmap(imagine)(first_action_candidates(actions[0], discrete))  # [C, H, B, F]

        steps = inputs["is_first"].shape[0] - horizon
        return jax.lax.map(from_step, jnp.arange(steps))  # [steps, C, H, B, F]
    return jax.jit(run)


def imagined_action_effects(world_model, params, episodes: list[dict[str, Any]], batch: int, key, horizon: int,
                            discrete: bool, predict) -> list[np.ndarray]:
    """Per episode ``[T, E, H, D]``: the effect of the first action on each entry of the state read
    by ``predict`` (the state probe's regression on posterior features) ``h = 1 .. H`` steps ahead of
    each step t (row ``[t, :, h - 1]``), by the world model's imagination. Rows with ``t + h`` at or
    past the episode's end imagined padding actions after the first: ``valid_rows`` drops them."""
    if horizon < 1:
        raise ValueError(f"the action-response horizon must be at least 1, got {horizon}")
    imagined = in_padded_batches(functools.partial(_candidate_features(world_model, horizon, discrete), params),
                                 episodes, batch, key, extra_steps=horizon, batch_axis=3)  # [T, C, H, F] each
    read = lambda features: predict(features.reshape(-1, features.shape[-1])).reshape(features.shape[:3] + (-1,))
    return [effects_of_candidates(read(features), discrete) for features in imagined]


def valid_rows(per_episode: Sequence[np.ndarray], h: int) -> np.ndarray:
    """The rows ``[t, :, h - 1]`` of per-episode effects ``[T, E, H, D]`` whose state h steps ahead is
    still in the episode, stacked: ``[N_h, E, D]``."""
    return np.concatenate([effects[:len(effects) - h, :, h - 1] for effects in per_episode if len(effects) > h])


def valid_starts(sources: Sequence[np.ndarray], h: int) -> np.ndarray:
    """The source states ``[N_h, D]`` the rows of ``valid_rows(.., h)`` were imagined from, in their order."""
    return np.concatenate([states[:len(states) - h] for states in sources if len(states) > h])


def action_codes(actions: np.ndarray, discrete: bool) -> np.ndarray:
    """Agent actions ``[N, A]`` as regressors: as they are, or one-hot without action 0."""
    return actions[:, 1:] if discrete else actions


def own_share(x: np.ndarray, column: int) -> float:
    """The share of column ``column``'s variance that the other columns of ``x`` do not explain."""
    others = np.delete(x, column, axis=1)
    residual = x[:, column] - others @ np.linalg.lstsq(others, x[:, column], rcond=None)[0]
    spread = np.var(x[:, column])
    return float(np.var(residual) / spread) if spread > 0 else 0.0


def real_action_effects(episodes: Sequence[dict[str, Any]], horizon: int, discrete: bool,
                        where: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[int, dict]:
    """Per ``h = 1 .. horizon``: ``effect [E, D]``, the least-squares coefficients of the first action
    in the regression of the source state h steps ahead on the state now and the ``h`` actions taken
    in between (with an intercept), over every step of ``episodes`` that has a state h steps ahead
    (and whose state passes ``where``, a mask of states ``[N, D] -> [N]``: the effect near some state,
    where a global linear fit would average a state-dependent effect away); ``r2`` per entry, how
    much of the state h steps ahead that linear model explains (a low one makes its effect a poor
    reference); ``own_share [E]``, the share of each first-action regressor's variance that the other
    regressors do not explain (1 / its variance inflation factor): a greedy policy's action is a
    function of the state, so near 0 its effect is not identified and the reference means nothing
    (record sampled actions then); ``rows``, the transitions it saw. A distance with no more
    transitions than regressors is left out."""
    action_dim = episodes[0]["inputs"]["prev_action"].shape[1]
    effects = action_codes(np.eye(action_dim), discrete).shape[1]
    first = 1 + episodes[0]["sources"].shape[1]  # the columns before the first action's: intercept, state now
    result: dict[int, dict] = {}
    for h in range(1, horizon + 1):
        rows, targets = [], []
        for episode in episodes:
            sources, taken = episode["sources"], episode["inputs"]["prev_action"]
            count = len(sources) - h
            if count <= 0:
                continue
            codes = action_codes(np.asarray(taken, np.float64), discrete)
            # the action taken at step t is the prev_action of step t + 1
            acted = np.concatenate([codes[1 + k:1 + k + count] for k in range(h)], 1)
            kept = np.ones(count, bool) if where is None else np.asarray(where(sources[:count]), bool)
            rows.append(np.concatenate([np.ones((count, 1)), sources[:count], acted], 1)[kept])
            targets.append(sources[h:][kept])
        x = np.concatenate(rows) if rows else np.zeros((0, 0))
        if len(x) <= x.shape[1]:
            continue
        y = np.concatenate(targets)
        coefficients = np.linalg.lstsq(x, y, rcond=None)[0]
        result[h] = {"effect": coefficients[first:first + effects], "r2": entry_r2(x @ coefficients, y),
                     "own_share": [own_share(x, column) for column in range(first, first + effects)],
                     "rows": len(x)}
    return result
