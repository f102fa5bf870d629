"""The book's one table style and the scan of the built HTML (no notebook is executed)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgkit.config import project_root

from ecgkit.results import (Recorder, column_decimals, format_number, load_results, scan_html, show_frame,
                            show_table)


def page(body: str) -> str:
    return f"<html><body><main><article>{body}</article></main></body></html>"


def render(frame, caption="") -> str:
    return show_frame(frame, caption).to_html()


def test_paper_precision_is_kept_and_computed_values_get_three_decimals():
    assert column_decimals([0.8296, 0.8297, 0.8299], keep_exact=True) == 4
    assert column_decimals([0.0003, 0.0011], keep_exact=True) == 4
    assert column_decimals([0.7411, 0.3125, 0.638]) == 3            # computed: 5/16 is not a paper's 0.3125
    assert column_decimals([0.81234567, 0.5]) == 3
    assert column_decimals([0.00031234]) >= 4                 # a tiny computed sd keeps two digits
    html = render(pd.DataFrame({"paper": [0.8296, 0.8297], "paper sd": [0.0003, 0.0002],
                                "ours": [0.81234567, 0.7]}, index=pd.Index(["a", "b"], name="run")))
    assert "0.8296" in html and "0.8297" in html and "0.830<" not in html
    assert "0.0003" in html and "0.000<" not in html
    assert "0.812<" in html and "0.700<" in html


def test_integers_missing_values_and_signs():
    html = render(pd.DataFrame({"seed": [0.0, 1.0, 2.0], "patients": [25.0, 3.0, np.nan],
                                "AUC": [0.5, np.nan, -0.25]}))
    assert ">2<" in html and "2.000" not in html and ">25<" in html and "25.000" not in html
    assert "nan" not in html.lower().replace("nan;", "") and "–" in html
    assert "−0.250" in html
    assert format_number(15951, whole=True) == "15,951" and format_number(None) == "–"


def test_intervals_are_compact_and_say_why_they_cannot_be_estimated():
    frame = pd.DataFrame({"estimate": [0.61, 0.2, 0.5], "low": [0.52, 0.2, np.nan], "high": [0.70, 0.2, np.nan]},
                         index=pd.Index(["ours", "rules", "tiny"], name="model"))
    html = render(frame)
    assert "0.520–0.700" in html and ">interval<" in html
    assert "[0.200, 0.200]" not in html and "0.200–0.200" not in html
    assert "zero width" in html and "not estimable" in html
    assert html.count("<th ") == 3           # model, estimate, interval: low and high are one column


def test_model_text_is_escaped_and_long_text_folds():
    answer = "ECG findings: <your reasoning> then <class name>. " + "x " * 200
    html = render(pd.DataFrame({"answer": [answer, "short"], "model": ["m", "m2"]}))
    assert "&lt;your reasoning&gt;" in html and "<your reasoning>" not in html
    assert "&lt;class name&gt;" in html
    assert "<details>" in html


def test_constant_columns_move_to_the_caption():
    frame = pd.DataFrame({"LLM": ["SmolLM2-135M@0123abcd"] * 3, "F1": [0.1, 0.2, 0.3]},
                         index=pd.Index(["a", "b", "c"], name="configuration"))
    html = render(frame, "Scores")
    assert "Scores. LLM: SmolLM2" in html      # a sentence of its own after the caption
    assert "<th class=\"ek-text\">LLM" not in html and "LLM: SmolLM2-135M@0123abcd" in html.split('<div class="ek-caption">')[1].split("</div>")[0]


def test_tables_scroll_within_the_content_column():
    wide = pd.DataFrame(np.random.default_rng(0).random((2, 30)), columns=[f"column {i}" for i in range(30)])
    html = render(wide, "A caption that wraps")
    assert "max-width:100%" in html and "overflow-x:auto" in html
    # the caption sits above the table, not in it (a scrolled table would cut it)
    assert html.index('<div class="ek-caption">A caption that wraps</div>') < html.index("<table>")


def test_tables_too_wide_for_the_column_split_by_group():
    cols = pd.MultiIndex.from_tuples([("method", "")] + [(f"ptbxl superdiagnostic {t}", s) for t in "ABC"
                                                         for s in ("mean", "sd", "low", "high")])
    frame = pd.DataFrame([["ESI"] + [0.7, 0.01, 0.6, 0.8] * 3, ["SimCLR"] + [0.6, 0.02, 0.5, 0.7] * 3], columns=cols)
    html = render(frame, "Macro AUC")
    assert html.count("<table>") == 3 and "Macro AUC — ptbxl superdiagnostic A" in html
    assert "(continued) ptbxl superdiagnostic B" in html and html.count("Macro AUC") == 1
    assert html.count(">ESI<") == 3      # the key column repeated in each part
    assert render(frame.iloc[:0], "No rows").count("<table>") >= 1     # an empty table still renders
    untitled = render(frame)
    assert "(continued) ptbxl superdiagnostic A" not in untitled and "(continued) ptbxl superdiagnostic B" in untitled
    # the paper's numbers stay beside the first of ours
    with_paper = frame.copy()
    with_paper[("paper", "AUC")] = [0.93, 0.9]
    html = render(with_paper, "Macro AUC")
    assert html.count("<table>") == 3
    first = html.split("(continued)")[0]
    assert "Macro AUC — ptbxl superdiagnostic A / paper" in first and "0.930" in first
    narrow = render(frame.iloc[:, :5], "Macro AUC")
    assert narrow.count("<table>") == 1


def test_a_recorded_table_renders_through_the_same_style(tmp_path):
    rec = Recorder("09_clinical_transfer", dataset="x", profile="quick", seed=0)
    rec.table("ablation", pd.DataFrame({"macro AUROC": [0.7, 0.6], "Δ vs ours": [0.0, -0.1],
                                        "Δ low": [0.0, -0.2], "Δ high": [0.0, 0.01]},
                                       index=pd.Index(["ours", "no stage 1"], name="model")), caption="Ablation")
    rec.save(tmp_path)
    html = show_table(load_results("09_clinical_transfer", tmp_path), "ablation").to_html()
    assert "Δ interval" in html and "−0.200–0.010" in html and "Ablation" in html
    assert "nan" not in html.lower()


def test_a_reference_range_is_not_an_interval():
    html = render(pd.DataFrame({"unit": ["mmol/L", "g/L"], "low": [3.5, np.nan], "high": [5.1, 14.0]},
                               index=pd.Index(["potassium", "troponin"], name="lab")))
    assert ">3.5" in html and ">5.1" in html and "interval" not in html


@pytest.mark.parametrize("body, problem", [
    ("<p>ECG-LLM (planned)</p>", "placeholder"),
    ("<p>TODO: write</p>", "placeholder"),
    ("<p>evaluation (next)</p>", "placeholder"),
    ('<div class="cell_output"><table><tr><td>nan</td></tr></table></div>', "raw 'nan'"),
    ('<div class="cell_output"><pre>{"a": NaN}</pre></div>', "raw 'NaN'"),
    ("<table><tr><td>ECG findings: <your reasoning></td></tr></table>", "unescaped tag <your>"),
    ("<p>answer <class name></p>", "unescaped tag <class>"),
    # the build machine's own folders (home and the checkout), as a notebook printing a path would show them
    (f'<div class="cell_output"><pre>saved {project_root(Path(__file__).parent) / "_build" / "results" / "00.json"}</pre></div>', "absolute path"),
    (f"<p>cache in {Path.home() / '.cache' / 'ecgkit'}</p>", "absolute path"),
])
def test_the_html_scan_finds_each_defect(tmp_path, body, problem):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "x.html").write_text(page(body))
    found = scan_html(tmp_path)
    assert any(problem in p for p in found), found


def test_the_html_scan_passes_a_clean_page(tmp_path):
    table = render(pd.DataFrame({"answer": ["<your reasoning>", "fine"], "AUC": [np.nan, 0.5]}))
    # code shown to the reader may name np.nan and a folder of this machine; only outputs are scanned
    code = f'<div class="cell_input"><pre>x = np.nan  # {project_root(Path(__file__).parent) / "data"}</pre></div>'
    (tmp_path / "ok.html").write_text(page(f"<p>See https://physionet.org/content/ptb-xl/ and home/</p>{code}"
                                           f"<div class=\"cell_output\">{table}</div>"))
    assert scan_html(tmp_path) == []


def test_a_recorded_figure_shows_on_the_chapter_page(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecgkit.results import show_figure

    rec = Recorder("09_x", dataset="x", profile="quick", seed=0)
    fig, ax = plt.subplots()
    ax.bar(["a"], [0.5], yerr=[[0.1], [0.1]])
    rec.figure("bars", fig, "AUROC <per> diagnosis", directory=tmp_path)
    rec.save(tmp_path)
    r = load_results("09_x", tmp_path)
    shown = show_figure(r, "bars").data
    assert "data:image/png;base64," in shown and "AUROC &lt;per&gt; diagnosis" in shown
    assert str(tmp_path) not in shown
    assert "not recorded" in show_figure(r, "other").data


def test_a_column_recorded_at_a_precision_keeps_it():
    assert column_decimals([71.1, 65.7]) == 1 and column_decimals([0.5, 0.25]) == 3
    assert column_decimals([1.0, 0.0]) == 3 and column_decimals([0.83, 0.8296], keep_exact=True) == 4


def test_a_plain_row_number_index_is_not_shown(tmp_path):
    rec = Recorder("01_x", dataset="x", profile="quick", seed=0)
    rec.table("t", pd.DataFrame({"question": ["a?", "b?"], "rank": [1, 2]}))
    rec.save(tmp_path)
    html = show_table(load_results("01_x", tmp_path), "t").to_html()
    assert html.count("<th ") == 2 and ">0<" not in html


def test_counts_in_a_column_of_rates_print_as_integers():
    frame = pd.DataFrame({"vs xqrs": [500.0, 0.946, 6016.0, 0.602]},
                         index=pd.Index(["records", "within ±1", "beats", "mean |HR difference|"], name="quantity"))
    html = render(frame)
    assert ">500<" in html and ">6016<" in html and ">0.946<" in html and "500.000" not in html

