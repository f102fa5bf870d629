import os

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgkit.data import LEADS, RecordError, load_ptbxl, label_counts, fold_table
from ecgkit.data.ptbxl import parse_scp_codes

from conftest import write_record


def test_signals_in_mv_standard_lead_order(tiny_ptbxl, tmp_cache):
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    assert ds.signals.shape == (6, 1000, 12) and ds.signals.dtype == np.float32
    rec = wfdb.rdrecord(str(tiny_ptbxl / "records100/00000/00003_lr"))
    np.testing.assert_allclose(ds.signals[2], rec.p_signal, atol=1e-6)
    assert ds.leads == LEADS and LEADS[3] == "aVR"
    ds500 = load_ptbxl(tiny_ptbxl, 500, progress=False)
    assert ds500.signals.shape == (6, 5000, 12) and ds500.fs == 500


def test_lead_order_follows_names_not_positions(tiny_ptbxl, tmp_cache):
    # rewrite record 1 with V6 first: the reader must put it back in place
    leads = ["V6", "I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5"]
    sig = np.tile(np.arange(12, dtype=float)[None, :] / 10, (1000, 1))  # column k holds k/10
    write_record(tiny_ptbxl / "records100/00000", "00001_lr", sig, 100, leads=leads)
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    np.testing.assert_allclose(ds.signals[0, 0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 0.0],
                               atol=1e-6)


def test_label_views(tiny_ptbxl, tmp_cache):
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    sup = ds.label_view("superdiagnostic")
    assert list(sup.y.columns) == ["NORM", "MI", "STTC", "CD", "HYP"]
    assert sup.y.loc[2, ["MI", "HYP"]].tolist() == [1, 1]      # any likelihood
    assert sup.y.loc[6, "MI"] == 1
    assert list(sup.unlabelled) == [5]                          # reported, not dropped
    assert len(sup.y) == 6 and len(sup.labelled()) == 5
    s50 = ds.label_view("superdiagnostic50")
    assert s50.y.loc[2].tolist() == [0, 0, 0, 0, 1]            # IMI at 35 % dropped
    assert s50.y.loc[4, "STTC"] == 1                           # exactly 50 kept
    assert sorted(s50.unlabelled) == [5, 6]
    assert "2 without a label" in s50.summary()
    sub = ds.label_view("subdiagnostic")
    assert set(sub.y.columns) == {"NORM", "IMI", "LVH", "CLBBB", "STTC"}
    rhythm = ds.label_view("rhythm")
    assert rhythm.y.loc[3, "AFIB"] == 1 and rhythm.y.loc[1, "SR"] == 1
    assert list(rhythm.unlabelled) == [4]
    form = ds.label_view("form")
    assert set(form.y.columns) == {"NDT", "LVOLT"}
    assert ds.label_view("all").y.shape == (6, 8)
    with pytest.raises(ValueError, match="unknown label view"):
        ds.label_view("nonsense")


def test_unknown_scp_code_is_reported(tiny_ptbxl, tmp_cache):
    meta = pd.read_csv(tiny_ptbxl / "ptbxl_database.csv")
    meta.loc[0, "scp_codes"] = "{'NORM': 100.0, 'XYZ': 100.0}"
    meta.to_csv(tiny_ptbxl / "ptbxl_database.csv", index=False)
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    labels = ds.label_view("superdiagnostic")
    assert labels.unknown_codes == {1: ["XYZ"]} and "XYZ" in labels.summary()
    assert labels.y.loc[1, "NORM"] == 1


def test_bad_scp_codes_name_the_record():
    with pytest.raises(RecordError, match="record 17.*cannot be parsed"):
        parse_scp_codes("{'NORM': 100", record=17)


def test_split_is_standard(tiny_ptbxl, tmp_cache):
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    split = ds.split()
    assert list(split["train"]) == [1, 2, 3] and list(split["val"]) == [4] and list(split["test"]) == [5, 6]
    assert list(ds.part("test")) == [4, 5]
    assert ds.patient_ids.loc[2] == ds.patient_ids.loc[3]
    table = fold_table(ds)
    assert table.loc[10, "part"] == "test" and table.loc[10, "records"] == 2
    counts = label_counts(ds)
    assert counts.loc[("superdiagnostic50", "test"), "(no label)"] == 2


