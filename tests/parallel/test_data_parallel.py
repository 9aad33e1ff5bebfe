"""Data-parallel updates: N simulated CPU devices give the 1-device parameters; device counts and
batch sizes are checked with clear errors."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from agents.parallel import DataParallel, check_batch_size, resolve_device_count
from configs.loader import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def child_env(devices: int) -> dict[str, str]:
    """CPU only, ``devices`` simulated devices, and the tests' compilation cache (conftest.py)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    return env


def test_four_devices_give_the_one_device_update(tmp_path):
    out = tmp_path / "states.npz"
    subprocess.run([sys.executable, str(ROOT / "tests" / "parallel" / "one_update.py"), str(out)],
                   env=child_env(4), cwd=ROOT, check=True, timeout=300)
    saved = np.load(out)
    assert int(saved["devices"]) == 4
    assert bool(saved["replicated"]), "the updated state must stay replicated over the mesh"
    count = sum(1 for name in saved.files if name.startswith("single_"))
    assert count > 10
    for i in range(count):
        single, several = saved[f"single_{i}"], saved[f"several_{i}"]
        if np.issubdtype(single.dtype, np.floating):
            np.testing.assert_allclose(several, single, rtol=1e-5, atol=1e-6, err_msg=f"leaf {i}")
        else:
            np.testing.assert_array_equal(several, single, err_msg=f"leaf {i}")


def test_batch_that_does_not_divide_is_an_error_naming_both_numbers():
    with pytest.raises(ValueError, match=r"batch_size=6 does not divide over 4 devices.*multiple of 4"):
        check_batch_size(6, 4)
    assert check_batch_size(16, 4, num_processes=2) == 8  # each process samples its half


def test_device_count_resolution():
    assert resolve_device_count("auto", 3) == 3
    assert resolve_device_count(2, 3) == resolve_device_count("2", 3) == 2
    with pytest.raises(ValueError, match="parallel.devices=4 but this process sees 1 device"):
        resolve_device_count(4, 1)


def test_config_takes_auto_or_a_positive_integer():
    assert load_config([], [])["parallel"]["devices"] == "auto"
    assert load_config([], ["parallel.devices=2"])["parallel"]["devices"] == 2
    with pytest.raises(ConfigError, match="auto or a positive integer"):
        load_config([], ["parallel.devices=0"])
    with pytest.raises(ConfigError, match="device, cpu"):
        load_config([], ["parallel.acting=gpu"])


def test_one_device_leaves_everything_as_it_is_but_commits_the_state():
    parallel = DataParallel.from_config(load_config(["debug"], ["parallel.devices=1"]))
    assert not parallel.enabled and parallel.is_main and parallel.local_batch_size == 4
    tree, batch = {"w": jax.numpy.ones(3)}, {"obs": np.zeros((16, 4, 2))}
    assert parallel.shard_batch(batch) is batch
    assert parallel.acting_view(tree) is tree
    # committed to the device as a restored checkpoint is, so that fresh and resumed runs compile alike
    assert not tree["w"].committed
    replicated = parallel.replicate(tree)
    assert replicated["w"].committed and replicated["w"].sharding == tree["w"].sharding
    np.testing.assert_array_equal(replicated["w"], tree["w"])
    step = lambda state, batch: (state, {})
    assert parallel.train_step(step) is step
    assert "acting: policy_step runs on" in "\n".join(parallel.describe())
