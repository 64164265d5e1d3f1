"""Recipes: a base run config, a grid of variations, and the seeds to run each with.

A recipe file::

    name: quickstart
    question: Does a wider MLP learn MNIST-1D better?   # shown in the report
    base: {data: {name: mnist1d}, model: {kind: mlp, hidden: [64]}, train: {epochs: 20}}
    grid: {model.hidden: [[64], [256, 256]]}           # dotted keys -> lists (cartesian product)
    zip: {train.optimizer.lr: [0.1, 0.05]}             # optional: lists advanced together
    seeds: [0, 1, 2]
    baseline: "hidden=[64]"                            # optional: label compared against
    pairs: [["hidden=[256,256]", "hidden=[128]"]]      # optional: head-to-head comparisons
    analysis: {similarity: {across_configs: true}}     # optional: report analyses (see config.py)

expands to one `RunSpec` per (grid point, zip index, seed). Every expanded config is
validated before anything runs; an error names the file, the key and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from .config import ADDED_DEFAULTS, ADDED_LAYER_DEFAULTS, PRESENTATION_ONLY, AnalysisConfig, RunConfig, StrictModel
from .errors import ConfigError, format_validation_error, validation_problems
from .inert import check_inert_settings
from .layer_config import layer_config_nodes
from .overrides import config_tree, get_dotted, parse_override, set_dotted, split_overrides
from .recipe_checks import canonical, check_pairs, check_repeats, check_seeds, not_a_config

__all__ = ["Recipe", "RunSpec", "load_recipe", "expand", "effective_baseline", "effective_pairs", "run_id",
           "parse_override", "set_dotted"]

log = logging.getLogger(__name__)


class Recipe(StrictModel):
    name: str  # results go to runs/<name>/ by default
    question: str = ""  # what the recipe asks; shown in table.md and the report
    base: dict[str, Any] = Field(default_factory=dict)  # a run config (defaults fill the rest)
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # dotted key -> values
    zip: dict[str, list[Any]] = Field(default_factory=dict)  # dotted key -> values, paired by index
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    baseline: str | None = None  # label of the config others are compared with (default: the first)
    # [config, against] comparisons beside the baseline's (e.g. capped vs multiply under one kernel);
    # the report tests config − against, in the same Holm family per metric as the baseline's
    pairs: list[tuple[str, str]] = Field(default_factory=list)
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
    return f"{label_slug(label)[:48]}-s{config.seed}-{digest}"


def label_slug(label: str) -> str:
    """A config label as a file-name-safe string: characters other than letters, digits, `.`,
    `+` and `-` become `-` (the `+` kept: `1e+06` is not `1e-06`); "base" for an empty one."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", label).strip("-") or "base"


def _drop_layer_defaults(tree: Any) -> None:
    """Remove `ADDED_LAYER_DEFAULTS` keys at their defaults from every layer config in `tree`."""
    for node in layer_config_nodes(tree):
        for (layer_type, key), default in ADDED_LAYER_DEFAULTS.items():
            if node["type"] == layer_type and node.get(key) == default:
                node.pop(key)


def _short(value: Any, exact: bool = False) -> str:
    """A value as a label shows it: floats in 6 significant digits, or in full with `exact`."""
    if isinstance(value, float):
        return repr(value) if exact else f"{value:g}"
    return json.dumps(value, separators=(",", ":"))