def test_cache_is_reused_and_invalidated(tiny_ptbxl, tmp_cache, monkeypatch):
    first = load_ptbxl(tiny_ptbxl, 100, progress=False)
    assert isinstance(first.signals, np.memmap) or isinstance(first.signals.base, np.memmap)
    import ecgkit.data.ptbxl as ptbxl_mod
    calls = []
    real = ptbxl_mod.read_wfdb
    monkeypatch.setattr(ptbxl_mod, "read_wfdb", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = load_ptbxl(tiny_ptbxl, 100, progress=False)
    assert calls == [] and np.array_equal(np.asarray(first.signals), np.asarray(again.signals))
    # a changed record changes the key: the cache is rebuilt, never served stale
    sig = np.full((1000, 12), 0.5)
    write_record(tiny_ptbxl / "records100/00000", "00002_lr", sig, 100)
    changed = load_ptbxl(tiny_ptbxl, 100, progress=False)
    assert len(calls) == 6
    np.testing.assert_allclose(changed.signals[1], 0.5)


def test_bad_records_are_skipped_and_counted(tiny_ptbxl, tmp_cache):
    rec = tiny_ptbxl / "records100/00000"
    os.remove(rec / "00002_lr.dat")                                    # missing file
    data = (rec / "00003_lr.dat").read_bytes()
    (rec / "00003_lr.dat").write_bytes(data[: len(data) // 2])         # truncated
    hea = (rec / "00004_lr.hea").read_text().replace(" 12 100 ", " 12 250 ", 1)
    (rec / "00004_lr.hea").write_text(hea)                              # wrong rate
    with pytest.warns(UserWarning, match="3 record"):
        ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    assert list(ds.meta.index) == [1, 5, 6] and ds.signals.shape[0] == 3
    assert "missing" in ds.skipped.skipped[2]
    assert "truncated" in ds.skipped.skipped[3]
    assert "250" in ds.skipped.skipped[4]
    # the cached load reports the same skips
    with pytest.warns(UserWarning):
        again = load_ptbxl(tiny_ptbxl, 100, progress=False)
    assert set(again.skipped.skipped) == {2, 3, 4}
    with pytest.raises(RecordError, match="ecg_id 2"):
        load_ptbxl(tiny_ptbxl, 100, progress=False, strict=True, cache=False)


def test_nan_record_is_skipped(tiny_ptbxl, tmp_cache):
    sig = np.zeros((1000, 12))
    sig[10:20, 4] = np.nan  # wfdb writes NaN as the format's invalid value and reads it back as NaN
    write_record(tiny_ptbxl / "records100/00000", "00001_lr", sig, 100)
    with pytest.warns(UserWarning):
        ds = load_ptbxl(tiny_ptbxl, 100, progress=False, cache=False)
    assert "NaN" in ds.skipped.skipped[1] and "aVL" in ds.skipped.skipped[1]


def test_bad_arguments(tiny_ptbxl, tmp_cache):
    with pytest.raises(ValueError, match="100 or 500"):
        load_ptbxl(tiny_ptbxl, 250)
    with pytest.raises(KeyError, match="99"):
        load_ptbxl(tiny_ptbxl, 100, records=[1, 99])
    with pytest.raises(FileNotFoundError, match="ptbxl_database.csv"):
        load_ptbxl(tiny_ptbxl / "records100", 100)
    sub = load_ptbxl(tiny_ptbxl, 100, records=[2, 4], progress=False)
    assert list(sub.meta.index) == [2, 4] and sub.signals.shape[0] == 2


def test_real_ptbxl_subset(tmp_cache, shared_ptbxl):
    ds = load_ptbxl(shared_ptbxl, 100, progress=False)
    assert len(ds) == 500 and len(ds.skipped) == 0
    assert ds.meta["strat_fold"].value_counts().sort_index().tolist() == [58, 51, 34, 42, 47, 33, 44, 44, 81, 66]
    sup = ds.label_view("superdiagnostic")
    assert sup.y.loc[1, "NORM"] == 1  # ecg_id 1: NORM 100
    # amplitudes are physiological millivolts (a mislabelled gain would be off by 1000)
    amp = np.ptp(np.asarray(ds.signals[:50]), axis=1)
    assert 0.2 < np.median(amp) < 5


def test_medians_by_statement(tiny_ptbxl, tmp_cache):
    from ecgkit.data.ptbxl import medians_by_statement
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    values = pd.DataFrame({"qrs": [90.0, 110.0, 150.0, 95.0, 100.0, 105.0]}, index=ds.meta.index)
    table = medians_by_statement(values, ds.meta, ["NORM", "IMI", "CLBBB", "AFIB"])
    assert table.loc["NORM", "records"] == 1 and table.loc["NORM", "qrs"] == 90.0
    assert table.loc["IMI", "records"] == 2 and table.loc["IMI", "qrs"] == 107.5   # any likelihood
    assert table.loc["CLBBB", "qrs"] == 150.0 and table.loc["AFIB", "records"] == 1
