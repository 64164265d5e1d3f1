"""Strict base model of every config: unknown keys are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """Base of every config: unknown keys are errors; assignments are validated; no float
    may be inf or NaN (YAML's `.inf`/`.nan` would pass `gt=0` bounds and train nothing)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
