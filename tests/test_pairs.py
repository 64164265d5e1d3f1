"""Head-to-head pairs: a recipe's `pairs` are validated, follow overrides, and are tested in the
report beside the baseline comparisons, in the same Holm family per metric."""

import json

import numpy as np
import pytest
from scipy import stats as sps

from helpers import run_recipe
from wiringlab.experiment import ConfigError, load_recipe, parse_override
from wiringlab.experiment.recipe import Recipe, effective_pairs
from wiringlab.report.html import render_report_html
from wiringlab.report.table import compute_tables, render_markdown
from wiringlab.report.stats import holm

# --- the recipe ------------------------------------------------------------------------------

GRID = """name: t
base: {data: {name: synthetic}}
grid: {train.optimizer.lr: [0.1, 0.2], train.batch_size: [32, 64]}
"""


def _load(tmp_path, pairs: str, baseline: str = ""):
    path = tmp_path / "r.yaml"
    path.write_text(GRID + pairs + baseline)
    return load_recipe(path)


def test_pairs_as_written_are_kept(tmp_path):
    recipe = _load(tmp_path, 'pairs: [["lr=0.2 batch_size=64", "lr=0.1 batch_size=64"]]\n')
    assert effective_pairs(recipe) == [["lr=0.2 batch_size=64", "lr=0.1 batch_size=64"]]


@pytest.mark.parametrize(("pairs", "baseline", "message"), [
    ('pairs: [["lr=0.2 batch_size=64", "lr=0.3 batch_size=64"]]\n', "",
     r"r\.yaml: pairs\[0\]: 'lr=0.3 batch_size=64' is not a config of this recipe; the configs are: "
     r"lr=0\.1 batch_size=32; lr=0\.1 batch_size=64"),
    ('pairs: [["lr=0.2 batch_size=64", "lr=0.2 batch_size=64"]]\n', "", r"pairs\[0\]: compares .* with itself"),
    # the first config is the baseline when none is named: its comparisons are made already
    ('pairs: [["lr=0.2 batch_size=64", "lr=0.1 batch_size=32"]]\n', "",
     r"pairs\[0\]: 'lr=0.1 batch_size=32' is the baseline"),
    ('pairs: [["lr=0.2 batch_size=64", "lr=0.1 batch_size=32"]]\n', 'baseline: "lr=0.2 batch_size=64"\n',
     r"pairs\[0\]: 'lr=0.2 batch_size=64' is the baseline"),
    ('pairs: [["lr=0.2 batch_size=64", "lr=0.1 batch_size=64"], ["lr=0.1 batch_size=64", "lr=0.2 batch_size=64"]]\n',
     "", r"pairs\[1\]: the pair .* is listed twice \(pairs\[0\]\)"),
    ('pairs: [["lr=0.2 batch_size=64"]]\n', "", r"pairs\.0"),
    ('pairs: "lr=0.2 batch_size=64"\n', "", r"pairs"),
])
def test_a_bad_pair_is_an_error_naming_the_file_and_the_pair(tmp_path, pairs, baseline, message):
    with pytest.raises(ConfigError, match=message) as caught:
        _load(tmp_path, pairs, baseline)
    assert "r.yaml" in str(caught.value)


def test_an_override_relabels_pairs_and_leaves_out_those_it_merges(tmp_path, caplog):
    recipe = _load(tmp_path, 'pairs: [["lr=0.2 batch_size=64", "lr=0.1 batch_size=64"],'
                             ' ["lr=0.2 batch_size=32", "lr=0.2 batch_size=64"]]\n')
    with caplog.at_level("WARNING", logger="wiringlab.experiment.recipe"):  # labels lose batch_size
        kept = effective_pairs(recipe, "r.yaml", [parse_override("train.batch_size=16")])
    assert kept == []  # the first is now lr=0.2 against the baseline lr=0.1, the second lr=0.2 against itself
    assert ("'lr=0.2 batch_size=64' against 'lr=0.1 batch_size=64' is not compared under these overrides "
            "(it became a comparison made already)") in caplog.text
    assert "'lr=0.2 batch_size=32' against 'lr=0.2 batch_size=64' is not compared" in caplog.text
    assert "(it became one config)" in caplog.text


def test_an_override_of_another_axis_keeps_pairs_under_their_new_labels():
    recipe = Recipe(name="t", base={"data": {"name": "synthetic"}},
                    grid={"train.optimizer.lr": [0.1, 0.2, 0.3], "train.batch_size": [32, 64]},
                    pairs=[["lr=0.3 batch_size=64", "lr=0.2 batch_size=64"]])
    assert effective_pairs(recipe, overrides=[parse_override("train.batch_size=16")]) == [["lr=0.3", "lr=0.2"]]


# --- the report ------------------------------------------------------------------------------

ACC = {"base": [0.80, 0.82, 0.81], "a": [0.85, 0.86, 0.88], "b": [0.83, 0.84, 0.82], "c": [0.79, 0.80, 0.78]}


def _summaries(acc=ACC):
    return [{"run_id": f"{label}-s{seed}", "label": label, "seed": seed, "status": "completed", "axes": {},
             "final": {"test_acc": value, "test_loss": 1 - value + 0.01 * seed}, "best_test_acc": value,
             "wall_time_s": 1.0}
            for label, values in acc.items() for seed, value in enumerate(values)]


def _welch(x, y):
    return sps.ttest_ind(x, y, equal_var=False)


