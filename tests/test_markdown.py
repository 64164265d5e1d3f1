"""The report's Markdown subset converter: what report sections write becomes HTML, and
nothing a section writes can inject markup."""

import pytest

from wiringlab.report.markdown import markdown_to_html, render_inline


@pytest.mark.parametrize("markdown,expected", [
    ("# Title", "<h1>Title</h1>"),
    ("### Sub ###", "<h3>Sub</h3>"),
    ("one\ntwo\n\nthree", "<p>one two</p>\n<p>three</p>"),
    ("- a\n- b", "<ul><li>a</li><li>b</li></ul>"),
    ("1. a\n2. b", "<ol><li>a</li><li>b</li></ol>"),
    ("```\n<b>x</b>\n```", "<pre><code>&lt;b&gt;x&lt;/b&gt;</code></pre>"),
    ("text\n## Head", "<p>text</p>\n<h2>Head</h2>"),
])
def test_blocks(markdown, expected):
    assert markdown_to_html(markdown) == expected


@pytest.mark.parametrize("text,expected", [
    ("**bold** and *it*", "<strong>bold</strong> and <em>it</em>"),
    ("test_acc_mean stays", "test_acc_mean stays"),  # underscores are not emphasis
    ("2 * 3 * 4", "2 * 3 * 4"),
    ("`a<b>`", "<code>a&lt;b&gt;</code>"),
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("[doc](https://example.org/a)", '<a href="https://example.org/a">doc</a>'),
    ("[bad](javascript:void)", "bad"),
])
def test_inline(text, expected):
    assert render_inline(text) == expected


def test_pipe_table_with_alignment_and_escaped_pipe():
    html = markdown_to_html("| a | b |\n|:--|--:|\n| x \\| y | **2** |\n| 3 | 4 |")
    assert html == ('<div class="table-wrap"><table><thead><tr><th style="text-align:left">a</th>'
                    '<th style="text-align:right">b</th></tr></thead><tbody>'
                    '<tr><td style="text-align:left">x | y</td><td style="text-align:right"><strong>2</strong></td></tr>'
                    '<tr><td style="text-align:left">3</td><td style="text-align:right">4</td></tr></tbody></table></div>')


def test_a_line_starting_with_a_pipe_but_no_separator_is_a_paragraph():
    assert markdown_to_html("| not a table") == "<p>| not a table</p>"


def test_images_are_resolved_or_reported_missing():
    resolve = {"figures/a.png": "data:image/png;base64,AAA"}.get
    assert markdown_to_html("![A](figures/a.png)", resolve) == '<p><img src="data:image/png;base64,AAA" alt="A"></p>'
    missing = markdown_to_html("![B](figures/b.png)", resolve)
    assert "missing figure: figures/b.png" in missing and "<img" not in missing


def test_heading_offset_nests_sections():
    assert markdown_to_html("# a\n###### b", heading_offset=1) == "<h2>a</h2>\n<h6>b</h6>"
