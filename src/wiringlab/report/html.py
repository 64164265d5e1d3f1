"""report.html: one self-contained page per results folder.

What it shows, in order: the recipe's question and config, the results table (mean ±
sample std, n, 95% t-interval), every config against the baseline (difference, Welch
t, p, Holm-adjusted p, or why a comparison cannot be tested), the recipe's head-to-head
pairs the same way, each report section of
`REPORT_SECTIONS` (its Markdown converted, its figures under it), every other figure in
`figures/`, and provenance (versions, commit, device, wall time of each run).

Self-contained by construction: figures are embedded as base64 data URIs, the CSS is
inline, there is no script, and a Content-Security-Policy meta tag forbids loading
anything else, so a page that tried to reach the network would fail visibly (the
browser test in tests/test_report_html.py renders it in headless Chromium).
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..experiment.store import atomic_write_text
from .comparisons import PAIRS_CAPTION
from .markdown import markdown_to_html, render_inline
from .table import RESULTS_CAPTION, ResultsTables, comparison_caption, format_number, format_p, override_settings

__all__ = ["ReportSection", "FigureEmbedder", "render_report_html", "html_page", "REPORT_CSP"]

IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp"}
REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
              "base-uri 'none'; form-action 'none'")
PROVENANCE_KEYS = ["wiringlab", "git_commit", "torch", "python", "device", "device_name", "threads", "hostname"]

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dee7; --accent:#2f5fb3; --bg-soft:#f5f7fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 1.8em; margin: 0 0 4px; } h2 { font-size: 1.35em; margin: 36px 0 8px;
     padding-bottom: 4px; border-bottom: 1px solid var(--line); } h3 { font-size: 1.1em; margin: 22px 0 6px; }
.meta, .caption, figcaption { color: var(--muted); font-size: 0.9em; }
.question { background: var(--bg-soft); border-left: 4px solid var(--accent); padding: 10px 14px;
            margin: 14px 0; font-size: 1.08em; }
nav { margin: 12px 0 0; font-size: 0.92em; } nav a { margin-right: 14px; color: var(--accent); }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 0.88em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg-soft); white-space: nowrap; } tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; white-space: nowrap; } .ci { color: var(--muted); font-size: 0.9em; display: block; }
.sig { color: #1a7f37; font-weight: 600; } .untested { color: #9a6700; } .bad { color: #cf222e; }
pre { background: var(--bg-soft); border: 1px solid var(--line); padding: 10px 12px; overflow-x: auto;
      font-size: 0.85em; line-height: 1.35; } code { font-size: 0.92em; }
figure { margin: 14px 0 22px; } figure img, p img { max-width: 100%; height: auto; border: 1px solid var(--line); }
dl.recipe { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dl.recipe dt { font-weight: 600; } dl.recipe dd { margin: 0; }
details { margin: 8px 0; } summary { cursor: pointer; color: var(--accent); }
.missing { color: #cf222e; font-style: italic; }
"""


@dataclass
class ReportSection:
    """One entry of REPORT_SECTIONS, after it ran: its name, Markdown and figures."""

    name: str
    markdown: str
    figures: dict[str, Path] = field(default_factory=dict)


