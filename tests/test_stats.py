import math
import warnings

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


def _summary(label, seed, test_acc, test_loss, status="completed"):
    return {"run_id": f"{label}-s{seed}", "label": label, "seed": seed, "status": status, "axes": {},
            "final": {"test_acc": test_acc, "test_loss": test_loss, "train_acc": 0.9, "train_loss": 0.1},
            "best_test_acc": test_acc, "wall_time_s": 1.0 + seed}


# Fixed numbers: a baseline, a clearly better config, a close one, and one with a single
# finished seed (plus a diverged one that must be left out).
FIXED = {
    "base": [(0.81, 0.52), (0.79, 0.55), (0.84, 0.50), (0.80, 0.53)],
    "better": [(0.90, 0.40), (0.92, 0.38), (0.91, 0.41)],
    "close": [(0.82, 0.51), (0.80, 0.56)],
    "lonely": [(0.70, 0.90)],
}


@pytest.fixture
def tables():
    from wiringlab.report.table import compute_tables

    summaries = [_summary(label, seed, a, loss) for label, runs in FIXED.items()
                 for seed, (a, loss) in enumerate(runs)]
    summaries.append(_summary("lonely", 9, float("nan"), float("nan"), status="diverged"))
    return compute_tables({"name": "fixed", "question": "q?", "baseline": "base"}, summaries)


def test_table_rows_against_scipy(tables):
    rows = {r.label: r for r in tables.rows}
    for label, runs in FIXED.items():
        values = [a for a, _ in runs]
        cell = rows[label].cells["test_acc"]
        assert rows[label].n == cell.n == len(values)
        assert cell.mean == pytest.approx(np.mean(values))
        if len(values) > 1 and np.ptp(values) > 0:
            low, high = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
            assert cell.std == pytest.approx(np.std(values, ddof=1))
            assert (cell.ci_low, cell.ci_high) == pytest.approx((low, high))
    assert rows["lonely"].not_completed == "1 diverged" and rows["base"].not_completed == ""
    assert math.isnan(rows["lonely"].cells["test_acc"].ci_low)


def _holm_reference(p_values):
    """Holm's step-down adjustment written out: the i-th smallest p times (m - i), made
    monotone, capped at 1 — independent of wiringlab.report.stats.holm."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def test_comparisons_against_scipy_and_holm(tables):
    assert tables.baseline == "base" and tables.compared_metrics == ["test_acc", "test_loss"]
    by_key = {(c.label, c.metric): c for c in tables.comparisons}
    assert len(by_key) == 6  # 3 configs x 2 metrics
    column = {"test_acc": 0, "test_loss": 1}
    reference = {}  # (label, metric) -> scipy's Welch p
    for label in ("better", "close"):
        for metric, i in column.items():
            ours, base = [run[i] for run in FIXED[label]], [run[i] for run in FIXED["base"]]
            ref = sps.ttest_ind(ours, base, equal_var=False)
            c = by_key[(label, metric)]
            assert (c.test.t, c.test.p) == pytest.approx((ref.statistic, ref.pvalue))
            assert c.test.difference == pytest.approx(np.mean(ours) - np.mean(base))
            assert (c.n, c.n_against, c.note) == (len(ours), 4, "")
            reference[(label, metric)] = ref.pvalue
    # Holm runs over each metric's testable rows (m = 2 per metric here), untestable rows stay NaN
    testable = [c for c in tables.comparisons if not c.note]
    assert len(testable) == 4
    for metric in column:
        family = [c for c in testable if c.metric == metric]
        expected = _holm_reference([reference[(c.label, c.metric)] for c in family])
        assert [c.p_holm for c in family] == pytest.approx(expected)
        assert holm([reference[(c.label, c.metric)] for c in family]) == pytest.approx(expected)
    assert "n too small" in by_key[("lonely", "test_acc")].note and "1 vs 4" in by_key[("lonely", "test_acc")].note
    assert math.isnan(by_key[("lonely", "test_loss")].p_holm)


def test_a_logged_diagnostic_does_not_change_the_correction_of_test_acc(tables):
    """Each metric is its own Holm family; a run's own test statistics are not compared at all."""
    from wiringlab.report.table import compute_tables

    summaries = []
    for label, runs in FIXED.items():
        for seed, (a, loss) in enumerate(runs):
            summary = _summary(label, seed, a, loss)
            summary["final"].update(kernel_sparsity=a / 2 + 0.01 * seed, topology_p=0.5, topology_chi2=seed)
            summaries.append(summary)
    more = compute_tables({"name": "fixed", "baseline": "base"}, summaries)
    assert more.compared_metrics == ["test_acc", "test_loss", "kernel_sparsity"]
    holm_of = lambda t: {(c.label, c.metric): c.p_holm for c in t.comparisons if c.metric == "test_acc"}  # noqa: E731
    assert holm_of(more) == pytest.approx(holm_of(tables), nan_ok=True)


