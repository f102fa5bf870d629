"""ecgkit.layout measures a page in headless Chromium: a table wider than its column, a header
broken inside a word and a squeezed text column are found; a table in the book's style fits."""
import pandas as pd
import pytest

from ecgkit.layout import find_chromium, measure_page, problems_in

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (Debian: apt-get install chromium)")

PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body>
<article class="bd-article" style="width:600px;font:16px sans-serif">{body}</article></body></html>"""


def _measure(tmp_path, body):
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(body=body))
    return problems_in("page.html", measure_page(page))


def test_the_measure_finds_each_defect(tmp_path):
    wide = "<table><tr>" + "".join(f"<td>value_{i}_long_text</td>" for i in range(16)) + "</tr></table>"
    problems = _measure(tmp_path, wide)
    assert len(problems) == 1 and "px wide in a 600 px column" in problems[0]
    broken = ('<table><tr><th style="max-width:2em;overflow-wrap:anywhere">undetermined</th></tr>'
              "<tr><td>1</td></tr></table>")
    assert any("broken across lines: ['undetermined']" in p for p in _measure(tmp_path, broken))
    hyphen = '<table><tr><th style="width:3em">ROUGE-1</th></tr><tr><td>1</td></tr></table>'
    assert any("broken across lines: ['ROUGE-1']" in p for p in _measure(tmp_path, hyphen))
    squeezed = ('<table><tr><td style="width:1em;overflow-wrap:anywhere">a snippet of retrieved text, one letter a line</td>'
                + "<td>" + "x " * 150 + "</td></tr></table>")
    assert any("squeezed" in p for p in _measure(tmp_path, squeezed))
    marked = '<div class="ek-wide" style="width:3000px">' + wide + "</div>"
    assert _measure(tmp_path, marked) == []           # deliberately wide, and it fits its box


def test_a_book_table_with_long_headers_and_text_fits_the_column(tmp_path):
    from ecgkit.results import show_frame

    frame = pd.DataFrame({"question": ["How is complete left bundle branch block reflected in a 12-lead ECG?"] * 2,
                          "source": ["documents/05_av_and_intraventricular_conduction.md"] * 2,
                          "undetermined_statements": [3, 4], "std_difference": [0.2, 0.31]})
    assert _measure(tmp_path, show_frame(frame, "A caption").to_html()) == []
