"""ALFRED end to end: measuring, diagnosing per configuration, scoring, the diagnose CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgkit.alfred.answer import SUPERCLASSES, parse_answer
from ecgkit.alfred.evaluate import ablation_table, per_class_table, score_diagnoses
from ecgkit.alfred.pipeline import (Diagnoses, diagnose, label_choices, measure_ecgs, sample_ids,
                                    truth_labels)
from ecgkit.alfred.prompt import CONFIGURATIONS, PromptBudget
from ecgkit.alfred.report import diagnose_record, main as diagnose_main
from ecgkit.data.errors import RecordError
from ecgkit.data.records import read_record
from ecgkit.llm import Generation, LLM, LocalLLM
from ecgkit.data.synthetic import simulate_ecg



class ScriptedLLM(LLM):
    """Answers from a list, in order; records what it was asked."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def generate(self, prompts, max_new_tokens=128, temperature=0.0, system=None, stop=None,
                 seed=0, **options):
        self.calls.append((list(prompts), options))
        out = []
        for _ in prompts:
            a = self.answers.pop(0)
            out.append(a if isinstance(a, Generation) else Generation(text=a, finish_reason="stop"))
        return out


class FakeIndex:
    def retrieve_many(self, queries, top_k=1, collections=("documents",)):
        from ecgkit.knowledge.index import Hit
        return [[Hit(text=f"About {q}", score=1.0, metadata={"collection": collections[-1],
                                                              "source": f"{collections[-1]}/x.md"},
                     id=f"{collections}-{q}")] for q in queries]


@pytest.fixture(scope="module")
def measured():
    sigs = [simulate_ecg(c, noise=0.0, seed=i)[0] for i, c in enumerate((("NORM",), ("CLBBB",), ("AMI",)))]
    return measure_ecgs(np.stack(sigs), 500, ages=[50, 60, 70], sexes=[0, 1, 0], ids=["a", "b", "c"],
                        progress=False)


def test_measure_keeps_one_row_per_record(measured):
    assert list(measured.ids) == ["a", "b", "c"] and len(measured.rules) == 3
    assert measured.features.loc["a", "heart_rate"] > 30
    sub = measured.subset(["c", "a"])
    assert list(sub.ids) == ["c", "a"] and sub.features.index.tolist() == ["c", "a"]


def test_rules_only_needs_no_llm(measured):
    d = diagnose(measured, "Rules only")
    assert d.llm == "none" and d.n == 3 and not d.prompts
    assert set(d.predictions.columns) == set(SUPERCLASSES)
    assert d.predictions.map(lambda v: v in (True, False)).all().all()


def test_llm_configuration_counts_errors_and_unparseable(measured):
    llm = ScriptedLLM(["NORM: yes\nMI: no\nSTTC: no\nCD: no\nHYP: no\nExplanation: normal.",
                       "I cannot tell.",
                       Generation.failed("endpoint timed out")])
    d = diagnose(measured, "Proposed", llm, FakeIndex(), PromptBudget.for_profile("quick"))
    assert d.errors == 1 and d.unparsed == 1
    assert d.predictions.loc["a"].tolist() == [True, False, False, False, False]
    assert d.predictions.loc["b"].isna().all()
    assert "timed out" in d.answers.loc["c", "problem"]
    prompts, options = llm.calls[0]
    assert "choices" not in options              # an endpoint-style LLM: free text, no prefill
    assert all(isinstance(p[-1], dict) and p[-1]["role"] == "user" for p in prompts)
    assert "Background on the positive conditions" in d.prompts[1].text or not d.prompts[1].positive