def test_markdown_renders_the_computed_structure(tables):
    from wiringlab.report.table import format_p, render_markdown

    text = render_markdown(tables)
    c = next(c for c in tables.comparisons if c.label == "better" and c.metric == "test_acc")
    row = (f"| better | test_acc | {c.n} vs {c.n_against} | {c.test.difference:.4f} | {c.test.t:.3f} | "
           f"{format_p(c.test.p)} | {format_p(c.p_holm)} |")
    assert row in text
    assert "| lonely | 1 | 0.7000 (n=1) |" in text and "1 diverged |" in text
    assert "n too small to test (n = 1 vs 4" in text


@pytest.mark.parametrize("p,text", [(0.5, "0.5000"), (0.00012, "0.0001"), (3e-7, "3.0e-07"), (float("nan"), "–"),
                                    (0.0, "< 1e-300")])
def test_p_values_never_print_as_zero(p, text):
    from wiringlab.report.table import format_p

    assert format_p(p) == text


def test_no_variance_on_either_side_is_said_not_tested():
    from wiringlab.report.table import compute_tables

    summaries = [_summary(label, seed, 0.5, 0.25) for label in ("a", "b") for seed in range(3)]
    (c, _) = compute_tables({"baseline": "a"}, summaries).comparisons
    assert math.isnan(c.test.p) and c.note == "no variance on either side: t undefined"


def test_seeds_of_one_config_on_different_devices_are_flagged():
    """A folder resumed on a GPU box after a CPU one: same config and run ids (device
    `auto`), other numbers. The table says so instead of pooling them silently."""
    from wiringlab.report.html import _results_section
    from wiringlab.report.table import compute_tables, render_markdown

    summaries = [_summary(label, seed, 0.8 + seed / 100, 0.5) for label in ("a", "b") for seed in range(3)]
    for s in summaries:
        s["provenance"] = {"device": "cpu"}
    summaries[4]["provenance"]["device"] = "cuda:0"  # config b, seed 1
    summaries.append(_summary("a", 7, 0.1, 9.0, status="failed") | {"provenance": {"device": "cuda"}})  # not counted
    tables = compute_tables({"baseline": "a"}, summaries)
    assert tables.warnings == ["b: seeds trained on different devices (2 on cpu, 1 on cuda); CPU and GPU give "
                               "different numbers for the same seed, so rerun them on one (--device) before comparing"]
    assert f"**Warning.** {tables.warnings[0]}" in render_markdown(tables)
    assert "Warning.</strong> b: seeds trained on different devices" in _results_section(tables)
    for s in summaries:
        s["provenance"]["device"] = "cpu"
    assert compute_tables({"baseline": "a"}, summaries).warnings == []


