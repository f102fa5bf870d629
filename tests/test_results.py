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
    assert table["data"].tolist() == ["PTB-XL (real) ptbxl", "–"]
    assert table["minutes"].tolist() == ["1.5", "–"]
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
        "          - file: book/executed/01_b\n")
    (tmp_path / "book" / "00_a.md").write_text("# 00 · Ay\n")
    (tmp_path / "book" / "01_b.md").write_text("# 01 · Bee\n")
    results = tmp_path / "results"
    assert "No notebook run" in quick_cost(results, tmp_path)
    Recorder("00_a", dataset="PTB-XL (real) ptbxl-500: 500 records, 466 patients + synthetic cohort synth: 600 records",
             profile="quick", seed=0).save(results)
    record_time("00_a", 1200.0, "quick")
    table = chapter_map(tmp_path, results)
    assert table["records"].tolist() == ["500 + 600", "–"] and table["profile"].tolist() == ["quick", "–"]
    text = quick_cost(results, tmp_path)
    assert "**20 minutes**" in text and "00_a 20.0 min" in text and "No time is recorded for: 01 · Bee" in text


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
