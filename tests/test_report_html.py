"""report.html of a finished quickstart folder: every section, table and figure is in the
page (parsed with html.parser), its numbers are table.md's, it is self-contained, and it
renders in headless Chromium with every image loaded and no console message."""

import base64
import re
import shutil
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import pytest

from browser import CHROMIUM, check_in_chromium
from conftest import needs
from wiringlab.cli import main
from wiringlab.report import build as report_build
from wiringlab.report.build import load_results
from wiringlab.report.figures import save_figure
from wiringlab.report.table import compute_tables, format_number, format_p

needs_chromium = needs("chromium", CHROMIUM is not None, "Chromium is not installed: apt-get install chromium")

EXTRA_MARKDOWN = """
## Extra analysis

Effective sparsity per layer, **threshold 0.1**.

| layer | sparsity |
|---|---:|
| linear0 | 0.25 |
| linear1 | 0.50 |
"""


def _extra_section(out_dir, recipe, summaries):
    """What another issue's analysis adds: Markdown with a table, and a figure of its own."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow([[0, 1], [1, 0]])
    return EXTRA_MARKDOWN, {"extra_heatmap": save_figure(fig, out_dir / "figures" / "extra" / "heatmap.png")}


def _nothing_here(out_dir, recipe, summaries):
    """A section for run types this folder does not have."""
    return "", {}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.section_ids, self.h2, self.images, self.links, self.tags = [], [], [], [], []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._heading = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.section_ids.append(attrs.get("id"))
        elif tag == "h2":
            self._heading = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag in ("a", "link") and "href" in attrs:
            self.links.append(attrs["href"])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "h2":
            self.h2.append("".join(self._heading).strip())
            self._heading = None
        elif tag in ("td", "th"):
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        for sink in (self._heading, self._cell):
            if sink is not None:
                sink.append(data)


@pytest.fixture(scope="module")
def folder(quickstart_folder, tmp_path_factory):
    """A copy of the finished quickstart folder (2 epochs, seeds 0 1), rebuilt by
    `wiringlab report DIR` with an extra report section and a figure no section claims."""
    out = tmp_path_factory.mktemp("report") / "quickstart"
    shutil.copytree(quickstart_folder[0], out)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    save_figure(fig, out / "figures" / "orphan.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report_build, "REPORT_SECTIONS", [*report_build.REPORT_SECTIONS, _nothing_here, _extra_section])
        assert main(["report", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def page(folder):
    parser = _Page()
    parser.feed((folder / "report.html").read_text())
    return parser


def _table(page, *header_start):
    """The first parsed table whose header row starts with `header_start`."""
    return next(t for t in page.tables if t and tuple(t[0][:len(header_start)]) == header_start)


def test_every_section_is_there(folder, page):
    section_headings = re.findall(r"^## (.+)$", (folder / "table.md").read_text(), re.M)[1:]  # after "Compared"
    assert "Learning curves" in section_headings and "Extra analysis" in section_headings
    assert page.h2 == ["Recipe and config", "Results", "Compared with the baseline", *section_headings,
                       "Other figures", "Provenance"]
    assert page.section_ids == ["recipe", "results", "comparisons",
                                *[f"section-{i}" for i in range(len(section_headings))], "figures", "provenance"]
    text = " ".join("".join(page.text).split())
    assert "does an exponential spatial kernel" in text  # the question
    assert "hidden: [256, 256]" in text and "model.layer.kernel:" in text  # base config and zip as YAML
    assert "train.epochs=2" in text  # the overrides it was run with
    assert "Effective sparsity per layer, threshold 0.1." in text  # the extra section's paragraph


def test_every_figure_is_embedded_once(folder, page):
    files = sorted((folder / "figures").rglob("*.png"))
    names = {p.relative_to(folder).as_posix() for p in files}
    assert {"figures/learning_curves.png", "figures/extra/heatmap.png", "figures/orphan.png"} <= names
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    embedded = sorted(base64.b64decode(src.split(",", 1)[1]) for src in page.images)
    assert embedded == sorted(p.read_bytes() for p in files)


def test_a_relative_folder_path_embeds_every_figure(folder, monkeypatch):
    """`wiringlab report runs/NAME` (the default layout) from the folder's parent: section
    figures come back as paths relative to the working directory, and are still found."""
    monkeypatch.chdir(folder.parent)
    assert main(["report", folder.name]) == 0
    page = _Page()
    page.feed((folder / "report.html").read_text())
    assert "missing figure" not in "".join(page.text)
    files = sorted((folder / "figures").rglob("*.png"))
    overfitting = [p for p in files if p.name.startswith("overfitting_")]
    assert overfitting, "the quickstart folder has per-config overfitting figures"
    embedded = sorted(base64.b64decode(src.split(",", 1)[1]) for src in page.images)
    assert embedded == sorted(p.read_bytes() for p in files)


def test_a_stored_config_this_version_rejects_does_not_break_the_report(quickstart_folder, tmp_path):
    """Results folders outlive config changes: a run whose config.yaml no longer validates
    is left out of the analyses that rebuild models, with the reason; the report is built."""
    out = tmp_path / "quickstart"
    shutil.copytree(quickstart_folder[0], out)
    config = next((out / "runs").iterdir()) / "config.yaml"
    config.write_text(config.read_text() + "retired_option: 1\n")
    assert main(["report", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "## Similarity across seeds\n\nNot computed:" in table and "retired_option" in table


def test_tables_hold_the_numbers_of_table_md(folder, page):
    recipe, summaries = load_results(folder)
    tables = compute_tables(recipe, summaries)
    results = _table(page, "config", "n", "test_acc")
    comparisons = _table(page, "config", "metric", "n vs baseline")
    markdown = (folder / "table.md").read_text()
    assert len(results) - 1 == len(tables.rows) == 3
    for html_row, row in zip(results[1:], tables.rows):
        assert html_row[0] == row.label and html_row[1] == str(row.n) == "2"
        for cell, metric in zip(html_row[2:], tables.metrics, strict=False):
            assert cell == row.cell_text(metric)  # "mean ± std [low, high]", as in table.md
            assert cell in markdown
    assert len(comparisons) - 1 == len(tables.comparisons) >= 4
    for html_row, c in zip(comparisons[1:], tables.comparisons):
        assert html_row[:3] == [c.label, c.metric, "2 vs 2"]
        assert html_row[5] == (c.note or format_p(c.test.p)) and html_row[6] == format_p(c.p_holm)
    assert _table(page, "layer", "sparsity") == [["layer", "sparsity"], ["linear0", "0.25"], ["linear1", "0.50"]]


def test_provenance_lists_versions_commit_device_and_wall_time(folder, page):
    _, summaries = load_results(folder)
    environment = _table(page, "wiringlab", "git_commit", "torch", "python", "device", "device_name")
    first = summaries[0]["provenance"]
    assert environment[1][:5] == [first["wiringlab"], str(first["git_commit"]), first["torch"], first["python"],
                                  first["device"]]
    runs = _table(page, "run id", "config", "seed", "status")
    assert len(runs) - 1 == len(summaries) == 6
    total = sum(s["wall_time_s"] for s in summaries)
    assert f"{format_number(total, 1)} s of run wall time" in "".join(page.text)


def test_page_is_self_contained(folder, page):
    assert "script" not in page.tags and "iframe" not in page.tags
    assert all(href.startswith("#") for href in page.links)
    source = (folder / "report.html").read_text()
    assert "Content-Security-Policy" in source and "img-src data:" in source
    assert not re.search(r"(src|href)=\"(?!data:|#)", source)


@needs_chromium
def test_report_renders_in_chromium(folder, tmp_path):
    check = check_in_chromium(folder / "report.html", tmp_path)
    assert check.ok, check
    assert check.images == len(list((folder / "figures").rglob("*.png"))) >= 3
    assert "quickstart" in check.title and check.height > 2000


def _break_first_image(source: str, how: str) -> str:
    first = re.search(r'src="(data:image/png;base64,[^"]+)"', source).group(1)
    replacement = {"corrupt": "data:image/png;base64,iVBORw0KGgoAAAA",
                   "remote": "http://example.invalid/figure.png",
                   "file": "figures/learning_curves.png"}[how]
    return source.replace(first, replacement, 1)


@needs_chromium
@pytest.mark.parametrize("how", ["corrupt", "remote", "file"])
def test_the_browser_check_fails_on_a_broken_image(folder, tmp_path, how):
    broken = tmp_path / "report.html"
    broken.write_text(_break_first_image((folder / "report.html").read_text(), how))
    check = check_in_chromium(broken, tmp_path / "chromium")
    assert not check.ok
    assert len(check.broken) == 1 and check.images >= 3