def test_stacked_wall_time_is_a_stack_share_without_a_spread():
    """Seeds trained as one stack each record the stack's wall time / members: equal by
    construction, so the table shows the mean with a marker, never "± 0.0000"."""
    from html import escape

    from wiringlab.report.html import _results_section
    from wiringlab.report.table import STACK_SHARE_NOTE, compute_tables, render_markdown

    stacked = [_summary("stacked", seed, 0.8 + seed / 100, 0.5) | {"wall_time_s": 0.4841,
                                                                  "provenance": {"stack_size": 3}}
               for seed in range(3)]
    alone = [_summary("alone", seed, 0.8 + seed / 100, 0.5) | {"provenance": {"stack_size": 1}} for seed in range(3)]
    tables = compute_tables({"baseline": "alone"}, alone + stacked)
    rows = {r.label: r for r in tables.rows}
    assert rows["stacked"].cell_text("wall_time_s") == "0.4841 (stack share)"
    assert rows["stacked"].cell_text("test_acc").startswith("0.8100 ± 0.0100 [")  # other metrics keep their spread
    low, high = sps.t.interval(0.95, 2, loc=2.0, scale=sps.sem([1.0, 2.0, 3.0]))
    assert rows["alone"].cell_text("wall_time_s") == f"2.0000 ± 1.0000 [{low:.4f}, {high:.4f}]"
    text = render_markdown(tables)
    assert "| 0.4841 (stack share) |" in text and "0.4841 ± 0.0000" not in text
    assert text.count(STACK_SHARE_NOTE) == 1 and f"**Note.** {STACK_SHARE_NOTE}" in text
    page = _results_section(tables)
    assert "0.4841 (stack share)</td>" in page and "[0.4841" not in page and escape(STACK_SHARE_NOTE) in page
    assert STACK_SHARE_NOTE not in render_markdown(compute_tables({}, alone))  # explained only when used
    assert compute_tables({}, alone).notes == []



def test_welch_with_variance_on_one_side_only_is_scipys_finite_test():
    from scipy import stats as sps

    from wiringlab.report.stats import welch_test

    a, b = [0.140625, 0.140625, 0.140625], [0.109375, 0.171875, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact, so no "precision loss" warning reaches the user
        result = welch_test(a, b)
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)  # scipy's, on the oracle
        expected = sps.ttest_ind(a, b, equal_var=False)
    assert math.isfinite(result.p) and result.p == pytest.approx(expected.pvalue)
    assert result.t == pytest.approx(expected.statistic)


@pytest.mark.parametrize("a, b", [
    ([0.41, 0.40 + 0.01], [0.5, 0.5 + 1e-17]),  # 0.41 and 0.41000000000000003
    ([0.0, 0.41 - (0.40 + 0.01)], [0.2, 0.2]),  # rounding left around 0, judged by the other side's size
    ([0.3] * 3, [1.0, 1.0 + 1e-14, 1.0]),
    ([5e-324, 1e-323], [0.0, 0.0]),  # denormals
])
def test_welch_reads_a_spread_of_rounding_as_no_variance(a, b):
    from wiringlab.report.stats import welch_test

    assert a[0] != a[1] or b[0] != b[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = welch_test(a, b)
    assert math.isnan(result.p) and math.isnan(result.t)
    assert result.difference == pytest.approx(sum(a) / len(a) - sum(b) / len(b))


def test_welch_against_a_constant_side_uses_the_other_sides_variance():
    from wiringlab.report.stats import welch_test

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = welch_test([0.41, 0.40 + 0.01], [0.30, 0.35, 0.45])
    assert one.p == pytest.approx(welch_test([0.41, 0.41], [0.30, 0.35, 0.45]).p)
    assert 0.3 < one.p < 1  # not the p of a t of 1e15
    assert welch_test([0.5, 0.5], [0.40, 0.40 + 1e-5]).p < 1e-3  # a spread of 1e-5 is variance, not rounding


@pytest.mark.parametrize("a, b", [
    ([0.935] * 3, [1e-7, 3e-7, 0.0]),  # a small-valued side still varies
    ([1000.0, 1000.0004, 1000.0002], [1000.003, 1000.0033, 1000.0031]),  # 7 standard deviations apart
    ([0.8125, 0.8125 + 6e-8], [0.75, 0.75 - 6e-8]),  # float32 resolution is variance, not rounding
])
def test_welch_tests_small_spreads_that_are_not_rounding(a, b):
    from scipy import stats as sps

    from wiringlab.report.stats import welch_test

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's, on the constant side of the oracle
        expected = sps.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_test(a, b).p == pytest.approx(expected) and welch_test(a, b).p < 0.01


def test_welch_of_two_constant_samples_is_undefined_whatever_their_values():
    from wiringlab.report.stats import welch_test

    for value in (0.1, 0.7, 0.41000000000000003):  # numpy's mean of [v] * 3 is not v for these
        result = welch_test([value] * 3, [value * 1.1] * 5)
        assert math.isnan(result.p) and result.difference == pytest.approx(-0.1 * value)
