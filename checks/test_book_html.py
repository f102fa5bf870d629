"""The built book (``make reproduce`` builds ``_build/html``) reads right: no placeholder, no raw NaN,
no model text swallowed as HTML, no absolute path of the build machine (issue 16)."""
import os
from pathlib import Path

import pytest

from ecgkit.results import scan_html

HTML = Path(os.environ.get("ECGKIT_BOOK_HTML") or Path(__file__).resolve().parents[1] / "_build" / "html")


@pytest.mark.skipif(not (HTML / "index.html").is_file(), reason="the book is not built: `make reproduce` or `make book`")
def test_built_book_has_no_reader_facing_defects():
    problems = scan_html(HTML)
    assert not problems, f"{len(problems)} defects in the built book:\n" + "\n".join(problems[:60])
