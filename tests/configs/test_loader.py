import dataclasses
from typing import Mapping

import pytest

from configs.loader import CHOICES, ConfigError, available_presets, diff, load_config, parse_override
from configs.sections import GoalConfig, RunSections, agent_sections, as_kwargs, run_sections, section


def test_defaults_and_every_preset_load():
    assert load_config()["world_model"]["backbone"] == "gru"
    for preset in available_presets():
        assert isinstance(load_config([preset]), dict)
    assert {"debug", "control", "pixels"} <= set(available_presets())


def test_override_parses_yaml_values_and_coerces_ints_to_floats():
    config = load_config(["debug"], ["agent.entropy=3e-4", "world_model.deter=64", "agent.lambda_=1"])
    assert config["agent"]["entropy"] == pytest.approx(3e-4)
    assert config["world_model"]["deter"] == 64
    assert isinstance(config["agent"]["lambda_"], float)
    assert parse_override("env.image_size=[32, 32]") == ("env.image_size", [32, 32])


def test_presets_merge_in_order_and_overrides_win():
    config = load_config(["debug", "control"], ["steps=7"])
    control_deter = load_config(["control"])["world_model"]["deter"]
    assert control_deter != load_config(["debug"])["world_model"]["deter"]
    assert config["world_model"]["deter"] == control_deter  # control after debug
    assert config["steps"] == 7


def test_unknown_key_names_the_key_and_the_valid_choices():
    with pytest.raises(ConfigError) as error:
        load_config([], ["agent.entropi=1e-3"])
    message = str(error.value)
    assert "agent.entropi" in message and "entropy" in message and "Did you mean" in message


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="world_modle"):
        load_config([], ["world_modle.deter=3"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("world_model.deter=abc", "an integer"),
        ("world_model.deter=1.5", "an integer"),
        ("agent.entropy=yes", "a number"),
        ("env.pixels=1", "true or false"),
        ("env.image_size=[1, 2, 3]", "a list of 2"),
        ("goal.reach_threshold=high", "auto or a number"),
    ],
)
def test_ill_typed_values_name_the_key_and_the_expected_type(override, expected):
    with pytest.raises(ConfigError) as error:
        load_config([], [override])
    assert override.split("=")[0] in str(error.value) and expected in str(error.value)


def test_reach_threshold_takes_auto_or_a_number():
    assert load_config()["goal"]["reach_threshold"] == "auto"
    assert load_config([], ["goal.reach_threshold=1"])["goal"]["reach_threshold"] == 1.0


def test_choice_keys_list_the_valid_values():
    with pytest.raises(ConfigError) as error:
        load_config([], ["world_model.backbone=lstm"])
    assert all(name in str(error.value) for name in CHOICES["world_model.backbone"])


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="debug"):
        load_config(["nope"])


def test_free_form_kwargs_accept_any_key():
    config = load_config([], [("env.kwargs", {"anything": 3})])
    assert config["env"]["kwargs"] == {"anything": 3}


def test_diff_reports_changed_leaves():
    before, after = load_config(), load_config([], ["steps=5", "agent.horizon=3"])
    assert diff(before, after) == {"agent.horizon": (15, 3), "steps": (100000, 5)}


def test_choices_match_the_registries():
    from world_models.backbones import BACKBONES

    assert set(CHOICES["world_model.backbone"]) == set(BACKBONES)


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["hierarchy.levels=2", "hierarchy.k=[4,4,4]"], "hierarchy.k"),
        (["hierarchy.levels=3", "hierarchy.k=[0]"], "hierarchy.k"),
        (["hierarchy.levels=2", "hierarchy.backbones=[gru,foo]"], "hierarchy.backbones"),
        (["hierarchy.levels=0"], "hierarchy.levels"),
        (["hierarchy.levels=2", "hierarchy.entropy=[0.001]"], "hierarchy.entropy"),
        (["hierarchy.levels=2", "hierarchy.actor_lr=[0.0001,0.001,0.01]"], "hierarchy.actor_lr"),
    ],
)
def test_hierarchy_lists_must_fit_the_number_of_levels(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_config(["debug"], overrides)
    assert load_config(["debug"], ["hierarchy.levels=3", "hierarchy.k=[4,2]", "hierarchy.backbones=[gru,s5,s5]"])


def test_typed_sections_take_exactly_the_keys_of_every_preset():
    for preset in ["defaults", *available_presets()]:
        config = load_config([] if preset == "defaults" else [preset])
        sections = agent_sections(config)
        for name in ("world_model", "agent", "hierarchy", "goal", "encoder", "decoder"):
            typed = {key: dict(value) if isinstance(value, Mapping) else value
                     for key, value in as_kwargs(getattr(sections, name)).items()}
            plain = {key: tuple(value) if isinstance(value, list) else value for key, value in config[name].items()}
            assert typed == plain, (preset, name)
        assert sections.sequence_length == config["replay"]["batch_length"]


def test_typed_loop_sections_take_exactly_the_keys_of_every_preset():
    for preset in ["defaults", *available_presets()]:
        config = load_config([] if preset == "defaults" else [preset])
        sections = run_sections(config)
        for name in RunSections._fields:
            assert as_kwargs(getattr(sections, name)) == config[name], (preset, name)


@pytest.mark.parametrize("name", ["run", "replay", "parallel", "encoder"])
def test_a_typed_section_is_frozen_and_a_missing_or_unknown_key_is_an_error_naming_it(name):
    config = load_config(["debug"])
    build = run_sections if name in RunSections._fields else agent_sections
    first = next(iter(config[name]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(getattr(build(config), name), first, None)
    for broken, key in (({**config[name], "surprise": 1}, "surprise"),
                        ({k: v for k, v in config[name].items() if k != first}, first)):
        with pytest.raises(KeyError, match=f"config section '{name}' .*'{key}'"):
            build({**config, name: broken})


def test_typed_sections_are_frozen_and_reject_missing_or_unknown_keys():
    config = load_config(["debug"])
    sections = agent_sections(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sections.goal.space = "direct"
    with pytest.raises(TypeError):
        sections.world_model.loss_scales["reward"] = 2.0
    for broken in ({**config["goal"], "surprise": 1}, {k: v for k, v in config["goal"].items() if k != "kl"}):
        with pytest.raises(KeyError, match="surprise|kl"):
            section(GoalConfig, broken, "goal")
