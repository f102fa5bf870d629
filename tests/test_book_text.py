import numpy as np
import pandas as pd

from ecgkit.book_text import (ablation_with_notes, expert_collection_sentence, explanations_view, gap_sentences,
                              identical_rows, is_synthetic, measured_sentence, own_card_table)
from ecgkit.knowledge.catalog import Condition


def gap(signal, ours, multimodal, share, share_low=np.nan, share_high=np.nan, d_low=None):
    d = multimodal - signal
    rows = {"signal-only": [signal, signal - .05, signal + .05, 1000],
            "ours": [ours, ours - .05, ours + .05, 1000],
            "multimodal": [multimodal, multimodal - .05, multimodal + .05, 1000],
            "ours − signal-only": [ours - signal, -.05, .05, 1000],
            "multimodal − signal-only": [d, d - .05 if d_low is None else d_low, d + .05, 1000],
            "gap closed": [share, share_low, share_high, 400]}
    return pd.DataFrame(rows, index=["estimate", "low", "high", "n_valid"]).T


def test_an_undefined_share_is_never_followed_by_a_share_above_one():
    text = gap_sentences(gap(0.70, 0.72, 0.705, np.nan), has_labs=False)
    assert "undefined" in text and "exceeds 1" not in text and "troponin" not in text
    assert "above the multimodal reference" in text


def test_a_share_above_one_names_tabular_cues_only_when_the_record_has_labs():
    g = gap(0.60, 0.75, 0.70, 1.5, 1.1, 2.0, d_low=0.02)
    with_labs, without = gap_sentences(g, has_labs=True), gap_sentences(g, has_labs=False)
    assert "exceeds 1" in with_labs and "troponin" in with_labs
    assert "exceeds 1" in without and "troponin" not in without and "biometrics" in without
    assert "1.50" in with_labs and "not clearly above zero" not in with_labs


def test_a_gap_not_clearly_above_zero_is_said():
    assert "not clearly above zero" in gap_sentences(gap(0.6, 0.62, 0.65, 0.4, -1, 3, d_low=-0.01), True)


def test_copied_ablation_rows_are_flagged_with_the_model_they_copy():
    abl = pd.DataFrame({"macro AUROC": [0.70, 0.65, 0.70, 0.65, 0.68], "low": [.6, .55, .6, .55, .6],
                        "high": [.8, .75, .8, .75, .78]},
                       index=["ours", "no stage 1", "no stage 3", "signal-only", "ECG-only stage 1"])
    assert identical_rows(abl, ["macro AUROC", "low", "high"]) == {"no stage 3": "ours", "signal-only": "no stage 1"}
    frame, text = ablation_with_notes(abl, has_labs=False)
    assert frame.loc["no stage 3", "note"].startswith("same model as ours")
    assert frame.loc["no stage 1", "note"].startswith("same model as signal-only")
    assert frame.loc["ECG-only stage 1", "note"] == "" and "not ablations" in text
    frame, text = ablation_with_notes(abl.iloc[[0, 1, 4]], has_labs=True)
    assert "note" not in frame and text == ""


def test_a_column_constant_over_every_row_is_said_once():
    ex = pd.DataFrame({"p": [0.9, 0.8], "the ECG suggests (probability)": ["no lab heads (x)"] * 2})
    view, text = explanations_view(ex)
    assert list(view.columns) == ["p"] and "no lab heads" in text
    ex.loc[1, "the ECG suggests (probability)"] = "hyperkalaemia (0.8)"
    assert explanations_view(ex)[1] == ""


CONDITIONS = [Condition("atrial_fibrillation", "atrial fibrillation", "rhythm", (), ()),
              Condition("lvh_cornell", "left ventricular hypertrophy (Cornell)", "hypertrophy", (), ())]


def examples(af_sources, lvh_sources):
    rows = []
    for name, sources in (("atrial fibrillation", af_sources), ("left ventricular hypertrophy", lvh_sources)):
        for rank, source in enumerate(sources, 1):
            rows.append({"question": f"How is {name} reflected in a 12-lead ECG?",
                         "collections": "documents + expert", "rank": rank, "source": source})
    return pd.DataFrame(rows)


