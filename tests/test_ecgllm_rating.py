"""The expert rating sheet: blinded export, import of filled sheets, scores and agreement."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from ecgkit.ecgllm.rating import SCALE, agreement, export_sheet, expert_scores, import_ratings, parse_rating

ANSWERS = pd.DataFrame({
    "id": ["a", "a", "b", "b", "c", "c"],
    "configuration": ["base", "fine-tuned"] * 3,
    "question": ["What is AF?"] * 2 + ["What is LBBB?"] * 2 + ["What is a Q wave?"] * 2,
    "reference": ["Irregular rhythm without P waves."] * 2 + ["Wide QRS."] * 2 + ["First negative deflection."] * 2,
    "answer": ["A heart thing.", "Irregular, no P waves.", "Narrow QRS.", "QRS of 120 ms or more.", "", "A negative wave."],
})


def test_sheet_is_blinded_and_reproducible(tmp_path):
    sheet_path, key_path = export_sheet(ANSWERS, tmp_path, seed=3)
    sheet = pd.read_csv(sheet_path, keep_default_na=False)
    assert list(sheet.columns) == ["row", "question", "reference", "answer", "rating", "comment", "rater"]
    assert "configuration" not in sheet.columns and "fine-tuned" not in sheet_path.read_text()
    assert (sheet["rating"] == "").all() and len(sheet) == 6
    key = pd.read_csv(key_path)
    assert set(key["configuration"]) == {"base", "fine-tuned"} and list(key["row"]) == list(sheet["row"])
    again, _ = export_sheet(ANSWERS, tmp_path / "again", seed=3)
    assert again.read_text() == sheet_path.read_text()
    without = pd.read_csv(export_sheet(ANSWERS, tmp_path / "noref", with_reference=False)[0], keep_default_na=False)
    assert (without["reference"] == "").all()
    with pytest.raises(ValueError, match="configuration"):
        export_sheet(ANSWERS.drop(columns="configuration"), tmp_path)


def test_round_trip_with_two_raters_and_bad_rows(tmp_path):
    sheet_path, key_path = export_sheet(ANSWERS, tmp_path, seed=0)
    key = pd.read_csv(key_path).set_index("row")
    sheet = pd.read_csv(sheet_path, dtype=str, keep_default_na=False)
    truth = {("a", "base"): 1, ("a", "fine-tuned"): 4, ("b", "base"): 2, ("b", "fine-tuned"): 3,
             ("c", "base"): 1, ("c", "fine-tuned"): 3}
    labels = lambda r: SCALE[truth[(key.loc[r, "id"], key.loc[r, "configuration"])] - 1]  # noqa: E731
    first = sheet.assign(rating=[labels(r).upper() for r in sheet["row"]])
    first.to_csv(tmp_path / "dr_one.csv", index=False)
    second = sheet.assign(rating=[str(truth[(key.loc[r, "id"], key.loc[r, "configuration"])]) for r in sheet["row"]],
                          rater="Dr Two")
    second.loc[0, "rating"] = ""                       # not rated
    second.loc[1, "rating"] = "great"                  # not on the scale
    second.loc[2, "answer"] = "edited answer"          # not the answer the key knows
    second.to_csv(tmp_path / "two.csv", index=False)

    with pytest.warns(UserWarning, match="two.csv: 3 row"):
        ratings, report = import_ratings([tmp_path / "dr_one.csv", tmp_path / "two.csv"], key_path)
    assert report["dr_one.csv"] == {"used": 6, "skipped": 0, "problems": {}, "unrated": 0, "unmatched": 0,
                                    "duplicates": 0}
    problems = report["two.csv"]["problems"]
    assert report["two.csv"]["used"] == 3 and problems[sheet["row"][0]] == "not rated"
    assert report["two.csv"]["unrated"] == 2 and report["two.csv"]["unmatched"] == 1
    assert "not on the scale" in problems[sheet["row"][1]] and "differs" in problems[sheet["row"][2]]
    assert set(ratings["rater"]) == {"dr_one", "Dr Two"}
    for _, r in ratings.iterrows():
        assert r["rating"] == truth[(r["id"], r["configuration"])]

    scores = expert_scores(ratings)
    one = ratings[ratings["rater"] == "dr_one"]
    assert scores.loc["fine-tuned", "mean"] == pytest.approx(ratings.loc[ratings.configuration == "fine-tuned", "rating"].mean())
    assert scores.loc["base", "incorrect"] > 0 and scores.loc["fine-tuned", "correct"] > 0
    assert expert_scores(one).loc["base", "mean"] == pytest.approx(4 / 3)


def test_sheet_with_one_column_per_level_and_duplicates(tmp_path):
    """An outside rater's file: an "x" under the chosen level; a row rated twice is reported."""
    sheet_path, key_path = export_sheet(ANSWERS, tmp_path, seed=0)
    key = pd.read_csv(key_path).set_index("row")
    sheet = pd.read_csv(sheet_path, dtype=str, keep_default_na=False).drop(columns="rating")
    truth = {("a", "base"): 1, ("a", "fine-tuned"): 4, ("b", "base"): 2, ("b", "fine-tuned"): 3,
             ("c", "base"): 1, ("c", "fine-tuned"): 3}
    for k, level in enumerate(SCALE, start=1):
        sheet[level.title().replace(" ", "_")] = ["x" if truth[(key.loc[r, "id"], key.loc[r, "configuration"])] == k
                                                  else "" for r in sheet["row"]]
    marked = sheet.copy()
    marked.loc[1, "Correct"] = "X"                      # a second level marked: skipped, named
    doubled = pd.concat([marked, marked.iloc[[0]]], ignore_index=True)   # row 0 rated twice
    doubled.to_csv(tmp_path / "outside.csv", index=False)
    with pytest.warns(UserWarning, match="outside.csv"):
        ratings, report = import_ratings([tmp_path / "outside.csv"], key_path)
    rep = report["outside.csv"]
    assert "marked under 2 levels" in rep["problems"][sheet["row"][1]]
    assert rep["duplicates"] == 1 and "duplicate of row" in rep["problems"][sheet["row"][0]]
    assert rep["used"] == 5 and len(ratings) == 5          # 6 rows, one with two levels; the repeat not counted
    for _, r in ratings.iterrows():
        assert r["rating"] == truth[(r["id"], r["configuration"])]


