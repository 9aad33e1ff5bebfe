"""Two processes on localhost (jax.distributed over gloo) train the debug preset together: both end
with the same parameters, and only process 0 writes TensorBoard, metrics and the run's files."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from agents.checkpoint import Checkpointer, ShardCheckpointer
from agents.hierarchical_agent import HierarchicalAgent
from agents.parallel import check_resume_processes
from configs.loader import read_config
from envs import make_vector_env

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two(logdir: Path, *flags: str) -> None:
    # only the tests' cheap-compile flags: no simulated host devices from a parent that set them
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), XLA_FLAGS=os.environ["HMBRL_TEST_XLA_FLAGS"],
               JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
    port = free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "scripts.train", "--distributed", "--coordinator", f"127.0.0.1:{port}",
             "--num-processes", "2", "--process-id", str(index), "--config", "debug", "--logdir", str(logdir),
             "--no-progress", *flags],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for index in range(2)
    ]
    try:
        outputs = [process.communicate(timeout=400)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    return outputs


def train_leaves(checkpointer, logdir: Path) -> tuple[list[np.ndarray], dict]:
    """The train state's leaves and the meta of a checkpointer's latest step."""
    config = read_config(logdir / "config.yaml")
    envs = make_vector_env(config["env_id"], config["env"], 1)
    agent = HierarchicalAgent.from_config(config, envs.single_observation_space, envs.single_action_space)
    envs.close()
    train = agent.init(jax.random.PRNGKey(0))
    template = {"train": train, "act_key": jax.random.PRNGKey(0),
                "policy": agent.initial_policy_state(train, config["run"]["num_envs"])}
    state, _, meta = checkpointer.restore(template, None)
    checkpointer.close()
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state["train"])], meta


def test_two_processes_end_with_the_same_parameters_and_only_process_0_logs(tmp_path):
    logdir = tmp_path / "run"
    # 120 env steps per process after a prefill of 100: a few updates of the global batch of 4
    outputs = launch_two(logdir, "--steps", "120", "--set", "run.train_ratio=8")
    assert "data parallel: 2 device(s) over 2 process(es)" in outputs[0]
    assert "acting: policy_step runs on" in outputs[0]
    main_leaves, main_meta = train_leaves(Checkpointer(logdir / "checkpoints"), logdir)
    # process 1's own shard holds its replay and counters; its copy of the parameters must match
    other_leaves, other_meta = train_leaves(ShardCheckpointer(logdir / "process-1" / "checkpoints"), logdir)
    assert main_meta["counters"]["updates"] == other_meta["counters"]["updates"] == 6
    assert len(main_leaves) == len(other_leaves) > 10
    for main, other in zip(main_leaves, other_leaves):
        np.testing.assert_array_equal(np.asarray(main), np.asarray(other))
    # the processes collected different experience (their own env seeds)
    assert main_meta["replay"]["rng"] != other_meta["replay"]["rng"]

    assert list(logdir.glob("events.out.tfevents*")) and (logdir / "metrics.jsonl").exists()
    assert (logdir / "config.yaml").exists()
    written_by_1 = {path.relative_to(logdir / "process-1").parts[0] for path in (logdir / "process-1").rglob("*")}
    assert written_by_1 <= {"checkpoints", "env_snapshots"}, written_by_1


def test_resume_with_another_number_of_processes_is_refused(tmp_path):
    (tmp_path / "process-1").mkdir()
    with pytest.raises(SystemExit, match="run with 2 process"):
        check_resume_processes(tmp_path)
