"""Chapters 04–05: ESI descriptions (CQA) and pretraining."""
from __future__ import annotations

import numpy as np
import pytest


def test_04_descriptions(results):
    r = results("04_esi_descriptions")
    assert r.metric("descriptions_failed") == 0 and r.metric("ablation_failed") == 0
    described = r.metric("statements_described")
    descriptions = r.table("descriptions")
    assert len(descriptions) == described >= 12 and (descriptions["grade"] != "no text").all()
    # graded (ecgkit.textquality): a flagged description is never "ok"; the counts add up
    flags = r.table("description_flags")
    assert flags.loc["graded", "descriptions"] == described
    assert flags.loc["passed (no flag)", "descriptions"] == (descriptions["grade"] == "ok").sum() \
        == r.metrics["descriptions_flagged"]["passed"]
    assert described == r.metric("statements_present")                 # every statement described
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
    assert f1 == pytest.approx(0.475, abs=0.05)          # recorded with the repetition control
    assert 0 <= r.metric("descriptions_cut") <= described  # counted
    assert np.isfinite(topk["F1"]).all() and topk["F1"].between(0.3, 0.7).all()
    assert r.metric("retrieval_direction") in ("same direction", "reversed", "not comparable")
    assert 0 <= r.metric("descriptions_suspect") <= described
    if "statements_described_synthetic" in r.metrics:    # the real subset: the synthetic wording too
        syn = r.metrics["statements_described_synthetic"]
        assert syn["value"] >= 20 and syn["failed"] == 0
        # the seeded quick run on the shared subset: 57 statements; with two sentences asked for after the
        # question and 96 tokens, not every description reaches the limit (with 80 tokens and the length
        # asked in the system message, every one did)
        assert described == 57 and syn["value"] == 23
        assert r.metric("descriptions_cut") < described


def test_05_pretraining(results):
    r = results("05_esi_pretraining")
    assert r.info["profile"] == "quick" and len(r.info["seeds"]) >= 3
    assert r.metric("pretraining_records") >= 4000                       # thousands of ECG-text pairs
    assert r.metric("steps") >= 100 and r.info["steps"] == r.metric("steps")
    assert all((v.get("failed") or 0) == 0 for v in r.info["texts"].values())   # every statement described
    classification = r.table("classification")
    rows = set(classification.index)
    assert {("ESI", "linear probe"), ("SimCLR", "linear probe"), ("random init", "linear probe"),
            ("supervised (scratch)", "linear probe"), ("supervised (scratch)", "supervised")} <= rows
    task = [c for c in classification.columns.get_level_values(0) if "superdiagnostic" in c][0]
    means = classification[(task, "mean")].dropna()
    # every encoder learns something usable: far above chance (0.5) on the first task
    assert (means > 0.65).all(), means
    assert ((classification[(task, "low")] <= means) & (means <= classification[(task, "high")])).all()
    assert classification.loc[("ESI", "linear probe"), ("paper", "AUC")] == pytest.approx(0.927)
    comparisons = r.table("comparisons")
    tasks = list(dict.fromkeys(comparisons.index.get_level_values(0)))
    assert len(tasks) == 2 and any(t.startswith("synthetic") for t in tasks)   # real subset and synthetic fold
    assert set(comparisons.index.get_level_values(1)) == {"SimCLR", "supervised (scratch)", "random init"}
    assert comparisons["verdict"].isin(["better", "worse", "no detectable difference"]).all()
    assert ((comparisons["low"] <= comparisons["difference"]) & (comparisons["difference"] <= comparisons["high"])).all()
    for key in ("real", "synthetic"):
        for base in ("random", "simclr", "supervised"):
            assert r.metric(f"esi_vs_{base}_{key}") == comparisons.loc[
                (r.metrics[f"esi_vs_{base}_{key}"]["task"],
                 {"random": "random init", "simclr": "SimCLR", "supervised": "supervised (scratch)"}[base]), "verdict"]
    zero_shot = r.table("zero_shot")
    assert (zero_shot["AUC mean"] > 0.55).all()                  # text alignment beats chance
    assert zero_shot["paper AUC"].iloc[0] == pytest.approx(0.812)
    ablation = r.table("ablation")
    from ecgkit.esi.experiments import CARD_TEXTS

    assert list(ablation.index) == ["ESI (full)", CARD_TEXTS, "w/o CQA", "w/o L_cap", "w/o L_con"]
    paper = ablation["paper arrhythmia"]
    assert paper.drop(CARD_TEXTS).tolist() == [0.928, 0.901, 0.913, 0.850] and paper.isna()[CARD_TEXTS]
    size = r.table("size_curve")
    assert size["records"].is_monotonic_increasing and size["records"].iloc[-1] == r.metric("pretraining_records")
    ident = r.table("identification")
    assert ident["nn_accuracy"].between(0, 1).all() and (ident["patients"] >= 2).all()
    # golden values of the seeded quick run on the shared subset (3 seeds, 160 steps of 32, 4,351
    # pretraining pairs: 5,000-record synthetic cohort folds 1-8 + real folds 1-8), local quick run of
    # 2026-12-07 (96-token CQA texts); an ESI that learns nothing from its texts fails the synthetic verdicts and bounds
    from ecgkit.esi.cqa import CqaSettings

    if r.metric("pretraining_records") == 4351 and CqaSettings.for_profile("quick").max_new_tokens != 96:
        # the goldens below were recorded with the 96-token CQA descriptions; the texts ESI
        # pretrains on change with the length budget (chapter 04): record them again
        pytest.skip("ESI goldens were recorded with 96-token CQA descriptions: record them again")
    if r.metric("pretraining_records") == 4351:
        lp = {m: r.metric(f"{m}_linear_probe_auc_real") for m in ("esi", "simclr", "random", "supervised")}
        assert lp == pytest.approx({"esi": 0.752, "simclr": 0.711, "random": 0.733, "supervised": 0.800}, abs=0.03)
        syn = {m: r.metric(f"{m}_linear_probe_auc_synthetic") for m in ("esi", "simclr", "random", "supervised")}
        assert syn == pytest.approx({"esi": 0.904, "simclr": 0.834, "random": 0.828, "supervised": 0.912}, abs=0.02)
        assert r.metric("esi_vs_random_synthetic") == "better" and r.metric("esi_vs_simclr_synthetic") == "better"
        assert r.metric("esi_zero_shot_auc") == pytest.approx(0.603, abs=0.03)
        # the captioning-only ablation (no contrastive loss) is clearly the weakest on the synthetic
        # cohort (0.83 against 0.90+), as in the paper; on the real subset's 66 test records the
        # rows lie within 0.03 of each other (one seed), too close to order
        synthetic = ablation[[c for c in ablation.columns if c.startswith("synthetic") and c.endswith("linear probe AUC")][0]]
        assert synthetic.idxmin() == "w/o L_con" and synthetic.drop("w/o L_con").min() - synthetic.min() > 0.04