PUBLISHED = ["Question", "Answer", "Model", "Incorrect", "Partially incorrect", "Corret incomplete", "Correct"]
# every level used, a different one for each configuration of a question: a wrong level mapping shows
PUBLISHED_TRUTH = {("a", "base"): 1, ("a", "fine-tuned"): 4, ("b", "base"): 2, ("b", "fine-tuned"): 3,
                   ("c", "base"): 3, ("c", "fine-tuned"): 2}


def _published_rows(answers, truth, levels=PUBLISHED[3:]):
    """One row per answer in the ECG-LLM authors' layout, an "x" under the level in ``truth``;
    question and model in other case and spacing than the book's, rows in reverse order."""
    rows = []
    for _, a in answers.iloc[::-1].iterrows():
        marks = ["x" if truth[(a["id"], a["configuration"])] == k else "" for k in range(1, 5)]
        question = "  " + a["question"].upper().replace(" ", "  ") + " "
        rows.append([question, a["answer"], a["configuration"].title(), *marks])
    return pd.DataFrame(rows, columns=["Question", "Answer", "Model", *levels])


def test_published_layout_matched_by_question_and_model(tmp_path):
    """The authors' layout: no row label, Model instead of the key's configuration, "Corret"."""
    _, key_path = export_sheet(ANSWERS, tmp_path, seed=0)
    sheet = _published_rows(ANSWERS, PUBLISHED_TRUTH)
    assert list(sheet.columns) == PUBLISHED
    extra = pd.DataFrame([
        ["What is AF?", ANSWERS["answer"][0], "base", "", "", "", ""],            # no mark
        ["What is AF?", ANSWERS["answer"][1], "fine-tuned", "x", "", "", "X"],    # two marks
        ["What is a T wave?", "Repolarisation.", "base", "", "", "", "x"],         # no such question
        ["What is AF?", "Irregular.", "Claude 3.7", "", "", "x", ""],              # no such model
    ], columns=PUBLISHED)
    pd.concat([sheet, extra], ignore_index=True).to_csv(tmp_path / "expert_a.csv", index=False)

    with pytest.warns(UserWarning, match=r"expert_a.csv: 4 row\(s\) skipped \(2 without a usable rating, 2 matching"):
        ratings, report = import_ratings([tmp_path / "expert_a.csv"], key_path)
    rep = report["expert_a.csv"]
    assert (rep["used"], rep["skipped"], rep["unrated"], rep["unmatched"], rep["duplicates"]) == (6, 4, 2, 2, 0)
    # header is line 1, the six answers lines 2-7, the extra rows lines 8-11
    assert rep["problems"]["line 8"] == "not rated" and "marked under 2 levels" in rep["problems"]["line 9"]
    assert rep["problems"]["line 10"] == "no answer of 'base' to 'What is a T wave?' in the key"
    assert "no answer of 'Claude 3.7'" in rep["problems"]["line 11"]
    got = {(r["id"], r["configuration"]): r["rating"] for _, r in ratings.iterrows()}
    assert got == PUBLISHED_TRUTH and set(ratings["rater"]) == {"expert_a"}
    key = pd.read_csv(key_path).set_index("row")
    assert all(key.loc[r["row"], "id"] == r["id"] for _, r in ratings.iterrows())   # the key's row labels
    # "Corret incomplete" is correct but incomplete (3), "Partially incorrect" 2
    assert expert_scores(ratings).loc["base", "mean"] == pytest.approx((1 + 2 + 3) / 3)
    assert expert_scores(ratings).loc["fine-tuned", "correct but incomplete"] == pytest.approx(1 / 3)


