"""A linear probe of a camera run's latent state: does level 0's world model know the state its images show?

An environment observed through a camera (pixels, events) keeps its own observation in
``info["source_observation"]`` (``envs.wrappers.KeepSourceObservation``); the agent never sees it.
``record_episodes`` runs the policy and keeps, per step, the world model's inputs and that source
observation; ``latent_features`` filters the episodes with level 0's world model; ``ridge_probe``
fits a ridge regression from the posterior features to each entry of the source observation on some
episodes and gives each entry's R^2 on others; ``open_loop_features`` and ``open_loop_probe`` read
that regression on the states the model imagines from those posteriors with the actions really taken
(does imagination, where the actor learns, still hold the state h steps ahead?). Used by
``scripts.probe_state`` (with an untrained model as the reference) and, with
``run.state_probe_steps``, at every evaluation of a training run (``eval/state_r2/<entry>``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from envs.wrappers import KeepSourceObservation
from world_models.rssm import state_features

PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
MAX_ENTRIES = 64  # a source observation this wide is itself an image: no state to regress
MIN_EPISODES = 4  # half to fit (itself split in two to choose the penalty), half to test


class NoSourceObservation(ValueError):
    """The environment gives no ``info["source_observation"]`` this probe can regress."""


def entry_r2(prediction: np.ndarray, target: np.ndarray) -> list[float | None]:
    """R^2 of each entry of ``[N, D]`` rows on its own: ``[D]``, None where the target does not vary."""
    error = np.sum((prediction - target) ** 2, 0)
    spread = np.sum((target - target.mean(0)) ** 2, 0)
    return [float(1.0 - e / s) if s > 1e-8 else None for e, s in zip(error, spread)]


def flat_entries(source: Any) -> tuple[np.ndarray, list[str]]:
    """A source observation (array, or dict of arrays) as one float vector with a name per entry."""
    if isinstance(source, dict):
        parts = [flat_entries(source[key]) for key in sorted(source)]
        names = [f"{key}{name if name.startswith('[') else '.' + name}"
                 for key, (_, entry_names) in zip(sorted(source), parts) for name in entry_names]
        return np.concatenate([values for values, _ in parts]), names
    values = np.asarray(source, np.float64).reshape(-1)
    return values, [f"[{index}]" for index in range(values.size)]


def source_entries(info: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """The source observation of a one-env vector ``info`` as a float vector with a name per entry;
    ``NoSourceObservation`` where there is none, or it is too wide to be a state."""
    if KeepSourceObservation.KEY not in info:
        raise NoSourceObservation(
            "the environment gives no info['source_observation']: the state probe needs a run that observes pixels "
            "or events (an event: id or env.pixels), whose camera keeps the env's own observation")
    source, names = flat_entries(jax.tree.map(lambda leaf: np.asarray(leaf)[0], info[KeepSourceObservation.KEY]))
    if source.size > MAX_ENTRIES:
        raise NoSourceObservation(f"the environment's own observation has {source.size} entries (more than "
                                  f"{MAX_ENTRIES}): it is an image itself, not a state the probe can regress")
    return source, names


def check_probe_env(envs) -> None:
    """``NoSourceObservation`` unless a reset of ``envs`` (one environment) gives a source observation
    the probe can regress: what a training run asking for the probe checks before it starts."""
    source_entries(envs.reset()[1])


# Acts in a one-env vector env: (observation, info, is_first [1], key) -> action [1, A] as the probed
# agent's action layout holds it (one-hot where discrete)
Actor = Callable[[Any, dict[str, Any], np.ndarray, jax.Array], np.ndarray]


def own_actor(agent, state, greedy: bool) -> Actor:
    """The agent's own policy (greedy, or sampling), carrying its state from step to step."""
    policy_state = agent.initial_policy_state(state, 1)

    def act(obs, info, is_first, key):
        nonlocal policy_state
        action, policy_state = agent.policy_step(state, policy_state, agent.obs_layout.to_dict(obs), is_first, key,
                                                 greedy=greedy)
        return np.asarray(action)

    return act


