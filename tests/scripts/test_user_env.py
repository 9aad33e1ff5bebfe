"""The README's own-environment example, run as a user would: a module on the path, ``--env
module:Class`` with ``--env-kwargs``, a Dict observation with an image and a vector."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.logging import read_metrics
from agents.spaces import SpaceError, observation_layout
from scripts import inspect_env, train

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    text = README.read_text()
    code = re.search(r"<!-- user-env -->\s*```python\n(.*?)```", text, re.S).group(1)
    directory = tmp_path_factory.mktemp("user")
    (directory / "my_envs.py").write_text(code)
    sys.path.insert(0, str(directory))
    yield "my_envs"
    sys.path.remove(str(directory))
    sys.modules.pop("my_envs", None)


def test_readme_dict_env_trains_on_the_debug_preset(user_module, tmp_path):
    logdir = tmp_path / "run"
    assert train.main(["--env", f"{user_module}:DotToCentre", "--env-kwargs", "size=16", "--config", "debug",
                       "--steps", "150", "--logdir", str(logdir), "--no-progress",
                       "--set", "run.video_every=100"]) == 0
    accumulator = EventAccumulator(str(logdir))
    accumulator.Reload()
    assert "level0/world_model/reconstruction/image" in accumulator.Tags()["images"]
    rows = read_metrics(logdir)
    reconstruction = [r["level0/world_model/loss/reconstruction"] for r in rows if "level0/world_model/loss/reconstruction" in r]
    assert reconstruction and np.all(np.isfinite(reconstruction))


def test_inspect_env_shows_the_routing(user_module, capsys):
    assert inspect_env.main(["--env", f"{user_module}:DotToCentre"]) == 0
    out = capsys.readouterr().out
    assert "image: (16, 16, 3) uint8 -> CNN encoder" in out and "position: (2,) -> MLP encoder" in out
    assert "check_env: passed" in out


def test_inspect_env_shows_keys_only_read_or_only_reconstructed(user_module, capsys):
    flags = ["--env", f"{user_module}:DotToCentre", "--set", "encoder.mlp_keys=", "decoder.mlp_keys=position",
             "decoder.cnn_keys="]
    assert inspect_env.main(flags) == 0
    out = capsys.readouterr().out
    assert "image: (16, 16, 3) uint8 -> CNN encoder, not reconstructed" in out
    assert "position: (2,) -> MLP decoder only (a reconstruction target)" in out



@pytest.mark.parametrize("flags, says", [
    (["--env", "CartPol-v1"], "CartPole-v1"),  # an unknown id: the registry's suggestion
    (["--env", "CartPole-v1", "--set", "agent.entropi=1"], "agent.entropi"),  # an unknown config key
    (["--env", "CartPole-v1", "--env-kwargs", "colour=red"], "--env-kwargs"),  # a constructor argument it lacks
    (["--env", "CartPole-v1", "--import", "no_such_module_xyz"], "no_such_module_xyz"),
])
def test_inspect_env_reports_bad_input_in_one_paragraph_with_exit_status_2(flags, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        inspect_env.main(flags)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and says in err, err
    assert "Traceback" not in err and "\n\n" not in err.strip()


def test_key_routing_override_and_unroutable_keys(user_module):
    import importlib

    import gymnasium as gym

    space = importlib.import_module(user_module).DotToCentre().observation_space
    only_vector = observation_layout(space, mlp_keys="position", cnn_keys="^$")
    assert list(only_vector.mlp_shapes) == ["position"] and not only_vector.cnn_shapes
    bad = gym.spaces.Dict({"grid": gym.spaces.Box(0, 1, (3, 4), np.float32), "v": gym.spaces.Box(0, 1, (2,))})
    with pytest.raises(SpaceError, match="'grid'"):
        observation_layout(bad)


def test_a_missing_entry_point_module_says_what_was_tried(tmp_path):
    with pytest.raises(SystemExit, match="entry point"):
        train.main(["--env", "no_such_module_xyz:Env", "--config", "debug", "--logdir", str(tmp_path / "x")])
