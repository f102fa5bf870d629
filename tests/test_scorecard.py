"""The scorecard: the verdict rule, the claims table and the page's rows from recorded results."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgkit import scorecard as S
from ecgkit.results import Recorder, paper_numbers
from ecgkit.scorecard import Comparison, verdict


# ---- the rule -------------------------------------------------------------------------------

@pytest.mark.parametrize("direction, comparison, expected", [
    (1, Comparison(0.05, 0.01, 0.09, items=66), S.REPRODUCED),
    (1, Comparison(-0.05, -0.09, -0.01, items=66), S.OPPOSITE),
    (1, Comparison(0.02, -0.03, 0.07, items=66), S.NOT_REPRODUCED),
    (-1, Comparison(-0.05, -0.09, -0.01, items=66), S.REPRODUCED),
    (-1, Comparison(0.05, 0.01, 0.09, items=66), S.OPPOSITE),
    (1, Comparison(0.069, items=2), S.NOT_TESTABLE),                      # two statements
    (1, Comparison(0.3, 0.2, 0.4, items=9), S.NOT_TESTABLE),              # one short of ten
    (1, Comparison(0.3, 0.2, 0.4, items=10), S.REPRODUCED),
    (1, Comparison(untestable="no gap to close"), S.NOT_TESTABLE),
    (1, Comparison(missing="no table"), S.NOT_RECORDED),
    (1, None, S.NOT_RECORDED),
    (1, Comparison(0.04, items=50), S.NOT_RECORDED),                      # no interval and no test
    (1, Comparison(float("nan"), 0.1, 0.2, items=50), S.NOT_RECORDED),
    (1, Comparison(0.1, p=0.01, items=40), S.REPRODUCED),                 # a test instead of an interval
    (1, Comparison(-0.1, p=0.01, items=40), S.OPPOSITE),
    (1, Comparison(0.1, p=0.2, items=40), S.NOT_REPRODUCED),
    (1, Comparison(0.62, 0.55, 0.70, items=66, reference=0.5), S.REPRODUCED),   # above chance
    (1, Comparison(0.40, 0.31, 0.48, items=66, reference=0.5), S.OPPOSITE),     # below chance
    (1, Comparison(0.5, 0.1, 0.9, items=66, reference=0.3), S.NOT_REPRODUCED),  # share not clearly >= 0.3
    (0, Comparison(0.40, 0.30, 0.55, items=66, reference=0.443), S.REPRODUCED),  # holds the paper's value
    (0, Comparison(0.20, 0.10, 0.30, items=66, reference=0.443), S.NOT_REPRODUCED),
    (0, Comparison(0.20, 0.10, 0.30, items=5, reference=0.443), S.NOT_TESTABLE),
])
def test_verdict_from_a_comparison(direction, comparison, expected):
    v = verdict(direction, comparison)
    assert v.label == expected
    assert v.reason                      # every verdict says why


def test_verdict_reasons_name_what_decided():
    assert "2 statements" in verdict(1, Comparison(0.069, items=2, items_name="statements")).reason
    assert "p = 0.01" in verdict(1, Comparison(0.1, p=0.01, items=40)).reason
    assert "below the paper's value 0.443" in verdict(0, Comparison(0.2, 0.1, 0.3, items=66, reference=0.443)).reason
    assert "includes 0" in verdict(1, Comparison(0.02, -0.03, 0.07, items=66)).reason


def test_verdict_refuses_a_direction_it_does_not_know():
    with pytest.raises(ValueError, match="direction"):
        verdict(2, Comparison(0.1, 0.0, 0.2, items=20))


def test_the_vocabulary_is_the_issue_s():
    assert S.VERDICTS == ("reproduced", "not reproduced", "opposite", "not testable at this scale", "not recorded")


# ---- the claims table -----------------------------------------------------------------------

def test_every_claim_names_published_numbers_that_exist_and_a_section():
    numbers = paper_numbers()
    for claim in S.CLAIMS:
        assert claim.paper in S.PAPERS
        assert claim.section and ".html" in claim.section
        assert claim.paper_number or claim.paper_says, claim.claim
        for key in filter(None, (claim.paper_number, claim.versus)):
            rows = numbers[(numbers["paper"] == key[0]) & (numbers["table"] == key[1])
                           & (numbers["configuration"].astype(str) == key[2]) & (numbers["metric"] == key[3])]
            assert len(rows) == 1, key
            assert "Table" in rows["source"].iloc[0] or "abstract" in rows["source"].iloc[0]
    assert {c.paper for c in S.CLAIMS} == set(S.PAPERS)


def test_published_numbers_are_one_table_with_sources():
    numbers = paper_numbers()
    assert list(numbers.columns) == list(S_COLUMNS)
    assert numbers["source"].notna().all()
    assert set(numbers["paper"]) >= {"alfred", "esi", "ecgllm", "ptbxl"}
    esi = numbers[numbers["paper"] == "esi"].set_index(["table", "configuration", "metric"])["value"]
    assert esi[("classification", "SimCLR linear probe", "AUC")] == pytest.approx(0.766)     # Table 2
    assert esi[("identification", "SimCLR linear probe", "accuracy")] == pytest.approx(0.185)  # Table 4
    assert (numbers.loc[numbers["paper"] == "alfred", "source"].str.contains("Table 1")).all()


S_COLUMNS = ("paper", "table", "source", "configuration", "metric", "value")


# ---- the rows from recorded results ---------------------------------------------------------

def _record(tmp_path):
    """Results files shaped like the notebooks' (the tables the claims read), values chosen so
    that each verdict appears."""
    r3 = Recorder("03_alfred_evaluation", dataset="PTB-XL (real) ptbxl: 500 records", profile="quick", seed=0)
    r3.results.info["llm"] = "local:SmolLM2-135M-Instruct"
    r3.table("paired_comparisons", pd.DataFrame(
        {"records": [66, 66], "difference": [-0.19, 0.05], "low": [-0.27, -0.02], "high": [-0.11, 0.12],
         "p": [0.001, 0.2], "verdict": ["B higher", "no difference shown"]},
        index=pd.Index(["Ablation 1 − Base", "Proposed − Base"], name="comparison")))
    ablation = pd.DataFrame({("ours", "PPV"): ["0.200 [0.10, 0.30]"], ("ours", "NPV"): ["0.900 [0.80, 0.95]"],
                             ("ours", "Sens"): ["0.500 (no interval: constant)"], ("ours", "Spec"): ["–"],
                             ("run", "records"): [66]}, index=pd.Index(["Proposed"], name="configuration"))
    ablation.columns = pd.MultiIndex.from_tuples(ablation.columns)
    r3.table("ablation", ablation)
    r3.save(tmp_path)

    r4 = Recorder("04_esi_descriptions", dataset="PTB-XL (real) ptbxl", profile="quick", seed=0)
    r4.metric("retrieval_direction", "same direction", ours=0.069, paper=0.0368)
    r4.metric("ablation_statements", 2)
    r4.save(tmp_path)

    r9 = Recorder("09_clinical_transfer", dataset="synthetic cohort", profile="quick", seed=0, encoder="small")
    r9.table("gap_closed", pd.DataFrame(
        {"estimate": [0.80, 0.84, 0.83, 0.04, 0.03, np.nan], "low": [0.75, 0.8, 0.79, 0.01, -0.01, np.nan],
         "high": [0.85, 0.88, 0.87, 0.07, 0.06, np.nan], "n_valid": [500] * 6},
        index=pd.Index(["signal-only", "ours", "multimodal", "ours − signal-only", "multimodal − signal-only",
                        "gap closed"], name="quantity")))
    r9.metric("records", {"train": 400, "test": 100})
    r9.metric("lab_head_auroc_mean", None, note="no laboratory values")
    r9.save(tmp_path)


def test_scorecard_rows_take_their_verdicts_from_the_recorded_comparisons(tmp_path):
    _record(tmp_path)
    card = S.scorecard(tmp_path).set_index("claim")
    assert list(card.columns) == ["paper", "paper's number", "source", "ours", "measured", "data", "n", "n of",
                                  "model", "verdict", "why", "evidence"]
    rules = card.loc["Rule results help the LLM (Ablation 1 over Base)"]
    assert rules["verdict"] == S.OPPOSITE and rules["n"] == 66
    assert rules["ours"] == "−0.190 [−0.270, −0.110]".replace("−", "-")
    assert "0.458 vs 0.356" in rules["paper's number"] and "Table 1" in rules["source"]
    assert rules["model"] == "local:SmolLM2-135M-Instruct"
    assert card.loc["Expert knowledge and rules: Proposed over Base", "verdict"] == S.NOT_REPRODUCED
    assert card.loc["Expert knowledge helps on top of rules (Ablation 3 over Ablation 1)", "verdict"] == S.NOT_RECORDED
    # the paper's PPV 0.443 lies above our interval [0.10, 0.30]; its NPV 0.834 inside [0.80, 0.95]
    assert card.loc["Proposed reaches the paper's PPV", "verdict"] == S.NOT_REPRODUCED
    assert card.loc["Proposed reaches the paper's NPV", "verdict"] == S.REPRODUCED
    assert card.loc["Proposed reaches the paper's Sens", "verdict"] == S.NOT_RECORDED      # constant: no interval
    retrieval = card.loc["Retrieval improves the CQA descriptions (both sources over none)"]
    assert retrieval["verdict"] == S.NOT_TESTABLE and "2 statements" in retrieval["why"]
    beats = card.loc["Beats the signal-only baseline"]
    assert beats["verdict"] == S.REPRODUCED and beats["n"] == 100
    gap = card.loc["Closes a substantial part of the gap to multimodal (≥ 0.3)"]
    assert gap["verdict"] == S.NOT_TESTABLE and "no gap to close" in gap["why"]
    assert card.loc["Lab-abnormality heads predict labs from the ECG", "verdict"] == S.NOT_TESTABLE
    # notebooks that have not run: every claim of theirs is "not recorded", with the reason
    esi = card[card["paper"] == "ESI"].drop("Retrieval improves the CQA descriptions (both sources over none)")
    assert (esi["verdict"] == S.NOT_RECORDED).all() and esi["why"].str.contains("has not run").all()
    assert set(card["verdict"]) <= set(S.VERDICTS)


def test_rendered_scorecard_links_the_evidence_and_escapes_text(tmp_path):
    _record(tmp_path)
    card = S.scorecard(tmp_path, papers=["ALFRED"])
    assert set(card["paper"]) == {"ALFRED"}
    html = S.scorecard_html(card)
    assert 'href="03_alfred_evaluation.html#label-probabilities-on-every-fold-10-record"' in html
    assert "<td" in html and "opposite" in html
    assert "1 opposite" in S.summary_sentence(card)
    opening = S.paper_opening("ALFRED", tmp_path).data
    assert "arXiv:2505.03781" in opening and "<em>ALFRED: Ask a Large-language model" in opening
    rows = len(card)
    folded = '<details class="ek-collapsed"><summary>The ' in opening
    assert folded == (rows > S.OPENING_ROWS)          # a long list of claims folds under one line
    assert "Its claims and our verdicts" in opening and "<table" in opening


def test_mcnemar_reader_turns_discordant_counts_into_a_paired_difference(tmp_path):
    r8 = Recorder("08_ecgllm_evaluation", dataset="ECG-LLM dataset", profile="quick", seed=0)
    r8.table("mcnemar", pd.DataFrame(
        {"items": [40, 40], "only A right": [12, 3], "only B right": [2, 3], "p": [0.013, 1.0]},
        index=pd.MultiIndex.from_tuples([("fine-tuned vs base", "generated letter"),
                                         ("RAG vs base", "generated letter")], names=["comparison", "method"])))
    r8.save(tmp_path)
    card = S.scorecard(tmp_path, papers=["ECG-LLM"]).set_index("claim")
    ft = card.loc["Fine-tuned beats its base model: multiple choice"]
    assert ft["verdict"] == S.REPRODUCED and ft["ours"] == "+0.250 (p = 0.013)" and ft["n"] == 40
    assert card.loc["Retrieval (RAG) helps the base model: multiple choice", "verdict"] == S.NOT_REPRODUCED
    judge = card.loc["The LLM judge agrees with the experts"]
    assert judge["verdict"] == S.NOT_RECORDED and "expert sheet" in judge["why"]


# ---- the chapters' sentences that the scorecard's rule decides --------------------------------

def test_retrieval_sentence_says_two_statements_are_no_finding():
    from ecgkit.book_text import retrieval_sentence

    direction = {"value": "same direction", "ours": 0.069, "paper": 0.0368}
    few = retrieval_sentence(direction, 2)
    assert "2 statements" in few and "observation, not a finding" in few and "helps here" not in few
    many = retrieval_sentence(direction, 40)
    assert many.startswith("Retrieval helps here as in the paper") and "40 statements" in many
    reversed_ = retrieval_sentence({"value": "reversed", "ours": -0.05, "paper": 0.0368}, 40)
    assert "reverse of the paper's" in reversed_
    assert "cannot be compared" in retrieval_sentence({"value": "not comparable"}, 40)


def _comparisons(verdicts):
    rows = [{"task": t, "baseline": b, "difference": d, "verdict": v} for (t, b), (d, v) in verdicts.items()]
    return pd.DataFrame(rows).set_index(["task", "baseline"])


def test_esi_baseline_sentences_follow_each_verdict_per_cohort():
    from ecgkit.book_text import esi_baseline_sentences

    text = esi_baseline_sentences(_comparisons({
        ("ptbxl superdiagnostic", "random init"): (-0.01, "no detectable difference"),
        ("synthetic superdiagnostic", "random init"): (0.06, "better"),
        ("ptbxl superdiagnostic", "SimCLR"): (0.04, "no detectable difference"),
        ("synthetic superdiagnostic", "SimCLR"): (0.06, "better"),
        ("ptbxl superdiagnostic", "supervised (scratch)"): (-0.05, "worse"),
        ("synthetic superdiagnostic", "supervised (scratch)"): (-0.02, "worse")}))
    assert "beats a random, untrained encoder on the synthetic cohort (+0.060)" in text
    assert "is not distinguishable from a random, untrained encoder on the real subset" in text
    assert "does worse than the supervised encoder (trained on the labels themselves) on both cohorts" in text


def test_identification_sentence_goes_set_by_set():
    from ecgkit.book_text import identification_sentence

    ident = pd.DataFrame({"patients": [6, 6, 200, 200], "lp_accuracy": [0.2, 0.5, 0.6, 0.4]},
                         index=pd.MultiIndex.from_tuples([("ptbxl", "ESI"), ("ptbxl", "random init"),
                                                          ("synthetic-5000", "ESI"), ("synthetic-5000", "random init")]))
    text = identification_sentence(ident)
    assert "the real subset (6 patients)" in text and "random features identify patients better than ESI" in text
    assert "6 patients are too few" in text
    assert "the synthetic cohort (200 patients)" in text and "ESI identifies patients better than random" in text
    assert "ESI keeps more of what identifies a patient than random features do" not in text


def test_shuffled_zero_shot_sentence_says_what_the_number_means():
    from ecgkit.book_text import shuffled_zero_shot_sentence

    mis = pd.DataFrame({"linear probe: ptbxl": [0.7, 0.6], "zero-shot: ptbxl": [0.6, 0.374]},
                       index=pd.Index([0.0, 1.0], name="fraction"))
    text = shuffled_zero_shot_sentence(mis, 66, 1)
    assert "0.374" in text and "below chance" in text and "wrong way round" in text and "66 test records" in text
    at_chance = shuffled_zero_shot_sentence(mis.assign(**{"zero-shot: ptbxl": [0.6, 0.51]}))
    assert "at chance, as it should" in at_chance
    assert "above chance" in shuffled_zero_shot_sentence(mis.assign(**{"zero-shot: ptbxl": [0.6, 0.62]}))


def test_alfred_llm_claims_are_untestable_when_the_instrument_fails_its_control():
    from types import SimpleNamespace

    from ecgkit.scorecard import NOT_TESTABLE, REPRODUCED, instrument_checked, verdict

    read = instrument_checked(lambda r: Comparison(estimate=0.1, low=0.05, high=0.15, items=66))
    failed = SimpleNamespace(metrics={"label_probability_instrument_passed": {
        "value": False, "positive": 0.44, "negative": 0.46, "records": 12}})
    v = verdict(1, read(failed))
    assert v.label == NOT_TESTABLE and "0.44" in v.reason and "positive control" in v.reason
    ok = SimpleNamespace(metrics={"label_probability_instrument_passed": {"value": True}})
    assert verdict(1, read(ok)).label == REPRODUCED
    assert verdict(1, read(SimpleNamespace(metrics={}))).label == REPRODUCED


def test_paper_opening_for_a_chapter_without_claims_says_where_they_are(tmp_path):
    html = S.paper_opening("ALFRED", tmp_path, evidence_in="02_delineation_features_rules").data
    assert "arXiv:2505.03781" in html and "03_alfred_evaluation" in html and "<table" not in html
    assert "<table" in S.paper_opening("ALFRED", tmp_path).data
