"""Faults injected at the boundary of ``scripts.train`` / ``scripts.evaluate``: a non-finite value from
the environment, a second writer, a kill during a checkpoint write, bad event-camera settings,
signals, and every bad input's exit status and one-paragraph message."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import jax
import numpy as np
import pytest

from agents import checkpoint
from agents.logging import read_metrics
from agents.run_lock import RunLock
from configs.loader import load_config, save_config
from scripts import evaluate, hierarchy_gates, probe_episodes, probe_model, train
from scripts.common import user_error_message
from test_train import final_params  # the latest checkpoint's train state and step

REPO = Path(__file__).resolve().parents[2]


def run_train(logdir, *flags):
    return train.main(["--config", "debug", "--logdir", str(logdir), "--no-progress", *flags])


def resume(logdir, *flags):
    """``--resume`` with the run's saved config (a preset given again would override it)."""
    return train.main(["--logdir", str(logdir), "--no-progress", "--resume", *flags])


def user_error(capsys, function, *args):
    """Run ``function`` expecting a user error: returns its message after checking exit status 2
    and a single paragraph on stderr without a traceback."""
    with pytest.raises(SystemExit) as error:
        function(*args)
    err = capsys.readouterr().err
    assert error.value.code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err and "\n\n" not in err.strip(), err
    return str(error.value)


class NanOnceEnv(gym.Env):
    """Observation NaN on the 81st step of its life, finite otherwise; episodes of 20 steps."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)
    t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        value = np.nan if self.t == 81 else 0.1
        return np.full(2, value, np.float32), 1.0, self.t % 20 == 0, False, {}


class WrongShapeEnv(NanOnceEnv):
    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


class NoRenderEnv(NanOnceEnv):
    """Like the README's DotToCentre: no render_mode argument, no render()."""


def _needs_mujoco(**kwargs):
    raise gym.error.DependencyNotInstalled('MuJoCo is not installed, run `pip install "gymnasium[mujoco]"`')


gym.register("HmbrlFaultNanOnce-v0", entry_point=NanOnceEnv)
gym.register("HmbrlFaultWrongShape-v0", entry_point=WrongShapeEnv)
gym.register("HmbrlFaultNeedsMujoco-v0", entry_point=_needs_mujoco)


class DiscreteObsEnv(NanOnceEnv):
    observation_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        return 0, {}

    def step(self, action):
        return 0, 0.0, False, False, {}


gym.register("HmbrlFaultDiscreteObs-v0", entry_point=DiscreteObsEnv)
gym.register("HmbrlFaultNoRender-v0", entry_point=NoRenderEnv)


def all_finite(logdir):
    state, _ = final_params(logdir)
    return all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state))


def test_nan_observation_stops_before_anything_is_written_and_resumes_with_drop_episode(tmp_path, capsys):
    logdir = tmp_path / "nan"
    flags = ["--env", "HmbrlFaultNanOnce-v0", "--steps", "120", "--set", "run.num_envs=1",
             "run.checkpoint_every=50", "run.prefill=30"]
    message = user_error(capsys, run_train, logdir, *flags)
    assert "'HmbrlFaultNanOnce-v0'" in message and "observation 'obs'[0] = nan" in message
    assert "at environment step 8" in message and "run.nonfinite=drop_episode" in message  # 81 + autoresets
    assert checkpoint.latest_checkpoint_step(logdir / "checkpoints") == 50  # none after the bad step
    assert all_finite(logdir)
    assert resume(logdir, "--set", "run.nonfinite=drop_episode") == 0
    state, step = final_params(logdir)
    assert step == 120 and all_finite(logdir)
    lengths = [row["episode/length"] for row in read_metrics(logdir) if "episode/length" in row]
    assert min(lengths) < 20  # every episode lasts 20 steps but the one cut at the NaN


def test_a_second_writer_is_refused_with_the_pid_and_the_directory_kept(tmp_path, capsys):
    logdir = tmp_path / "locked"
    with RunLock(logdir):
        message = user_error(capsys, run_train, logdir)
        assert f"in use by process {os.getpid()}" in message
        save_config(load_config(["debug"]), logdir / "config.yaml")
        message = user_error(capsys, evaluate.main, ["--logdir", str(logdir)])
        assert f"in use by process {os.getpid()}" in message
    assert logdir.is_dir()  # not the failed start's to remove: it existed


class _Killed(BaseException):
    """Stands for the process dying: nothing catches it."""


