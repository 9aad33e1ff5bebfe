"""Several seeds in one process (``scripts.train --seeds``) against their single-seed runs, on the
debug preset: 160 environment steps, prefill 100, one update per step after it (61 updates)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from agents.checkpoint import Checkpointer
from agents.evaluation import load_train_state
from agents.hierarchical_agent import HierarchicalAgent
from agents.logging import read_metrics
from configs.loader import read_config
from envs import make_vector_env
from scripts import evaluate, train

ROOT = Path(__file__).resolve().parents[2]
STEPS = 160
SEEDS = (0, 1)


def run_train(logdir, *flags):
    return train.main(["--config", "debug", "--env", "CartPole-v1", "--logdir", str(logdir), "--no-progress", *flags])


def final_state(logdir):
    """The train state of a run's latest checkpoint, and its step."""
    config = read_config(Path(logdir) / "config.yaml")
    envs = make_vector_env(config["env_id"], config["env"], 1)
    agent = HierarchicalAgent.from_config(config, envs.single_observation_space, envs.single_action_space)
    envs.close()
    state, step = load_train_state(agent, config, logdir)
    return jax.device_get(state), step


def replay_arrays(logdir):
    """The replay arrays of a run's latest checkpoint (memory storage), read without a template."""
    checkpointer = Checkpointer(Path(logdir) / "checkpoints")
    restored = checkpointer.manager.restore(checkpointer.latest_step(),
                                            args=ocp.args.Composite(replay=ocp.args.StandardRestore()))
    checkpointer.close()
    return {key: np.asarray(value) for key, value in restored.replay.items()}


def episode_returns(logdir):
    return [row["episode/return"] for row in read_metrics(logdir) if "episode/return" in row]


def assert_same_run(stacked_dir, alone_dir):
    """The seed run in one process collected the same data and learned the same parameters as its
    single-seed run: observations, rewards and flags bitwise; the stored actions (one-hot plus the
    straight-through residue of the action probabilities) and the train state to float tolerance,
    since a batched matmul may round its last bits differently; keys and counters exactly."""
    assert episode_returns(stacked_dir) == episode_returns(alone_dir)
    stacked, alone = replay_arrays(stacked_dir), replay_arrays(alone_dir)
    for key in ("obs", "reward", "is_first", "is_terminal"):
        np.testing.assert_array_equal(stacked[key], alone[key], err_msg=key)
    np.testing.assert_allclose(stacked["prev_action"], alone["prev_action"], atol=1e-6)
    (stacked_state, stacked_step), (alone_state, alone_step) = final_state(stacked_dir), final_state(alone_dir)
    assert stacked_step == alone_step
    assert int(stacked_state.updates) == int(alone_state.updates) > 0
    np.testing.assert_array_equal(stacked_state.key, alone_state.key)
    params = lambda state: [(level.world_model.params, level.actor_critic.actor.params, level.actor_critic.critic.params,
                             {name: part.params for name, part in level.auxiliary.items()})
                            for level in state.levels]
    for a, b in zip(jax.tree.leaves(params(stacked_state)), jax.tree.leaves(params(alone_state)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Adam's moments amplify rounding most (a moment near zero over a small square root):
    # one optimiser-state entry of ~2e-3 once differed by 1.3e-6 while every parameter agreed to 1e-5.
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(stacked_state), jax.tree.leaves(alone_state),
                            strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    assert run_train(root / "stacked", "--seeds", *map(str, SEEDS), "--steps", str(STEPS)) == 0
    for seed in SEEDS:
        assert run_train(root / f"alone{seed}", "--seed", str(seed), "--steps", str(STEPS)) == 0
    return root


def test_each_seed_collects_the_data_and_learns_the_parameters_of_its_single_seed_run(runs):
    for seed in SEEDS:
        assert_same_run(runs / "stacked" / f"seed{seed}", runs / f"alone{seed}")


def test_seeds_are_independent_runs_in_their_own_directories(runs):
    first, second = (runs / "stacked" / f"seed{seed}" for seed in SEEDS)
    assert [read_config(d / "config.yaml")["seed"] for d in (first, second)] == list(SEEDS)
    assert episode_returns(first) != episode_returns(second)
    assert not np.array_equal(replay_arrays(first)["obs"], replay_arrays(second)["obs"])
    first_state, second_state = final_state(first)[0], final_state(second)[0]
    world_models = zip(jax.tree.leaves(first_state.levels[0].world_model.params),
                       jax.tree.leaves(second_state.levels[0].world_model.params))
    assert not any(np.allclose(a, b) for a, b in world_models if np.asarray(a).std() > 0)
    assert not (runs / "stacked" / "config.yaml").exists()  # only the seeds' directories are runs


def test_a_seed_directory_evaluates_and_resumes_alone_and_together_alike(runs, tmp_path):
    """One seed resumed alone and the same seed resumed with the others continue alike."""
    alone, together = tmp_path / "seed1", tmp_path / "together"
    shutil.copytree(runs / "stacked" / "seed1", alone)
    shutil.copytree(runs / "stacked", together)
    result = evaluate.main(["--logdir", str(alone), "--episodes", "1", "--seed", "5"])
    assert len(result["returns"]) == 1
    assert run_train(alone, "--resume", "--steps", str(STEPS + 20)) == 0
    assert run_train(together, "--resume", "--steps", str(STEPS + 20)) == 0
    for seed in SEEDS:
        assert final_state(together / f"seed{seed}")[1] == STEPS + 20
    assert_same_run(together / "seed1", alone)


def test_flags_that_cannot_go_with_seeds_are_refused(tmp_path, capsys):
    for flags, message in ((["--seeds", "0", "1", "--distributed"], "--distributed"),
                           (["--seeds", "0", "1", "--seed", "3"], "--seed and --seeds"),
                           (["--seeds", "0", "0"], "repeat a seed"),
                           (["--seeds", "0", "1", "--resume"], "leave out --seeds")):
        with pytest.raises(SystemExit) as error:
            run_train(tmp_path / "refused", *flags)
        assert error.value.code == 2 and message in str(error.value), (flags, str(error.value))
    assert not (tmp_path / "refused").exists()


def test_seeds_with_data_parallel_devices_are_refused_with_the_setting_to_change(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip())
    logdir = tmp_path / "refused"
    done = subprocess.run([sys.executable, "-m", "scripts.train", "--config", "debug", "--env", "CartPole-v1",
                           "--seeds", "0", "1", "--logdir", str(logdir), "--no-progress"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "data-parallel" in done.stderr and "parallel.devices=1" in done.stderr
    assert "Traceback" not in done.stderr and not logdir.exists()