def _exact_axes(points: list[dict]) -> set[str]:
    """Axes whose numbers 6 digits cannot tell apart (0.1234567 and 0.1234568 would both read
    0.123457, and 1 and 1.0000001 both 1, and be pooled as one config): their labels show
    floats in full. Other labels keep 6 digits, so the run ids of existing results folders
    stay the same."""
    exact = set()
    for key in dict.fromkeys(k for point in points for k in point):
        numbers = {canonical(v): v for v in (point.get(key) for point in points)
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if len({f"{v:g}" for v in numbers.values()}) < len(numbers):
            exact.add(key)
    return exact


def _label(axes: dict, exact: set[str] = frozenset()) -> str:
    """"lr=0.1 hidden=[64]": the last part of each axis key and its value."""
    if not axes:
        return "base"
    return " ".join(f"{k.split('.')[-1]}={_short(v, k in exact)}" for k, v in axes.items())


def _points(recipe: Recipe, source: str) -> list[dict]:
    lengths = {key: len(values) for key, values in recipe.zip.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{key}: {n}" for key, n in lengths.items())
        raise ConfigError(f"{source}: zip: all lists must have the same length (one config per row); got {listed}")
    overlap = set(recipe.grid) & set(recipe.zip)
    if overlap:
        raise ConfigError(f"{source}: keys in both grid and zip: {sorted(overlap)}")
    zipped = [dict(zip(recipe.zip, values)) for values in zip(*recipe.zip.values())] or [{}]
    grid = [dict(zip(recipe.grid, values)) for values in itertools.product(*recipe.grid.values())]
    return [{**g, **z} for g in grid for z in zipped]


def _overridden_points(recipe: Recipe, source: str, overrides) -> tuple[dict, list[dict]]:
    """The base and the axes of every config once `overrides` are applied, in the order
    of the recipe's points: an overridden axis is gone, and an override inside an axis'
    values is set in each value that is a mapping (SET's settings, not a null arm), so
    the config's label shows it."""
    recipe = recipe.model_copy(deep=True)
    base, inside = split_overrides(recipe.base, recipe.grid, recipe.zip, overrides)
    return base, _patch_inside(_points(recipe, source), inside, source)


def _patch_inside(points: list[dict], inside, source: str) -> list[dict]:
    """`points` with each (axis, key, value) of `inside` set in the axis values that are mappings."""
    for axis, key, value in inside:
        patched = [p for p in points if isinstance(p[axis], dict)]
        if not patched:
            raise ConfigError(f"--set {key}: {axis} is a grid/zip axis of {source} and none of its values is a "
                              f"mapping to set {key[len(axis) + 1:]} in; override the whole axis (--set {axis}=...)")
        for point in patched:
            point[axis] = copy.deepcopy(point[axis])
            set_dotted(point[axis], key[len(axis) + 1:], value)
    return points


def _projected_points(recipe: Recipe, source: str, overrides) -> list[dict]:
    """Each of the recipe's points as written, as it reads once `overrides` are applied: one
    per written point, in their order (an overridden grid axis makes several equal), so a
    config named as written (the baseline, a pair) is found at its written index."""
    recipe = recipe.model_copy(deep=True)
    written = _points(recipe, source)
    _, inside = split_overrides(recipe.base, recipe.grid, recipe.zip, overrides)
    axes = set(recipe.grid) | set(recipe.zip)
    return _patch_inside([{k: v for k, v in p.items() if k in axes} for p in written], inside, source)


def _warn_replaced_mappings(base: dict, points: list[dict], source: str) -> None:
    """An axis value that is a mapping replaces the base's mapping at that key whole: say
    which base keys its configs lose (a grid of `train.optimizer: [{name: adam}, ...]`
    drops the base's weight_decay), since a merge is what many would expect."""
    dropped: dict[str, set] = {}
    for point in points:
        for key, value in point.items():
            written = get_dotted(base, key)
            if isinstance(value, dict) and isinstance(written, dict):
                dropped.setdefault(key, set()).update(set(written) - set(value))
    for key, keys in dropped.items():
        if keys:
            log.warning("%s: the values of axis %s replace base %s whole, so its configs do not keep base %s; "
                        "repeat them in the values they apply to, or vary single fields with dotted keys "
                        "(%s.<field>)",
                        source, key, key, ", ".join(f"{key}.{k}" for k in sorted(keys)), key)


def _unique_points(points: list[dict]) -> list[dict]:
    """Points without repeats: an override of one zip key can make two rows equal."""
    unique = list({canonical(p): p for p in points}.values())  # a dict keeps each key's first position
    if len(unique) < len(points):
        log.warning("the overrides made %d config(s) identical to others; each distinct config is run once",
                    len(points) - len(unique))
    return unique


def expand(recipe: Recipe, source: str = "<recipe>", overrides=(), seeds=None) -> list[RunSpec]:
    """All runs of `recipe`, validated.

    Args:
        recipe: the recipe.
        source: what to name in errors (the recipe file).
        overrides: (key, value) pairs (--set). An override of a grid or zip key replaces
            that axis with the single value; one of a key inside an axis' values (e.g.
            "evolution.zeta" with an `evolution` axis) is set in every config whose
            value there is a mapping; any other sets the base.
        seeds: in place of the recipe's seeds.

    Raises:
        ConfigError: any expanded config is invalid (every problem is listed), a grid
            value, zip row or seed is listed twice, no seed is given, `seed` is
            overridden or an axis, an override applies to no config, a pair is
            invalid (`effective_pairs`).
    """
    seeds = list(recipe.seeds if seeds is None else seeds)
    check_seeds(seeds, source)
    base, points = _overridden_points(recipe, source, overrides)
    check_repeats(recipe, source)
    _warn_replaced_mappings(base, points, source)
    specs, problems, labels = [], {}, []
    exact = _exact_axes(points)
    for axes in _unique_points(points):
        tree = config_tree(base, axes, source)
        label = _label(axes, exact)
        labels.append(label)
        for seed in seeds:
            tree["seed"] = seed
            try:
                config = RunConfig.model_validate(tree)
            except ValidationError as err:
                for line in validation_problems(err, RunConfig):
                    problems.setdefault(line, []).append(label)
                break
            specs.append(RunSpec(run_id(config, label), label, seed, config, axes))
    if problems:
        raise ConfigError(_problem_report(source, problems, labels, [key for key, _ in overrides]))
    _check_distinct_configs(specs, source)
    check_inert_settings(specs, source, overridden=bool(overrides))
    effective_pairs(recipe, source, overrides)  # a pair the overrides leave out is said here, dry run included
    return specs


def _check_distinct_configs(specs: list[RunSpec], source: str) -> None:
    """Two axis values that validate to one config (YAML reads `1e-2` as a string that
    becomes 0.01; `32` and `32.0`) would train the same runs twice as two configs."""
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        digest = spec.run_id.rsplit("-", 1)[1]  # the hash of the validated config, seed included
        first = seen.setdefault(digest, spec)
        if first is not spec:
            raise ConfigError(f"{source}: configs {canonical(first.axes)} and {canonical(spec.axes)} are the same "
                              "run once validated: they differ only in how a number is written (1e-2 and 0.01, "
                              "32 and 32.0) or in a setting that does not change a run (train.progress, "
                              "train.tensorboard): list each value once")


def _labels(recipe: Recipe, source: str, overrides) -> tuple[list[str], list[str]]:
    """(label as written, label once `overrides` are applied) of every config, in one order:
    an override that replaces an axis removes it from every label."""
    as_written, points = _points(recipe, source), _projected_points(recipe, source, overrides)
    exact_written, exact = _exact_axes(as_written), _exact_axes(points)
    return [_label(p, exact_written) for p in as_written], [_label(p, exact) for p in points]


def _baseline_index(recipe: Recipe, source: str, written: list[str]) -> int:
    """Where the baseline is among the configs as written (the first when none is named)."""
    if recipe.baseline is None:
        return 0
    if recipe.baseline not in written:
        raise not_a_config(source, "baseline", recipe.baseline, written)
    return written.index(recipe.baseline)


def effective_baseline(recipe: Recipe, source: str = "<recipe>", overrides=()) -> str | None:
    """The label of the baseline config once `overrides` are applied.

    The recipe's `baseline` names a config by all its axes; an override that replaces an
    axis removes it from every label, so the baseline becomes the config with the
    baseline's values on the remaining axes. None when the recipe names no baseline
    (the report then compares with the first config).

    Raises:
        ConfigError: `baseline` is not the label of any config of the recipe as written.
    """
    if recipe.baseline is None:
        return None
    written, effective = _labels(recipe, source, overrides)
    return effective[_baseline_index(recipe, source, written)]


def effective_pairs(recipe: Recipe, source: str = "<recipe>", overrides=(), warn: bool = True) -> list[list[str]]:
    """The recipe's `pairs` as labels once `overrides` are applied.

    A pair whose two configs become one under the overrides (they differed only on an
    overridden axis), or whose comparison becomes the baseline's or another pair's, is
    left out, with a warning that names it unless `warn` is False (`expand` has warned).

    Raises:
        ConfigError: a pair names a config the recipe does not have, one config twice,
            the baseline, or is listed twice; the baseline names no config.
    """
    if not recipe.pairs:
        return []
    written, effective = _labels(recipe, source, overrides)
    baseline = effective[_baseline_index(recipe, source, written)]
    check_pairs(recipe, source, written)
    kept, seen = [], set()
    for label, against in recipe.pairs:
        pair = [effective[written.index(label)], effective[written.index(against)]]
        if pair[0] == pair[1] or baseline in pair or frozenset(pair) in seen:
            say = log.warning if warn else log.debug
            say("%s: pairs: %r against %r is not compared under these overrides (it became %s)", source, label,
                against, "one config" if pair[0] == pair[1] else "a comparison made already")
            continue
        seen.add(frozenset(pair))
        kept.append(pair)
    return kept


def _problem_report(source: str, problems: dict[str, list[str]], labels: list[str],
                    overridden: list[str] = ()) -> str:
    """Each problem once; the configs it occurs in are named unless it is all of them, and
    a problem under an overridden key is blamed on its --set, not on the file."""
    lines = []
    for line, where in problems.items():
        configs = "" if len(where) == len(labels) else " [" + "; ".join(where) + "]"
        key = line.split(":", 1)[0]
        cause = next((f" (--set {k})" for k in overridden if key == k or key.startswith(k + ".")), "")
        lines.append(f"{source}{cause}{configs}: {line}")
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
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, Recipe, str(path))) from None
    try:  # a baseline or pair that names no config is an error now, not a missing section of the report
        effective_baseline(recipe, str(path))
        effective_pairs(recipe, str(path))
    except ConfigError:
        expand(recipe, str(path))  # an invalid config (a mistyped grid key) is the cause to name first
        raise
    return recipe
