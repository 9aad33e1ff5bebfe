"""Range checks of config values (configs/bounds.py)."""

import pytest

from configs.bounds import BOUNDS, BoundsError
from configs.loader import available_presets, flatten, load_config, load_defaults


def test_every_bounded_key_exists_and_every_preset_is_within_bounds():
    assert set(BOUNDS) <= set(flatten(load_defaults()))
    for preset in available_presets():
        load_config([preset])


@pytest.mark.parametrize("override, message", [
    ("world_model.deter=-5", "'world_model.deter' must be >= 1, got -5"),
    ("agent.discount=0", "'agent.discount' must be > 0"),
    ("agent.lambda_=1.5", "'agent.lambda_' must be <= 1"),
    ("world_model.unimix=1", "'world_model.unimix' must be < 1"),
    ("env.image_size=[64,0]", "'env.image_size' must be >= 8, got [64, 0]"),
    ("replay.capacity=10", "fewer than replay.batch_length"),
    ("backbones.mamba.chunk_size=-1", "'backbones.mamba.chunk_size' must be >= 0, got -1"),
    ("backbones.gru.blocks=0", "'backbones.gru.blocks' must be >= 1, got 0"),
    ("backbones.gru.blocks=3", "backbones.gru.blocks=3 must divide world_model.deter=512"),
    ("world_model.event_encoder.backbones.gru.blocks=5",
     "world_model.event_encoder.backbones.gru.blocks=5 must divide world_model.event_encoder.features=64"),
])
def test_values_out_of_range_name_the_key_and_the_rule(override, message):
    with pytest.raises(BoundsError) as error:
        load_config([], [override])
    assert message in str(error.value)


def test_drop_episode_needs_sync_envs():
    with pytest.raises(BoundsError, match="run.env_parallel=sync"):
        load_config([], ["run.nonfinite=drop_episode", "run.env_parallel=async"])
    assert load_config([], ["run.nonfinite=drop_episode"])["run"]["nonfinite"] == "drop_episode"
