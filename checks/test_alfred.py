"""Chapter 03: ALFRED's configurations on fold 10."""
from __future__ import annotations

import pytest

from conftest import on_real_ptbxl

#: Rules only, macro over the five superclasses, on the shared subset's fold 10 (66 records), as
#: recorded by the seeded quick run; a change to delineation, features or rules moves these.
RULES_ONLY_REAL = {"PPV": 0.496, "NPV": 0.883, "Sens": 0.750, "Spec": 0.806}   # cardiologist-trained delineator
#: SmolLM2-135M's label probabilities, macro AUROC on the same 66 records (greedy, seeded):
#: near chance without rules, below chance with them (the model leans the wrong way)
AUROC_REAL = {"Base": 0.529, "Ablation 1": 0.365, "Ablation 2": 0.389, "Ablation 3": 0.391,
              "Proposed": 0.381, "LLM without retrieval": 0.350}
#: the delineator whose measurements the prompts behind AUROC_REAL were built from (its key): a
#: new delineator changes every prompt, and these goldens must then be recorded again
AUROC_DELINEATOR = "cf8ba84269d3fa1a688923c7"      # trained on LUDB + QTDB (chapter 02)
TOLERANCE = 0.03


def test_03_rules_only_on_fold_10(results):
    r = results("03_alfred_evaluation")
    table = r.table("ablation")
    assert "Rules only" in table.index
    assert table.loc["Rules only", ("run", "records")] == r.metric("fold10_records")
    macro = r.table("per_class").xs("macro", level="class")
    rules = macro.loc["Rules only"]
    # the rule module must beat chance on every measure (a constant answer cannot)
    assert rules["Sens"] > 0.6 and rules["Spec"] > 0.6 and rules["NPV"] > 0.8
    if on_real_ptbxl(r) and r.metric("fold10_records") == 66:
        for metric, value in RULES_ONLY_REAL.items():
            assert rules[metric] == pytest.approx(value, abs=TOLERANCE), metric
    assert set(table[("run", "LLM")]) <= {"yes", "no"} and table.loc["Rules only", ("run", "LLM")] == "no"
    # the rule module against the paper's Proposed row, recorded for the chapter's prose
    verdict = r.metrics["rules_vs_paper"]
    assert verdict["against"] == "Proposed" and set(verdict["rates"]) == {"PPV", "NPV", "Sens", "Spec"}
    if on_real_ptbxl(r) and r.metric("fold10_records") == 66:
        assert {"NPV", "Sens"} <= set(verdict["above"])                  # 0.883 vs 0.834, 0.750 vs 0.477


def test_03_llm_configurations_are_recorded(results):
    r = results("03_alfred_evaluation")
    table = r.table("ablation")
    assert {"Proposed", "Base"} <= set(table.index)
    assert table.loc["Proposed", ("paper", "PPV")] == 0.443          # the paper's number beside ours
    assert r.metric("llm_errors") == 0
    assert r.metric("unparseable") <= r.metric("llm_records")
    example = r.table("explanation_example")["value"]
    assert example["retrieved (features)"] != "none"


def test_03_synthetic_fold(results):
    r = results("03_alfred_evaluation")
    macro = r.table("synthetic")
    assert "Rules only" in macro.index
    assert macro.loc["Rules only", ("run", "records")] >= 60


def test_03_label_probabilities_on_every_fold_10_record(results):
    r = results("03_alfred_evaluation")
    table = r.table("probabilities")
    assert {"Base", "Ablation 1", "Ablation 2", "Ablation 3", "Proposed"} <= set(table.index)
    assert (table[("run", "records")] == r.metric("fold10_records")).all()      # every record, every configuration
    assert (table[("run", "P(yes) sd")] > 0).all()            # probabilities vary from record to record
    assert table[("ours", "AUROC")].nunique() > 1             # the rows differ where the probabilities do
    assert table.loc["Proposed", ("paper", "PPV")] == 0.443
    per_record = r.table("probabilities_per_record")
    assert len(per_record) == len(table) * r.metric("fold10_records")
    assert per_record.stack().between(0, 1).all()
    macro = r.table("probabilities_per_class").xs("macro", level="class")
    assert macro["AUROC"].between(0.3, 1).all()
    comparisons = r.table("paired_comparisons")
    assert "Proposed − Base" in comparisons.index and comparisons["p"].between(0, 1).all()
    assert r.metrics["probability_records"]["validation"] >= 10        # thresholds from fold 9
    used = (r.info.get("cache_keys") or {}).get("delineator") or []
    if on_real_ptbxl(r) and r.metric("fold10_records") == 66 and r.info["llm"].startswith("local:SmolLM2"):
        if AUROC_DELINEATOR not in used:
            pytest.skip(f"AUROC goldens were recorded with delineator {AUROC_DELINEATOR}; this run used {used}: "
                        "record them again")
        for name, value in AUROC_REAL.items():
            assert macro.loc[name, "AUROC"] == pytest.approx(value, abs=0.02), name
        assert "Ablation 1 − Base" in " ".join(r.metric("probability_differences"))


#: the positive control's macro AUROC that the best scoring design must reach. On the control sample
#: (balanced_sample, per_class=4: about 12 records with 4-5 positives per class) an instrument that
#: ignores the stated answer has a per-class AUROC sd of about sqrt(13 / (12·5·7)) ≈ 0.18, so a
#: macro over five classes of about 0.08: 0.75 is three of those above chance. SmolLM2-135M's best
#: design (class name) recorded 0.82 in the search on the shared subset.
CONTROL_RISES = 0.75


def test_03_the_probability_instrument_faces_its_controls(results):
    r = results("03_alfred_evaluation")
    table = r.table("label_probability_controls")
    assert {"answer line", "question", "class name"} <= set(table.index)
    verdict = r.metrics["label_probability_instrument_passed"]
    assert verdict["verdict"] == ("tested" if verdict["value"] else "not testable with this model")
    assert verdict["design"] == "answer line" and verdict["records"] >= 8
    if r.info["profile"] == "quick" and r.info["llm"].startswith("local:SmolLM2"):
        # stating the answer must raise the scores of some design, and more than shuffled statements do
        best = max(table.index, key=lambda d: float(table.loc[d, ("positive", "macro")].split()[0]))
        positive = float(table.loc[best, ("positive", "macro")].split()[0])
        negative = float(table.loc[best, ("negative", "macro")].split()[0])
        assert positive >= CONTROL_RISES and positive > negative, (best, positive, negative)
    inversion = r.table("inversion_by_prompt_part")
    prompts = set(inversion.index.get_level_values("prompt"))
    assert {"whole prompt", "without rule results", "without features"} <= prompts
    assert inversion["AUROC"].dropna().between(0, 1).all()
