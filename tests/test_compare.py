"""`wiringlab compare DIR1 DIR2 ...`: the same metrics of several results folders side by side."""

import json
from html.parser import HTMLParser

import pytest

from wiringlab.cli import main
from wiringlab.report.stats import summarize

RECIPE = """
name: {name}
question: does lr matter on {name}?
base:
  data: {{name: synthetic, options: {{n_train: 192, n_test: 96, input_shape: [12], num_classes: 3}}}}
  model: {{kind: mlp, hidden: [8], activation: tanh}}  # tanh: stacked on CPU (ReLU MLPs train alone, fused)
  train: {{epochs: 1, batch_size: 64, progress: false, optimizer: {{name: sgd, lr: 0.1}}}}
grid:
  train.optimizer.lr: {lrs}
seeds: [0, 1]
"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two results folders sharing the config lr=0.1; lr=0.05 only in the first, lr=0.2 only in the second."""
    root = tmp_path_factory.mktemp("compare")
    out = []
    for name, lrs in [("first", "[0.1, 0.05]"), ("second", "[0.1, 0.2]")]:
        path = root / f"{name}.yaml"
        path.write_text(RECIPE.format(name=name, lrs=lrs))
        assert main(["run", str(path), "--out", str(root / name)]) == 0
        out.append(root / name)
    return out


def _cell(folder, label, metric):
    finals = [json.loads(p.read_text()) for p in (folder / "runs").glob("*/summary.json")]
    s = summarize([f["final"][metric] for f in finals if f["label"] == label])
    return f"{s.mean:.4f} ± {s.std:.4f} (n={s.n})"


def _rows(markdown):
    return {tuple(cells[:2]): cells[2:] for line in markdown.splitlines() if line.startswith("| lr=")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}


def test_compare_two_folders_side_by_side(folders, capsys, tmp_path):
    first, second = folders
    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "c.md")]) == 0
    printed = capsys.readouterr().out
    assert "| config | metric | first | second |" in printed
    assert "| first | first | does lr matter on first? | – | 4 (4) |" in printed
    rows = _rows(printed)
    assert rows[("lr=0.1", "test_acc")] == [_cell(first, "lr=0.1", "test_acc"), _cell(second, "lr=0.1", "test_acc")]
    assert rows[("lr=0.05", "test_loss")] == [_cell(first, "lr=0.05", "test_loss"), "–"]
    assert rows[("lr=0.2", "train_acc")] == ["–", _cell(second, "lr=0.2", "train_acc")]
    assert (tmp_path / "c.md").read_text() in printed
    # the seeds trained as one stack, each with the stack's time / members: no spread shown
    assert all(c.endswith("(stack share, n=2)") for c in rows[("lr=0.1", "wall_time_s")])
    assert "**Note.** “(stack share)”" in printed


def test_compare_writes_html_and_selects_metrics(folders, tmp_path, capsys):
    assert main(["compare", *map(str, folders), "--metric", "test_acc", "--out", str(tmp_path / "c.html")]) == 0
    rows = _rows(capsys.readouterr().out)
    assert {metric for _, metric in rows} == {"test_acc"} and len(rows) == 3

    class Cells(HTMLParser):
        cells: list = []

        def handle_data(self, data):
            self.cells.append(data.strip())

    parser = Cells()
    parser.feed((tmp_path / "c.html").read_text())
    assert _cell(folders[0], "lr=0.1", "test_acc") in parser.cells


def test_same_folder_names_are_told_apart_by_path(folders, tmp_path, capsys):
    import shutil

    copy = tmp_path / "elsewhere" / folders[0].name
    shutil.copytree(folders[0], copy)
    assert main(["compare", str(folders[0]), str(copy)]) == 0
    assert f"| {folders[0]} | {copy} |" in capsys.readouterr().out


