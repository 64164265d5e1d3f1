"""Recipes: a base run config, a grid of variations, and the seeds to run each with.

A recipe file::

    name: quickstart
    question: Does a wider MLP learn MNIST-1D better?   # shown in the report
    base: {data: {name: mnist1d}, model: {kind: mlp, hidden: [64]}, train: {epochs: 20}}
    grid: {model.hidden: [[64], [256, 256]]}           # dotted keys -> lists (cartesian product)
    zip: {train.optimizer.lr: [0.1, 0.05]}             # optional: lists advanced together
    seeds: [0, 1, 2]
    baseline: "hidden=[64]"                            # optional: label compared against
    analysis: {similarity: {across_configs: true}}     # optional: report analyses (see config.py)

expands to one `RunSpec` per (grid point, zip index, seed). Every expanded config is
validated before anything runs; an error names the file, the key and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from .config import ADDED_DEFAULTS, ADDED_LAYER_DEFAULTS, PRESENTATION_ONLY, AnalysisConfig, RunConfig, StrictModel
from .errors import ConfigError, format_validation_error, validation_problems
from .layer_config import layer_config_nodes

__all__ = ["Recipe", "RunSpec", "load_recipe", "expand", "run_id", "parse_override", "set_dotted"]


class Recipe(StrictModel):
    name: str  # results go to runs/<name>/ by default
    question: str = ""  # what the recipe asks; shown in table.md and the report
    base: dict[str, Any] = Field(default_factory=dict)  # a run config (defaults fill the rest)
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # dotted key -> values
    zip: dict[str, list[Any]] = Field(default_factory=dict)  # dotted key -> values, paired by index
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    baseline: str | None = None  # label of the config others are compared with (default: the first)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)  # report analyses (never changes a run)

    @field_validator("name")
    @classmethod
    def _slug(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError("use letters, digits, '-', '_' and '.' only (it names a folder)")
        return name

    @field_validator("grid", "zip")
    @classmethod
    def _non_empty(cls, axes: dict[str, list]) -> dict[str, list]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"{key}: needs at least one value")
        return axes


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its id, its config label (shared by its seeds), its config."""

    run_id: str
    label: str
    seed: int
    config: RunConfig
    axes: dict  # the grid/zip values that define this config, by dotted key


def set_dotted(tree: dict, key: str, value: Any) -> None:
    """Set `tree[a][b][c] = value` for key "a.b.c", creating dicts on the way."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse "key=value" with the value read as YAML (so 0.1, [64, 64], true work)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def run_id(config: RunConfig, label: str) -> str:
    """A stable, readable id: label slug, seed and a hash of everything that shapes the result."""
    dumped = config.model_dump(mode="json")
    # Optional sections left unset (None) are dropped, so adding a new optional section
    # to RunConfig never changes the ids (and resume state) of existing results folders.
    dumped = {k: v for k, v in dumped.items() if v is not None}
    for section, key in PRESENTATION_ONLY:
        dumped.get(section, {}).pop(key, None)
    for (section, key), default in ADDED_DEFAULTS.items():  # at their default they change nothing
        if dumped.get(section, {}).get(key) == default:
            dumped[section].pop(key)
    _drop_layer_defaults(dumped)
    digest = hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-")[:48] or "base"
    return f"{slug}-s{config.seed}-{digest}"


def _drop_layer_defaults(tree: Any) -> None:
    """Remove `ADDED_LAYER_DEFAULTS` keys at their defaults from every layer config in `tree`."""
    for node in layer_config_nodes(tree):
        for (layer_type, key), default in ADDED_LAYER_DEFAULTS.items():
            if node["type"] == layer_type and node.get(key) == default:
                node.pop(key)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value, separators=(",", ":"))


def _label(axes: dict) -> str:
    """"lr=0.1 hidden=[64]": the last part of each axis key and its value."""
    if not axes:
        return "base"
    return " ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in axes.items())


def _points(recipe: Recipe, source: str) -> list[dict]:
    lengths = {len(v) for v in recipe.zip.values()}
    if len(lengths) > 1:
        raise ConfigError(f"{source}: zip: all lists must have the same length (got {sorted(lengths)})")
    overlap = set(recipe.grid) & set(recipe.zip)
    if overlap:
        raise ConfigError(f"{source}: keys in both grid and zip: {sorted(overlap)}")
    zipped = [dict(zip(recipe.zip, values)) for values in zip(*recipe.zip.values())] or [{}]
    grid = [dict(zip(recipe.grid, values)) for values in itertools.product(*recipe.grid.values())]
    return [{**g, **z} for g in grid for z in zipped]


def expand(recipe: Recipe, source: str = "<recipe>", overrides=(), seeds=None) -> list[RunSpec]:
    """All runs of `recipe`, validated. `overrides` are (key, value) pairs applied to the
    base; an override of a grid or zip key replaces that axis with the single value.

    Raises:
        ConfigError: any expanded config is invalid (every problem is listed).
    """
    recipe = recipe.model_copy(deep=True)
    base = copy.deepcopy(recipe.base)
    for key, value in overrides:
        recipe.grid.pop(key, None)
        recipe.zip.pop(key, None)
        set_dotted(base, key, value)
    specs, problems, labels = [], {}, []
    for axes in _points(recipe, source):
        tree = copy.deepcopy(base)
        for key, value in axes.items():
            set_dotted(tree, key, value)
        label = _label(axes)
        labels.append(label)
        for seed in seeds if seeds is not None else recipe.seeds:
            tree["seed"] = seed
            try:
                config = RunConfig.model_validate(tree)
            except ValidationError as err:
                for line in validation_problems(err, RunConfig):
                    problems.setdefault(line, []).append(label)
                break
            specs.append(RunSpec(run_id(config, label), label, seed, config, axes))
    if problems:
        raise ConfigError(_problem_report(source, problems, labels))
    return specs


def _problem_report(source: str, problems: dict[str, list[str]], labels: list[str]) -> str:
    """Each problem once; the configs it occurs in are named unless it is all of them."""
    lines = []
    for line, where in problems.items():
        configs = "" if len(where) == len(labels) else " [" + "; ".join(where) + "]"
        lines.append(f"{source}{configs}: {line}")
    return "\n".join(lines)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file (YAML, read with `yaml.safe_load`).

    Raises:
        ConfigError: the file is missing, not YAML, or not a valid recipe.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping with keys {', '.join(Recipe.model_fields)}")
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, Recipe, str(path))) from None
