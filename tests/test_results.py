import re
import json

import numpy as np
import pandas as pd
import pytest

from ecgkit.results import Recorder, load_results, paper_numbers, data_source


def test_round_trip_with_provenance(tmp_path):
    rec = Recorder("00_data", dataset="ptbxl-500", profile="quick", seed=3)
    rec.metric("records", np.int64(500), note="after skips")
    rec.metric("missing", float("nan"))
    table = pd.DataFrame({"n": [1, 2], "share": [0.25, np.nan]}, index=pd.Index(["NORM", "MI"], name="class"))
    rec.table("counts", table, caption="records per class")
    path = rec.save(tmp_path)
    doc = json.loads(path.read_text())
    assert doc["info"]["dataset"] == "ptbxl-500" and doc["info"]["seed"] == 3
    assert "numpy" in doc["info"]["versions"] and "python" in doc["info"]["versions"]
    commit = doc["info"]["commit"]          # the code that ran (this checkout is a git repository)
    assert len(commit.split("+")[0]) == 40
    back = load_results("00_data", tmp_path)
    assert back.metric("records") == 500 and back.metrics["records"]["note"] == "after skips"
    assert back.metric("missing") is None
    got = back.table("counts")
    assert got.index.name == "class" and list(got.index) == ["NORM", "MI"]
    assert got.loc["MI", "n"] == 2 and np.isnan(got.loc["MI", "share"])
    assert back.captions["counts"] == "records per class"
    assert "ptbxl-500" in data_source(back.info) and "quick" in data_source(back.info)
    multi = pd.DataFrame({"n": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", "train"), ("a", "test")],
                                                                          names=["view", "part"]))
    rec.table("multi", multi)
    wide = pd.concat({"U-Net": pd.DataFrame({"sens": [0.9]}), "neurokit2": pd.DataFrame({"sens": [0.7]})}, axis=1)
    rec.table("wide", wide)
    rec.save(tmp_path)
    pd.testing.assert_frame_equal(load_results("00_data", tmp_path).table("multi"), multi)
    assert load_results("00_data", tmp_path).table("wide").loc[0, ("neurokit2", "sens")] == 0.7
    with pytest.raises(KeyError, match="no table 'nope'"):
        back.table("nope")


def test_default_folder_is_the_env_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "r"))
    Recorder("01_x", dataset="d", profile="quick", seed=0).save()
    assert (tmp_path / "r" / "01_x.json").is_file()
    assert load_results("01_x").info["notebook"] == "01_x"


def test_missing_results_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        load_results("99_none", tmp_path)


def test_paper_numbers_name_their_source():
    table = paper_numbers("ptbxl", "superclass_counts")
    assert set(table["configuration"]) >= {"NORM", "MI", "STTC", "CD", "HYP"}
    assert table["source"].str.contains("Table").all()
    assert table.set_index("configuration").loc["all", "value"] == 21837


def test_chapter_map_follows_the_toc_and_the_recorded_times(tmp_path):
    import json

    from ecgkit.reproduce import record_time
    from ecgkit.results import Recorder, chapter_map, total_minutes

    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n"
        "  - caption: B part\n    chapters:\n      - file: book/01_b\n        sections:\n"
        "          - file: book/executed/01_b\n"
        "  - caption: A part\n    chapters:\n      - file: book/00_a\n        sections:\n"
        "          - file: book/executed/00_a\n")
    (tmp_path / "book" / "01_b.md").write_text("---\nx: 1\n---\n# 01 · Bee\ntext\n")
    (tmp_path / "book" / "00_a.md").write_text("# 00 · Ay\n")
    results = tmp_path / "results"
    Recorder("01_b", dataset="PTB-XL (real) ptbxl", profile="quick", seed=0).save(results)
    record_time("01_b", 90.0, "quick")          # ECGKIT_RESULTS is tmp/results (conftest)
    table = chapter_map(tmp_path, results)
    assert table["chapter"].tolist() == ["01 · Bee", "00 · Ay"]          # the toc's order
    assert table["data"].tolist() == ["PTB-XL (real) ptbxl", "– (not run yet)"]
    assert table["wall time"].tolist() == ["1.5 min", "– (not run yet)"]
    assert total_minutes(results) == 1.5
    assert json.loads((results / "reproduce_times.json").read_text())["01_b"]["profile"] == "quick"


def test_show_table_prints_counts_as_integers(tmp_path):
    from ecgkit.results import Recorder, load_results, show_table

    rec = Recorder("00_data", dataset="x", profile="quick", seed=0)
    rec.table("t", pd.DataFrame({"records": [500.0, 66.0], "AUC": [0.81234, np.nan], "flag": [1.0, 0.0]},
                                index=["a", "b"]))
    rec.save(tmp_path)
    html = show_table(load_results("00_data", tmp_path), "t").to_html()
    assert ">500<" in html and ">66<" in html and "500.000" not in html
    assert "0.812" in html and "–" in html and "1.000" in html      # rates and 0/1 columns keep decimals