class FigureEmbedder:
    """Turns figure files inside a results folder into data URIs and remembers which it embedded."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir).resolve()
        self.embedded: set[Path] = set()

    def resolve(self, src: str | Path) -> Path | None:
        """`src` as a file inside the folder: absolute, relative to the folder (Markdown
        links), or relative to the working directory (a path built from a relative folder)."""
        path = Path(src)
        if not path.is_absolute():
            inside = self.out_dir / path
            path = inside if inside.is_file() or not path.is_file() else path
        path = path.resolve()
        if not path.is_relative_to(self.out_dir) or path.suffix.lower() not in IMAGE_TYPES or not path.is_file():
            return None
        return path

    def data_uri(self, src: str | Path) -> str | None:
        """`data:<type>;base64,...` of `src` (relative to the folder), or None if it is not an image there."""
        path = self.resolve(src)
        if path is None:
            return None
        self.embedded.add(path)
        return f"data:{IMAGE_TYPES[path.suffix.lower()]};base64,{base64.b64encode(path.read_bytes()).decode()}"

    def figure(self, src: str | Path, caption: str) -> str:
        uri = self.data_uri(src)
        if uri is None:
            return f'<p class="missing">[missing figure: {html.escape(str(src))}]</p>'
        return (f'<figure><img src="{uri}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _e(value) -> str:
    return html.escape(str(value))


def _yaml(data) -> str:
    return f"<pre>{_e(yaml.safe_dump(data, sort_keys=False, default_flow_style=None).strip())}</pre>"


def _baseline_text(recipe: dict, tables: ResultsTables) -> str:
    if tables.named_baseline is None:
        return "none (no runs)"
    text = tables.named_baseline if recipe.get("baseline") else f"{tables.named_baseline} (the first config)"
    return text if tables.baseline is not None else f"{text}: no finished runs yet"


def _recipe_section(recipe: dict, tables: ResultsTables, first_config: str | None) -> str:
    seeds = recipe.get("seeds_run", recipe.get("seeds", []))
    rows = [("seeds", ", ".join(map(str, seeds))), ("runs", str(len(recipe.get("run_ids", [])))),
            ("baseline", _baseline_text(recipe, tables))]
    if recipe.get("overrides"):
        rows.append(("overrides", override_settings(recipe["overrides"])
                     + " (given on the command line; they replace the base and grid values below)"))
    parts = ['<section id="recipe"><h2>Recipe and config</h2><dl class="recipe">']
    parts += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows]
    parts.append("</dl>")
    for key, title in (("grid", "Grid (cartesian product)"), ("zip", "Zipped axes (advanced together)")):
        if recipe.get(key):
            parts += [f"<h3>{title}</h3>", _yaml(recipe[key])]
    parts += ["<h3>Base config</h3>", '<p class="caption">As written in the recipe; defaults fill the rest.</p>',
              _yaml(recipe.get("base", {}))]
    if first_config:
        parts.append(f"<details><summary>Full config of the first run (config.yaml)</summary>"
                     f"<pre>{_e(first_config.strip())}</pre></details>")
    return "\n".join(parts) + "</section>"


def _results_section(tables: ResultsTables) -> str:
    head = "".join(f"<th>{_e(m)}</th>" for m in ["config", "n", *tables.metrics, "not completed"])
    rows = []
    for row in tables.rows:
        cells = []
        for m in tables.metrics:
            value, interval = row.cell_parts(m)  # the same text as table.md's cell
            ci = f' <span class="ci">{_e(interval)}</span>' if interval else ""
            cells.append(f'<td class="num">{_e(value)}{ci}</td>')
        flag = f'<td class="bad">{_e(row.not_completed)}</td>' if row.not_completed else "<td>–</td>"
        rows.append(f"<tr><td>{_e(row.label)}</td><td class=\"num\">{row.n}</td>{''.join(cells)}{flag}</tr>")
    notes = "".join(f'<p class="caption"><strong>Note.</strong> {_e(n)}</p>' for n in tables.notes)
    warnings = "".join(f'<p class="bad"><strong>Warning.</strong> {_e(w)}</p>' for w in tables.warnings)
    return (f'<section id="results"><h2>Results</h2><p class="caption">{_e(RESULTS_CAPTION)}</p>'
            f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>{notes}{warnings}</section>")


def _comparison_rows(rows, with_against: bool) -> str:
    """<tr>s of comparison rows: config, [against,] metric, n, difference, t, p, Holm, verdict."""
    out = []
    for c in rows:
        if c.note:
            p_cell, verdict = f'<td class="untested">{_e(c.note)}</td>', '<td class="untested">not tested</td>'
        else:
            significant = math.isfinite(c.p_holm) and c.p_holm < 0.05
            p_cell = f'<td class="num">{format_p(c.test.p)}</td>'
            verdict = '<td class="sig">different</td>' if significant else "<td>not shown different</td>"
        against = f"<td>{_e(c.against)}</td>" if with_against else ""
        out.append(f"<tr><td>{_e(c.label)}</td>{against}<td>{_e(c.metric)}</td><td class=\"num\">{c.n} vs "
                   f"{c.n_against}</td><td class=\"num\">{format_number(c.test.difference)}</td>"
                   f"<td class=\"num\">{format_number(c.test.t, 3)}</td>{p_cell}"
                   f"<td class=\"num\">{format_p(c.p_holm)}</td>{verdict}</tr>")
    return "".join(out)


def _table(columns: list[str], body: str) -> str:
    head = "".join(f"<th>{h}</th>" for h in columns)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


LOW_POWER = ("A p-value needs at least 2 finite values on each side; with n = 2 or 3 per side a test "
             "has little power, so “not shown different” is not evidence of no difference.")
TESTED = ["difference", "Welch t", "p", "p (Holm)", "at α = 0.05 (Holm)"]


def _comparisons_section(tables: ResultsTables) -> str:
    if not tables.comparisons:
        why = render_inline(tables.no_comparison or "no config was compared")
        return f'<section id="comparisons"><h2>Compared with the baseline</h2><p>No comparison: {why}.</p></section>'
    caption = (f"Each config minus the baseline <code>{_e(tables.baseline)}</code>. "
               f"{_e(comparison_caption(tables))} {LOW_POWER}")
    return (f'<section id="comparisons"><h2>Compared with the baseline</h2><p class="caption">{caption}</p>'
            f"{_table(['config', 'metric', 'n vs baseline', *TESTED], _comparison_rows(tables.comparisons, False))}"
            "</section>")


def _pairs_section(tables: ResultsTables) -> str:
    """The recipe's head-to-head pairs ("" when it lists none)."""
    if not tables.pairs and not tables.pair_notes:
        return ""
    parts = ['<section id="pairs"><h2>Head-to-head pairs</h2>']
    if tables.pairs:
        parts += [f'<p class="caption">{render_inline(PAIRS_CAPTION)} {LOW_POWER}</p>',
                  _table(["config", "against", "metric", "n vs n", *TESTED], _comparison_rows(tables.pairs, True))]
    parts += [f"<p><strong>Not compared.</strong> {render_inline(note)}.</p>" for note in tables.pair_notes]
    return "".join(parts) + "</section>"