def kill_at_checkpoint(monkeypatch, step):
    save = checkpoint.Checkpointer.save

    def dying_save(self, at_step, *args, **kwargs):
        if at_step == step:
            raise _Killed
        return save(self, at_step, *args, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpointer, "save", dying_save)


def rows_by_step_and_name(logdir):
    pairs = [(row["step"], name) for row in read_metrics(logdir) for name in row if name != "step"]
    assert len(pairs) == len(set(pairs)), "duplicate rows"
    return {(row["step"], name): value for row in read_metrics(logdir) for name, value in row.items()}


def test_kills_during_checkpoint_writes_leave_logs_without_duplicates_or_gaps(tmp_path, monkeypatch, capsys):
    logdir = tmp_path / "killed"
    flags = ["--steps", "150", "--set", "run.checkpoint_every=60", "run.log_every=30"]
    kill_at_checkpoint(monkeypatch, 60)  # before the first checkpoint: --resume starts over
    with pytest.raises(_Killed):
        run_train(logdir, *flags)
    monkeypatch.undo()
    assert resume(logdir, "--steps", "90") == 0
    assert "no checkpoint" in capsys.readouterr().out
    kill_at_checkpoint(monkeypatch, 120)
    with pytest.raises(_Killed):
        resume(logdir, "--steps", "150")
    logged_before_kill = rows_by_step_and_name(logdir)
    monkeypatch.undo()
    assert resume(logdir, "--steps", "150") == 0
    logged = rows_by_step_and_name(logdir)
    episodes = {key: value for key, value in logged_before_kill.items() if key[1].startswith("episode/")}
    assert episodes and all(logged[key] == value for key, value in episodes.items())  # rewritten, equal
    assert max(step for step, _ in logged) == 150

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir))
    accumulator.Reload()
    steps = [event.step for event in accumulator.Scalars("episode/return")]
    assert steps == sorted(set(steps))
    assert steps == sorted({step for step, name in logged if name == "episode/return"})


def test_resume_of_a_finished_run_says_to_raise_steps(tmp_path, capsys):
    logdir = tmp_path / "finished"
    (logdir / "checkpoints" / "400").mkdir(parents=True)
    save_config(load_config(["debug"]), logdir / "config.yaml")
    assert resume(logdir) == 0
    assert "Raise --steps" in capsys.readouterr().out


@pytest.mark.parametrize("setting, named", [
    ("env.event_camera.contrast_pos=1e-9", "contrast_pos"),
    ("env.event_camera.voxel_bins=100000", "voxel_bins"),
    ("env.image_size=[1024,1024]", "env.image_size"),  # contrast 0.2 at 1M pixels: ~5 GiB a frame
])
def test_event_camera_settings_that_cannot_fit_are_refused_with_the_setting(tmp_path, capsys, setting, named):
    flags = ["--env", "event:CartPole-v1", "--set", "env.event_camera.representation=voxel", setting]
    message = user_error(capsys, run_train, tmp_path / "x", *flags)
    assert named in message
    assert not (tmp_path / "x").exists()


def test_a_replay_that_cannot_fit_in_memory_is_refused_before_the_first_step(tmp_path, capsys):
    flags = ["--steps", "100000000", "--set", "env.pixels=true", "replay.capacity=100000000"]  # ~1 TiB of images
    message = user_error(capsys, run_train, tmp_path / "x", *flags)
    assert "GiB of memory" in message and "replay.capacity" in message
    assert not (tmp_path / "x").exists()


def test_a_replay_capacity_larger_than_one_allocation_is_refused_though_the_run_is_short(tmp_path, capsys,
                                                                                          monkeypatch):
    """numpy reserves an in-memory replay whole; a field larger than memory and swap failed with a bare
    MemoryError even for a run that would fill a sliver of it (events at 2,048 rows: 32 KiB a step)."""
    import agents.resources

    monkeypatch.setattr(agents.resources, "reservable_memory_bytes", lambda: 2**30)  # a 1 GiB machine
    flags = ["--steps", "300", "--set", "env.pixels=true", "env.image_size=[64,64]", "replay.capacity=200000"]
    message = user_error(capsys, run_train, tmp_path / "x", *flags)  # 200,000 x 12 KiB images: 2.29 GiB
    assert "replay.capacity=200,000" in message and "field 'obs'" in message and "2.29 GiB" in message
    assert "at most about 87,381 steps" in message and "replay.storage=disk" in message
    assert not (tmp_path / "x").exists()
    assert run_train(tmp_path / "disk", *flags, "replay.storage=disk", "--steps", "40") == 0  # files: not reserved


def _bad_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("run: {num_envs: 2\n")
    return ["--config", str(path)], "broken.yaml"