def test_compare_errors_say_what_is_wrong(folders, tmp_path, capsys):
    assert main(["compare", str(folders[0]), str(tmp_path)]) == 2
    assert "not a wiringlab results folder" in capsys.readouterr().err
    assert main(["compare", *map(str, folders), "--out", str(tmp_path / "c.txt")]) == 2
    assert ".md or .html" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(folders[0])])
    assert exit_info.value.code == 2 and "at least two" in capsys.readouterr().err


def test_settings_that_differ_between_the_folders_are_listed(folders, capsys):
    first, second = folders
    assert main(["compare", str(first), str(second)]) == 0
    printed = capsys.readouterr().out
    assert "| grid: train.optimizer.lr | `[0.1, 0.05]` | `[0.1, 0.2]` |" in printed
    assert "train.epochs" not in printed  # the same in both: not listed


def test_settings_as_run_put_overrides_over_the_base():
    from wiringlab.report.compare import _differences, settings_as_run

    recipe = {"base": {"train": {"epochs": 4, "optimizer": {"name": "sgd", "lr": 0.1}}}, "seeds_run": [0, 1],
              "grid": {"model.hidden": [[8], [16]]},
              "overrides": {"train.epochs": 1, "train.optimizer": {"name": "adam"}}}
    assert settings_as_run(recipe) == {"train.epochs": 1, "train.optimizer.name": "adam", "seeds": [0, 1],
                                       "grid: model.hidden": [[8], [16]]}

    class Folder:  # what _differences reads of a FolderResults
        def __init__(self, name, recipe):
            self.name, self.recipe = name, recipe

    same = _differences([Folder("a", recipe), Folder("b", recipe)])
    assert same[-1] == "The folders ran the same settings (base, overrides, axes, seeds)."
    spelled = {**recipe, "grid": {"model.hidden": [[8], [16]]}, "base": {**recipe["base"], "x": "1e-3"}}
    assert _differences([Folder("a", {**recipe, "base": {**recipe["base"], "x": 0.001}}), Folder("b", spelled)])[-1] \
        == "The folders ran the same settings (base, overrides, axes, seeds)."  # 1e-3 as YAML reads it is 0.001
    seeds = _differences([Folder("a", recipe), Folder("b", {**recipe, "seeds_run": [2]})])
    assert "Only the seeds differ" in seeds[1] and "| seeds | `[0, 1]` | `[2]` |" in seeds
    other = {**recipe, "overrides": {}}
    lines = _differences([Folder("a", recipe), Folder("b", other)])
    assert "| train.epochs | `1` | `4` |" in lines and "| train.optimizer.lr | – | `0.1` |" in lines


def test_runs_that_did_not_complete_are_shown_not_hidden(folders, tmp_path, capsys):
    """A config whose runs all diverged is not "–" like a config never run."""
    import shutil

    copy = tmp_path / "first"
    shutil.copytree(folders[0], copy)
    for path in (copy / "runs").glob("*/summary.json"):
        summary = json.loads(path.read_text())
        if summary["label"] == "lr=0.05" or (summary["label"] == "lr=0.1" and summary["seed"] == 0):
            path.write_text(json.dumps({**summary, "status": "diverged"}))
    capsys.readouterr()
    assert main(["compare", str(copy), str(folders[1]), "--out", str(tmp_path / "c.md")]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[("lr=0.05", "test_acc")] == ["– (2 diverged)", "–"]
    assert rows[("lr=0.1", "test_acc")][0].endswith("(n=1; 1 diverged)")
    assert "| first | first | does lr matter on first? | – | 4 (1) |" in (tmp_path / "c.md").read_text()


def test_an_empty_cell_names_what_did_not_complete_only_when_nothing_did():
    from wiringlab.report.compare import _cell

    assert _cell(summarize([]), not_completed="1 diverged", none_completed=False) == "–"  # a metric it never logs
    assert _cell(summarize([]), not_completed="2 diverged", none_completed=True) == "– (2 diverged)"
    assert _cell(summarize([0.5, 0.7]), not_completed="1 failed") == f"{summarize([0.5, 0.7]).format()} (n=2; 1 failed)"
