"""The notebooks run with small parameters and record what the book shows (recommenders style)."""

import nbformat
import pytest

from ecgkit.reproduce import notebooks, run_notebook
from ecgkit.results import load_results

from conftest import SHARED_PTBXL

pytestmark = pytest.mark.slow


def test_notebooks_are_committed_clean():
    for path in notebooks("notebooks"):
        nb = nbformat.read(path, as_version=4)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path} has outputs"


def test_00_data_records_its_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "results"))
    real = str(SHARED_PTBXL) if SHARED_PTBXL.is_dir() else None
    run_notebook(notebooks("notebooks", ["00"])[0], tmp_path / "out",
                 {"profile": "quick", "ptbxl_dir": real, "n_synthetic": 60, "n_summary": 12, "seed": 0})
    r = load_results("00_data", tmp_path / "results")
    assert r.info["profile"] == "quick" and r.info["seed"] == 0 and "versions" in r.info
    assert r.metric("records_synthetic") == 60 and r.metric("skipped_synthetic") == 0
    shares = r.table("superclass_shares")
    assert list(shares.index) == ["NORM", "MI", "STTC", "CD", "HYP"]
    synth = shares.filter(like="synthetic").iloc[:, 0]
    assert (synth > 0).all() and (synth <= 1).all()      # all five superclasses occur
    folds = r.table("folds_synthetic")
    assert folds["records"].sum() == 60 and set(folds["part"]) <= {"train", "val", "test"}
    if real:
        assert r.metric("records_real") == 500 and r.metric("skipped_real") == 0
        assert "ptbxl" in r.info["dataset"]
        comparison = r.table("real_vs_synthetic")
        assert {"hr_bpm", "qrs_ms"} <= set(comparison.index)
        assert comparison["verdict"].isin(["similar", "synthetic higher", "synthetic lower",
                                           "too few values"]).all()


def test_01_knowledge_records_retrieval_quality(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "results"))
    run_notebook(notebooks("notebooks", ["01"])[0], tmp_path / "out",
                 {"profile": "quick", "n_random": 2000, "max_new_tokens": 16})
    r = load_results("01_knowledge", tmp_path / "results")
    assert r.metric("card_hit_rate") >= 0.9
    assert r.metric("corpus_recall_at_10") >= 0.95
    assert r.metric("llm_errors") == 0
    corpus = r.table("corpus")
    assert corpus["max_chunk"].max() <= 1024 and corpus.loc[("all", ""), "files"] >= 98
    assert set(r.table("llm_answers")["retrieval"]) == {"none", "documents + expert"}


def test_02_alfred_signal_records_its_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "results"))
    real = str(SHARED_PTBXL) if SHARED_PTBXL.is_dir() else None
    run_notebook(notebooks("notebooks", ["02"])[0], tmp_path / "out",
                 {"profile": "quick", "ptbxl_dir": real, "n_scored": 4, "n_real": 12})
    r = load_results("02_delineation_features_rules", tmp_path / "results")
    scores = r.table("delineation_scores")
    assert scores[("U-Net", "sensitivity")].min() > 0.8      # against synthetic ground truth
    assert r.metric("records_measured") == 12
    assert len(r.table("rules_documented")) == 45


def test_03_alfred_evaluation_records_the_ablation_table(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "results"))
    real = str(SHARED_PTBXL) if SHARED_PTBXL.is_dir() else None
    run_notebook(notebooks("notebooks", ["03"])[0], tmp_path / "out",
                 {"profile": "quick", "ptbxl_dir": real, "n_llm": 2, "n_boot": 50,
                  "configurations": ["Rules only", "Proposed"], "n_synthetic_test": 12})
    r = load_results("03_alfred_evaluation", tmp_path / "results")
    table = r.table("ablation")
    assert list(table.index) == ["Rules only", "Proposed"]
    assert table.loc["Proposed", ("paper", "PPV")] == 0.443          # the paper's number beside ours
    assert table.loc["Proposed", ("run", "records")] == 2
    assert table.loc["Rules only", ("run", "records")] == r.metric("fold10_records")
    assert r.metric("llm_errors") == 0
    assert r.info["llm"].startswith("local:SmolLM2")
    example = r.table("explanation_example")["value"]
    assert example["configuration"] == "Proposed" and example["LLM output"].startswith("NORM:")
    assert example["retrieved (features)"] != "none"
    assert set(r.table("synthetic").index) == {"Rules only", "Proposed"}
