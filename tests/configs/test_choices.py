"""Keys with a fixed set of values take them from the registries in the code."""

import subprocess
import sys
from pathlib import Path

import pytest

from configs.choices import CHOICES, REGISTRIES, registry_names
from configs.loader import ConfigError, load_config, load_defaults, lookup


@pytest.mark.parametrize("key", sorted(REGISTRIES))
def test_every_registry_resolves_and_holds_the_default(key):
    names = registry_names(REGISTRIES[key])
    assert names and all(isinstance(name, str) for name in names)
    assert lookup(load_defaults(), key) in CHOICES[key]


def test_a_name_added_to_a_registry_is_a_valid_value_at_once(monkeypatch):
    from world_models.backbones import BACKBONES, GRU

    with pytest.raises(ConfigError, match="must be one of gru"):
        load_config(["debug"], ["world_model.backbone=my_gru"])
    monkeypatch.setitem(BACKBONES, "my_gru", GRU)
    assert load_config(["debug"], ["world_model.backbone=my_gru"])["world_model"]["backbone"] == "my_gru"
    assert load_config(["debug"], ["hierarchy.levels=2", "hierarchy.backbones=[gru,my_gru]"])


def test_loading_a_preset_that_sets_no_such_key_does_not_import_the_registries():
    code = "import sys; from configs.loader import load_config; load_config(['debug']); print('jax' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.stdout.strip() == "False"
