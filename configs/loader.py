"""Load, merge, override and validate configs.

A config is plain nested dicts: ``defaults.yaml``, then named presets (``configs/<name>.yaml`` or a
path to a YAML file) merged on top in order, then ``section.key=value`` overrides. Every key must
exist in ``defaults.yaml`` and keep its type; keys with a fixed set of values are checked against the
registry they name (``configs.choices``).
Free-form mappings (``env.kwargs``) accept any keys.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from configs.bounds import check_bounds
from configs.choices import CHOICES  # keys restricted to the names of a registry in the code

CONFIG_DIR = Path(__file__).resolve().parent

# Keys whose value is a free-form mapping: their contents are not checked against the defaults.
FREE_FORM_KEYS = ("env.kwargs",)

# List-valued keys whose length is free (one entry per level of the hierarchy).
VARIABLE_LENGTH_KEYS = ("hierarchy.k", "hierarchy.backbones", "hierarchy.discount", "hierarchy.entropy",
                        "hierarchy.actor_lr")

# Keys that take the string "auto" or a positive integer, and "auto" or a number.
AUTO_OR_INT_KEYS = ("parallel.devices",)
AUTO_OR_NUMBER_KEYS = ("goal.reach_threshold",)


class ConfigError(ValueError):
    """A config key or value that is not valid; the message says which and what would be."""


def available_presets() -> list[str]:
    """Names of the presets shipped in ``configs/``."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml") if path.stem != "defaults")


def load_defaults() -> dict[str, Any]:
    return _read_yaml(CONFIG_DIR / "defaults.yaml")


def load_config(
    presets: Iterable[str] = (),
    overrides: Iterable[str | tuple[str, Any]] = (),
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults (or ``base``), then each preset, then each override, all validated.

    Overrides are ``"key=value"`` strings (value parsed as YAML) or ``(key, value)`` pairs.
    """
    defaults = load_defaults()
    config = copy.deepcopy(dict(base)) if base is not None else copy.deepcopy(defaults)
    for preset in presets:
        for name in str(preset).split(","):
            if name.strip():
                merge(config, _read_preset(name.strip()), defaults, source=f"preset {name!r}")
    for override in overrides:
        key, value = parse_override(override) if isinstance(override, str) else override
        set_key(config, key, value, defaults)
    check_hierarchy(config)
    check_bounds(config)
    return config


def check_hierarchy(config: Mapping[str, Any]) -> None:
    """The per-level lists must fit ``hierarchy.levels``: ``k`` and ``discount`` one value per level
    above 0 (or one for all; ``discount`` may be empty), ``backbones``, ``entropy`` and ``actor_lr`` one
    per level (or none); ``top_model: imagined`` only with two levels and goal codes."""
    section = config["hierarchy"]
    levels, ks, backbones = section["levels"], list(section["k"]), list(section["backbones"])
    discounts = list(section["discount"])
    if levels < 1:
        raise ConfigError(f"hierarchy.levels must be at least 1, got {levels}")
    if levels > 1 and (len(ks) not in (1, levels - 1) or any(not isinstance(k, int) or k < 1 for k in ks)):
        raise ConfigError(
            f"hierarchy.k={ks} must list one integer factor >= 1 per level above 0 ({levels - 1} for "
            f"hierarchy.levels={levels}), or a single factor for all of them"
        )
    valid = CHOICES["world_model.backbone"] if backbones else ()  # the registry is read only when needed
    if backbones and (len(backbones) != levels or any(b not in valid for b in backbones)):
        raise ConfigError(
            f"hierarchy.backbones={backbones} must name one backbone per level ({levels} for "
            f"hierarchy.levels={levels}) out of {', '.join(valid)}, or be empty to use world_model.backbone"
        )
    if levels > 1 and len(discounts) not in (0, 1, levels - 1):
        raise ConfigError(
            f"hierarchy.discount={discounts} must give one discount per level above 0 ({levels - 1} for "
            f"hierarchy.levels={levels}), one for all of them, or be empty to use agent.discount ** K"
        )
    if section["top_model"] == "imagined" and (levels != 2 or config["goal"]["space"] != "autoencoder"):
        raise ConfigError(
            f"hierarchy.top_model=imagined (the top imagining through level 0) needs hierarchy.levels=2 and "
            f"goal.space=autoencoder, got hierarchy.levels={levels} and goal.space={config['goal']['space']}"
        )
    for key, what in (("entropy", "weight"), ("actor_lr", "learning rate")):
        values = list(section[key])
        if values and len(values) != levels:
            raise ConfigError(
                f"hierarchy.{key}={values} must give one {what} per level ({levels} for hierarchy.levels="
                f"{levels}), or be empty to use agent.{key} at every level"
            )


def parse_override(text: str) -> tuple[str, Any]:
    """``"agent.entropy=3e-4"`` -> ``("agent.entropy", 0.0003)``; values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str):
        try:  # YAML 1.1 reads "3e-4" (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value


