"""Notebook 09 runs with tiny parameters and records what chapter 09 shows."""
from __future__ import annotations

import numpy as np
import pytest

from ecgkit.reproduce import notebooks, run_notebook
from ecgkit.results import load_results

pytestmark = pytest.mark.slow

TINY = {"profile": "quick", "seed": 0, "n_synthetic": 300, "batch_size": 16, "pretrain_steps": 6,
        "finetune_steps": 4, "joint_steps": 4, "n_boot": 50}


def test_09_clinical_transfer_records_its_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("ECGKIT_PTBXL", raising=False)         # the synthetic cohort: labs, vitals and biometrics
    run_notebook(notebooks("notebooks", ["09"])[0], tmp_path / "out", {**TINY, "ptbxl_dir": None})
    r = load_results("09_clinical_transfer", tmp_path / "results")
    assert r.info["profile"] == "quick" and "synthetic" in r.info["dataset"]
    assert r.info["config"]["pretrain_steps"] == 6 and "ConvNeXt1D small" in r.info["encoder"]
    auc = r.table("auroc")
    assert list(auc.index) == ["NORM", "MI", "STTC", "CD", "HYP", "macro"]
    assert {"signal-only", "ours", "multimodal"} <= set(auc.columns)
    macro = auc.loc["macro", ["signal-only", "ours", "multimodal"]].astype(float)
    assert ((macro > 0) & (macro < 1)).all()
    gap = r.table("gap_closed")
    assert list(gap.index) == ["signal-only", "ours", "multimodal", "ours − signal-only",
                               "multimodal − signal-only", "gap closed"]
    assert gap.loc["ours", "estimate"] == pytest.approx(macro["ours"])
    assert (gap["n_valid"] <= 50).all()
    assert set(r.table("claims").index) == {"beats signal-only", "closes the gap"}
    heads = r.table("lab_heads")
    assert "troponin_high" in heads.index and heads["measured"].min() > 0
    assert len(r.table("explanations")) >= 3
    abl = r.table("ablation")
    assert list(abl.index) == ["ours", "no stage 1", "no stage 3", "ECG-only stage 1", "signal-only"]
    assert abl.loc["ours", "Δ vs ours"] == 0 and abl.loc["no stage 1", "stage 1"] == "none"
    assert len(r.table("reference_ranges")) == 11
    assert np.isfinite(r.metric("train_seconds"))


def test_09_on_real_ptbxl_has_no_lab_heads_and_says_so(tmp_path, monkeypatch):
    from conftest import SHARED_PTBXL

    if not SHARED_PTBXL.is_dir():
        pytest.skip("the real PTB-XL subset is not available")
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "results"))
    out = run_notebook(notebooks("notebooks", ["09"])[0], tmp_path / "out", {**TINY, "ptbxl_dir": str(SHARED_PTBXL)})
    r = load_results("09_clinical_transfer", tmp_path / "results")
    assert "PTB-XL (real)" in r.info["dataset"] and "biometrics only" in r.info["clinical"]
    assert "lab_heads" not in r.tables and r.metric("lab_head_auroc_mean") is None
    assert list(r.table("clinical_record").index) == ["age", "sex", "height", "weight"]
    abl = r.table("ablation")
    assert (abl["stage 3 heads"] == "no").all()
    assert abl.loc["ours", "macro AUROC"] == abl.loc["no stage 3", "macro AUROC"]      # the same model
    assert abl.loc["no stage 1", "macro AUROC"] == abl.loc["signal-only", "macro AUROC"]
    assert "No lab-abnormality heads" in out.read_text()
