"""Tables, statistics and figures of results folders."""

from .build import build_report, load_results
from .stats import holm, summarize, welch_test

__all__ = ["build_report", "load_results", "summarize", "welch_test", "holm"]