def source_actor(agent, state, greedy: bool) -> Actor:
    """Another run's policy acting on the environment's own observation (``info["source_observation"]``),
    which is what that run observed: a state run's policy driving the episodes a camera run's model is
    probed on (does the model follow the state where its own policy never goes?)."""
    act_own = own_actor(agent, state, greedy)
    return lambda obs, info, is_first, key: act_own(info[KeepSourceObservation.KEY], info, is_first, key)


def record_episodes(agent, state, envs, steps: int, seed: int, greedy: bool, actor: Actor | None = None
                    ) -> list[dict[str, Any]]:
    """The policy's whole episodes in ``envs`` (one environment) until they hold ``steps`` steps and
    at least ``MIN_EPISODES``: per episode the world model's inputs, time-major (``{key: [T, ...]}``
    with ``prev_action`` and ``is_first``), the source observations ``[T, D]`` with their entry names,
    and the return. ``actor`` acts instead of the agent's own policy (``greedy`` or not) where given."""
    layout = agent.obs_layout
    actor = own_actor(agent, state, greedy) if actor is None else actor
    obs, info = envs.reset(seed=seed)
    key, is_first = jax.random.PRNGKey(seed), np.ones(1, bool)
    zero_action = np.zeros(agent.action_layout.dim, np.float32)
    finished: list[dict[str, Any]] = []
    current: list[dict[str, np.ndarray]] = []
    sources: list[np.ndarray] = []
    prev_action, total, recorded = zero_action, 0.0, 0
    while len(finished) < MIN_EPISODES or recorded < steps:
        source, names = source_entries(info)
        observed = layout.to_dict(obs)
        current.append({**{name: value[0] for name, value in observed.items()}, "prev_action": prev_action,
                        "is_first": is_first[0]})
        sources.append(source)
        key, step_key = jax.random.split(key)
        action = actor(obs, info, is_first, step_key)
        obs, reward, terminated, truncated, info = envs.step(agent.action_layout.to_env(np.asarray(action)))
        prev_action, total, is_first = np.asarray(action, np.float32)[0], total + float(reward[0]), np.zeros(1, bool)
        if terminated[0] or truncated[0]:
            inputs = {name: np.stack([step[name] for step in current]) for name in current[0]}
            finished.append({"inputs": inputs, "sources": np.stack(sources), "names": names, "return": total})
            recorded += len(current)
            current, sources, prev_action, total = [], [], zero_action, 0.0
            obs, info = envs.reset()
            is_first = np.ones(1, bool)
    return finished


# level 0's posterior state, its deterministic and its stochastic part; its encoder's embedding of the step alone
FEATURES = ("latent", "deter", "stoch", "embedding")


@functools.lru_cache(maxsize=16)
def _features(world_model, kind: str):
    """The jitted features of a batch, one per world model and kind (a training run evaluates often)."""
    if kind == "embedding":
        return jax.jit(lambda params, inputs, key: world_model.embed(params, inputs))
    part = {"latent": state_features, "deter": lambda states: states.deter,
            "stoch": lambda states: states.stoch.reshape(states.stoch.shape[:-2] + (-1,))}[kind]
    return jax.jit(lambda params, inputs, key: part(world_model.observe(params, inputs, key)[1]))


def latent_features(world_model, params, episodes: list[dict[str, Any]], batch: int, key,
                    kind: str = "latent") -> list[np.ndarray]:
    """Per episode, level 0's features ``[T, F]`` of each step: its posterior features filtered from
    the episode's first step (``latent``; ``deter`` and ``stoch`` are its deterministic and its
    flattened stochastic part), or its encoder's embedding of the step's observation alone
    (``embedding``: what one observation shows the model, before the dynamics integrate it). Episodes
    are padded to a power of two at least as long as the longest (the padding is filtered too and
    dropped: the filter is causal) and run ``batch`` at a time, so that a training run's evaluations
    compile a handful of shapes, not one per longest episode."""
    if kind not in FEATURES:
        raise ValueError(f"state probe features must be one of {FEATURES}, got {kind!r}")
    return in_padded_batches(functools.partial(_features(world_model, kind), params), episodes, batch, key,
                              extra_steps=0, batch_axis=1)