def merge(config: dict, update: Mapping, defaults: Mapping, source: str, prefix: str = "") -> None:
    """Merge a nested ``update`` into ``config`` in place, validating every leaf against ``defaults``."""
    for key, value in update.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path not in FREE_FORM_KEYS:
            _check_known(path, defaults, source)
            merge(config, value, defaults, source, prefix=f"{path}.")
        else:
            set_key(config, path, value, defaults, source)


def set_key(config: dict, path: str, value: Any, defaults: Mapping, source: str = "--set") -> None:
    """Set ``config[a][b][c] = value`` for ``path = "a.b.c"`` after checking key, type and choice."""
    default = _check_known(path, defaults, source)
    value = _coerce(path, value, default, source)
    node = config
    *parents, leaf = path.split(".")
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value


def lookup(config: Mapping, path: str) -> Any:
    node: Any = config
    for name in path.split("."):
        node = node[name]
    return node


def flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (free-form mappings stay whole)."""
    flat = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path not in FREE_FORM_KEYS:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def diff(old: Mapping, new: Mapping) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs: ``{path: (old, new)}``."""
    old_flat, new_flat = flatten(old), flatten(new)
    keys = sorted(set(old_flat) | set(new_flat))
    return {k: (old_flat.get(k), new_flat.get(k)) for k in keys if old_flat.get(k) != new_flat.get(k)}


def save_config(config: Mapping, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(_plain(config), sort_keys=False))


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a saved (resolved) config and validate it against the current defaults."""
    saved = _read_yaml(Path(path))
    config = load_defaults()
    merge(config, saved, load_defaults(), source=str(path))
    check_hierarchy(config)
    check_bounds(config)
    return config


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections, got {type(content).__name__}")
    return content


def _read_preset(name: str) -> dict[str, Any]:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return _read_yaml(path)
    path = CONFIG_DIR / f"{name}.yaml"
    if name == "defaults" or not path.exists():
        raise ConfigError(
            f"unknown config preset {name!r}; valid presets: {', '.join(available_presets())} "
            "(or a path to a .yaml file)"
        )
    return _read_yaml(path)


def _check_known(path: str, defaults: Mapping, source: str) -> Any:
    node: Any = defaults
    walked = []
    for name in path.split("."):
        if not isinstance(node, Mapping) or name not in node:
            options = sorted(node) if isinstance(node, Mapping) else []
            where = ".".join(walked) or "the top level"
            close = difflib.get_close_matches(name, options, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown config key {path!r} (from {source}).{hint} "
                f"Valid keys under {where}: {', '.join(options)}"
            )
        node = node[name]
        walked.append(name)
    return node


def _coerce(path: str, value: Any, default: Any, source: str) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(
            f"config key {path!r} (from {source}) expects {expected}, got {value!r} "
            f"({type(value).__name__}); default is {default!r}"
        )

    if path in CHOICES:
        if value not in CHOICES[path]:
            raise ConfigError(
                f"config key {path!r} (from {source}) must be one of {', '.join(CHOICES[path])}; "
                f"got {value!r}"
            )
        return value
    if path in AUTO_OR_INT_KEYS:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise fail("auto or a positive integer")
        return value
    if path in AUTO_OR_NUMBER_KEYS:
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise fail("auto or a number")
        return value if value == "auto" else float(value)
    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise fail("a list")
        if default and path not in VARIABLE_LENGTH_KEYS and len(value) != len(default):
            raise fail(f"a list of {len(default)} items")
        return value
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        return dict(value)
    return value
