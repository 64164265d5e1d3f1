"""Recipes, run configs, sweeps and the results folder."""

from .config import RunConfig
from .errors import ConfigError
from .execute import execute_run
from .recipe import Recipe, RunSpec, effective_baseline, expand, load_recipe, parse_override
from .sweep import SweepResult, run_sweep

__all__ = ["RunConfig", "ConfigError", "execute_run", "Recipe", "RunSpec", "expand", "effective_baseline",
           "load_recipe",
           "parse_override", "SweepResult", "run_sweep"]