def test_published_layout_headers_typos_and_other_answers(tmp_path):
    _, key_path = export_sheet(ANSWERS, tmp_path, seed=1)
    variants = ["  INCORECT", "partialy_Incorrect ", "Correct,  incomplete", "correct"]
    sheet = _published_rows(ANSWERS, PUBLISHED_TRUTH, levels=variants)
    sheet = sheet.rename(columns={"Question": " question ", "Model": "MODEL"})
    sheet["Corrected answer"] = ""                   # close to "correct", but not a level
    sheet.loc[0, "Answer"] = "an answer the book never gave"
    sheet.to_csv(tmp_path / "b.csv", index=False)
    with pytest.warns(UserWarning, match="1 matching no answer"):
        ratings, report = import_ratings([tmp_path / "b.csv"], key_path)
    assert report["b.csv"]["unmatched"] == 1 and "differs" in report["b.csv"]["problems"]["line 2"]
    changed = (ANSWERS["id"].iloc[-1], ANSWERS["configuration"].iloc[-1])    # written first: line 2
    assert {(r["id"], r["configuration"]): r["rating"] for _, r in ratings.iterrows()} == {
        pair: level for pair, level in PUBLISHED_TRUTH.items() if pair != changed}

    no_level = sheet.drop(columns="Correct,  incomplete")
    no_level.to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="correct but incomplete not found"):
        import_ratings([tmp_path / "short.csv"], key_path)
    twice = sheet.assign(**{"Correct ": ""})
    twice.to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(ValueError, match="both name the level 'correct'"):
        import_ratings([tmp_path / "twice.csv"], key_path)
    old_key = pd.read_csv(key_path).drop(columns="question")
    old_key.to_csv(tmp_path / "old.key.csv", index=False)
    with pytest.raises(ValueError, match="no question column"):
        import_ratings([tmp_path / "b.csv"], tmp_path / "old.key.csv")


def test_parse_rating():
    assert parse_rating("Correct but incomplete") == 3 and parse_rating(" partially-incorrect ") == 2
    assert parse_rating(4) == 4 and parse_rating("1.0") == 1 and parse_rating("") is None
    assert parse_rating(np.nan) is None
    with pytest.raises(ValueError):
        parse_rating("5")


def test_agreement_between_methods():
    expert = [1, 2, 3, 4, 4, 2, 1, 3]
    judge = [1, 2, 3, 4, 3, 2, 2, 3]
    bleu = [5.0, 10, 20, 40, 35, 12, 3, 25]
    table = agreement(pd.DataFrame({"expert": expert, "judge": judge, "bleu": bleu}), four_level=("expert", "judge"))
    row = table.set_index(["method_a", "method_b"])
    assert row.loc[("expert", "judge"), "weighted_kappa"] == pytest.approx(
        cohen_kappa_score(expert, judge, weights="quadratic"))
    assert np.isnan(row.loc[("expert", "bleu"), "weighted_kappa"])      # BLEU is not on the scale
    assert row.loc[("expert", "bleu"), "spearman"] > 0.9 and row.loc[("expert", "bleu"), "n"] == 8
    same = agreement(pd.DataFrame({"a": expert, "b": expert}), four_level=("a", "b"))
    assert same["weighted_kappa"][0] == pytest.approx(1.0) and same["spearman"][0] == pytest.approx(1.0)
    sparse = agreement(pd.DataFrame({"a": [1, np.nan, 3], "b": [2, 2, np.nan]}))
    assert sparse["n"][0] == 1 and np.isnan(sparse["spearman"][0])