def test_each_configuration_gets_its_prompt_parts(measured):
    seen = {}
    for name, cfg in CONFIGURATIONS.items():
        if not cfg.llm:
            continue
        llm = ScriptedLLM(["NORM: no\nMI: no\nSTTC: no\nCD: no\nHYP: no"] * 3)
        d = diagnose(measured, name, llm, FakeIndex(), PromptBudget.for_profile("quick"))
        seen[name] = d.prompts[1]
    assert "## 2. Rule results" not in seen["Base"].text
    assert all("## 2. Rule results" in seen[n].text for n in ("Ablation 1", "Proposed"))
    assert not seen["LLM without retrieval"].feature_chunks
    assert all(s.startswith("documents") for s in seen["Ablation 1"].sources.values())
    assert any(s.startswith("expert") for s in seen["Proposed"].sources.values())


def test_label_choices_cover_every_answer_once():
    choices = label_choices()
    assert len(set(choices)) == 32
    parsed = {tuple(parse_answer("NORM:" + c + " x").labels.values()) for c in choices}
    assert len(parsed) == 32 and all(None not in p for p in parsed)


def test_constrained_local_generation_keeps_the_format(llm_dir):
    llm = LocalLLM(str(llm_dir), batch_size=2, threads=1)
    msgs = [[{"role": "user", "content": "Is this ECG normal? Heart rate 70 bpm, QRS 90 ms."},
             {"role": "assistant", "content": "NORM:"}]]
    free = llm.generate(msgs, max_new_tokens=20)[0]
    constrained = llm.generate(msgs, max_new_tokens=20, choices=label_choices())[0]
    assert parse_answer("NORM:" + constrained.text).ok, constrained.text
    assert constrained.text.split("\n")[0].strip() in ("yes", "no")
    assert free.ok


def _diag(preds, name="X"):
    frame = pd.DataFrame(preds, columns=list(SUPERCLASSES), index=range(len(preds))).astype(object)
    return Diagnoses(name, frame, pd.DataFrame(index=frame.index), llm="m")


def test_scores_count_missing_labels_as_negative():
    truth = pd.DataFrame([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 1, 0, 0], [1, 0, 0, 0, 0]],
                         columns=list(SUPERCLASSES)).astype(bool)
    perfect = _diag(truth.astype(object).values.tolist())
    s = score_diagnoses(truth, perfect, n_boot=50)
    assert s.loc[("MI", "Sens"), "estimate"] == 1.0 and s.loc[("macro", "Spec"), "estimate"] == 1.0
    missing = _diag([[None] * 5] + truth.astype(object).values.tolist()[1:])
    s2 = score_diagnoses(truth, missing, n_boot=50)
    assert s2.loc[("NORM", "Sens"), "estimate"] == 0.5          # record 0 counted as "no NORM"
    table = ablation_table({"Proposed": s, "Rules only": s2},
                           {"Proposed": perfect, "Rules only": missing})
    assert table.loc["Proposed", ("paper", "PPV")] == pytest.approx(0.443)
    assert np.isnan(table.loc["Rules only", ("paper", "PPV")])
    assert table.loc["Proposed", ("ours", "Spec")].startswith("1.000")
    assert per_class_table({"Proposed": s}).loc[("Proposed", "macro"), "Sens"] == 1.0
    assert table.loc["Proposed", ("run", "LLM")] == "yes"                 # the model's name goes to the caption


def test_macro_cells_say_how_many_classes_they_average_and_rules_meet_the_paper():
    from ecgkit.alfred.evaluate import _macro_cell, rules_vs_paper

    # no HYP, STTC or CD record: their sensitivity is undefined, the macro is over NORM and MI
    truth = pd.DataFrame([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0]],
                         columns=list(SUPERCLASSES)).astype(bool)
    s = score_diagnoses(truth, _diag([[True] * 5] * 4), n_boot=50)
    assert _macro_cell(s, "Sens") == "1.000 (no interval: constant) (mean of 2 of 5 classes)"
    assert "classes" not in _macro_cell(s, "Spec") or "of 5" in _macro_cell(s, "Spec")
    verdict = rules_vs_paper(s)
    assert verdict["against"] == "Proposed" and verdict["rates"]["Sens"]["paper"] == pytest.approx(0.477)
    assert "Sens" in verdict["above"] and verdict["rates"]["Sens"]["side"] == "above"
    assert verdict["rates"]["PPV"]["ours"] < verdict["rates"]["PPV"]["paper"] and "PPV" in verdict["below"]


