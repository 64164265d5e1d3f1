"""A small Markdown → HTML converter for the subset the report sections write.

Supported: ATX headings (`#` … `######`), paragraphs, pipe tables (with `:---:`
alignment), bullet and numbered lists, fenced code blocks, and inline code, bold,
italic (`*x*` only: `_` is left alone because metric names such as `test_acc` contain
it), links and images. Everything else is shown as text: all input is HTML-escaped
first, so a section can never inject markup or scripts into the report.

Images go through `resolve_image(src) -> str | None` (the report turns figure paths into
data URIs); an image it cannot resolve becomes a visible "missing figure" note rather
than a reference to a file the page cannot carry.
"""

from __future__ import annotations

import html
import re
from typing import Callable

__all__ = ["markdown_to_html", "render_inline"]

ImageResolver = Callable[[str], "str | None"]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])")
_SAFE_URL = re.compile(r"^(https?://|#|[\w./-]+$)", re.IGNORECASE)


def _no_image(src: str) -> None:
    return None


def render_inline(text: str, resolve_image: ImageResolver = _no_image) -> str:
    """HTML of one line of Markdown text (escaped; code spans are kept verbatim)."""
    spans: list[str] = []

    def stash(fragment: str) -> str:
        spans.append(fragment)
        return f"\x00{len(spans) - 1}\x00"

    text = _CODE_SPAN.sub(lambda m: stash(f"<code>{html.escape(m.group(1))}</code>"), text)

    def image(m: re.Match) -> str:
        alt, src = m.group(1), m.group(2)
        uri = resolve_image(src)
        if uri is None:
            return stash(f'<span class="missing">[missing figure: {html.escape(src)}]</span>')
        return stash(f'<img src="{uri}" alt="{html.escape(alt)}">')

    text = _IMAGE.sub(image, text)

    def link(m: re.Match) -> str:
        label, url = html.escape(m.group(1)), m.group(2)
        if not _SAFE_URL.match(url):
            return stash(label)
        return stash(f'<a href="{html.escape(url)}">{label}</a>')

    text = _LINK.sub(link, text)
    text = html.escape(text, quote=False)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _ITALIC.sub(r"<em>\1</em>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: spans[int(m.group(1))], text)


def _split_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def _alignments(separator: str) -> list[str]:
    out = []
    for cell in _split_row(separator):
        left, right = cell.startswith(":"), cell.endswith(":")
        out.append("center" if left and right else "right" if right else "left" if left else "")
    return out


def _table(lines: list[str], resolve_image: ImageResolver) -> str:
    header, align, body = _split_row(lines[0]), _alignments(lines[1]), [_split_row(x) for x in lines[2:]]

    def cell(tag: str, text: str, index: int) -> str:
        style = f' style="text-align:{align[index]}"' if index < len(align) and align[index] else ""
        return f"<{tag}{style}>{render_inline(text, resolve_image)}</{tag}>"

    head = "".join(cell("th", text, i) for i, text in enumerate(header))
    rows = ["<tr>" + "".join(cell("td", text, i) for i, text in enumerate(row)) + "</tr>" for row in body]
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _take_while(lines: list[str], start: int, keep) -> int:
    end = start
    while end < len(lines) and keep(lines[end]):
        end += 1
    return end


def _block_starts(line: str, next_line: str) -> bool:
    return bool(_HEADING.match(line) or _FENCE.match(line) or _BULLET.match(line) or _NUMBERED.match(line)
                or (line.lstrip().startswith("|") and _TABLE_SEPARATOR.match(next_line)))


def markdown_to_html(text: str, resolve_image: ImageResolver = _no_image, heading_offset: int = 0) -> str:
    """HTML of a Markdown document in the supported subset.

    Args:
        text: the Markdown.
        resolve_image: maps an image's src to the URI to embed, or None when it cannot.
        heading_offset: added to every heading level (capped at 6), to nest a section
            under the page's own headings.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line, next_line = lines[i], lines[i + 1] if i + 1 < len(lines) else ""
        if not line.strip():
            i += 1
        elif _FENCE.match(line):
            end = _take_while(lines, i + 1, lambda x: not _FENCE.match(x))
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1:end]))}</code></pre>")
            i = end + 1
        elif m := _HEADING.match(line):
            level = min(6, len(m.group(1)) + heading_offset)
            out.append(f"<h{level}>{render_inline(m.group(2), resolve_image)}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and _TABLE_SEPARATOR.match(next_line):
            end = _take_while(lines, i + 2, lambda x: x.lstrip().startswith("|"))
            out.append(_table(lines[i:end], resolve_image))
            i = end
        elif _BULLET.match(line) or _NUMBERED.match(line):
            pattern, tag = (_BULLET, "ul") if _BULLET.match(line) else (_NUMBERED, "ol")
            end = _take_while(lines, i, lambda x: bool(pattern.match(x)))
            items = "".join(f"<li>{render_inline(pattern.match(x).group(1), resolve_image)}</li>"
                            for x in lines[i:end])
            out.append(f"<{tag}>{items}</{tag}>")
            i = end
        else:
            end = i + 1
            while end < len(lines) and lines[end].strip() and not _block_starts(
                    lines[end], lines[end + 1] if end + 1 < len(lines) else ""):
                end += 1
            paragraph = " ".join(x.strip() for x in lines[i:end])
            out.append(f"<p>{render_inline(paragraph, resolve_image)}</p>")
            i = end
    return "\n".join(out)