def test_chapter_map_names_records_and_quick_cost_sums_the_recorded_times(tmp_path):
    from ecgkit.reproduce import record_time
    from ecgkit.results import Recorder, chapter_map, quick_cost

    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n"
        "  - caption: A\n    chapters:\n      - file: book/00_a\n        sections:\n"
        "          - file: book/executed/00_a\n      - file: book/01_b\n        sections:\n"
        "          - file: book/executed/01_b\n      - file: book/scorecard\n")
    (tmp_path / "book" / "00_a.md").write_text("# 00 · Ay\n")
    (tmp_path / "book" / "01_b.md").write_text("# 01 · Bee\n")
    (tmp_path / "book" / "scorecard.md").write_text("# Scorecard\n")
    results = tmp_path / "results"
    assert "No notebook run" in quick_cost(results, tmp_path)
    Recorder("00_a", dataset="PTB-XL (real) ptbxl-500: 500 records, 466 patients + synthetic cohort synth: 600 records",
             profile="quick", seed=0).save(results)
    record_time("00_a", 1200.0, "quick")
    table = chapter_map(tmp_path, results)
    assert table["records"].tolist() == ["500 + 600", "–", ""] and table["profile"].tolist() == ["quick", "–", ""]
    assert table["data"].iloc[2].startswith("no notebook")       # a page without a notebook says so
    text = quick_cost(results, tmp_path)
    assert "**20 minutes**" in text and "00_a 20.0 min" in text and "No time is recorded for: 01 · Bee." in text


def test_per_record_predictions_and_artefact_keys_are_saved_beside_the_results(tmp_path):
    rec = Recorder("99_demo", dataset="toy", profile="quick", seed=0)
    probs = pd.DataFrame({"NORM": [0.9, 0.2], "MI": [0.1, 0.7]},
                         index=pd.MultiIndex.from_tuples([("Base", 11), ("Base", 12)],
                                                         names=["configuration", "record"]))
    rec.predictions("label_probabilities", probs, caption="P(yes) per record")
    rec.artefact("adapter", "abc123", base="SmolLM2")
    rec.save(tmp_path)
    assert (tmp_path / "predictions" / "99_demo" / "label_probabilities.csv").is_file()
    loaded = load_results("99_demo", tmp_path)
    back = loaded.predictions("label_probabilities")
    assert list(back.index.names) == ["configuration", "record"]
    assert back.loc[("Base", 12), "MI"] == 0.7
    assert loaded.info["artefacts"]["adapter"] == {"key": "abc123", "base": "SmolLM2"}
    with pytest.raises(KeyError, match="no predictions 'answers'"):
        loaded.predictions("answers")


def test_book_style_renders_displayed_frames_without_raw_nan():
    from IPython.core.interactiveshell import InteractiveShell

    from ecgkit.results import book_style

    shell = InteractiveShell.instance()
    assert book_style(shell)
    frame = pd.DataFrame({"AUROC": [0.5123, np.nan], "note": ["<your reasoning>", "ok"]}, index=["a", "b"])
    data, _ = shell.display_formatter.format(frame)
    assert "NaN" not in data["text/html"] and "&lt;your reasoning&gt;" in data["text/html"]
    assert "NaN" not in data["text/plain"]
    series, _ = shell.display_formatter.format(frame["AUROC"])
    assert "NaN" not in series["text/html"] and "NaN" not in series["text/plain"]


def test_results_name_the_cache_keys_the_process_used(tmp_path):
    from ecgkit.cache import key, keys_used

    k = key("knowledge_index", {"test": "results name their artefacts"})
    many = [key("llm_generation", {"n": i}) for i in range(25)]
    assert k in keys_used()["knowledge_index"] and keys_used()["llm_generation"]["keys"] >= len(set(many))
    rec = Recorder("keys", dataset="d", profile="quick", seed=0)
    loaded = load_results("keys", rec.save(tmp_path).parent)
    assert k in loaded.info["cache_keys"]["knowledge_index"]
    assert isinstance(loaded.info["cache_keys"]["llm_generation"], dict)


