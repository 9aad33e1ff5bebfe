"""Child process of ``test_data_parallel``: one update of the debug agent on a fixed global batch,
on one device and on every device of the process; writes both states' leaves to an ``.npz``.

Run with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` to simulate N CPU devices.
"""

import sys

import gymnasium as gym
import jax
import numpy as np

from agents.hierarchical_agent import HierarchicalAgent
from agents.parallel import DataParallel
from agents.spaces import replay_spec
from configs.loader import load_config


def fixed_batch(spec, length: int, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A time-major ``[T, B, ...]`` batch with episode starts and ends, the same for every run."""
    rng = np.random.default_rng(seed)
    batch = {key: rng.normal(size=(length, batch_size) + shape).astype(dtype) for key, (shape, dtype) in spec.items()
             if np.dtype(dtype).kind == "f"}
    batch["prev_action"] = np.eye(2, dtype=np.float32)[rng.integers(0, 2, (length, batch_size))]
    batch["is_first"] = rng.random((length, batch_size)) < 0.1
    batch["is_first"][0] = True
    batch["is_terminal"] = rng.random((length, batch_size)) < 0.05
    return batch


def one_update(devices: int) -> tuple[list[np.ndarray], bool]:
    """Leaves of the state after one update with ``parallel.devices=devices``, and whether every
    leaf of the new state is replicated over the mesh."""
    config = load_config(["debug"], [("parallel.devices", devices)])
    space = gym.spaces.Box(-5, 5, (4,), np.float32)
    agent = HierarchicalAgent.from_config(config, space, gym.spaces.Discrete(2))
    parallel = DataParallel.from_config(config)
    batch = fixed_batch(replay_spec(agent.obs_layout, agent.action_layout.dim),
                        config["replay"]["batch_length"], config["replay"]["batch_size"])
    state = parallel.replicate(agent.init(jax.random.PRNGKey(0)))
    state, _ = parallel.train_step(agent.train_step)(state, parallel.shard_batch(batch))
    leaves = jax.tree.leaves(state)
    replicated = all(len(leaf.devices()) == devices and leaf.sharding.is_fully_replicated for leaf in leaves)
    return [np.asarray(leaf) for leaf in leaves], replicated


if __name__ == "__main__":
    count = jax.local_device_count()
    single, _ = one_update(1)
    several, replicated = one_update(count)
    np.savez(sys.argv[1], replicated=replicated, devices=count,
             **{f"single_{i}": leaf for i, leaf in enumerate(single)},
             **{f"several_{i}": leaf for i, leaf in enumerate(several)})
