"""The built book (``make reproduce`` builds ``_build/html``) reads right: no placeholder, no raw NaN,
no model text swallowed as HTML, no absolute path of the build machine (issue 16); no page that
waits for a run ("No benchmark figures ... yet") and no executed notebook a reader downloads that
carries this machine's paths (issue 25)."""
import os
import re
from pathlib import Path

import nbformat
import pytest

from ecgkit.notebook_scrub import machine_paths_in
from ecgkit.results import machine_paths, scan_html

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("ECGKIT_BOOK_HTML") or ROOT / "_build" / "html")
EXECUTED = Path(os.environ.get("ECGKIT_EXECUTED") or ROOT / "book" / "executed")
built = pytest.mark.skipif(not (HTML / "index.html").is_file(),
                           reason="the book is not built: `make reproduce` or `make book`")
#: a page standing in for figures a run has not recorded: "No benchmark figures are recorded yet",
#: "not measured yet" (one sentence, a few words between)
NOT_YET = re.compile(r"\b(?:no|not)\b[^.;:!?\n]{0,80}?\byet\b", re.IGNORECASE)


def pages():
    return sorted(p for p in HTML.rglob("*.html")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(HTML).parts)
                  and p.name not in ("genindex.html", "search.html"))


@built
def test_built_book_has_no_reader_facing_defects():
    problems = scan_html(HTML)
    assert not problems, f"{len(problems)} defects in the built book:\n" + "\n".join(problems[:60])


@built
def test_no_page_waits_for_a_run():
    """Every page shows what was measured: CI runs `make smoke` and `make bench-ci` before it builds the
    book (.ci/run); locally, run them (then `make book`) before `make check`."""
    from bs4 import BeautifulSoup

    found = []
    for page in pages():
        soup = BeautifulSoup(page.read_text(errors="replace"), "html.parser")
        article = soup.find("article") or soup.find("main") or soup.body or soup
        for block in article.select(".cell_input, script, style"):
            block.extract()
        text = " ".join(article.get_text(" ").split())
        found += [f"{page.relative_to(HTML)}: {m.group(0)!r}" for m in NOT_YET.finditer(text)]
    assert not found, "pages that stand in for figures not recorded (run `make smoke` / `make bench-ci`, " \
                      "then `make book`):\n" + "\n".join(found)


@pytest.mark.skipif(not any(EXECUTED.glob("*.ipynb")), reason="no executed notebook: `make reproduce`")
def test_executed_notebooks_carry_no_machine_path():
    """What a reader downloads from the book (book/executed) names no folder of this machine:
    `ecgkit.reproduce` scrubs each executed copy (ecgkit.notebook_scrub)."""
    pattern = machine_paths(ROOT)
    found = {p.name: paths for p in sorted(EXECUTED.glob("*.ipynb"))
             if (paths := machine_paths_in(nbformat.read(p, as_version=4), pattern))}
    assert not found, "machine paths in executed notebooks:\n" + "\n".join(
        f"{name}: {', '.join(paths[:5])}" for name, paths in found.items())
