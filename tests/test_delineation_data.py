"""Cardiologists' wave boundaries in: LUDB / QT Database readers (PhysioNet layout written here
with wfdb.wrann, the prepared npz layout), boundaries, folds and scoring against them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgkit.data import delineation as DD
from ecgkit.alfred.delineation import crossval as CV

FS = 500
#: one beat's marks at 500 Hz: (symbol, sample offset from the beat start)
BEAT = [("(", 0), ("p", 25), (")", 50), ("(", 80), ("N", 100), (")", 125), ("(", 200), ("t", 260), (")", 320)]


def _marks(n_beats=4, rr=400, start=300, symbols=BEAT):
    samples, symbols_out = [], []
    for b in range(n_beats):
        for sym, off in symbols:
            samples.append(start + b * rr + off)
            symbols_out.append(sym)
    return np.array(samples), symbols_out


def _write_record(folder, name, n_sig, seconds=5):
    rng = np.random.default_rng(0)
    sig = rng.normal(0, 0.05, (seconds * FS, n_sig))
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"][:n_sig] \
        if n_sig == 12 else ["MLII", "V5"]
    wfdb.wrsamp(name, fs=FS, units=["mV"] * n_sig, sig_name=names, p_signal=sig, fmt=["16"] * n_sig,
                write_dir=str(folder))
    return sig


def test_read_ludb_physionet_layout(tmp_path):
    _write_record(tmp_path, "7", 12)
    samples, symbols = _marks()
    for k, ext in enumerate(DD.LUDB_EXTENSIONS):
        shift = 2 * k if ext != "v1" else 0          # each lead marked on its own
        # wrann takes letters only: write, then give the file LUDB's name (e.g. 7.v1)
        wfdb.wrann("7", "tmp", samples + shift, symbols, write_dir=str(tmp_path))
        (tmp_path / "7.tmp").rename(tmp_path / f"7.{ext}")
    (ecg,) = DD.read_ludb(tmp_path)
    assert ecg.database == "ludb" and ecg.record == "7" and ecg.fs == FS
    assert ecg.signal.shape == ecg.labels.shape == (5 * FS, 12)
    lead_ii = ecg.labels[:, 1]
    # [onset, offset): P of the first beat at 300+2 .. 350+2 in lead II (shift 2)
    assert lead_ii[302] == 1 and lead_ii[351] == 1 and lead_ii[352] == 0
    assert lead_ii[382] == 2 and lead_ii[426] == 2 and lead_ii[427] == 0
    assert lead_ii[502] == 3 and lead_ii[621] == 3
    # outside the marked span: nobody looked
    assert lead_ii[0] == DD.UNMARKED and lead_ii[-1] == DD.UNMARKED
    bounds = DD.wave_boundaries(ecg.labels, ecg.leads)
    ii = bounds[bounds["lead"] == "II"]
    assert sorted(ii["p_on"][ii["p_on"] >= 0]) == [302, 702, 1102, 1502]
    assert sorted(ii["t_off"][ii["t_off"] >= 0]) == [622, 1022, 1422, 1822]


def test_read_qtdb_physionet_layout_has_no_t_onset(tmp_path):
    _write_record(tmp_path, "sel1", 2, seconds=20)
    no_t_onset = [s for s in BEAT if not (s[0] == "(" and s[1] == 200)]
    a, sa = _marks(4, start=300, symbols=no_t_onset)
    b, sb = _marks(3, start=6000, symbols=no_t_onset)         # a second annotated stretch
    wfdb.wrann("sel1", "tmp", np.concatenate([a, b]), sa + sb, write_dir=str(tmp_path))
    (tmp_path / "sel1.tmp").rename(tmp_path / "sel1.q1c")
    ecgs = DD.read_qtdb(tmp_path)
    assert [e.record for e in ecgs] == ["sel1#0", "sel1#1"]
    assert all(e.group == "qtdb/sel1" for e in ecgs)
    first = ecgs[0]
    assert first.signal.shape[1] == 2 and (first.labels[:, 0] == first.labels[:, 1]).all()
    # QRS offset, then no T onset mark until the T peak
    start = first.start
    assert first.labels[425 - start, 0] == DD.NO_T_ONSET
    assert first.labels[560 - start, 0] == 3
    bounds = DD.wave_boundaries(first.labels[:, :1])
    assert (bounds["t_on"] == -1).all() and (bounds["t_off"] >= 0).sum() == 4
    assert (bounds["qrs_off"] >= 0).sum() == 4          # a QRS offset beside no-T-onset is known


def test_read_prepared_npz_and_load_annotated(tmp_path, monkeypatch):
    n = [600, 400]
    labels = np.zeros((sum(n), 12), np.int8)
    labels[50:80] = 2
    labels[150:230] = 3
    labels[650:680] = 2
    labels[700:760] = 3
    np.savez(tmp_path / "ludb-odd.npz", record=np.array([1, 3]), start=np.array([10, 20]),
             length=np.array(n), signal=np.zeros((sum(n), 12), np.float32), labels=labels)
    np.savez(tmp_path / "qtdb.npz", record=np.array(["sel9"]), start=np.array([0]),
             length=np.array([400]), signal=np.zeros((400, 2), np.float32),
             labels=labels[600:, :2])
    ecgs = DD.load_annotated(tmp_path)
    assert [e.name for e in ecgs] == ["ludb/1", "ludb/3", "qtdb/sel9"]
    assert ecgs[0].leads[0] == "I" and ecgs[0].fs == 250 and ecgs[1].start == 20
    q = ecgs[2]
    # QTDB: from the QRS offset to the middle of the T wave is "no T onset marked"
    assert (q.labels[80:130, 0] == DD.NO_T_ONSET).all() and q.labels[130, 0] == 3
    table = DD.describe_annotated(ecgs)
    assert table.loc["ludb", "records"] == 2 and table.loc["qtdb", "leads"] == 2
    assert DD.fingerprint(ecgs) != DD.fingerprint(ecgs[:2])
    monkeypatch.delenv("ECGKIT_DELINEATION", raising=False)
    assert DD.load_annotated(None) == []                     # no folder set: nothing, no error
    monkeypatch.setenv("ECGKIT_DELINEATION", str(tmp_path))
    assert len(DD.load_annotated(None)) == 3
    with pytest.raises(FileNotFoundError):
        DD.load_annotated(tmp_path / "missing")


def test_wave_boundaries_leave_out_edges():
    lab = np.array([2, 2, 0, 0, 1, 1, 0, 3, 3, 3, -1, -1, 2, 2, 0], np.int8)
    b = DD.wave_boundaries(lab)
    qrs = b[(b["qrs_on"] >= 0) | (b["qrs_off"] >= 0)]
    assert list(qrs["qrs_on"]) == [-1, -1] and list(qrs["qrs_off"]) == [2, 14]    # edge; after unmarked
    p = b[b["p_on"] >= 0]
    assert (p["p_on"].item(), p["p_off"].item()) == (4, 6)
    t = b[(b["t_on"] >= 0) | (b["t_off"] >= 0)]
    assert (t["t_on"].item(), t["t_off"].item()) == (7, -1)                      # before unmarked


def _ecg(record, n_beats=6, db="ludb", fs=250):
    lab = np.zeros((n_beats * 200 + 100, 2), np.int8)
    for b in range(n_beats):
        s = 50 + b * 200
        lab[s:s + 20] = 1
        lab[s + 35:s + 60] = 2
        lab[s + 100:s + 150] = 3
    return DD.AnnotatedECG(db, record, np.zeros(lab.shape, np.float32), lab, fs, ("I", "II"))


def test_scoring_against_cardiologists_perfect_shifted_and_spurious():
    ecgs = [_ecg("1"), _ecg("2"), _ecg("sel1", db="qtdb")]
    truth = [DD.wave_boundaries(e.labels, e.leads) for e in ecgs]
    exact = CV.score_against_cardiologists(ecgs, truth)
    assert (exact["sensitivity"] == 1).all() and (exact["ppv"] == 1).all()
    assert ("qtdb", "t_on") not in exact.index and ("ludb", "t_on") in exact.index
    late = [t.assign(**{c: np.where(t[c] >= 0, t[c] + 5, -1) for c in CV.FIDUCIALS}) for t in truth]
    s = CV.score_against_cardiologists(ecgs, late)
    assert np.allclose(s["mean_error_ms"], 20.0)            # 5 samples at 250 Hz
    extra = [pd.concat([t, t.assign(p_on=np.where(t["p_on"] >= 0, t["p_on"] + 100, -1))]) for t in truth]
    s = CV.score_against_cardiologists(ecgs, extra)
    assert np.allclose(s.xs("p_on", level="fiducial")["ppv"], 0.5)
    errors = CV.error_table(ecgs, late)
    assert set(errors["database"]) == {"ludb", "qtdb"} and np.allclose(errors["error_ms"], 20.0)


def test_record_folds_keep_a_record_together_and_mix_databases():
    ecgs = [_ecg(str(i)) for i in range(10)] + [_ecg(f"sel{i}#{k}", db="qtdb") for i in range(5) for k in range(2)]
    folds = CV.record_folds(ecgs, k=5, seed=0)
    assert set(folds.values()) == {1, 2, 3, 4, 5} and len(folds) == 15
    assert folds == CV.record_folds(ecgs, k=5, seed=0)
    for fold in range(1, 6):
        members = [g for g, f in folds.items() if f == fold]
        assert any(g.startswith("ludb/") for g in members) and any(g.startswith("qtdb/") for g in members)


def test_out_of_fold_and_neurokit_are_cached(tmp_cache, capsys):
    import torch

    from ecgkit.nn import UNet1D

    torch.manual_seed(0)
    model = UNet1D(base=4, depth=2).eval()
    model.fs = 250.0
    rng = np.random.default_rng(0)
    ecgs = [DD.AnnotatedECG("ludb", str(i), rng.normal(0, 0.1, (1500, 2)).astype(np.float32),
                            np.zeros((1500, 2), np.int8), 250, ("I", "II")) for i in range(2)]
    first = CV.out_of_fold(ecgs, {}, {}, final=model)
    again = CV.out_of_fold(ecgs, {}, {}, final=model)
    out = capsys.readouterr().out
    assert "computed and cached" in out and "from cache" in out
    assert len(first) == len(again) == 2
    for a, b in zip(first, again):
        assert len(a) == len(b) and (len(a) == 0 or (a[list(b.columns)].astype(str).values == b.astype(str).values).all())
    nk = CV.neurokit_cached(ecgs)
    assert isinstance(nk, list) and len(nk) == 2