def test_headers_wrap_only_between_words():
    from ecgkit.results import TABLE_CSS, header_html, show_frame

    assert header_html("std_difference") == "std_<wbr>difference"
    assert header_html(("U-Net", "mean_error_ms")) == '<span class="ek-word">U-Net</span><br>mean_<wbr>error_<wbr>ms'
    assert header_html("<b>") == "&lt;b&gt;"
    assert header_html("ROUGE-1 F") == '<span class="ek-word">ROUGE-1</span> F'     # no break at the hyphen
    # a long hyphenated name (a dataset as a column group) may wrap at its hyphens, never inside a piece
    assert header_html("synthetic-5000-seed0 superdiagnostic") == "synthetic-<wbr>5000-<wbr>seed0 superdiagnostic"
    assert ".ek-word{white-space:nowrap}" in TABLE_CSS
    th_rule = TABLE_CSS.split(".ek-table th{", 1)[1].split("}", 1)[0]
    for rule in ("word-break:normal", "overflow-wrap:normal", "hyphens:manual"):
        assert rule in th_rule
    assert "anywhere" not in TABLE_CSS and "break-all" not in TABLE_CSS
    html = show_frame(pd.DataFrame({"hr_ref": [70.0, None]}, index=["a", "b"])).to_html()
    assert "<th class=\"ek-num\">hr_<wbr>ref</th>" in html


def test_long_tokens_in_text_cells_get_break_opportunities():
    from ecgkit.results import breakable

    assert breakable("documents/01_conduction_system.md (0.68)") == (
        "documents/<wbr>01_<wbr>conduction_<wbr>system.<wbr>md (0.68)")
    assert breakable("short a_b") == "short a_b"               # short tokens stay whole
    assert breakable("<your_reasoning_goes_here>") == "&lt;your_<wbr>reasoning_<wbr>goes_<wbr>here&gt;"


def _render(frame, **options):
    from ecgkit.results import show_frame

    return show_frame(frame, **options).to_html()


def test_counts_are_integers_and_times_have_sensible_units():
    frame = pd.DataFrame({"unparseable": [0.0, 0.0, np.nan], "ties": [0.0, 1.0, 0.0], "AUROC": [0.71, 0.8, 0.5],
                          "mean_error_ms": [17.4223, -3.1, 0.25], "seconds": [48.8, 3.25, 100.0],
                          "training hours": [0.351, 1.27, 2.0]}, index=["a", "b", "c"])
    html = _render(frame)
    assert "0.000" not in html and ">0<" in html and ">1<" in html          # counts, not rates
    assert ">17.4<" in html and ">−3.1<" in html and "17.422" not in html     # ms to 0.1 ms
    assert ">48.8<" in html and "48.800" not in html and ">3.2<" in html      # seconds to 0.1 s
    assert ">0.35<" in html and ">1.27<" in html                              # hours: 2 decimals below 10 h
    kv = pd.DataFrame({"value": [48.8, 0.8123]}, index=pd.Index(["seconds", "AUROC"], name="quantity"))
    html = _render(kv)
    assert ">48.8<" in html and ">0.812<" in html                             # a key/value table: the row's unit


def test_a_column_mixing_magnitudes_keeps_each_value_readable():
    frame = pd.DataFrame({"real median": [397.3125, 95.0, 0.8204], "synthetic median": [397.52, 97.0, 0.7796]},
                         index=["QTc (ms)", "QRS (ms)", "aVR amplitude (mV)"])
    html = _render(frame)
    assert ">0.820<" in html and ">0.780<" in html and ">0.8<" not in html


def test_an_interval_is_never_shown_without_its_estimate_and_dashes_give_a_reason():
    gap = pd.DataFrame({"estimate": [0.7, np.nan], "low": [0.6, 0.044], "high": [0.8, 4.698]},
                       index=pd.Index(["ours", "gap closed"], name="quantity"))
    html = _render(gap)
    assert "0.600–0.800" in html and "4.698" not in html and "0.044" not in html
    assert "no interval either" in html                                        # the generic reason
    html = _render(gap, missing={"gap closed": "the gap is under 0.01"})
    assert "the gap is under 0.01" in html and "<sup>1</sup>" in html
    bench = pd.DataFrame({"recall": [1.0, 0.99], "HNSW q/s": [np.nan, 6818.0]}, index=["corpus", "random"])
    html = _render(bench, missing={"HNSW q/s": "timed on the random set only"})
    assert "– <sup>1</sup>" in html and "–: timed on the random set only." in html


def test_a_wide_table_uses_the_full_width_box():
    html = _render(pd.DataFrame({"a": [1.5]}), wide=True)
    assert 'class="ek-table ek-wide full-width"' in html
    assert 'class="ek-table"' in _render(pd.DataFrame({"a": [1.5]}))


