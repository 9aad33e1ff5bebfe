"""Data parallelism over devices and processes: the mesh, where state and batch live, who acts.

One mesh axis, ``batch``. The train state (parameters, optimiser states, keys: any pytree) is
replicated on every device of the mesh; a batch (a dict of time-major ``[T, B, ...]`` arrays) is
split along its batch axis, axis 1. The jitted update then computes each device's part of the
loss on its slice, and because the loss is a mean over the global batch, XLA inserts the sum of
the gradients across devices itself: no hand-written all-reduce. The update is the same function
of the same global batch as on one device, so one device and N devices agree to float tolerance.

With several processes (``jax.distributed``), the mesh spans the devices of all of them. Every
process runs its own environments and replay shard and feeds its part of the global batch
(``jax.make_array_from_process_local_data``); only process 0 writes TensorBoard and the run's files.

Acting never goes through the mesh: ``policy_step`` runs on one local device (or the CPU) on a
local view of the replicated parameters, so it needs no collectives and stays fast.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from configs.sections import run_sections

BATCH_AXIS = "batch"
ACTING_CHOICES = ("device", "cpu")

# Each process's local random streams (env seeds, replay sampler, exploration) are offset by this
# times its index, so that processes collect different experience; process 0 keeps the run's seed.
PROCESS_SEED_STRIDE = 100_000


def initialize_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """``jax.distributed.initialize`` from flags, else environment variables, else auto-detection.

    jax itself reads ``JAX_COORDINATOR_ADDRESS`` and detects SLURM and Open MPI jobs; we add
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` for plain launches. On the CPU, collectives
    across processes need gloo. Must run before anything touches a JAX device.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    # Only affects computations on the CPU backend; harmless when a GPU does the training.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def resolve_device_count(setting: str | int, local_count: int) -> int:
    """Devices per process for ``parallel.devices``: ``auto`` (all local devices) or a number."""
    if isinstance(setting, str) and setting.strip().isdigit():
        setting = int(setting)
    if setting == "auto":
        return local_count
    if isinstance(setting, bool) or not isinstance(setting, int):
        raise ValueError(f"parallel.devices must be auto or a positive integer, got {setting!r}")
    if not 1 <= setting <= local_count:
        raise ValueError(
            f"parallel.devices={setting} but this process sees {local_count} device(s) "
            f"({', '.join(str(d) for d in jax.local_devices())}); use auto or a number from 1 to {local_count}"
        )
    return setting


def check_batch_size(batch_size: int, num_devices: int, num_processes: int = 1) -> int:
    """The per-process batch size; an error naming both numbers if the batch does not split evenly."""
    if batch_size % num_devices:
        lower = (batch_size // num_devices) * num_devices
        hint = f"{lower} or {lower + num_devices}" if lower else f"{num_devices}"
        raise ValueError(
            f"replay.batch_size={batch_size} does not divide over {num_devices} devices "
            f"({num_processes} process(es)); set replay.batch_size to a multiple of {num_devices} "
            f"(e.g. {hint}) or parallel.devices to a divisor of {batch_size}"
        )
    return batch_size // num_processes


def build_mesh(devices_per_process: int) -> Mesh:
    """A 1-D ``batch`` mesh: the first ``devices_per_process`` local devices of every process, in
    process order, so that each process's devices hold one contiguous block of the batch."""
    devices = []
    for process in range(jax.process_count()):
        own = sorted((d for d in jax.devices() if d.process_index == process), key=lambda d: d.id)
        devices.extend(own[:devices_per_process])
    return Mesh(np.array(devices), (BATCH_AXIS,))


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """Where the train state and batches live and which device acts.

    With one device and one process (``enabled`` false) every method returns its input unchanged,
    so a single-device run is exactly the plain one, except that ``replicate`` commits the state to
    that device.
    """

    mesh: Mesh
    global_batch_size: int
    acting_device: jax.Device
    acting: str = "device"
    _acting_cache: list = dataclasses.field(default_factory=lambda: [None, None], compare=False, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "DataParallel":
        sections = run_sections(config)
        parallel = sections.parallel
        per_process = resolve_device_count(parallel.devices, jax.local_device_count())
        batch_size = int(sections.replay.batch_size)
        check_batch_size(batch_size, per_process * jax.process_count(), jax.process_count())
        mesh = build_mesh(per_process)
        if parallel.acting not in ACTING_CHOICES:
            raise ValueError(f"parallel.acting must be one of {', '.join(ACTING_CHOICES)}, got {parallel.acting!r}")
        local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
        acting_device = jax.devices("cpu")[0] if parallel.acting == "cpu" else local[0]
        return cls(mesh, batch_size, acting_device, parallel.acting)

    # --------------------------------------------------------------------------- facts
    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def process_index(self) -> int:
        return jax.process_index()

    @property
    def process_count(self) -> int:
        return jax.process_count()

    @property
    def is_main(self) -> bool:
        """Process 0 writes TensorBoard, metrics and the run's checkpoints."""
        return self.process_index == 0

    @property
    def enabled(self) -> bool:
        return self.num_devices > 1 or self.process_count > 1

    @property
    def local_batch_size(self) -> int:
        """The part of the global batch this process samples from its replay shard."""
        return self.global_batch_size // self.process_count

    @property
    def seed_offset(self) -> int:
        return PROCESS_SEED_STRIDE * self.process_index

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def batch_sharding(self) -> NamedSharding:
        """Time-major batches ``[T, B, ...]``: split along B."""
        return NamedSharding(self.mesh, PartitionSpec(None, BATCH_AXIS))

    def describe(self) -> list[str]:
        """Startup lines: the mesh, the batch split and where acting runs."""
        devices = ", ".join(str(d) for d in self.mesh.devices.flat)
        per_device = self.global_batch_size // self.num_devices
        lines = [
            f"data parallel: {self.num_devices} device(s) over {self.process_count} process(es) [{devices}]; "
            f"global batch {self.global_batch_size} = {per_device} per device, "
            f"{self.local_batch_size} sampled by this process (process {self.process_index})"
        ]
        why = "parallel.acting=cpu" if self.acting == "cpu" else "the first local device of the mesh"
        lines.append(f"acting: policy_step runs on {self.acting_device} ({why}), outside the mesh")
        return lines

    # --------------------------------------------------------------------------- placement
    def replicate(self, tree: Any) -> Any:
        """The same pytree on every device of the mesh. With several processes, process 0's copy is
        broadcast first, so all replicas are equal even if the processes' copies were not."""
        if not self.enabled:
            # Committed, as a restored checkpoint's arrays are: jit compiles a different program
            # for committed and uncommitted arguments, so a fresh and a resumed run (or a run and
            # the persistent compilation cache of another) share their programs only this way.
            return jax.device_put(tree, self.mesh.devices.flat[0])
        if self.process_count > 1:
            from jax.experimental import multihost_utils

            tree = multihost_utils.broadcast_one_to_all(jax.tree.map(host_copy, tree))
        return jax.device_put(tree, self.replicated)

    def shard_batch(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        """This process's ``[T, B_local, ...]`` arrays as parts of global ``[T, B, ...]`` arrays."""
        if not self.enabled:
            return batch
        sharding = self.batch_sharding

        def to_global(leaf: np.ndarray) -> jax.Array:
            leaf = np.asarray(leaf)
            if leaf.shape[1] != self.local_batch_size:
                raise ValueError(
                    f"a batch array has {leaf.shape[1]} sequences on axis 1, expected this process's "
                    f"{self.local_batch_size} (time-major [T, B, ...])"
                )
            global_shape = (leaf.shape[0], self.global_batch_size) + leaf.shape[2:]
            return jax.make_array_from_process_local_data(sharding, leaf, global_shape)

        return {key: to_global(value) for key, value in batch.items()}

    def train_step(self, train_step: Callable) -> Callable:
        """``train_step(state, batch) -> (state, metrics)`` over the mesh: state in and out replicated,
        batch split on axis 1, the input state donated (as the agent's own jit does)."""
        if not self.enabled:
            return train_step
        return jax.jit(
            train_step,
            in_shardings=(self.replicated, self.batch_sharding),
            out_shardings=(self.replicated, self.replicated),
            donate_argnums=0,
        )

    def acting_view(self, state: Any) -> Any:
        """The train state on the acting device alone: a local replica (no copy when it already
        lives there), computed once per new state."""
        if not self.enabled and self.acting == "device":
            return state
        cached_state, view = self._acting_cache
        if cached_state is state:
            return view

        def local(leaf: Any) -> Any:
            if isinstance(leaf, jax.Array):
                shard = next((s.data for s in leaf.addressable_shards if s.device == self.acting_device), None)
                return shard if shard is not None else jax.device_put(leaf.addressable_data(0), self.acting_device)
            return leaf

        view = jax.tree.map(local, state)
        self._acting_cache[:] = [state, view]
        return view

    # --------------------------------------------------------------------------- processes
    def any_process(self, flag: bool) -> bool:
        """Whether ``flag`` is set in any process (e.g. a stop request), so all stop together."""
        if self.process_count == 1:
            return bool(flag)
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.array([bool(flag)]))))

    def process_logdir(self, logdir: str | Path) -> Path:
        """Where this process keeps its own files: the run directory for process 0, else
        ``<logdir>/process-<i>`` (its replay shard, environment snapshots and the checkpoint of
        its shard, which resuming with the same number of processes needs)."""
        logdir = Path(logdir)
        return logdir if self.is_main else logdir / f"process-{self.process_index}"


def host_copy(leaf: Any) -> Any:
    """A numpy copy that this process can read alone: for an array spanning several processes
    (replicated), its local replica."""
    if isinstance(leaf, jax.Array):
        return np.asarray(leaf if leaf.is_fully_addressable else leaf.addressable_data(0))
    return leaf


def check_resume_processes(logdir: str | Path) -> None:
    """Resuming needs the same number of processes as the run had: each owns a replay shard."""
    saved = 1 + sum(1 for path in Path(logdir).glob("process-*") if path.is_dir())
    if saved != jax.process_count():
        raise SystemExit(
            f"--resume: {logdir} was run with {saved} process(es) but {jax.process_count()} are "
            f"running now; resume with --num-processes {saved}"
        )