def test_the_expert_collection_claim_follows_what_was_retrieved():
    ex = examples(["documents/01.md", "expert/features/p_amplitude.md"],
                  ["expert/conditions/lvh_cornell.md", "expert/conditions/rvh.md"])
    table = own_card_table(ex, CONDITIONS)
    assert table["own card"].tolist() == [False, True]
    text = expert_collection_sentence(ex, CONDITIONS)
    assert "1 of 2" in text and "atrial fibrillation" in text and "does not always" in text
    ok = expert_collection_sentence(examples(["expert/conditions/atrial_fibrillation.md"],
                                             ["expert/conditions/lvh_cornell.md"]), CONDITIONS)
    assert "2 of 2" in ok and "does not" not in ok


def test_measured_sentence_and_data_kind():
    text = measured_sentence({"records_measured": {"value": 200, "of": 500, "failed": 0}}, 20)
    assert "200 of the 500 real records" in text and "20 held-out synthetic records" in text
    assert "annotated ECGs**" not in text and "no ECGs with cardiologists' boundaries" in text
    both = measured_sentence({"records_measured": {"value": 200, "of": 500},
                              "annotated_ecgs": {"value": 261, "databases": "ludb, qtdb"}}, 20)
    assert "261 annotated ECGs** (ludb, qtdb" in both and "20 held-out synthetic records" in both
    assert is_synthetic({"dataset": "synthetic cohort synth-600"}) and not is_synthetic({"dataset": "PTB-XL (real)"})


def test_measured_sentence_takes_the_total_from_the_dataset_line():
    text = measured_sentence({"records_measured": {"value": 200}}, None, "PTB-XL (real) ptbxl: 500 records, 466 patients")
    assert "200 of the 500 real records" in text and "synthetic" not in text


def test_delineation_finding_reads_the_recorded_scores():
    from ecgkit.book_text import delineation_finding

    rows = [("ours (cross-validated)", "ludb", "p_off", 1.8, 13.6), ("ours (cross-validated)", "ludb", "t_off", 1.5, 23.3),
            ("ours before (synthetic only)", "ludb", "p_off", 13.8, 17.3),
            ("ours before (synthetic only)", "ludb", "t_off", 15.4, 26.0)]
    scores = pd.DataFrame(rows, columns=["method", "database", "fiducial", "mean_error_ms", "sd_error_ms"]
                          ).set_index(["method", "database", "fiducial"])
    text = delineation_finding({"cardiologist_scores": scores}, {"fiducials_meeting_goal": {"value": 2, "of": 6}})
    assert "+1.8 ± 13.6 ms" in text and "+23.3" not in text and "+15.4 ± 26.0 ms" in text
    assert "2 of 6 fiducials" in text
    assert delineation_finding({}, {}) == ""


def test_text_source_sentence_judges_the_spread_against_the_seeds():
    from ecgkit.book_text import text_source_sentence
    from ecgkit.esi.experiments import CARD_TEXTS

    task = "ptbxl superdiagnostic"
    abl = pd.DataFrame({f"{task}: linear probe AUC": [0.76, 0.78, 0.77, 0.70]},
                       index=["ESI (full)", CARD_TEXTS, "w/o CQA", "w/o L_cap"])
    cls = pd.DataFrame({(task, "mean"): [0.77], (task, "sd"): [0.015]},
                       index=pd.MultiIndex.from_tuples([("ESI", "linear probe")]))
    text = text_source_sentence(abl, cls)
    assert "CQA 0.760, expert cards 0.780, statement names 0.770; spread 0.020, within twice" in text
    assert "does not measurably matter" in text
    cls[(task, "sd")] = 0.005
    text = text_source_sentence(abl, cls)
    assert "more than twice" in text and "expert cards highest" in text and "moves the encoder" in text
    assert text_source_sentence(abl.drop(CARD_TEXTS), cls) == ""          # a run without the third source
    assert "cannot be judged" in text_source_sentence(abl, cls.drop(columns=[(task, "sd")]))
