"""Does the built book read at a glance? Headless Chromium lays each page out at a reader's width and
measures every table against the theme's text column (issue 25).

:func:`table_layout_problems` returns one line per table that overflows the column without being
marked deliberately wide (``ek-wide`` / the theme's ``full-width``, then measured against that
wider box), per header cell that breaks inside a word ("ran k", "scor e") or whose word sticks out
of it, and per text cell squeezed to a few letters a line. :func:`screenshot` saves a page as a
PNG, to look at. Both need a Chromium binary (:func:`find_chromium`); no Python browser driver is
used: each page is copied with a measuring script, loaded with ``--dump-dom``, and the script's
JSON read back from the dumped DOM.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: the reader's window width the book is measured at (the theme's text column is then ~784 px)
READER_WIDTH = 1400
#: pixels a table may exceed its column by (sub-pixel rounding, a border)
SLACK_PX = 4
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

MEASURE_JS = r"""
function ekMeasure() {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const box = el => { const cs = getComputedStyle(el);
    return el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight); };
  const column = box(article);
  const tables = [];
  article.querySelectorAll('table').forEach((t, i) => {
    if (t.closest('.highlight, .linenodiv, details:not([open])')) return;
    if (t.getClientRects().length === 0) return;                    // not displayed
    const wideBox = t.closest('.ek-wide, .full-width, .full_width, .tag_full-width');
    const r = t.getBoundingClientRect();
    const holder = t.closest('.ek-table');
    const caption = ((holder && holder.querySelector('.ek-caption')) || t.querySelector('caption') || {textContent: ''})
      .textContent.trim().slice(0, 90);
    const headers = [...t.querySelectorAll('th')].map(th => th.textContent.trim()).filter(Boolean);
    const broken = [], sticking = [], squeezed = [];
    t.querySelectorAll('th').forEach(th => {
      const inner = box(th);
      const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
      let node;
      while ((node = walker.nextNode())) {
        const re = /[^\s_\/]+[_\/]?/g;   // a word (ROUGE-1 is one), ending where a header may wrap
        let m;
        while ((m = re.exec(node.textContent))) {
          const range = document.createRange();
          range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
          const rects = [...range.getClientRects()].filter(q => q.width > 0);
          if (new Set(rects.map(q => Math.round(q.top))).size > 1) broken.push(m[0]);
          else if (rects.length && rects[0].width > inner + 1) sticking.push(m[0]);
        }
      }
    });
    t.querySelectorAll('td').forEach(td => {       // a long text at a few letters a line
      const text = td.textContent.trim();
      if (text.length <= 30) return;
      const range = document.createRange();
      range.selectNodeContents(td);
      const lines = new Set([...range.getClientRects()].filter(q => q.width > 0).map(q => Math.round(q.top))).size;
      if (lines && text.length / lines < 8) squeezed.push(text.slice(0, 40));
    });
    tables.push({index: i, top: r.top + window.scrollY, caption: caption, headers: headers.slice(0, 8), width: Math.max(r.width, t.scrollWidth),
                 limit: wideBox ? box(wideBox) : column, wide: !!wideBox, broken: broken, sticking: sticking,
                 squeezed: squeezed});
  });
  return {column: column, width: window.innerWidth, height: document.documentElement.scrollHeight, tables: tables};
}
window.addEventListener('load', () => setTimeout(() => {
  const out = document.createElement('pre');
  out.id = 'ek-measure';
  try { out.textContent = JSON.stringify(ekMeasure()); } catch (e) { out.textContent = JSON.stringify({error: String(e)}); }
  document.body.appendChild(out);
}, 300));
"""


def find_chromium() -> str | None:
    """The Chromium binary (``$ECGKIT_CHROMIUM``, else the first on PATH), or None."""
    named = os.environ.get("ECGKIT_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium(args: list[str], chromium: str | None, timeout: float) -> subprocess.CompletedProcess:
    binary = chromium or find_chromium()
    if not binary:
        raise FileNotFoundError("no Chromium found: install it (Debian: apt-get install chromium) "
                                "or set ECGKIT_CHROMIUM")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def _instrumented_copy(page: Path, folder: Path) -> Path:
    """``page`` with the measuring script, in ``folder``, its links still resolving to the book."""
    text = page.read_text(errors="replace")
    base = f'<base href="{page.resolve().parent.as_uri()}/">'
    text = re.sub(r"<head[^>]*>", lambda m: m.group(0) + base, text, count=1)
    text = text.replace("</body>", f"<script>{MEASURE_JS}</script></body>", 1)
    copy = folder / page.name
    copy.write_text(text)
    return copy


def measure_page(page: str | Path, width: int = READER_WIDTH, chromium: str | None = None,
                 timeout: float = 90) -> dict:
    """Lay ``page`` out at ``width`` px and measure its tables: ``{"column": px, "tables": [...]}``."""
    page = Path(page)
    with tempfile.TemporaryDirectory() as tmp:
        copy = _instrumented_copy(page, Path(tmp))
        done = _chromium([f"--window-size={width},1000", "--virtual-time-budget=10000", "--dump-dom",
                          copy.as_uri()], chromium, timeout)
    found = re.search(r'<pre id="ek-measure"[^>]*>(.*?)</pre>', done.stdout, re.DOTALL)
    if not found:
        raise RuntimeError(f"{page.name}: Chromium returned no measurement "
                           f"(exit {done.returncode}; {done.stderr.strip()[-300:]})")
    import html

    result = json.loads(html.unescape(found.group(1)))
    if "error" in result:
        raise RuntimeError(f"{page.name}: the measuring script failed: {result['error']}")
    return result


def book_pages(folder: str | Path) -> list[Path]:
    """The reader's pages of a built book (``_build/html``), indexes and search left out."""
    folder = Path(folder)
    pages = sorted(p for p in folder.rglob("*.html")
                   if not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts)
                   and p.name not in ("genindex.html", "search.html", "py-modindex.html"))
    return [p for p in pages if 'http-equiv="refresh"' not in p.read_text(errors="replace")[:2000].lower()]  # redirects


