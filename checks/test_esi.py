"""Chapters 04–05: ESI descriptions (CQA) and pretraining."""
from __future__ import annotations

import numpy as np
import pytest


def test_04_descriptions(results):
    r = results("04_esi_descriptions")
    assert r.metric("descriptions_failed") == 0 and r.metric("ablation_failed") == 0
    described = r.metric("statements_described")
    descriptions = r.table("descriptions")
    assert len(descriptions) == described >= 12 and (descriptions["status"] == "ok").all()
    assert descriptions["sources"].str.len().gt(0).all()
    text = r.metrics["example_record"]["text"]
    assert text.startswith("This patient is") and "ECG findings:" in text
    topk = r.table("ablation_topk")
    assert list(topk.index) == [1, 2, 3, 4, 5] and topk["paper F1"].tolist() == [0.8256, 0.8296, 0.8297,
                                                                                 0.8299, 0.8295]
    retrieval = r.table("ablation_retrieval")
    assert list(retrieval.index) == ["none", "documents", "expert", "documents + expert"]
    # BERTScore F1 (MiniLM) of SmolLM2's descriptions against the expert cards, as recorded
    # (seeded, greedy decoding): a broken retriever or an empty answer moves it well away
    f1 = r.metric("f1_documents_expert")
    assert f1 == pytest.approx(0.436, abs=0.05)
    assert np.isfinite(topk["F1"]).all() and topk["F1"].between(0.3, 0.7).all()
