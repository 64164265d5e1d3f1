"""Render an HTML file in headless Chromium and report what a reader would see go wrong.

How: a copy of the page gets a probe script as the first thing in <head> (the copy's
Content-Security-Policy is widened by exactly `script-src 'unsafe-inline'` so the probe
may run; images stay restricted to data: URIs). The probe records every failed resource
load, security-policy violation, uncaught error and console.error, and on `load` checks
each image (`img.complete && img.naturalWidth > 0`); it writes its findings as JSON into
the DOM, which `--dump-dom` prints. Chromium's own console log (stderr) is scanned too:
the report has no scripts, so any console line at all is a problem.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PROBE = """<script>
window.__problems = [];
addEventListener('error', function (e) {
  var t = e.target;
  __problems.push(t && t.tagName ? 'failed to load ' + t.tagName + ' ' + String(t.src || t.href || '').slice(0, 60)
                                 : 'error: ' + e.message);
}, true);
addEventListener('securitypolicyviolation', function (e) {
  __problems.push('blocked by CSP: ' + e.violatedDirective + ' ' + e.blockedURI);
});
var __consoleError = console.error;
console.error = function () { __problems.push('console.error: ' + Array.from(arguments).join(' '));
                              __consoleError.apply(console, arguments); };
addEventListener('load', function () {
  var images = Array.from(document.images);
  var out = document.createElement('pre');
  out.id = 'browser-probe';
  out.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                  .map(function (i) { return i.alt + ' ' + i.src.slice(0, 40); }),
    problems: __problems, title: document.title, height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""


@dataclass
class BrowserCheck:
    images: int  # <img> elements on the page
    broken: list[str]  # images that did not load
    problems: list[str]  # failed loads, CSP violations, errors seen by the probe
    console: list[str]  # console lines Chromium logged
    title: str
    height: int  # rendered page height, px

    @property
    def ok(self) -> bool:
        return not (self.broken or self.problems or self.console) and self.images > 0


def _with_probe(page: str) -> str:
    page = page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
    head = re.search(r"<head[^>]*>", page)
    assert head, "the page has no <head>"
    return page[:head.end()] + PROBE + page[head.end():]


def check_in_chromium(page_path: Path, work_dir: Path, timeout_s: float = 60) -> BrowserCheck:
    """Render `page_path` (with the probe) and return what went wrong, if anything."""
    work_dir.mkdir(parents=True, exist_ok=True)
    probed = work_dir / "probed.html"
    probed.write_text(_with_probe(Path(page_path).read_text()))
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={work_dir / 'profile'}", "--enable-logging=stderr",
                          "--v=0", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=timeout_s)
    found = re.search(r'<pre id="browser-probe">(.*?)</pre>', run.stdout, re.S)
    assert found, f"the probe did not report (rc={run.returncode}):\n{run.stderr[-3000:]}"
    data = json.loads(html.unescape(found.group(1)))
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return BrowserCheck(data["images"], data["broken"], data["problems"], console, data["title"], data["height"])


def screenshot(page_path: Path, png_path: Path, work_dir: Path, width: int = 1280, height: int = 3000) -> Path:
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={work_dir / 'profile-shot'}", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={png_path}", Path(page_path).as_uri()],
                   capture_output=True, timeout=60, check=True)
    return png_path