def problems_in(name: str, measured: dict, slack: float = SLACK_PX) -> list[str]:
    """One line per layout defect in a page's measurement (:func:`measure_page`)."""
    out = []
    for t in measured["tables"]:
        what = f"{name}: table {t['index']} ({t['caption'] or ' | '.join(t['headers'][:4])!r})"
        if t["width"] > t["limit"] + slack:
            out.append(f"{what} is {t['width']:.0f} px wide in a {t['limit']:.0f} px "
                       f"{'full-width box' if t['wide'] else 'column'}")
        if t["broken"]:
            out.append(f"{what}: header words broken across lines: {t['broken'][:6]}")
        if t["sticking"]:
            out.append(f"{what}: header words wider than their cell: {t['sticking'][:6]}")
        if t["squeezed"]:
            out.append(f"{what}: text cells squeezed to a few letters a line: {t['squeezed'][:3]}")
    return out


def table_layout_problems(folder: str | Path, width: int = READER_WIDTH, chromium: str | None = None,
                          workers: int = 2) -> list[str]:
    """Every table layout defect of the built book in ``folder`` at ``width`` px (empty: all read)."""
    pages = book_pages(folder)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        measured = list(pool.map(lambda p: measure_page(p, width, chromium), pages))
    problems = []
    for page, result in zip(pages, measured):
        problems += problems_in(str(page.relative_to(folder)), result)
    return problems


def screenshot(page: str | Path, out: str | Path, width: int = READER_WIDTH, height: int = 1200,
               table: int | None = None, chromium: str | None = None) -> Path:
    """A PNG of ``page`` at ``width`` × ``height`` px, to look at: the top of the page, or from
    just above its ``table``-th table (the index :func:`measure_page` reports)."""
    page, out = Path(page), Path(out).resolve()
    top = 0
    if table is not None:
        found = [t for t in measure_page(page, width, chromium)["tables"] if t["index"] == table]
        top = max(0, int(found[0]["top"]) - 80) if found else 0
    done = _chromium([f"--window-size={width},{top + height}", "--virtual-time-budget=10000",
                      f"--screenshot={out}", page.resolve().as_uri()], chromium, 120)
    if not out.is_file():
        raise RuntimeError(f"no screenshot of {page}: {done.stderr.strip()[-300:]}")
    if top:
        from PIL import Image

        with Image.open(out) as image:
            image.crop((0, top, width, top + height)).save(out)
    return out
