"""Statistics over seeds: mean, sample std, t-interval, Welch's t-test, Holm correction.

Pure functions of numbers. Non-finite values (diverged runs) are dropped before any
statistic and counted by the caller; a statistic that needs more samples than it got
returns NaN rather than a misleading number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ..analysis.clustering import welch_t_test

__all__ = ["Summary", "Comparison", "summarize", "welch_test", "holm"]


MAX_DECIMALS = 10  # beyond this many decimals a cell is clearer in scientific notation


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN when n < 2
    ci_low: float  # 95% t-interval for the mean; NaN when n < 2
    ci_high: float

    def decimals(self, digits: int = 4) -> int:
        """Decimals that keep the cell honest: `digits`, more where the std's first significant
        figure or a small mean's first two would round away (3e-5 ± 1e-6 is not 0.0000 ±
        0.0000); a std below 1e-6 of the mean (float32 noise) adds none. Above
        `MAX_DECIMALS` the cell is written in scientific notation instead."""
        need = digits
        if math.isfinite(self.std) and self.std > 0 and self.std >= 1e-6 * abs(self.mean):
            need = max(need, -math.floor(math.log10(self.std)))
        if math.isfinite(self.mean) and 0 < abs(self.mean) < 0.5 * 10 ** -digits:
            need = max(need, 1 - math.floor(math.log10(abs(self.mean))))
        return need

    def _number(self, x: float, digits: int) -> str:
        d = self.decimals(digits)
        return f"{x:.{d}f}" if d <= MAX_DECIMALS else f"{x:.2e}"

    def format(self, digits: int = 4) -> str:
        if self.n == 0:
            return "–"
        if self.n == 1:
            return f"{self._number(self.mean, digits)} (n=1)"
        return f"{self._number(self.mean, digits)} ± {self._number(self.std, digits)}"

    def format_interval(self, digits: int = 4) -> str:
        """"[low, high]" written as `format` writes the mean ("" with fewer than 2 values)."""
        if self.n < 2:
            return ""
        return f"[{self._number(self.ci_low, digits)}, {self._number(self.ci_high, digits)}]"


def _finite(values) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]


def summarize(values, confidence: float = 0.95) -> Summary:
    """Mean, sample std and the t-interval of the finite entries of `values`."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    difference: float  # mean(a) - mean(b)
    t: float
    p: float  # two-sided Welch p-value; NaN when either side has n < 2


# Seeds whose values of a metric differ by less than this share of the values' size differ by
# float64 rounding (0.41 and 0.40 + 0.01), not by training: a t-test would turn that into a
# huge t and a spuriously small p. Far below float32 resolution (1.2e-7), so no spread a float32
# metric can show is taken for rounding, and ~4500 float64 ulps, above the rounding a sum of
# thousands of terms leaves (a spread of 2 on values of 1e12 is a spread).
ROUNDING_RTOL = 1e-12


def _flatten_rounding(x: np.ndarray, scale: float) -> np.ndarray:
    """`x` as an exact constant when its spread is within rounding of `scale`, the size of
    both samples' values (a spread around 0 is judged by the other sample's size)."""
    if np.ptp(x) <= max(ROUNDING_RTOL * scale, np.finfo(float).tiny):
        return np.full_like(x, x.mean())
    return x


def welch_test(a, b) -> Comparison:
    """Welch's two-sample t-test (unequal variances) of the finite entries of a and b.

    A sample whose spread is within `ROUNDING_RTOL` of the values' size counts as constant;
    when both are constant t is undefined (NaN), as with fewer than 2 values on a side.
    """
    x, y = _finite(a), _finite(b)
    diff = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    if len(x) < 2 or len(y) < 2:
        return Comparison(diff, math.nan, math.nan)
    scale = float(max(np.abs(x).max(), np.abs(y).max()))
    x, y = _flatten_rounding(x, scale), _flatten_rounding(y, scale)
    result = welch_t_test(x, y)  # NaN when neither side varies: t is undefined
    return Comparison(diff, result.statistic, result.p)


def holm(p_values) -> list[float]:
    """Holm–Bonferroni adjusted p-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(p_values, dtype=float)
    valid = np.flatnonzero(np.isfinite(p))
    adjusted = np.full_like(p, np.nan)
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
