"""``ecgkit diagnose`` on bad input (issue 12, items 5 and 6): failures named per record, the
batch goes on, exit status, plausibility warnings (sampling rate, units), fewer leads, no LLM
section with ``--llm none``, and flags on dubious LLM answers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import wfdb

import ecgkit.llm
from ecgkit.alfred import report as report_mod
from ecgkit.alfred.plausibility import answer_flags, check_record
from ecgkit.alfred.report import main
from ecgkit.data.errors import RecordError
from ecgkit.data.preprocess import ecg_resample
from ecgkit.data.records import read_record
from ecgkit.data.wfdb_io import LEADS
from ecgkit.llm import LLM, Generation
from ecgkit.data.synthetic import simulate_ecg

FAST = ["--llm", "none", "--no-figures"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def norm():
    return simulate_ecg(("NORM",), seed=0)[0]          # 5000 × 12 at 500 Hz, mV


def _wfdb(folder, name, signal, fs, leads=LEADS):
    n = signal.shape[1]
    wfdb.wrsamp(name, fs=fs, units=["mV"] * n, sig_name=list(leads),
                p_signal=signal.astype(np.float64), fmt=["16"] * n, adc_gain=[1000.0] * n,
                baseline=[0] * n, write_dir=str(folder))
    return str(folder / f"{name}.hea")


def _run(tmp_path, capsys, *args):
    code = main([*map(str, args), "--out", str(tmp_path / "out"), *FAST])
    out, err = capsys.readouterr()
    return code, out, err


def _saved(tmp_path, name):
    folder = tmp_path / "out" / name
    return json.loads((folder / "report.json").read_text()), (folder / "report.md").read_text()


# ----------------------------------------------------------------------------- failures

def test_all_nan_record_is_named_and_the_batch_goes_on(tmp_path, capsys, norm):
    np.save(tmp_path / "blank.npy", np.full_like(norm, np.nan))
    np.save(tmp_path / "good.npy", norm)
    code, out, err = _run(tmp_path, capsys, tmp_path / "blank.npy", tmp_path / "good.npy",
                          "--fs", "500")
    assert code == 1
    assert "error: record blank: no usable lead" in err and "all NaN" in err
    assert "1 of 2 records could not be diagnosed: blank (no usable lead" in err
    assert "good: " in out and "(rules only)" in out and (tmp_path / "out" / "good" / "report.md").is_file()
    with pytest.raises(RecordError, match="blank"):
        read_record(tmp_path / "blank.npy", fs=500)


def test_an_all_nan_lead_is_a_missing_lead_with_a_warning(tmp_path, capsys, norm):
    sig = norm.copy()
    sig[:, 0] = np.nan
    _wfdb(tmp_path, "nolead1", sig, 500)
    code, out, err = _run(tmp_path, capsys, tmp_path / "nolead1.hea")
    assert code == 0, err
    saved, md = _saved(tmp_path, "nolead1")
    assert "I" not in saved["leads"] and len(saved["leads"]) == 11
    assert any("I all NaN" in w for w in saved["warnings"])
    assert "warning: record nolead1: lead(s) I all NaN" in err
    assert md.index("## Warnings") < md.index("## Diagnosis")


def test_unexpected_errors_are_named_with_their_type(tmp_path, capsys, norm, monkeypatch):
    real = report_mod.diagnose_record

    def flaky(path, *args, **kwargs):
        if "bad" in str(path):
            raise ZeroDivisionError("division by zero")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(report_mod, "diagnose_record", flaky)
    np.save(tmp_path / "bad.npy", norm)
    np.save(tmp_path / "fine.npy", norm)
    code, out, err = _run(tmp_path, capsys, tmp_path / "bad.npy", tmp_path / "fine.npy",
                          "--fs", "500")
    assert code == 1 and "fine: " in out and "(rules only)" in out
    assert "error: record bad: unexpected ZeroDivisionError: division by zero" in err
    code, _, err = _run(tmp_path, capsys, tmp_path / "bad.npy", tmp_path / "missing.npy",
                        "--fs", "500")
    assert code == 2
    assert "2 of 2 records could not be diagnosed: bad (unexpected ZeroDivisionError" in err
    assert "missing (file" in err


# ----------------------------------------------------------------------------- plausibility

def test_header_rate_half_the_real_one_warns_about_the_sampling_rate(tmp_path, capsys, norm):
    _wfdb(tmp_path, "slow", norm, 250)                # a 500 Hz signal, header says 250 Hz
    code, out, err = _run(tmp_path, capsys, tmp_path / "slow.hea")
    assert code == 0 and "slow:" in out and "1 warning(s)" in out
    saved, md = _saved(tmp_path, "slow")
    [warning] = saved["warnings"]
    assert "sampling rate 250 Hz looks too low" in warning
    assert "the QRS measures" in warning and "if the record is 500 Hz" in warning
    assert "header" in warning and warning in err
    assert md.index("## Warnings") < md.index("## Diagnosis")


def test_fs_half_the_real_one_says_pass_fs(tmp_path, capsys, norm):
    np.save(tmp_path / "rec.npy", norm)
    code, _, err = _run(tmp_path, capsys, tmp_path / "rec.npy", "--fs", "250")
    assert code == 0
    [warning] = _saved(tmp_path, "rec")[0]["warnings"]
    assert "sampling rate 250 Hz looks too low" in warning and "pass --fs 500" in warning


def test_microvolts_warn_about_units(tmp_path, capsys, norm):
    np.save(tmp_path / "uv.npy", norm * 1000)         # a CPSC-like file stored in µV
    code, _, err = _run(tmp_path, capsys, tmp_path / "uv.npy", "--fs", "500")
    assert code == 0
    warnings = _saved(tmp_path, "uv")[0]["warnings"]
    assert any("values look like µV: divide by 1000" in w for w in warnings)
    assert "µV" in err and not any("sampling rate" in w for w in warnings)


def test_a_plausible_record_has_no_warnings(tmp_path, capsys, norm):
    _wfdb(tmp_path, "fine", norm, 500)
    code, _, err = _run(tmp_path, capsys, tmp_path / "fine.hea")
    assert code == 0 and "warning" not in err
    saved, md = _saved(tmp_path, "fine")
    assert saved["warnings"] == [] and "## Warnings" not in md


@pytest.mark.parametrize("values, fs, expected", [
    ({"heart_rate": 75, "qrs_duration": 90, "amplitude": 1.5}, 500, []),
    ({"heart_rate": 15, "qrs_duration": 250, "amplitude": 1.5}, 250,
     ["sampling rate 250 Hz looks too low", "if the record is 500 Hz, pass --fs 500"]),
    ({"heart_rate": 38, "qrs_duration": 172, "amplitude": 1.5}, 250,
     ["sampling rate 250 Hz looks too low", "QRS measures 172 ms", "rate 38 bpm"]),
    ({"heart_rate": 300, "qrs_duration": 30, "amplitude": 1.5}, 1000,
     ["sampling rate 1000 Hz looks too high", "if the record is 500 Hz"]),
    ({"heart_rate": 75, "qrs_duration": 90, "amplitude": 0.001}, 500,
     ["values look like V: multiply by 1000"]),
    ({"heart_rate": float("nan"), "qrs_duration": float("nan"), "amplitude": 1250}, 500,
     ["1250 mV outside 0.05–20 mV", "values look like µV: divide by 1000"]),
])
def test_check_record(values, fs, expected):
    text = " | ".join(check_record(values, fs))
    assert all(e in text for e in expected), text
    assert bool(text) == bool(expected)


@pytest.mark.parametrize("values, fs, factor", [
    # a sinus tachycardia of 100 bpm read at half its rate: no single check fires, together they do
    ({"heart_rate": 50, "qrs_duration": 182, "qt_interval": 640, "pr_interval": 300}, 250, 2.0),
    ({"heart_rate": 140, "qrs_duration": 45, "qt_interval": 190, "pr_interval": 80}, 1000, 0.5),
    # disease at the right rate stays: LBBB with a long QT, bradycardia with first-degree block
    ({"heart_rate": 72, "qrs_duration": 150, "qt_interval": 480, "pr_interval": 180}, 500, 1.0),
    ({"heart_rate": 42, "qrs_duration": 100, "qt_interval": 520, "pr_interval": 280}, 500, 1.0),
    ({"heart_rate": 130, "qrs_duration": 80, "qt_interval": 280, "pr_interval": 120}, 500, 1.0),
    ({"heart_rate": 60, "qrs_duration": float("nan"), "qt_interval": float("nan"),
      "pr_interval": float("nan")}, 500, 1.0),
])
def test_rate_factor(values, fs, factor):
    from ecgkit.alfred.plausibility import rate_factor

    assert rate_factor(values)[0] == factor
    text = " | ".join(check_record({**values, "amplitude": 1.5}, fs))
    if factor == 1.0:
        assert text == ""
    else:
        assert f"sampling rate {fs:g} Hz looks too {'low' if factor > 1 else 'high'}" in text
        assert f"if the record is {fs * factor:g} Hz" in text


def _real_records(n=6):
    """A few real PTB-XL records (500 Hz) of the shared subset: NORM and sinus tachycardia."""
    from ecgkit.config import project_root
    from ecgkit.data.ptbxl import load_ptbxl

    folder = project_root().parent / "shared" / "data" / "ptbxl-500"
    if not (folder / "ptbxl_database.csv").is_file():
        pytest.skip(f"no real PTB-XL subset at {folder}")
    ds = load_ptbxl(folder, rate=500, progress=False)
    codes = ds.meta["scp_codes"]
    pick = [i for i, c in enumerate(codes) if "STACH" in c][:2] + \
        [i for i, c in enumerate(codes) if c.get("NORM", 0) >= 80][: n - 2]
    return [np.asarray(ds.signals[i], dtype=np.float32) for i in pick]


def test_real_records_relabelled_both_ways_warn_about_the_rate(tmp_path, capsys):
    """Real 500 Hz records written with a 250 Hz header, and real records resampled to 250 Hz
    written with a 500 Hz header, get the sampling-rate warning; the true headers get none."""
    records = _real_records()
    for k, sig in enumerate(records):
        _wfdb(tmp_path, f"true{k}", sig, 500)
        _wfdb(tmp_path, f"slow{k}", sig, 250)                        # header says half the rate
        _wfdb(tmp_path, f"fast{k}", ecg_resample(sig, 500, 250, axis=0), 500)   # twice the rate
    code, _, _ = _run(tmp_path, capsys, *sorted(tmp_path.glob("*.hea")))
    assert code == 0
    fast_found = 0
    for k in range(len(records)):
        assert not any("sampling rate" in w for w in _saved(tmp_path, f"true{k}")[0]["warnings"]), k
        slow = " | ".join(_saved(tmp_path, f"slow{k}")[0]["warnings"])
        assert "sampling rate 250 Hz looks too low" in slow and "if the record is 500 Hz" in slow, k
        fast = " | ".join(_saved(tmp_path, f"fast{k}")[0]["warnings"])
        fast_found += "sampling rate 500 Hz looks too high" in fast and "if the record is 250 Hz" in fast
    # a squeezed record is delineated at a quarter of its real resolution: its boundaries do not
    # halve exactly, and a fast, short-PR record can read as plausible (recorded: 4 of 6 found)
    assert fast_found >= 4


# ----------------------------------------------------------------------------- leads

def test_two_lead_360hz_records(tmp_path, capsys, norm):
    two = ecg_resample(norm, 500, 360, axis=0)[:, [1, 6]]
    _wfdb(tmp_path, "mitbih", two, 360, leads=["MLII", "V1"])
    _wfdb(tmp_path, "iiv1", two, 360, leads=["II", "V1"])
    _wfdb(tmp_path, "v1only", two[:, [1]], 360, leads=["V1"])
    _wfdb(tmp_path, "odd", two, 360, leads=["ABP", "PLETH"])
    code, out, err = _run(tmp_path, capsys, tmp_path / "mitbih.hea", tmp_path / "iiv1.hea",
                          tmp_path / "v1only.hea", tmp_path / "odd.hea")
    assert code == 1                                       # the non-ECG record failed, the others ran
    line = next(l for l in err.splitlines() if l.startswith("error: record odd"))
    assert "ABP" in line and "PLETH" in line               # names the signals it has
    assert _saved(tmp_path, "mitbih")[0]["leads"] == ["II", "V1"]   # MIT-BIH's MLII is lead II
    assert _saved(tmp_path, "v1only")[0]["global_features"]["heart_rate"] is not None   # one lead
    saved, md = _saved(tmp_path, "iiv1")
    assert saved["leads"] == ["II", "V1"] and saved["fs"] == 360
    assert any("only 2 of the 12 leads" in w for w in saved["warnings"])
    assert saved["global_features"]["heart_rate"] is not None


def test_npy_with_fewer_leads_needs_names(tmp_path, capsys, norm):
    np.save(tmp_path / "two.npy", norm[:, [1, 6]])
    with pytest.raises(RecordError, match="--leads"):
        read_record(tmp_path / "two.npy", fs=500)
    x, fs, info = read_record(tmp_path / "two.npy", fs=500, leads=["II", "V1"])
    assert x.shape == (5000, 12) and info["leads"] == ["II", "V1"]
    assert np.isnan(x[:, 0]).all() and np.allclose(x[:, 1], norm[:, 1])
    np.savetxt(tmp_path / "two.csv", norm[:, [1, 6]], delimiter=",", header="II,V1", comments="")
    assert read_record(tmp_path / "two.csv", fs=500)[2]["leads"] == ["II", "V1"]
    code, out, _ = _run(tmp_path, capsys, tmp_path / "two.npy", "--fs", "500", "--leads", "II,V1")
    assert code == 0 and "two:" in out


# ----------------------------------------------------------------------------- LLM / answers

def test_llm_none_writes_no_llm_section(tmp_path, capsys, norm):
    np.save(tmp_path / "rec.npy", norm)
    code, out, _ = _run(tmp_path, capsys, tmp_path / "rec.npy", "--fs", "500")
    assert code == 0 and "rules only" in out
    saved, md = _saved(tmp_path, "rec")
    assert saved["llm_asked"] is False and saved["answer_flags"] == []
    assert "| superclass | rules only |" in md and "| LLM |" not in md
    assert "LLM was not asked" in md
    assert "Explanation" not in md and "Retrieved evidence" not in md
    assert "ecg.png" not in md                         # --no-figures: no broken image links


@pytest.mark.parametrize("labels, explanation, expected", [
    ({"NORM": True, "MI": True, "STTC": False, "CD": False, "HYP": False}, "Q waves in II.",
     ["NORM together with MI"]),
    (dict.fromkeys(("NORM", "MI", "STTC", "CD", "HYP"), True), "Everything.",
     ["all five superclasses answered yes"]),
    ({"NORM": False, "MI": False, "STTC": False, "CD": True, "HYP": False}, "<your reasoning>",
     ["template placeholder ('<your reasoning>')"]),
    ({"NORM": False, "MI": False, "STTC": False, "CD": True, "HYP": False},
     "Here is your reasoning.", ["template placeholder"]),
    ({"NORM": True, "MI": False, "STTC": False, "CD": False, "HYP": False}, "  ",
     ["the explanation is empty"]),
    ({"NORM": True, "MI": False, "STTC": False, "CD": False, "HYP": False}, None,
     ["the explanation is empty"]),
    ({"NORM": False, "MI": None, "STTC": False, "CD": True, "HYP": False},
     "QRS 150 ms > 120 ms and PR < 200 ms: LBBB.", []),
])
def test_answer_flags(labels, explanation, expected):
    flags = answer_flags(labels, explanation)
    assert len(flags) == len(expected)
    assert all(e in f for e, f in zip(expected, flags)), flags


class _Placeholder(LLM):
    name = "placeholder"

    def generate(self, prompts, **options):
        return [Generation(text="NORM: yes\nMI: yes\nSTTC: no\nCD: no\nHYP: no\n"
                                "Explanation: <your reasoning>") for _ in prompts]


def test_flagged_answer_in_report_and_summary(tmp_path, capsys, norm, monkeypatch):
    monkeypatch.setattr(ecgkit.llm, "get_llm", lambda *a, **k: _Placeholder())
    np.save(tmp_path / "rec.npy", norm)
    code = main([str(tmp_path / "rec.npy"), "--fs", "500", "--llm", "fake", "--no-figures",
                 "--config", "LLM without retrieval", "--out", str(tmp_path / "out")])
    out, _ = capsys.readouterr()
    assert code == 0
    saved, md = _saved(tmp_path, "rec")
    assert saved["llm_asked"] is True and saved["diagnosis"]["MI"] is True
    assert any("NORM together with MI" in f for f in saved["answer_flags"])
    assert any("placeholder" in f for f in saved["answer_flags"])
    assert "answer flagged: NORM together with MI" in out
    assert "| superclass | LLM answer | LLM P(yes) | rules only |" in md and "**Answer flags:**" in md
    assert saved["probabilities"] == {}                 # a backend that cannot score: none, no crash
    assert "&lt;your reasoning&gt;" in md and "<your reasoning>" not in md


class _Scoring(_Placeholder):
    """Answers as the placeholder, and scores " yes" at log 0.8 against " no" at log 0.2."""

    def loglikelihood(self, prompts, continuations, system=None, batch_size=None):
        return [np.log(0.8) if c.strip().lower() == "yes" else np.log(0.2) for c in continuations]

    def count_tokens(self, texts):
        return [1 for _ in texts]                       # every variant one token


def test_probabilities_beside_the_text_answer(tmp_path, capsys, norm, monkeypatch):
    monkeypatch.setattr(ecgkit.llm, "get_llm", lambda *a, **k: _Scoring())
    np.save(tmp_path / "rec.npy", norm)
    assert main([str(tmp_path / "rec.npy"), "--fs", "500", "--llm", "fake", "--no-figures",
                 "--config", "LLM without retrieval", "--out", str(tmp_path / "out")]) == 0
    saved, md = _saved(tmp_path, "rec")
    assert saved["probabilities"]["MI"] == pytest.approx(0.8)
    assert "| MI | yes | 0.80 |" in md