def _analysis_section(index: int, section: ReportSection, figures: FigureEmbedder) -> str:
    body = markdown_to_html(section.markdown, figures.data_uri)
    title = "" if body.lstrip().startswith(("<h1", "<h2")) else f"<h2>{_e(section.name)}</h2>"
    images = {n: p for n, p in section.figures.items() if Path(p).suffix.lower() in IMAGE_TYPES}
    shown = [figures.figure(path, name) for name, path in images.items()
             if figures.resolve(path) not in figures.embedded]
    data = [Path(p).name for n, p in section.figures.items() if n not in images]  # e.g. similarity.csv
    if data:
        files = ", ".join(f"<code>{_e(name)}</code>" for name in data)
        shown.append(f'<p class="caption">Data in the results folder: {files}.</p>')
    return f'<section id="section-{index}">{title}\n{body}\n{"".join(shown)}</section>'


def _other_figures(out_dir: Path, figures: FigureEmbedder) -> str:
    folder = Path(out_dir) / "figures"
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_TYPES) if folder.is_dir() else []
    rest = [p for p in paths if p.resolve() not in figures.embedded]
    if not rest:
        return ""
    shown = "".join(figures.figure(p, str(p.relative_to(out_dir))) for p in rest)
    return ('<section id="figures"><h2>Other figures</h2><p class="caption">Figures in <code>figures/</code> '
            f"that no report section showed.</p>{shown}</section>")


def _run_row(s: dict) -> str:
    status_class = "" if s["status"] == "completed" else ' class="bad"'
    cells = [f"<td><code>{_e(s['run_id'])}</code></td>", f"<td>{_e(s['label'])}</td>",
             f'<td class="num">{_e(s["seed"])}</td>', f"<td{status_class}>{_e(s['status'])}</td>",
             f'<td class="num">{_e(s.get("epochs", "–"))}</td>', f'<td class="num">{_e(s.get("attempts", 1))}</td>',
             f'<td class="num">{format_number(s.get("wall_time_s"), 2)}</td>', f"<td>{_e(s.get('error', ''))}</td>"]
    return "<tr>" + "".join(cells) + "</tr>"