def test_truth_and_sampling(tiny_ptbxl):
    from ecgkit.data import load_ptbxl
    data = load_ptbxl(tiny_ptbxl, 100, cache=False, progress=False)
    y = truth_labels(data)
    assert list(y.columns) == list(SUPERCLASSES) and y.dtypes.eq(bool).all()
    ids = pd.Index(range(100))
    small, large = sample_ids(ids, 4, seed=1), sample_ids(ids, 10, seed=1)
    assert set(small) <= set(large) and len(small) == 4
    assert sample_ids(ids, None).equals(ids)


# ----------------------------------------------------------------------------- CLI / report

def _wfdb(folder, name, signal, fs=500, comments=()):
    wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=["I", "II", "III", "aVR", "aVL", "aVF",
                "V1", "V2", "V3", "V4", "V5", "V6"], p_signal=signal, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder),
                comments=list(comments))
    return folder / name


def test_read_record_formats_and_errors(tmp_path):
    sig, _ = simulate_ecg(("NORM",), noise=0.0, seed=0)
    base = _wfdb(tmp_path, "rec1", sig, comments=["Age: 64", "Sex: Female"])
    x, fs, info = read_record(str(base) + ".hea")
    assert x.shape == (5000, 12) and fs == 500 and info["age"] == 64 and info["sex"] == 1.0
    np.save(tmp_path / "rec2.npy", sig)
    assert read_record(tmp_path / "rec2.npy", fs=500)[0].shape == (5000, 12)
    with pytest.raises(RecordError, match="--fs"):
        read_record(tmp_path / "rec2.npy")
    with pytest.raises(RecordError, match="unsupported"):
        read_record(tmp_path / "x.edf")
    (tmp_path / "rec1.dat").write_bytes((tmp_path / "rec1.dat").read_bytes()[:1000])
    with pytest.raises(RecordError, match="rec1"):
        read_record(base)


def test_diagnose_record_writes_a_report(tmp_path):
    sig, _ = simulate_ecg(("CLBBB",), noise=0.0, seed=2)
    base = _wfdb(tmp_path, "lbbb", sig)
    llm = ScriptedLLM(["NORM: no\nMI: no\nSTTC: no\nCD: yes\nHYP: no\nExplanation: wide QRS."])
    report = diagnose_record(base, llm, FakeIndex(), "Proposed", tmp_path / "out", profile="quick")
    folder = tmp_path / "out" / "lbbb"
    assert {p.name for p in folder.iterdir()} == {"report.md", "report.json", "ecg.png", "delineation.png"}
    assert report["diagnosis"]["CD"] is True and report["explanation"] == "wide QRS."
    assert report["rules_only"]["CD"] is True
    saved = json.loads((folder / "report.json").read_text())
    assert saved["evidence"] and all(src for _, src in saved["evidence"])
    text = (folder / "report.md").read_text()
    assert "## Rule findings" in text and "Age unknown" in text
    assert report["positive_rules"] and all(r["name"] in text for r in report["positive_rules"])


def test_cli_reports_bad_records_and_goes_on(tmp_path, capsys):
    sig, _ = simulate_ecg(("NORM",), noise=0.0, seed=0)
    base = _wfdb(tmp_path, "ok", sig)
    code = diagnose_main([str(base), str(tmp_path / "missing.hea"), "--llm", "none",
                          "--out", str(tmp_path / "out"), "--no-figures"])
    out, err = capsys.readouterr()
    assert code == 1                     # one of two records failed: a non-zero status
    assert "ok:" in out and "record missing" in err and "1 of 2" in err
    assert diagnose_main([str(tmp_path / "missing.hea"), "--llm", "none",
                          "--out", str(tmp_path / "out")]) == 2
