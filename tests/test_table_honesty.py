"""What a results table shows around its statistics: the n of each cell, enough decimals,
the baseline and row order a recipe asked for, and why a comparison is missing."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from wiringlab.report.figures import curve_band
from wiringlab.report.stats import summarize, welch_test
from wiringlab.report.table import compute_tables, format_number, render_markdown


def _run(label, seed, test_acc, status="completed", **final):
    return {"run_id": f"{label}-s{seed}", "label": label, "seed": seed, "status": status, "axes": {},
            "final": {"test_acc": test_acc, "test_loss": 1.0 - test_acc, **final}, "best_test_acc": test_acc,
            "wall_time_s": 1.0}


def _recipe(labels, baseline=None, per_label=3):
    run_labels = [label for label in labels for _ in range(per_label)]
    run_ids = [f"{label}-s{seed}" for label in labels for seed in range(per_label)]
    return {"name": "t", "baseline": baseline, "run_labels": run_labels, "run_ids": run_ids}


def test_a_cell_over_fewer_runs_than_its_row_says_how_many():
    runs = [_run("a", 0, 0.5, extra=0.1), _run("a", 1, 0.6, extra=float("nan")), _run("a", 2, 0.7, extra=0.3)]
    row = compute_tables(_recipe(["a"]), runs).rows[0]
    assert row.n == 3
    assert row.cell_text("extra") == f"{summarize([0.1, 0.3]).format()} (n=2) {summarize([0.1, 0.3]).format_interval()}"
    assert "(n=" not in row.cell_text("test_acc")  # every run has it
    other = compute_tables(_recipe(["a", "b"]), [*runs, _run("b", 0, 0.4), _run("b", 1, 0.5)]).rows[1]
    assert other.cell_text("extra") == "–"  # a metric this config never logs: no "(n=0)"


@pytest.mark.parametrize("values, shown", [
    ([3e-5, 3.1e-5, 2.9e-5], "0.000030 ± 0.000001 [0.000028, 0.000032]"),  # not 0.0000 ± 0.0000
    ([12340.0, 12351.0, 12346.0], "12345.6667 ± 5.5076 [12331.9851, 12359.3482]"),  # interval as exact as the mean
    ([0.61, 0.62, 0.63], "0.6200 ± 0.0100 [0.5952, 0.6448]"),  # the usual cell is unchanged
    ([0.6323, 0.6323 + 1e-8, 0.6323], "0.6323 ± 0.0000 [0.6323, 0.6323]"),  # float32 noise adds no decimals
    ([1e-12, 2e-12, 3e-12], "2.00e-12 ± 1.00e-12 [-4.84e-13, 4.48e-12]"),  # past 10 decimals: scientific
])
def test_cells_keep_the_digits_that_matter(values, shown):
    s = summarize(values)
    assert f"{s.format()} {s.format_interval()}" == shown


def test_standalone_numbers_never_show_a_nonzero_value_as_zero():
    assert format_number(2e-5) == "2.000e-05" and format_number(-2e-5) == "-2.000e-05"
    assert format_number(0.0) == "0.0000" and format_number(0.1234) == "0.1234"
    assert format_number(12345.678) == "12345.6780" and format_number(1.5e7) == "1.500e+07"


def test_the_default_baseline_is_the_recipes_first_config_even_before_it_finishes():
    recipe = _recipe(["first", "second", "third"])
    runs = [_run("third", s, 0.5 + s / 100) for s in range(3)] + [_run("second", s, 0.6 + s / 100) for s in range(3)]
    tables = compute_tables(recipe, runs)
    assert [row.label for row in tables.rows] == ["first", "second", "third"]  # recipe order, not finishing order
    assert tables.named_baseline == "first" and tables.baseline is None and not tables.comparisons
    text = render_markdown(tables)
    assert "No comparison: the baseline `first` has no finished runs yet." in text


def test_only_the_baseline_finished_says_the_others_have_not():
    tables = compute_tables(_recipe(["a", "b"], "a"), [_run("a", s, 0.5 + s / 100) for s in range(3)])
    assert tables.no_comparison == "no config other than the baseline has finished runs yet"
    older = {k: v for k, v in _recipe(["a", "b"], "a").items() if k != "run_labels"}  # before run_labels
    assert compute_tables(older, [_run("a", s, 0.5) for s in range(3)]).no_comparison == (
        "only the baseline has finished runs (3 of the recipe's runs have not finished)")
    assert compute_tables({"name": "t"}, [_run("a", 0, 0.5)]).no_comparison == "there is only one config"


def test_the_markdown_comparison_shows_n_on_each_side():
    runs = [_run("a", s, 0.5 + s / 100) for s in range(3)] + [_run("b", s, 0.6 + s / 100) for s in range(2)]
    text = render_markdown(compute_tables(_recipe(["a", "b"], "a"), runs))
    assert "| b | test_acc | 2 vs 3 |" in text


@pytest.mark.parametrize("a, b", [
    ([1e-10, 2e-10, 3e-10], [0.6] * 3),  # a small spread is a spread, whatever the other side's size
    ([1e12, 1e12 + 1, 1e12 + 2], [1e12 + 5, 1e12 + 6, 1e12 + 7]),
])
def test_welch_tests_spreads_beyond_float64_rounding(a, b):
    with warnings.catch_warnings():  # scipy warns of the constant side's zero variance
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = sps.ttest_ind(a, b, equal_var=False)
    ours = welch_test(a, b)
    assert math.isfinite(ours.t) and ours.t == pytest.approx(ref.statistic, rel=1e-6)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-6)


def test_a_band_needs_two_runs():
    histories = [[{"acc": 0.5}, {"acc": 0.6}], [{"acc": 0.7}]]  # ragged: one run at epoch 2
    _, mean, std = curve_band(histories, "acc")
    assert mean.tolist() == pytest.approx([0.6, 0.6])
    assert std[0] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and math.isnan(std[1])


def test_a_runs_own_test_statistics_are_not_averaged_in_the_table():
    runs = [_run("a", s, 0.5 + s / 100, topology_p=0.1 * (s + 1), topology_chi2=700.0 + s) for s in range(3)]
    tables = compute_tables(_recipe(["a"]), runs)
    assert "topology_p" not in tables.metrics and "topology_chi2" not in tables.metrics
    assert any(note.startswith("topology_p, topology_chi2 (each run's own") for note in tables.notes)


def test_a_metric_one_side_never_logs_is_not_compared():
    """kernel_mean of a config without a kernel: no row of "n too small (2 vs 0)" noise; a
    config whose runs all diverged still gets its rows, saying n = 0."""
    runs = [_run("none", s, 0.5 + s / 100) for s in range(3)]
    runs += [_run("kernel", s, 0.6 + s / 100, kernel_mean=0.3 + s / 100) for s in range(3)]
    runs += [_run("blown", s, float("nan"), status="diverged") for s in range(2)]
    tables = compute_tables(_recipe(["none", "kernel", "blown"], "none"), runs)
    compared = {(c.label, c.metric) for c in tables.comparisons}
    assert ("kernel", "test_acc") in compared and ("kernel", "kernel_mean") not in compared
    assert ("blown", "test_acc") in compared
