"""The parts beside a level's world model: what each learns from, and its one update.

A level holds them by name (``goal_autoencoder``, ``novelty_autoencoder``: ``agents.goals.GoalAutoencoder``;
``ensemble``: ``agents.goals.Ensemble``; ``novelty_predictor``: ``agents.goals.NoveltyPredictor``),
their train states in ``LevelState.auxiliary``. The autoencoders learn the goal features of every
state they describe (a level's own states at level 0, the level below's states above); the ensemble
learns the level's own real transitions, from posterior features and action to the next stochastic
state, so that its members' disagreement measures the model's doubt; the novelty predictor learns,
from the level's real states, the novelty the autoencoder measures on what those states stand for.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from agents.optimization import TrainState, masked_mean
from world_models.rssm import RSSMState, state_features

# Folded, plus the level's index, into the agent's world-model key: each part of each level draws
# its own initial parameters.
KEY_OFFSETS = {"goal_autoencoder": 100, "ensemble": 200, "novelty_autoencoder": 300, "novelty_predictor": 400}
AUTOENCODERS = ("goal_autoencoder", "novelty_autoencoder")


def init_auxiliaries(parts: Mapping[str, Any], world_model_key: jax.Array, index: int) -> dict[str, TrainState]:
    """The train states of level ``index``'s ``parts``, by name."""
    return {name: part.init(jax.random.fold_in(world_model_key, KEY_OFFSETS[name] + index))
            for name, part in parts.items()}


def update_auxiliaries(parts: Mapping[str, Any], states: Mapping[str, TrainState],
                       batch: Mapping[str, jax.Array], posterior: RSSMState | None,
                       described: tuple[jax.Array, jax.Array], goal_size: int, key: jax.Array,
                       novelty_examples: tuple[jax.Array, jax.Array, jax.Array] | None = None
                       ) -> tuple[dict[str, TrainState], dict[str, jax.Array]]:
    """One step of every part on a level's batch ``[T, B, ...]`` and posterior (None where the level
    has no model, and so no ensemble). ``described``: the features ``[T', B, F]`` and mask ``[T', B]``
    of the states the autoencoders describe, whose first ``goal_size`` entries they learn.
    ``novelty_examples`` (with a novelty predictor): the level's real features ``[..., F]``, the goal
    features ``[..., G]`` of the states they stand for, and a mask ``[...]``; the predictor learns the
    autoencoder's novelty of the latter, measured after the autoencoder's step. Returns the new train
    states and the metrics (the novelty autoencoder's and the predictor's under ``novelty/``)."""
    mask = batch.get("mask", jnp.ones(batch["is_first"].shape))  # level 0's batch has every step
    features, described_mask = described
    arguments = {}
    for name in AUTOENCODERS:
        if name in parts:
            arguments[name] = (features[..., :goal_size], described_mask, jax.random.fold_in(key, 2_000))
    if "ensemble" in parts:
        own = jax.lax.stop_gradient(state_features(posterior))
        inputs = jnp.concatenate([own[:-1], batch["prev_action"][1:]], -1)
        stoch = jax.lax.stop_gradient(posterior.stoch[1:])
        targets = stoch.reshape(stoch.shape[:2] + (-1,))
        arguments["ensemble"] = (inputs, targets, mask[1:] * (1.0 - batch["is_first"][1:].astype(jnp.float32)))
    states, metrics = dict(states), {}
    for name, args in arguments.items():
        states[name], part_metrics = parts[name].update(states[name], *args)
        if name == "novelty_autoencoder":
            part_metrics = {metric.replace("goal/", "novelty/"): value for metric, value in part_metrics.items()}
        metrics.update(part_metrics)
    if "novelty_predictor" in parts:
        inputs, goal_features, novelty_mask = jax.lax.stop_gradient(novelty_examples)
        source = "goal_autoencoder" if "goal_autoencoder" in parts else "novelty_autoencoder"
        targets = jax.lax.stop_gradient(parts[source].novelty(states[source].params, goal_features))
        states["novelty_predictor"], part_metrics = parts["novelty_predictor"].update(
            states["novelty_predictor"], inputs, targets, novelty_mask)
        metrics.update(part_metrics)
        metrics["novelty/measured"] = masked_mean(targets, novelty_mask)
    return states, metrics