def in_padded_batches(compute, episodes: list[dict[str, Any]], batch: int, key, extra_steps: int,
                       batch_axis: int) -> list[np.ndarray]:
    """``compute(inputs, key)`` on the episodes' inputs, padded to a power of two at least
    ``extra_steps`` longer than the longest episode and stacked ``batch`` at a time on axis 1 (the last
    batch filled up with its last episode: one compiled shape), with ``fold_in(key, i)`` for the batch
    that starts at episode i; per episode, the first ``T`` rows of its column of the output on
    ``batch_axis``."""
    longest = max(len(episode["sources"]) for episode in episodes)
    length = 1 << max(4, (longest + extra_steps - 1).bit_length())
    pad = lambda leaf: np.concatenate([leaf, np.zeros((length - len(leaf),) + leaf.shape[1:], leaf.dtype)])
    outputs = []
    for start in range(0, len(episodes), batch):
        group = episodes[start:start + batch]
        group = group + [group[-1]] * (batch - len(group))
        inputs = {name: np.stack([pad(episode["inputs"][name]) for episode in group], 1) for name in group[0]["inputs"]}
        out = np.asarray(compute(inputs, jax.random.fold_in(key, start)))
        outputs += [np.take(out, column, axis=batch_axis)[:len(episode["sources"])]
                    for column, episode in enumerate(group)]
    return outputs[:len(episodes)]


@functools.lru_cache(maxsize=16)
def _open_loop(world_model, horizon: int):
    """The jitted open-loop features of a batch of episodes, one per world model and horizon."""
    def run(params, inputs, key):
        _, states, _, _ = world_model.observe(params, inputs, key)
        imagine_key = jax.random.fold_in(key, 1)

        def from_step(t):
            start = jax.tree.map(lambda leaf: jax.lax.dynamic_index_in_dim(leaf, t, 0, keepdims=False), states)
            actions = jax.lax.dynamic_slice_in_dim(inputs["prev_action"], t + 1, horizon, 0)
            return state_features(world_model.open_loop_states(params, start, actions,
                                                                jax.random.fold_in(imagine_key, t)))

        steps = inputs["is_first"].shape[0] - horizon
        return jax.lax.map(from_step, jnp.arange(steps))  # [steps, horizon, B, F]
    return jax.jit(run)


def open_loop_features(world_model, params, episodes: list[dict[str, Any]], batch: int, key,
                       horizon: int) -> list[np.ndarray]:
    """Per episode ``[T, horizon, F]``: from level 0's posterior at each step t (filtered as
    ``latent_features`` filters it, with the same keys, so the starts are the probe's own), the latent
    features imagined ``h = 1 .. horizon`` steps ahead (row ``[t, h - 1]``) with the actions the episode
    really took (``WorldModel.open_loop_states``, its noise from ``fold_in(fold_in(key', 1), t)`` where
    ``key'`` is the batch's filtering key). Rows with ``t + h`` past the episode's end imagined the
    padding: ``open_loop_probe`` leaves them out."""
    if horizon < 1:
        raise ValueError(f"the open-loop horizon must be at least 1, got {horizon}")
    return in_padded_batches(functools.partial(_open_loop(world_model, horizon), params), episodes, batch, key,
                              extra_steps=horizon, batch_axis=2)  # [steps, horizon, B, F]


def open_loop_rows(imagined: Sequence[np.ndarray], targets: Sequence[np.ndarray], h: int):
    """Per episode, the features imagined h steps ahead of every start that has a state there, the
    states they should hold and those states' indices among the episodes' steps laid end to end:
    three lists (``imagined`` per episode ``[T, H, F]``, ``targets`` per episode ``[T, D]``)."""
    offsets = np.cumsum([0] + [len(target) for target in targets])
    kept = [(features[:len(target) - h, h - 1], target[h:], offset + np.arange(h, len(target)))
            for features, target, offset in zip(imagined, targets, offsets) if len(target) > h]
    return [row[0] for row in kept], [row[1] for row in kept], [row[2] for row in kept]