def test_pairs_are_welch_tests_in_the_baseline_holm_family():
    recipe = {"name": "t", "baseline": "base", "pairs": [["a", "b"], ["c", "b"]], "run_labels": list(ACC)}
    tables = compute_tables(recipe, _summaries())
    pairs = {(c.label, c.against): c for c in tables.pairs if c.metric == "test_acc"}
    assert set(pairs) == {("a", "b"), ("c", "b")}
    for (label, against), c in pairs.items():
        reference = _welch(ACC[label], ACC[against])
        assert (c.test.t, c.test.p) == pytest.approx((reference.statistic, reference.pvalue))
        assert c.test.difference == pytest.approx(np.mean(ACC[label]) - np.mean(ACC[against]))
        assert (c.n, c.n_against, c.note) == (3, 3, "")
    # one family: 3 configs against the baseline and 2 pairs, so m = 5 for test_acc
    family = [("a", "base"), ("b", "base"), ("c", "base"), ("a", "b"), ("c", "b")]
    expected = dict(zip(family, holm([_welch(ACC[x], ACC[y]).pvalue for x, y in family])))
    rows = [c for c in tables.comparisons + tables.pairs if c.metric == "test_acc"]
    assert {(c.label, c.against): c.p_holm for c in rows} == pytest.approx(expected)
    alone = compute_tables({**recipe, "pairs": []}, _summaries())
    baseline_only = holm([_welch(ACC[x], ACC["base"]).pvalue for x in "abc"])
    assert [c.p_holm for c in alone.comparisons if c.metric == "test_acc"] == pytest.approx(baseline_only)
    assert baseline_only != pytest.approx([expected[(x, "base")] for x in "abc"])  # the pairs were paid for


def test_tables_show_pairs_and_say_which_are_not_compared_yet(tmp_path):
    recipe = {"name": "t", "baseline": "base", "pairs": [["a", "b"], ["c", "d"], ["e", "d"]],
              "run_labels": [*ACC, "d", "e"]}
    tables = compute_tables(recipe, _summaries())
    assert tables.pair_notes == ["`c` against `d`: `d` has no finished runs yet",
                                 "`e` against `d`: neither has finished runs yet"]
    text = render_markdown(tables)
    assert "## Head-to-head pairs" in text and "| config | against | metric | n vs n |" in text
    row = next(line for line in text.splitlines() if line.startswith("| a | b | test_acc |"))
    assert "| 3 vs 3 | 0.0333 |" in row
    assert "**Not compared.** `c` against `d`: `d` has no finished runs yet." in text
    assert "The family includes the head-to-head pairs below." in text
    page = render_report_html(tmp_path, recipe, _summaries(), tables, [])
    assert '<section id="pairs"><h2>Head-to-head pairs</h2>' in page and "<td>a</td><td>b</td><td>test_acc</td>" in page
    assert '<a href="#pairs">Head-to-head</a>' in page
    assert "neither has finished runs yet" in page


def test_without_pairs_the_report_is_as_before(tmp_path):
    tables = compute_tables({"name": "t", "baseline": "base", "run_labels": list(ACC)}, _summaries())
    text = render_markdown(tables)
    assert tables.pairs == [] and "Head-to-head" not in text and "The family includes" not in text
    assert "Head-to-head" not in render_report_html(tmp_path, {"name": "t"}, _summaries(), tables, [])


def test_pairs_are_tested_even_when_the_baseline_has_no_runs_yet():
    acc = {k: v for k, v in ACC.items() if k != "base"}
    tables = compute_tables({"name": "t", "baseline": "base", "pairs": [["a", "b"]], "run_labels": list(ACC)},
                            _summaries(acc))
    assert tables.comparisons == [] and "has no finished runs yet" in tables.no_comparison
    assert [c.p_holm for c in tables.pairs if c.metric == "test_acc"] == pytest.approx(
        [_welch(ACC["a"], ACC["b"]).pvalue])


# --- end to end ------------------------------------------------------------------------------

SWEEP = """name: pairs
base:
  data: {name: synthetic, options: {n_train: 128, n_test: 64, input_shape: [8], num_classes: 3}}
  model: {kind: mlp, hidden: [8]}
  train: {epochs: 1, batch_size: 32, progress: false}
grid: {train.optimizer.lr: [0.01, 0.1, 0.5]}
seeds: [0, 1]
pairs: [["lr=0.5", "lr=0.1"]]
"""


def test_a_dry_run_says_which_pairs_an_override_leaves_out(tmp_path, caplog, capsys):
    from wiringlab.cli import main

    path = tmp_path / "pairs.yaml"
    path.write_text(SWEEP)
    with caplog.at_level("WARNING", logger="wiringlab.experiment.recipe"):
        assert main(["run", str(path), "--out", str(tmp_path / "out"), "--dry-run",
                     "--set", "train.optimizer.lr=0.2"]) == 0
    assert f"{path}: pairs: 'lr=0.5' against 'lr=0.1' is not compared under these overrides" in caplog.text
    assert not (tmp_path / "out").exists() and "2 runs" in capsys.readouterr().out


def test_a_sweep_records_its_pairs_and_its_report_tests_them(tmp_path):
    _, out = run_recipe(tmp_path, SWEEP)
    assert json.loads((out / "recipe.json").read_text())["pairs"] == [["lr=0.5", "lr=0.1"]]
    table = (out / "table.md").read_text()
    assert table.count("| lr=0.5 | lr=0.1 | test_acc | 2 vs 2 |") == 1
    assert "Head-to-head pairs" in (out / "report.html").read_text()
