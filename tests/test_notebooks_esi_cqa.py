"""Notebook 04 (ESI CQA descriptions) runs with tiny parameters and records what chapter 04 shows."""

import pytest

from ecgkit.reproduce import notebooks, run_notebook
from ecgkit.results import load_results

pytestmark = pytest.mark.slow


def test_04_esi_descriptions_records_descriptions_and_ablations(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "results"))
    run_notebook(notebooks("notebooks", ["04"])[0], tmp_path / "out",
                 {"profile": "quick", "seed": 0, "n_statements": 2, "n_ablation": 1,
                  "max_new_tokens": 8, "top_ks": [1, 2]})
    r = load_results("04_esi_descriptions", tmp_path / "results")
    assert r.info["profile"] == "quick" and r.info["llm"]
    assert r.metric("statements_described") == 2
    assert r.metric("descriptions_failed") == 0
    descriptions = r.table("descriptions")
    assert len(descriptions) == 2 and (descriptions["status"] == "ok").all()
    assert descriptions["sources"].str.len().gt(0).all()
    text = r.metrics["example_record"]["text"]
    assert text.startswith("This patient is") and "ECG findings:" in text and "Potential ECG waveforms:" in text
    topk = r.table("ablation_topk")
    assert list(topk.index) == [1, 2] and topk["paper F1"].tolist() == [0.8256, 0.8296]
    assert topk["n"].eq(1).all() and topk["F1"].between(0, 1).all()
    retrieval = r.table("ablation_retrieval")
    assert list(retrieval.index) == ["none", "documents", "expert", "documents + expert"]
    assert retrieval.loc["none", "paper F1"] == pytest.approx(0.7928)
    assert len(r.table("ablation_prompts")) == 5
    summary = r.table("ablation_prompts_summary")
    assert summary["paper F1 mean"].iloc[0] == pytest.approx(0.8295)
    assert r.metric("ablation_statements") == 1 and r.metric("ablation_failed") == 0
    assert 0 < r.metric("f1_documents_expert") <= 1