def open_loop_probe(imagined: Sequence[np.ndarray], targets: Sequence[np.ndarray], predict=None,
                    fit_imagined: Sequence[np.ndarray] = (), fit_targets: Sequence[np.ndarray] = ()
                    ) -> dict[str, Any]:
    """A linear probe of imagined states: per distance h, the R^2 of each entry of the state h steps
    after every start that has one, the predictions ``[N_h, D]`` and ``steps``, the index of each
    predicted state among the episodes' steps laid end to end (the order of ``ridge_probe``'s
    ``predictions``). With ``predict`` (``fitted_probe`` on posterior features) every distance is read
    as the posteriors are: does imagination stay where the filter would be? Otherwise a regression is
    fitted per distance on ``fit_imagined`` (other episodes' imagined features, ``fit_targets``): does
    the imagined state hold the true one at all, in whatever coordinates?"""
    result: dict[str, Any] = {"r2": {}, "predictions": {}, "steps": {}}
    for h in range(1, imagined[0].shape[1] + 1):
        features, expected, steps = open_loop_rows(imagined, targets, h)
        if not features:
            break
        if predict is None:
            fit_features, fit_expected, _ = open_loop_rows(fit_imagined, fit_targets, h)
            read = fitted_probe(fit_features, fit_expected)[1]
        else:
            read = predict
        predictions = read(np.concatenate(features))
        result["r2"][h] = entry_r2(predictions, np.concatenate(expected))
        result["predictions"][h], result["steps"][h] = predictions, np.concatenate(steps)
    return result


def ridge_fit(features: np.ndarray, targets: np.ndarray, penalty: float):
    """Ridge regression on standardised features: a function from features to predicted targets."""
    mean, scale = features.mean(0), np.maximum(features.std(0), 1e-6)
    x = (features - mean) / scale
    target_mean = targets.mean(0)
    weights = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ (targets - target_mean))
    return lambda rows: ((rows - mean) / scale) @ weights + target_mean


def fitted_probe(fit_features: Sequence[np.ndarray], fit_targets: Sequence[np.ndarray]):
    """The ridge regression from features to targets fitted on all the fit episodes, with the penalty
    (of ``PENALTIES``) that gives the best mean R^2 when fitted on their first half and tested on their
    second: ``(penalty, predict)``."""
    half = max(1, len(fit_features) // 2)
    def mean_r2(penalty):
        predict = ridge_fit(np.concatenate(fit_features[:half]), np.concatenate(fit_targets[:half]), penalty)
        r2 = entry_r2(predict(np.concatenate(fit_features[half:])), np.concatenate(fit_targets[half:]))
        return float(np.mean([value for value in r2 if value is not None] or [-np.inf]))
    penalty = max(PENALTIES, key=mean_r2)
    return penalty, ridge_fit(np.concatenate(fit_features), np.concatenate(fit_targets), penalty)


def ridge_probe(fit_features: Sequence[np.ndarray], fit_targets: Sequence[np.ndarray],
                test_features: Sequence[np.ndarray], test_targets: Sequence[np.ndarray]) -> dict[str, Any]:
    """Per-entry R^2 on the test episodes of ``fitted_probe`` on the fit episodes. ``predictions``
    holds its prediction of every test step ``[N, D]``, in the order of the test episodes, for errors
    the R^2 averages away (near one state)."""
    penalty, predict = fitted_probe(fit_features, fit_targets)
    predictions = predict(np.concatenate(test_features))
    return {"penalty": penalty, "r2": entry_r2(predictions, np.concatenate(test_targets)),
            "predictions": predictions}


def split_probe(features: Sequence[np.ndarray], episodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``ridge_probe`` fitted on the even-numbered episodes and tested on the odd-numbered ones."""
    if len(episodes) < MIN_EPISODES:
        raise ValueError(f"{len(episodes)} episodes: the state probe needs at least {MIN_EPISODES}")
    targets = [episode["sources"] for episode in episodes]
    return ridge_probe(features[0::2], targets[0::2], features[1::2], targets[1::2])


def state_probe_scalars(agent, state, envs, steps: int, seed: int, batch: int = 4) -> dict[str, float]:
    """``eval/state_r2/<entry>``: the R^2 of each entry of the source observation from level 0's
    latent state, on the policy's greedy episodes (``steps`` steps in whole episodes) in ``envs``."""
    episodes = record_episodes(agent, state, envs, steps, seed, greedy=True)
    features = latent_features(agent.levels[0].world_model, state.levels[0].world_model.params, episodes, batch,
                               jax.random.PRNGKey(seed))
    r2 = split_probe(features, episodes)["r2"]
    return {f"eval/state_r2/{name}": value for name, value in zip(episodes[0]["names"], r2) if value is not None}