@pytest.mark.parametrize("flags, named", [
    (["--env", "HmbrlFaultDiscreteObs-v0"], "Discrete(4)"),
    (["--env", "HmbrlFaultWrongShape-v0"], "step() returned an observation of shape (3,)"),
    (["--set", "world_model.deter=-5"], "'world_model.deter' must be >= 1"),
    (["--set", "replay.batch_size=0"], "'replay.batch_size' must be >= 1"),
    (["--env-kwargs", "gravity=3"], "--env-kwargs {'gravity': 3}"),
    (["--env", "HmbrlFaultNeedsMujoco-v0"], "MuJoCo is not installed"),
    (["--env", "CartPoel-v1"], "CartPole-v1"),
    (["--set", "agent.entropi=1"], "Did you mean entropy"),
    ("bad yaml", "broken.yaml"),
])
def test_each_bad_input_exits_2_with_one_paragraph_and_leaves_no_run_directory(tmp_path, capsys, flags, named):
    if flags == "bad yaml":
        flags, named = _bad_yaml(tmp_path)
    message = user_error(capsys, run_train, tmp_path / "run", *flags)
    assert named in message
    assert not (tmp_path / "run").exists()


def test_debug_shows_the_traceback_instead(tmp_path):
    from configs.bounds import BoundsError

    with pytest.raises(BoundsError):
        run_train(tmp_path / "run", "--debug", "--set", "world_model.deter=-5")


def test_disk_full_and_unwritable_paths_are_one_paragraph(tmp_path, monkeypatch, capsys):
    def disk_full(config, logdir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(logdir / "config.yaml"))

    monkeypatch.setattr(train, "write_config", disk_full)
    message = user_error(capsys, run_train, tmp_path / "full")
    assert "disk is full" in message and "--resume" in message
    assert not (tmp_path / "full").exists()
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = PermissionError(errno.EROFS, "Read-only file system", "/ro/run")
    assert "cannot write /ro/run (Read-only file system): pick a --logdir" in user_error_message(wrapped)
    assert user_error_message(RuntimeError("a bug of ours")) is None


def test_evaluate_refuses_zero_episodes_and_video_without_renders(tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        evaluate.main(["--logdir", str(tmp_path), "--episodes", "0"])
    assert error.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    logdir = tmp_path / "run"
    logdir.mkdir()
    save_config(load_config(["debug"], [("env_id", "HmbrlFaultNoRender-v0")]), logdir / "config.yaml")
    message = user_error(capsys, evaluate.main, ["--logdir", str(logdir), "--video"])
    assert "render_modes" in message and "rgb_array" in message
    assert not (logdir / "eval.json").exists()


@pytest.mark.parametrize("script", [evaluate, hierarchy_gates, probe_episodes, probe_model])
def test_every_reader_of_a_run_names_a_missing_or_broken_config(tmp_path, capsys, script):
    message = user_error(capsys, script.main, ["--logdir", str(tmp_path)])
    assert f"{tmp_path} is not a run directory (no config.yaml)" in message
    (tmp_path / "config.yaml").write_text("world_model: {deter: [\n")
    message = user_error(capsys, script.main, ["--logdir", str(tmp_path)])
    assert "config.yaml is not valid YAML" in message


def start_training(logdir, compilation_cache: bool):
    command = [sys.executable, "-m", "scripts.train", "--config", "debug", "--logdir", str(logdir), "--no-progress"]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    if compilation_cache:  # the tests' persistent cache (conftest.py); without it compiling takes seconds
        environment.update(JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
                           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
    return subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)


def wait_for_line(process, text, timeout=300):
    deadline, lines = time.time() + timeout, []
    while time.time() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if text in line or not line:
            return lines
    raise AssertionError(f"no {text!r} in {lines}")


def test_sigterm_stops_with_a_checkpoint_and_exit_143(tmp_path):
    process = start_training(tmp_path / "run", compilation_cache=True)
    wait_for_line(process, "compiled train_step")
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 143, out
    assert "stopped at step" in out and "continue with --resume" in out and "done:" not in out
    assert checkpoint.latest_checkpoint_step(tmp_path / "run" / "checkpoints") is not None


def test_a_second_ctrl_c_during_compilation_aborts_at_once(tmp_path):
    process = start_training(tmp_path / "run", compilation_cache=False)  # a compilation to interrupt
    wait_for_line(process, "compiling train_step")
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    start = time.time()
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130 and "aborted by a second Ctrl-C" in out, out
    assert "compiled train_step" not in out and time.time() - start < 10
