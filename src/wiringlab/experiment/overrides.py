"""Dotted keys and `--set` overrides: how "train.optimizer.lr=0.1" reaches a config tree.

A recipe's grid/zip axes and the command line's `--set` both name config fields by dotted
key. An override of an axis replaces the axis; an override of a key inside an axis' values
("evolution.zeta" under an "evolution" axis) is set in each of those values; everything else
is set in the base. Axes nested in one another are applied outer first. Each rule that would
silently lose a setting (a mapping replaced by a scalar, a null arm given a field) raises a
`ConfigError` that names the key and the fix.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["set_dotted", "get_dotted", "parse_override", "enclosing_axis", "split_overrides", "config_tree"]


def set_dotted(tree: dict, key: str, value: Any) -> None:
    """Set `tree[a][b][c] = value` for key "a.b.c", creating dicts where nothing (or None) is.

    Raises:
        ConfigError: a key on the way holds something else (a scalar, a list), which
            replacing by a mapping would throw away.
    """
    parts = key.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{key} lies inside {'.'.join(parts[:depth + 1])}, which is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse "key=value" with the value read as YAML (so 0.1, [64, 64], true work)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    if not key.strip() or "" in key.strip().split("."):
        raise ConfigError(f"--set {text!r}: the key before = is empty or has an empty part; e.g. train.epochs=5")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or err
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({problem}); quote lists and mappings "
                          "for the shell, e.g. --set 'model.hidden=[64, 64]'") from None


def enclosing_axis(key: str, axes: list[str]) -> str | None:
    """The longest axis key that `key` lies inside ("evolution" for "evolution.zeta")."""
    inside = [axis for axis in axes if key.startswith(axis + ".")]
    return max(inside, key=len) if inside else None


def get_dotted(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def split_overrides(base: dict, grid: dict, zip_: dict, overrides) -> tuple[dict, list[tuple[str, str, Any]]]:
    """Apply `overrides` to a recipe's base and axes (an overridden axis is popped from `grid`
    or `zip_` in place; `base` is copied, not changed). Returns the
    new base and the overrides of keys inside an axis' values, (axis, key, value)."""
    base, inside = copy.deepcopy(base), []
    for key, value in overrides:
        if key == "seed":
            raise ConfigError("--set seed: the seeds come from --seeds (or the recipe's `seeds`)")
        grid.pop(key, None)
        zip_.pop(key, None)
        inner = [axis for axis in (*grid, *zip_) if axis.startswith(key + ".")]
        if inner and not isinstance(value, dict):  # `--set evolution=null` under an `evolution.zeta` axis
            written = json.dumps(value)
            raise ConfigError(f"--set {key}={written}: the grid/zip axis {inner[0]} sets a field inside {key}, "
                              f"so no config could keep {key}={written}; run a copy of the recipe without that "
                              f"axis, or give {key} a mapping")
        axis = enclosing_axis(key, [*grid, *zip_])
        if axis is None:
            try:
                set_dotted(base, key, value)
            except ConfigError as err:
                raise ConfigError(f"--set {key}: {err} (in the recipe's base or an earlier --set); set that key "
                                  "whole, or drop the --set that made it so") from None
        else:
            inside.append((axis, key, value))
    return base, inside


def config_tree(base: dict, axes: dict, source: str) -> dict:
    """`base` with the axes' values set. Outer axes first, whatever the order of the keys:
    an axis inside another (`evolution.distance` inside `evolution`) sets a field of the
    outer one's value, which must then be a mapping (a `null` arm has no field to set)."""
    tree = copy.deepcopy(base)
    for key, value in sorted(axes.items(), key=lambda item: item[0].count(".")):
        outer = enclosing_axis(key, list(axes))
        if outer is not None and not isinstance(axes[outer], dict):
            raise ConfigError(f"{source}: axis {key} sets a field of axis {outer}, whose value {axes[outer]!r} is not "
                              f"a mapping; give {key.split('.')[-1]} inside {outer}'s mapping values instead")
        try:
            set_dotted(tree, key, value)
        except ConfigError as err:  # a --set replaced a mapping the axis sets a field of
            raise ConfigError(f"{source}: grid/zip axis {key}: {err} (from the base, or a --set of a key above "
                              f"it); make it a mapping, e.g. {key.rsplit('.', 1)[0]}: {{name: …}}") from None
    return tree
