"""Steps a Gymnasium vector env with any policy and emits Dreamer-style records.

Gymnasium >= 1.1 vector envs reset a finished sub-environment on the *next* ``step``: that step
ignores its action and returns the reset observation with reward 0. So the record of that step is
an episode start (``is_first``) with a zero ``prev_action``, never a transition of the old episode.

A record of step t holds ``obs_t``, ``prev_action`` (the action that led to ``obs_t``), ``reward``
(received on arriving at ``obs_t``), ``is_first``, ``is_terminal`` and ``is_last``; each field has
a leading axis of size ``num_envs``. This module never imports the agent: the policy is a callable.

Every observation and reward is checked before it is recorded: a NaN or infinite value never
reaches the replay or the policy. By default the collector raises `NonFiniteObservationError`;
with ``nonfinite="drop_episode"`` it ends that sub-environment's episode at its last good step
(``is_last``, not terminal) and resets it, as when a worker is restarted.

Environments that name their cells in ``info["cell"]`` (any hashable, or a small int array) have
them passed through, beside the records rather than in them: ``cells`` holds those of the record
``step`` returned last (for the coverage metric, ``agents.coverage``). Likewise each finished
`Episode` carries whether it succeeded, from the ``info`` of its last step (`envs.success`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from envs.success import vector_info_success

# policy(obs dict, is_first [N]) -> (agent actions [N, A] to store, actions for env.step)
PolicyFn = Callable[[dict[str, np.ndarray], np.ndarray], tuple[np.ndarray, Any]]
NONFINITE_MODES = ("error", "drop_episode")


class NonFiniteObservationError(ValueError):
    """An environment returned a NaN or infinite observation or reward; the message names which."""


@dataclass
class Episode:
    """A finished episode: its sub-environment, return, length and `envs.success.info_success` of its
    last step (None: the environment does not report success)."""

    env_index: int
    score: float
    length: int
    success: bool | None = None


class Collector:
    """Args:
    env: a vector env (``autoreset_mode`` NEXT_STEP, gymnasium's default).
    action_dim: size of the agent's action vectors.
    to_dict: turns a batched observation into a dict of arrays (``agents.spaces.ObsLayout.to_dict``).
    nonfinite: ``error`` (raise `NonFiniteObservationError`) or ``drop_episode`` (end the episode
      at its last good step, reset that sub-environment and go on; needs ``reset_mask`` support).
    name: the environment's id, for messages.
    """

    def __init__(self, env: gym.vector.VectorEnv, action_dim: int, to_dict: Callable[[Any], dict],
                 nonfinite: str = "error", name: str = "the environment"):
        mode = env.metadata.get("autoreset_mode")
        if mode is not None and getattr(mode, "name", str(mode)) != "NEXT_STEP":
            raise ValueError(f"the collector needs autoreset_mode NEXT_STEP, got {mode}")
        if nonfinite not in NONFINITE_MODES:
            raise ValueError(f"nonfinite must be one of {', '.join(NONFINITE_MODES)}, got {nonfinite!r}")
        self.env, self.action_dim, self.to_dict = env, action_dim, to_dict
        self.nonfinite, self.name = nonfinite, name
        self.num_envs = env.num_envs
        self.record: dict[str, np.ndarray] | None = None
        self.dropped_episodes = 0
        # info["cell"] per sub-environment (None where absent): of the pending record, and of the
        # record step() returned last.
        self.record_cells: list[Any] = [None] * self.num_envs
        self.cells: list[Any] = [None] * self.num_envs
        # Whether the step that produced the pending record reports success (envs.success), per sub-environment.
        self.record_success: list[bool | None] = [None] * self.num_envs

    def reset(self, seed: int | None = None) -> None:
        """Reset every sub-environment (seeded ``seed + i``) and start fresh records."""
        obs, info = self.env.reset(seed=seed)
        self._check_finite(obs, np.zeros(self.num_envs), "reset()")
        self.record_cells = info_cells(info, self.num_envs)
        self.record_success = [None] * self.num_envs
        count = self.num_envs
        self.record = self._make_record(
            obs, np.zeros((count, self.action_dim), np.float32), np.zeros(count), np.ones(count, bool),
            np.zeros(count, bool), np.zeros(count, bool),
        )
        self.scores = np.zeros(count)
        self.lengths = np.zeros(count, np.int64)

    def snapshot(self) -> dict[str, Any]:
        """The collector's state between two steps (numpy arrays and the pending cells), for checkpoints."""
        return {"record": self.record, "scores": self.scores, "lengths": self.lengths, "cells": self.record_cells,
                "success": self.record_success}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.record, self.scores, self.lengths = snapshot["record"], snapshot["scores"], snapshot["lengths"]
        self.record_cells = snapshot.get("cells", [None] * self.num_envs)  # snapshots before cells had none
        self.record_success = snapshot.get("success", [None] * self.num_envs)  # nor success

    def _make_record(self, obs, prev_action, reward, is_first, is_terminal, is_last) -> dict:
        record = self.to_dict(obs)
        record.update(
            prev_action=prev_action.astype(np.float32),
            reward=reward.astype(np.float32),
            is_first=is_first.astype(bool),
            is_terminal=is_terminal.astype(bool),
            is_last=is_last.astype(bool),
        )
        return record

    def pending(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """What the next ``step`` hands its policy: the current observation keys and ``is_first``
        (a caller that acts for several collectors at once reads them first)."""
        if self.record is None:
            raise RuntimeError("call reset() before step()")
        return {k: v for k, v in self.record.items() if k not in _FLAG_FIELDS}, self.record["is_first"]

    def step(self, policy: PolicyFn) -> tuple[dict[str, np.ndarray], list[Episode]]:
        """Act once in every sub-environment.

        Returns the record of the current step (to store in replay) and the episodes that ended
        with it; ``cells`` then holds that record's cells.
        """
        current = self.record
        agent_action, env_action = policy(*self.pending())
        obs, reward, terminated, truncated, info = self.env.step(env_action)
        cells = info_cells(info, self.num_envs)
        obs, dropped, reset_info = self._drop_nonfinite(obs, reward)
        if dropped.any():  # those sub-environments were reset: their next cells are the reset ones
            reset_cells = info_cells(reset_info, self.num_envs)
            cells = [reset if drop else cell for cell, reset, drop in zip(cells, reset_cells, dropped)]
        self.cells, self.record_cells = self.record_cells, cells
        successes = [None if drop else success for success, drop in zip(vector_info_success(info, self.num_envs), dropped)]
        current_success, self.record_success = self.record_success, successes
        # NEXT_STEP autoreset: these envs just returned a reset obs. So did those whose worker was
        # restarted (envs.vector.RestartingAsyncVectorEnv) or whose step was dropped as non-finite:
        # their episode is cut here, not terminal.
        current["is_last"] = restarted = current["is_last"] | info.get("worker_restarted", False) | dropped
        self.record = self._make_record(
            obs,
            np.where(restarted[:, None], 0.0, agent_action),
            np.where(restarted, 0.0, reward),
            restarted,
            np.where(restarted, False, terminated),
            np.where(restarted, False, terminated | truncated),
        )
        return current, self._track_episodes(current, current_success)

    def _drop_nonfinite(self, obs: Any, reward: np.ndarray) -> tuple[Any, np.ndarray, dict]:
        """Returns the observation to record, which sub-environments were reset because their
        step was not finite (only with ``nonfinite="drop_episode"``; else raises) and the reset's info."""
        bad = _nonfinite_rows({**self.to_dict(obs), "reward": np.asarray(reward)})
        if not bad.any():
            return obs, bad, {}
        if self.nonfinite == "error":
            self._check_finite(obs, reward, "step()")
        obs, info = self.env.reset(options={"reset_mask": bad})
        # A reset that is not finite either cannot be dropped: it would loop for ever.
        self._check_finite(obs, np.zeros(self.num_envs), "reset() after a dropped episode")
        self.dropped_episodes += int(bad.sum())
        return obs, bad, info

    def _check_finite(self, obs: Any, reward: np.ndarray, call: str) -> None:
        fields = {**self.to_dict(obs), "reward": np.asarray(reward)}
        bad = _nonfinite_rows(fields)
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise NonFiniteObservationError(
                f"environment {self.name!r} (sub-environment {index} of {self.num_envs}) returned "
                f"{_describe_nonfinite(fields, index)} from {call}"
            )

    def _track_episodes(self, record: dict[str, np.ndarray], successes: list[bool | None]) -> list[Episode]:
        self.scores = np.where(record["is_first"], 0.0, self.scores + record["reward"])
        self.lengths = np.where(record["is_first"], 0, self.lengths + 1)
        return [
            Episode(int(i), float(self.scores[i]), int(self.lengths[i]), successes[i])
            for i in np.flatnonzero(record["is_last"])
        ]


_FLAG_FIELDS = ("prev_action", "reward", "is_first", "is_terminal", "is_last")


def info_cells(info: dict[str, Any], num_envs: int) -> list[Any]:
    """``info["cell"]`` of each sub-environment of a vector info (values batched, ``_cell`` masks
    which are set), None where it has none."""
    if "cell" not in info:
        return [None] * num_envs
    mask = info.get("_cell", np.ones(num_envs, bool))
    return [info["cell"][index] if mask[index] else None for index in range(num_envs)]


def _nonfinite_rows(fields: dict[str, np.ndarray]) -> np.ndarray:
    """``[N]`` bool: rows holding a NaN or infinite value in any floating-point field."""
    bad = np.zeros(len(next(iter(fields.values()))), bool)
    for value in fields.values():
        if np.issubdtype(value.dtype, np.floating):
            bad |= ~np.isfinite(value.reshape(len(value), -1)).all(axis=1)
    return bad


def _describe_nonfinite(fields: dict[str, np.ndarray], row: int) -> str:
    """The first non-finite entry of ``row``, e.g. ``observation 'obs'[2] = nan``."""
    for key, value in fields.items():
        if not np.issubdtype(value.dtype, np.floating):
            continue
        entries = np.argwhere(~np.isfinite(value[row]))
        if len(entries):
            where = tuple(int(i) for i in entries[0])
            name = "reward" if key == "reward" else f"observation {key!r}{list(where) if where else ''}"
            return f"{name} = {value[row][where]}"
    return "a non-finite value"
