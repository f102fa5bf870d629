"""Notebook 05 (ESI pretraining and evaluation) runs with tiny parameters and records its tables."""
import nbformat
import numpy as np
import pytest

from ecgkit.reproduce import notebooks, run_notebook
from ecgkit.results import load_results

pytestmark = pytest.mark.slow


def test_05_is_committed_clean():
    nb = nbformat.read(notebooks("notebooks", ["05"])[0], as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_05_esi_pretraining_records_its_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("ECGKIT_PTBXL", raising=False)
    # plain label texts keep the LLM out of this test (chapter 04's test covers CQA)
    run_notebook(notebooks("notebooks", ["05"])[0], tmp_path / "out",
                 {"profile": "quick", "n_synthetic": 60, "epochs": 1, "finetune_epochs": 1,
                  "max_pretrain_records": 48, "n_seeds": 2, "sizes": [0.5, 1.0], "misalignment": [0.0, 1.0],
                  "text_source": "labels"})
    r = load_results("05_esi_pretraining", tmp_path / "results")
    assert r.info["profile"] == "quick" and r.info["seeds"] == [0, 1] and r.info["encoder"] == "small"
    assert r.metric("pretraining_records") == 48

    classification = r.table("classification")
    rows = set(classification.index)
    assert {("ESI", "linear probe"), ("ESI", "fine-tune"), ("SimCLR", "linear probe"), ("SimCLR", "fine-tune"),
            ("random init", "linear probe"), ("supervised (scratch)", "supervised")} <= rows
    task = [c for c in classification.columns.get_level_values(0) if "superdiagnostic" in c][0]
    assert (classification[(task, "n")] == 2).all()                     # two seeds each
    means = classification[(task, "mean")]
    assert means.between(0, 1).all()
    assert classification.loc[("ESI", "linear probe"), ("paper", "AUC")] == pytest.approx(0.927)

    zero_shot = r.table("zero_shot")
    assert zero_shot["AUC mean"].between(0, 1).all() and zero_shot["paper AUC"].iloc[0] == pytest.approx(0.812)

    ident = r.table("identification")
    assert {"ESI", "SimCLR", "random init", "supervised (scratch)"} <= set(ident.index.get_level_values("method"))
    assert (ident["patients"] >= 2).all() and ident["nn_accuracy"].between(0, 1).all()

    ablation = r.table("ablation")
    assert list(ablation.index) == ["ESI (full)", "w/o CQA", "w/o L_cap", "w/o L_con"]
    assert ablation["paper arrhythmia"].tolist() == [0.928, 0.901, 0.913, 0.850]
    assert np.isfinite(ablation.filter(like="linear probe AUC").to_numpy(dtype=float)).all()

    assert list(r.table("size_curve").index) == [0.5, 1.0]
    mis = r.table("misalignment")
    assert list(mis.index) == [0.0, 1.0] and any(c.startswith("zero-shot") for c in mis.columns)
    assert "seed" in r.captions["classification"]
