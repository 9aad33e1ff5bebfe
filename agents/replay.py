"""Sequence replay: one ring buffer per environment of a vector env, sampled as time-major chunks.

Each record is one step: observation keys, ``prev_action``, ``reward``, ``is_first``,
``is_terminal``. Records of one environment are contiguous in time, so a sampled chunk is a real
stretch of experience; where it spans an episode start, ``is_first`` marks it, and a chunk never
wraps across the ring's write position (which would stitch the newest step to the oldest). The
first step of every sampled chunk is marked ``is_first`` because the model starts it from its
initial state. Images are stored as uint8. ``storage="disk"`` keeps the arrays in memory-mapped
``.npy`` files in ``directory`` so that a buffer larger than RAM works.

On a sparse-reward task the few rewarded steps are what the reward head and the critics most need,
and uniform chunks rarely hold one (a hierarchy that reached the goal 4 times in 50k steps sampled a
rewarded step in 1 of 25-45 batches of 8 x 64 steps). ``reward_share`` > 0 draws that share of the
chunks (each chunk independently) to contain a rewarded step (``reward != 0``) picked uniformly from
the buffer, at a uniform position in the chunk. Where every step is rewarded (a dense reward) such
chunks are uniform again; where none is yet, every chunk is uniform.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

STORAGES = ("memory", "disk")  # replay.storage: arrays in memory, or memory-mapped files in the run directory

Spec = Mapping[str, tuple[tuple[int, ...], Any]]


class Replay:
    """Args:
    spec: record field -> (per-step shape, dtype).
    num_envs: environments writing in lockstep (one record each per ``add``).
    capacity: environment steps kept in total (split evenly over the environments).
    batch_size, batch_length: shape of sampled batches, ``[batch_length, batch_size, ...]``.
    storage: ``memory`` or ``disk``; ``directory`` holds the files for ``disk``.
    seed: seed of the sampler.
    reward_share: the share of sampled chunks drawn to contain a rewarded step (0: uniform chunks,
    and the sampler's random stream is that of a replay without this option).
    """

    def __init__(
        self,
        spec: Spec,
        num_envs: int,
        capacity: int,
        batch_size: int,
        batch_length: int,
        storage: str = "memory",
        directory: str | Path | None = None,
        seed: int = 0,
        reward_share: float = 0.0,
    ):
        self.length = capacity // num_envs
        if self.length < batch_length:
            raise ValueError(
                f"replay.capacity={capacity} leaves {self.length} steps per environment for "
                f"{num_envs} environments, fewer than replay.batch_length={batch_length}"
            )
        if storage not in STORAGES:
            raise ValueError(f"replay.storage must be one of {STORAGES}, got {storage!r}")
        if storage == "disk" and directory is None:
            raise ValueError("replay.storage=disk needs a directory for its files")
        if not 0.0 <= reward_share <= 1.0:
            raise ValueError(f"replay.reward_share must be in [0, 1], got {reward_share}")
        if reward_share > 0 and "reward" not in spec:
            raise ValueError("replay.reward_share > 0 needs a 'reward' field in the replay records")
        self.reward_share = float(reward_share)
        self.spec = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in spec.items()}
        self.num_envs, self.batch_size, self.batch_length = num_envs, batch_size, batch_length
        self.storage = storage
        self.directory = Path(directory) if directory is not None else None
        self.rng = np.random.default_rng(seed)
        self.position = 0  # next write index, the same for every environment
        self.count = 0  # valid records per environment
        self.arrays = {name: self._allocate(name, shape, dtype) for name, (shape, dtype) in self.spec.items()}

    def _allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        full_shape = (self.num_envs, self.length) + shape
        if self.storage == "memory":
            return np.zeros(full_shape, dtype)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{name}.npy"
        if path.exists():  # resuming: map the existing file once, no copy into RAM
            array = np.load(path, mmap_mode="r+")
            if array.shape == full_shape and array.dtype == dtype:
                return array
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=full_shape)

    def __len__(self) -> int:
        """Environment steps stored."""
        return self.count * self.num_envs

    @property
    def nbytes(self) -> int:
        """Size of the buffer at full capacity in bytes."""
        return sum(
            self.num_envs * self.length * math.prod(shape) * dtype.itemsize
            for shape, dtype in self.spec.values()
        )

    def add(self, step: Mapping[str, np.ndarray]) -> None:
        """Append one record per environment: every field ``[num_envs, ...]``."""
        missing = set(self.spec) - set(step)
        if missing:
            raise KeyError(f"replay record lacks fields {sorted(missing)}")
        for name, array in self.arrays.items():
            array[:, self.position] = step[name]
        self.position = (self.position + 1) % self.length
        self.count = min(self.count + 1, self.length)

    def can_sample(self) -> bool:
        return self.count >= self.batch_length

    def sample(self, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """A batch of chunks, time-major ``[batch_length, batch_size, ...]``.

        ``rng`` replaces the sampler's own generator (e.g. for summaries that must not change the
        training stream)."""
        rng = self.rng if rng is None else rng
        if not self.can_sample():
            raise ValueError(f"replay holds {self.count} steps per environment, fewer than {self.batch_length}")
        oldest = self.position if self.count == self.length else 0
        starts = rng.integers(0, self.count - self.batch_length + 1, self.batch_size)
        envs = rng.integers(0, self.num_envs, self.batch_size)
        if self.reward_share > 0:
            self._cover_rewarded_steps(rng, oldest, starts, envs)
        index = (oldest + starts[:, None] + np.arange(self.batch_length)) % self.length
        batch = {name: np.swapaxes(array[envs[:, None], index], 0, 1) for name, array in self.arrays.items()}
        batch["is_first"][0] = True
        return batch

    def _cover_rewarded_steps(self, rng: np.random.Generator, oldest: int, starts: np.ndarray,
                              envs: np.ndarray) -> None:
        """Redraw ``reward_share`` of the chunks (``starts``, ``envs``, in place) around rewarded steps."""
        chosen = np.flatnonzero(rng.random(self.batch_size) < self.reward_share)
        if chosen.size == 0:
            return
        env_of, physical = np.nonzero(self.arrays["reward"] != 0)
        logical = (physical - oldest) % self.length  # steps since the oldest kept one
        kept = logical < self.count
        env_of, logical = env_of[kept], logical[kept]
        if logical.size == 0:
            return
        pick = rng.integers(0, logical.size, chosen.size)
        step = logical[pick]
        # every chunk start whose chunk holds the step and stays inside the kept steps
        low = np.maximum(0, step - self.batch_length + 1)
        high = np.minimum(step, self.count - self.batch_length)
        starts[chosen] = rng.integers(low, high + 1)
        envs[chosen] = env_of[pick]

    def state_dict(self) -> dict[str, Any]:
        """Counters and sampler state (JSON-able); ``arrays()`` holds the data of memory storage."""
        return {
            "position": self.position,
            "count": self.count,
            "rng": self.rng.bit_generator.state,
            "storage": self.storage,
        }

    def data(self) -> dict[str, np.ndarray]:
        """The arrays to checkpoint: in memory storage the filled part ``[E, count, ...]`` (views, no
        copy; a checkpoint of a young run stays small however large the capacity), none for disk
        storage (already files)."""
        if self.storage != "memory":
            return {}
        return {name: array[:, : self.count] for name, array in self.arrays.items()}

    def data_template(self, count: int) -> dict[str, np.ndarray]:
        """Arrays shaped like ``data()`` of a replay holding ``count`` steps per environment, for
        restoring a checkpoint (zeros, which the OS maps lazily)."""
        if self.storage != "memory":
            return {}
        return {name: np.zeros((self.num_envs, count) + array.shape[2:], array.dtype)
                for name, array in self.arrays.items()}

    def flush(self) -> None:
        for array in self.arrays.values():
            if isinstance(array, np.memmap):
                array.flush()

    def load_state_dict(self, state: Mapping[str, Any], data: Mapping[str, np.ndarray] | None = None) -> None:
        self.position, self.count = int(state["position"]), int(state["count"])
        self.rng.bit_generator.state = state["rng"]
        for name, array in (data or {}).items():
            if array.shape[:2] != (self.num_envs, self.count) or array.shape[2:] != self.arrays[name].shape[2:]:
                raise ValueError(f"replay data {name!r} has shape {array.shape}, expected "
                                 f"{(self.num_envs, self.count) + self.arrays[name].shape[2:]}")
            self.arrays[name][:, : self.count] = array
