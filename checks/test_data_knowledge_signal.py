"""Chapters 00–02: data, knowledge base, delineation / features / rules."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import on_real_ptbxl


def test_00_data(results):
    r = results("00_data")
    assert r.info["profile"] == "quick" and r.info["seed"] == 0 and "versions" in r.info
    assert r.metric("skipped_synthetic") == 0
    shares = r.table("superclass_shares")
    assert list(shares.index) == ["NORM", "MI", "STTC", "CD", "HYP"]
    synth = shares.filter(like="synthetic").iloc[:, 0]
    if r.metric("records_synthetic") == 600:          # the seeded quick cohort (seed 0)
        assert synth.round(3).tolist() == pytest.approx([0.363, 0.100, 0.207, 0.265, 0.085], abs=0.002)
    assert (synth > 0.05).all()
    folds = r.table("folds_synthetic")
    assert folds["records"].sum() == r.metric("records_synthetic")
    assert set(folds["part"]) == {"train", "val", "test"}
    if on_real_ptbxl(r) and r.metric("records_real") == 500:   # the shared subset
        assert r.metric("patients_real") == 466 and r.metric("skipped_real") == 0
        real = shares.filter(like="real").iloc[:, 0]
        assert real.tolist() == pytest.approx([0.594, 0.146, 0.192, 0.156, 0.080], abs=1e-3)
        comparison = r.table("real_vs_synthetic")
        assert comparison.loc["hr_bpm", "real_median"] == pytest.approx(68.8, abs=3)
        assert comparison.loc["qrs_ms", "real_median"] == pytest.approx(94, abs=8)
        assert comparison.loc["amp_V2", "verdict"] == "synthetic lower"   # the known gap (chapter 00)


def test_01_knowledge(results):
    r = results("01_knowledge")
    assert r.metric("card_hit_rate") == 1.0               # 87/87 cards found by their own query at k=2
    assert r.metric("corpus_recall_at_10") >= 0.99
    assert r.metric("llm_errors") == 0
    corpus = r.table("corpus")
    assert corpus["max_chunk"].max() <= 1024 and corpus.loc[("all", ""), "files"] >= 98
    hnsw = r.table("hnsw_vs_exact")
    assert (hnsw["recall@10"] >= 0.99).all()
    assert set(r.table("llm_answers")["retrieval"]) == {"none", "documents + expert"}


def test_02_delineation_against_synthetic_truth(results):
    r = results("02_delineation_features_rules")
    scores = r.table("delineation_scores")["U-Net"]
    for fid in ("qrs_on", "qrs_off", "r_peak"):
        assert scores.loc[fid, "sensitivity"] >= 0.99 and scores.loc[fid, "ppv"] >= 0.97, fid
        assert abs(scores.loc[fid, "mean_error_ms"]) <= 5 and scores.loc[fid, "sd_error_ms"] <= 10, fid
    # trained on cardiologists' boundaries, the U-Net reads the generator's small P waves less often
    # (recorded: P onset Se 0.875 on 20 records); QRS and T as well as before
    assert scores.loc["t_off", "sensitivity"] >= 0.98 and scores.loc["p_on", "sensitivity"] >= 0.85
    nk = r.table("delineation_scores")["neurokit2 dwt"]
    for fid in ("qrs_on", "qrs_off", "t_off"):                            # U-Net at least as sensitive
        assert scores.loc[fid, "sensitivity"] >= nk.loc[fid, "sensitivity"] - 0.005, fid
    assert r.metric("speedup") > 1
    assert len(r.table("rules_documented")) == 45


def test_02_delineation_against_cardiologists(results):
    """Cross-validated against LUDB's and QTDB's cardiologists: the previous delineator's late P
    and T offsets and spurious P waves are gone (recorded on LUDB: P on Se/PPV 0.994/0.916,
    P off +1.8 ± 13.6 ms, T off +1.5 ± 23.3 ms; the synthetic-only delineator: P off +13.8,
    T off +15.4 ms, P on PPV 0.875)."""
    r = results("02_delineation_features_rules")
    if "cardiologist_scores" not in r.tables:
        pytest.skip("no annotated ECGs were given (ECGKIT_DELINEATION)")
    t = r.table("cardiologist_scores").reset_index().set_index(["method", "database", "fiducial"])
    ours = t.xs("ours (cross-validated)", level="method")
    before = t.xs("ours before (synthetic only)", level="method")
    nk = t.xs("neurokit2 dwt", level="method")
    ludb = ours.xs("ludb", level="database")
    assert (ludb["sensitivity"] >= 0.98).all() and (ludb["ppv"] >= 0.9).all()
    assert (ludb["mean_error_ms"].abs() <= 5).all()
    assert ludb.loc["qrs_on", "sd_error_ms"] <= 12 and ludb.loc["p_off", "sd_error_ms"] <= 15
    for fid in ("p_off", "t_off"):        # no longer late
        assert abs(ludb.loc[fid, "mean_error_ms"]) < abs(before.loc[("ludb", fid), "mean_error_ms"]) - 5, fid
    assert ludb.loc["p_on", "ppv"] >= before.loc[("ludb", "p_on"), "ppv"] + 0.02
    for fid in ("qrs_on", "qrs_off", "t_off"):   # better than neurokit2 on the same leads
        assert ludb.loc[fid, "sd_error_ms"] < nk.loc[("ludb", fid), "sd_error_ms"], fid
    qtdb = ours.xs("qtdb", level="database")
    assert "t_on" not in qtdb.index and (qtdb["sensitivity"] >= 0.9).all()
    assert r.metric("annotated_ecgs") >= 200


def test_02_rules_follow_the_new_boundaries(results):
    r = results("02_delineation_features_rules")
    if not on_real_ptbxl(r) or "rhythm_checks" not in r.tables:
        pytest.skip("ran on the synthetic cohort")
    checks = r.table("rhythm_checks").reset_index().set_index(["records of", "rule", "records"])
    fit = checks.xs("folds 1–9", level="records of")
    af_sinus = fit.loc[("atrial_fibrillation", "sinus with premature beats or sinus arrhythmia, no AF")]
    # recorded 0.086 (3 of 35; the rule before its refit fired on 5 of them with the old boundaries)
    assert af_sinus["fires, after"] <= 0.1
    assert fit.loc[("atrial_fibrillation", "AF records"), "fires, after"] >= 0.7
    brady = fit.loc[("sinus_bradycardia", "sinus bradycardia records, our rate < 60 bpm")]
    assert brady["fires, after"] >= 0.9
    no_lqt = fit.loc[("long_qt", "records without long QT")]
    assert no_lqt["fires, after"] < no_lqt["fires, before"]          # recorded 0.258 -> 0.097
    assert len(r.table("rules_before_after")) >= 30


def test_02_measurements_on_real_ecgs(results):
    r = results("02_delineation_features_rules")
    if not on_real_ptbxl(r):
        pytest.skip("ran on the synthetic cohort")
    assert r.metric("records_measured") >= 200
    # beats (issue 12): against two lead-II detectors, on the records where those two agree
    # recorded: 0.981 and 0.981 on the 469 records where xqrs and neurokit2 agree (targets 0.98, 0.97)
    assert r.metric("beat_count_within_1_references_agree") >= 0.975
    assert r.metric("hr_within_3bpm_references_agree") >= 0.97
    assert r.metric("beat_count_within_1_xqrs") >= 0.93 and r.metric("hr_within_3bpm_xqrs") >= 0.93
    validation = r.table("rule_validation")
    af = validation.loc["atrial fibrillation"]
    # recorded 11 of 13 AF records: in two the delineator finds P waves at a constant PR
    assert af["positives"] >= 10 and af["sens"] >= 0.8 and af["spec"] >= 0.97
    sr = validation.loc["sinus rhythm"]
    assert sr["sens"] >= 0.6 and sr["spec"] >= 0.6                    # PTB-XL's SR goes down to ~50 bpm
    assert r.metric("rules_meeting_target") >= 1
    groups = r.table("intervals_by_group")
    # medians a cardiologist expects: normal QRS < 110 ms, bundle branch blocks ≥ 120 ms, 1AVB's PR
    # long (recorded 197.5 ms: several 1AVB records measure ≤ 200 ms, chapter 02 says so)
    assert groups.loc["NORM", "qrs_duration"] < 110 and groups.loc["CLBBB", "qrs_duration"] >= 120
    assert groups.loc["CRBBB", "qrs_duration"] >= 120
    assert groups.loc["1AVB", "pr_interval"] >= groups.loc["NORM", "pr_interval"] + 40
    assert 55 <= groups.loc["NORM", "heart_rate"] <= 85
    prevalence = r.table("rule_prevalence")
    assert np.isfinite(prevalence.iloc[:, :3].to_numpy(dtype=float)).all()


def test_a_rerun_records_the_same_results():
    """After `make rerun` (CI runs it): every notebook's rerun on the same cache recorded the same
    metrics and tables as the run before (timings left out)."""
    import json

    from conftest import results_folder

    path = results_folder() / "reproduce_times.json"
    if not path.is_file():
        pytest.skip("no notebook run recorded")
    reruns = {name: t["rerun"] for name, t in json.loads(path.read_text()).items() if t.get("rerun")}
    if not reruns:
        pytest.skip("no `make rerun` recorded")
    assert {name: r["differences"] for name, r in reruns.items() if r.get("differences")} == {}
