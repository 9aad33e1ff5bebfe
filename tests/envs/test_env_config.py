"""`EnvConfig` / `EventCameraConfig`: defaults, dict round trip, rejected keys and values."""

from __future__ import annotations

import pytest

from configs.loader import load_defaults
from envs.config import EnvConfig, EnvConfigError, EventCameraConfig, as_env_config

YAML_SECTION = {  # the shape of configs/defaults.yaml's env: section
    "action_repeat": 2,
    "time_limit": 0,
    "pixels": True,
    "image_size": [32, 48],
    "grayscale": False,
    "rescale_actions": True,
    "kwargs": {"g": 9.0},
    "event_camera": {"representation": "voxel", "contrast_pos": 0.3, "frame_interval": 0.033333},
}


def test_defaults():
    config = EnvConfig()
    assert config.image_size == (64, 64) and config.kwargs == {}
    assert config.event_camera == EventCameraConfig()
    assert config.event_camera.frame_interval == pytest.approx(1 / 30)


def test_defaults_are_those_of_configs_defaults_yaml():
    """`envs.make_env` without a config builds what ``scripts.train`` builds with the default one."""
    assert EnvConfig() == EnvConfig.from_dict(load_defaults()["env"])


def test_from_dict_to_dict_round_trip():
    config = EnvConfig.from_dict(YAML_SECTION)
    assert config.image_size == (32, 48)
    assert config.event_camera.representation == "voxel" and config.event_camera.contrast_pos == 0.3
    assert EnvConfig.from_dict(config.to_dict()) == config
    assert as_env_config(YAML_SECTION) == config and as_env_config(None) == EnvConfig()


def test_unknown_keys_are_named_with_the_valid_ones():
    with pytest.raises(EnvConfigError, match=r"\['pixles'\].*valid keys.*'pixels'"):
        EnvConfig.from_dict({"pixles": True})
    with pytest.raises(EnvConfigError, match=r"\['bins'\].*env.event_camera.*'voxel_bins'"):
        EnvConfig.from_dict({"event_camera": {"bins": 3}})


@pytest.mark.parametrize(
    "values",
    [
        {"action_repeat": 0},
        {"time_limit": -1},
        {"image_size": [0, 8]},
        {"event_camera": {"representation": "spikes"}},
        {"event_camera": {"contrast_neg": 0.0}},
        {"event_camera": {"leak_rate": -1.0}},
    ],
)
def test_invalid_values_are_rejected(values):
    with pytest.raises(EnvConfigError):
        EnvConfig.from_dict(values)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        EnvConfig().pixels = True  # type: ignore[misc]


def test_the_run_config_env_section_maps_onto_env_config():
    from configs.loader import load_defaults
    from envs.config import EnvConfig

    section = load_defaults()["env"]
    config = EnvConfig.from_dict(section)
    assert config.to_dict().keys() == section.keys()
    assert config.event_camera.to_dict().keys() == section["event_camera"].keys()