def _provenance_section(summaries: list[dict]) -> str:
    environments = Counter(tuple(str(s.get("provenance", {}).get(k, "–")) for k in PROVENANCE_KEYS)
                           for s in summaries)
    head = "".join(f"<th>{k}</th>" for k in [*PROVENANCE_KEYS, "runs"])
    env_rows = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in env) + f'<td class="num">{n}</td></tr>'
                       for env, n in environments.items())
    walls = [s["wall_time_s"] for s in summaries if isinstance(s.get("wall_time_s"), (int, float))]
    run_head = "".join(f"<th>{h}</th>" for h in ["run id", "config", "seed", "status", "epochs", "attempts",
                                                 "wall time (s)", "error"])
    run_rows = "".join(_run_row(s) for s in summaries)
    return (f'<section id="provenance"><h2>Provenance</h2><p>{len(summaries)} runs, '
            f"{format_number(sum(walls), 1)} s of run wall time in total. Environments the runs recorded:</p>"
            f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{env_rows}</tbody></table></div>'
            f"<details><summary>Every run</summary><div class=\"table-wrap\"><table><thead><tr>{run_head}</tr>"
            f"</thead><tbody>{run_rows}</tbody></table></div></details></section>")


def html_page(title: str, body: str) -> str:
    """A complete page with the report's CSS and content security policy around `body`."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def render_report_html(out_dir: Path, recipe: dict, summaries: list[dict], tables: ResultsTables,
                       sections: list[ReportSection], first_config: str | None = None) -> str:
    """The report page of a results folder.

    Args:
        out_dir: the results folder (figure paths are resolved inside it).
        recipe: the recipe record (recipe.json).
        summaries: the run summaries.
        tables: `compute_tables(recipe, summaries)`, the same object table.md is written from.
        sections: the outputs of REPORT_SECTIONS, in order.
        first_config: the config.yaml text of the first run, shown folded.
    """
    from wiringlab import __version__

    figures = FigureEmbedder(out_dir)
    statuses = Counter(s["status"] for s in summaries)
    sections = [s for s in sections if s.markdown.strip() or s.figures]  # ("", {}): nothing for this folder
    analysis = [_analysis_section(i, s, figures) for i, s in enumerate(sections)]
    nav = [("recipe", "Recipe"), ("results", "Results"), ("comparisons", "Comparisons")]
    nav += [("pairs", "Head-to-head")] * bool(tables.pairs or tables.pair_notes)
    nav += [(f"section-{i}", s.name) for i, s in enumerate(sections)]
    other = _other_figures(out_dir, figures)
    nav += [("figures", "Other figures")] * bool(other) + [("provenance", "Provenance")]
    header = [f"<header><h1>{_e(tables.name)}</h1>"]
    if tables.question:
        header.append(f'<div class="question"><strong>Question.</strong> {_e(tables.question)}</div>')
    header.append(f'<p class="meta">{len(tables.rows)} configs · {len(summaries)} runs ('
                  + ", ".join(f"{n} {k}" for k, n in statuses.items())
                  + f") · report built {time.strftime('%Y-%m-%d %H:%M')} by wiringlab {__version__}</p>")
    header.append("<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav) + "</nav></header>")
    body = [*header, _recipe_section(recipe, tables, first_config), _results_section(tables),
            _comparisons_section(tables), _pairs_section(tables), *analysis, other, _provenance_section(summaries)]
    return html_page(f"{tables.name} — wiringlab report", "\n".join(b for b in body if b))


def write_report_html(path: Path, *args, **kwargs) -> Path:
    """Render (see `render_report_html`) and write atomically; returns `path`."""
    atomic_write_text(path, render_report_html(*args, **kwargs))
    return Path(path)
