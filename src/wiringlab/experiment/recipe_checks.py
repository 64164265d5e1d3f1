"""What a recipe may not repeat or misname, checked before anything runs.

A value, zip row, seed or pair listed twice would train (or test) the same thing twice
and count it as independent; a baseline or pair that names no config would leave a hole
in the report. Each check raises a `ConfigError` that names the file and the key.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .recipe import Recipe

__all__ = ["check_repeats", "check_seeds", "check_pairs", "not_a_config", "canonical"]


def check_repeats(recipe: Recipe, source: str) -> None:
    """A value listed twice would train the same runs twice and count them as independent."""
    for key, values in recipe.grid.items():
        _no_repeat([canonical(v) for v in values], f"{source}: grid: {key}")
    rows = [canonical(row) for row in zip(*recipe.zip.values())]
    _no_repeat(rows, f"{source}: zip: {', '.join(recipe.zip)}: row")
    if "seed" in recipe.grid or "seed" in recipe.zip:
        raise ConfigError(f"{source}: seed cannot be a grid or zip axis: list the seeds under `seeds`")
    if "seed" in recipe.base:
        raise ConfigError(f"{source}: base: seed {recipe.base['seed']!r} would be replaced by each of `seeds`: "
                          "list the seeds under `seeds` (or pass --seeds) instead")


def _no_repeat(values: list[str], what: str, each: str = "each value is one config") -> None:
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"{what} {value} is listed twice (positions {seen[value]} and {index}): "
                              f"{each}, so a repeat would count the same runs twice")
        seen[value] = index


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def check_seeds(seeds: list[int], source: str) -> None:
    if not seeds:
        raise ConfigError(f"{source}: seeds: needs at least one seed")
    _no_repeat([str(seed) for seed in seeds], f"{source}: seeds: seed", "each seed is one run of every config")


def not_a_config(source: str, key: str, label: str, written: list[str]) -> ConfigError:
    return ConfigError(f"{source}: {key}: {label!r} is not a config of this recipe; the configs are: "
                       f"{'; '.join(written)}")


def check_pairs(recipe: Recipe, source: str, written: list[str]) -> None:
    """Each pair names two configs, differs from the others, and leaves out the baseline (whose
    comparisons the report makes anyway: a repeat would count one test twice in Holm)."""
    baseline = recipe.baseline or written[0]
    seen: dict[frozenset, int] = {}
    for index, (label, against) in enumerate(recipe.pairs):
        key = f"pairs[{index}]"
        for side in (label, against):
            if side not in written:
                raise not_a_config(source, key, side, written)
        if label == against:
            raise ConfigError(f"{source}: {key}: compares {label!r} with itself; name two configs")
        if baseline in (label, against):
            raise ConfigError(f"{source}: {key}: {baseline!r} is the baseline, which every config is compared with "
                              "already; list pairs of two other configs")
        first = seen.setdefault(frozenset((label, against)), index)
        if first != index:
            raise ConfigError(f"{source}: {key}: the pair {label!r}, {against!r} is listed twice (pairs[{first}])")
