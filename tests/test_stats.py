import math

import numpy as np
import pytest
from scipy import stats as sps

from wiringlab.report.stats import holm, summarize, welch_test


def test_summarize_against_scipy():
    x = [0.81, 0.79, 0.84, 0.80]
    s = summarize(x)
    assert s.n == 4
    assert s.mean == pytest.approx(np.mean(x))
    assert s.std == pytest.approx(np.std(x, ddof=1))
    low, high = sps.t.interval(0.95, 3, loc=np.mean(x), scale=sps.sem(x))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))


def test_summarize_drops_non_finite_and_handles_small_n():
    s = summarize([0.5, float("nan"), None, float("inf")])
    assert s.n == 1 and s.mean == 0.5 and math.isnan(s.std)
    assert summarize([]).n == 0


def test_welch_against_scipy():
    a, b = [0.9, 0.92, 0.91], [0.85, 0.80, 0.88, 0.83]
    ref = sps.ttest_ind(a, b, equal_var=False)
    c = welch_test(a, b)
    assert c.t == pytest.approx(ref.statistic)
    assert c.p == pytest.approx(ref.pvalue)
    assert c.difference == pytest.approx(np.mean(a) - np.mean(b))


def test_welch_with_one_sample_is_untestable():
    assert math.isnan(welch_test([1.0], [0.5, 0.6]).p)


def test_holm_known_example():
    # Holm (1979) style example: sorted p 0.01, 0.02, 0.03, 0.04 with m = 4
    adjusted = holm([0.03, 0.01, 0.04, 0.02])
    assert adjusted == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert math.isnan(holm([float("nan"), 0.01])[0])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
