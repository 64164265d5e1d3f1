"""Errors raised by :mod:`wiringlab.report`.

Every error is a :class:`ReportError` (a `ValueError`), and every message names the file or
argument at fault and says what to do about it. The `wiringlab` command prints them as one
`error: ...` line with exit code 2 instead of a traceback, for `report`, `compare` and the
report step of `run`.
"""

from __future__ import annotations

__all__ = ["ReportError", "CorruptResultsError", "UnknownMetricError"]


class ReportError(ValueError):
    """Base class of every report error: a results folder or an argument the report cannot use."""


class CorruptResultsError(ReportError):
    """A file of a results folder does not parse (damaged from outside: wiringlab writes atomically)."""


class UnknownMetricError(ReportError):
    """A metric was asked for that none of the results folders has."""