def test_a_table_too_wide_with_the_papers_columns_splits_by_statistic_keeping_them_beside_ours():
    stats = ["AUROC", "PPV", "NPV", "Sens", "Spec"]
    cols = pd.MultiIndex.from_tuples([("ours", s) for s in stats] + [("paper", s) for s in stats[1:]]
                                     + [("run", "records")])
    row = ["0.817 [0.56, 1.00] (mean of 4 of 5 classes)"] * 5 + [0.326, 0.805, 0.356, 0.754, 5]
    frame = pd.DataFrame([row, row], columns=cols, index=pd.Index(["Base", "LLM without retrieval"], name="configuration"))
    html = _render(frame, caption="Label probabilities")
    tables = html.split("<table>")[1:]
    assert len(tables) >= 3
    for part in tables:                 # a statistic's paper column is in the same part as ours
        for stat in stats[1:]:
            if f"ours<br>{stat}<" in part:
                assert f"paper<br>{stat}<" in part
    assert "[0.56,&nbsp;1.00]" in html
    from ecgkit.results import CONTENT_WIDTH_PX, _estimated_width_px
    assert _estimated_width_px(frame) > CONTENT_WIDTH_PX


def test_a_recorded_time_reads_as_a_date_and_a_time():
    from ecgkit.results import recorded_at

    assert recorded_at("2026-03-01T14:05:09+00:00") == "2026-03-01 14:05 UTC"
    assert recorded_at("2026-03-01T15:05:09+01:00") == "2026-03-01 14:05 UTC"
    assert recorded_at(None) is None and recorded_at("yesterday") == "yesterday"


def test_a_key_value_table_prints_its_counts_as_integers(tmp_path):
    from ecgkit.results import show_table

    control = {"n": 20, "right_preferred": 14, "ties": 0, "unparsed": 0, "preference_rate": 0.7,
               "p_value": 0.0577, "better_than_chance": False, "compared_on": "expected"}
    rec = Recorder("08_x", dataset="d", profile="quick", seed=0)
    rec.table("judge_control", pd.Series(control, name="value").to_frame())
    html = show_table(load_results("08_x", rec.save(tmp_path).parent), "judge_control").to_html()
    assert "0.000" not in html and html.count(">0<") == 2 and ">0.7<" in html and ">0.058<" in html and ">no<" in html
    html = _render(pd.Series({"p_value": 1.0, "ties": 0}, name="value").to_frame())
    assert ">1.000<" in html and ">0<" in html and "0.000" not in html


def test_a_statistic_per_row_prints_each_row_at_its_units_precision():
    frame = pd.DataFrame({"real median": [95.0, 374.00000000000006, 71.43, 0.8204],
                          "std. difference": [0.19, -0.095, -0.133, -0.162]},
                         index=["QRS duration (ms)", "QT interval (ms)", "heart rate (beats/min)", "aVR amplitude (mV)"])
    html = _render(frame)
    assert ">95.0<" in html and ">374.0<" in html and ">71.4<" in html and ">0.820<" in html
    assert ">0.190<" in html and ">−0.095<" in html          # a ratio column keeps its own precision


def test_a_plain_table_too_wide_splits_into_whole_columns_beside_its_row_labels():
    columns = {"statements": ["SR", "SBRAD"], "positives": [10, 2], "undetermined": [12, 12],
               "sens": [0.8, 0.5], "sens low": [0.6, 0.2], "sens high": [0.9, 0.8]}
    columns.update({f"sens, neurokit2 on {k} records": [0.5, 0.25] for k in range(8)})
    frame = pd.DataFrame(columns, index=pd.Index(["sinus rhythm", "sinus bradycardia"], name="rule"))
    html = _render(frame, caption="Rules")
    tables = html.split("<table>")[1:]
    assert len(tables) >= 2 and "(continued)" in html
    assert all(">sinus bradycardia<" in t for t in tables)            # the row labels in every part
    part = next(t for t in tables if ">sens<" in t)
    assert "sens interval" in part and "0.600–0.900" in part           # an estimate keeps its interval
    assert _render(frame, wide=True).count("<table>") == 1             # unless marked wide


def test_rates_beside_a_count_keep_three_decimals_not_their_exact_four():
    frame = pd.DataFrame({"vs xqrs": [500.0, 0.9625, 0.25], "vs neurokit": [500.0, 0.9613, 0.2513]},
                         index=pd.Index(["records", "beat count within ±1", "mean error"], name="quantity"))
    html = _render(frame)
    assert ">0.963<" in html and ">0.961<" in html and "0.9625" not in html and ">500<" in html
    from ecgkit.results import column_decimals
    assert column_decimals(np.array([71.1, 95.25, 120.0])) == 2         # measurements keep their precision
    assert column_decimals(np.array([0.8296, 0.8297]), keep_exact=True) == 4   # a paper's printed digits


def test_a_key_value_table_of_mixed_settings_reads_as_recorded():
    values = {"learning rate": 0.0002, "seconds": 90.5321, "steps / s": 0.0221, "tokens / s": 4.6,
              "optimizer steps": 2, "device": "cpu", "4-bit (QLoRA)": False}
    frame = pd.Series(values, name="value").to_frame()
    cells = re.findall(r'<td class="ek-num">([^<]*)</td>', _render(frame))
    assert cells == ["0.0002", "90.5", "0.022", "4.6", "2"]
