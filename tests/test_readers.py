"""Dataset readers on small files written in each dataset's native format.

CPSC 2018: MATLAB v5 ``.mat`` with the ``ECG`` struct (sex, age, data) + ``REFERENCE.csv``.
CinC 2021: WFDB ``.hea`` + MATLAB v4 ``.mat`` holding int16 ``val`` (format ``16+24``).
MIMIC-IV-ECG: WFDB ``.hea``/``.dat`` in MIMIC's lead order + ``record_list.csv`` and
``machine_measurements.csv``.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb

from ecgkit.data.cinc2021 import (
    load_cinc2021,
    parse_header_comments,
    read_cinc_record,
    snomed_name,
)
from ecgkit.data.cpsc2018 import CPSC_CLASSES, load_cpsc2018, read_cpsc_mat
from ecgkit.data.dataset import ECGDataset
from ecgkit.data.errors import RecordError
from ecgkit.data.mimic_ecg import MIMIC_LEADS, join_report, load_mimic_ecg
from ecgkit.data.preprocess import ecg_resample
from ecgkit.data.wfdb_io import LEADS

RNG = np.random.default_rng(20180101)


def quiet(fn, *args, **kwargs):
    """Call a loader with its skip warning silenced (tests check ``skipped`` instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, progress=False, **kwargs)


def smooth_leads(n, n_leads=12, fs=500.0):
    """Band-limited test signals (a few slow sines per lead), mV, leads × samples."""
    t = np.arange(n) / fs
    return np.stack([0.8 * np.sin(2 * np.pi * (1 + 0.3 * k) * t + k) + 0.1 * k for k in range(n_leads)])


# ============================================================================ CPSC 2018

def write_cpsc(folder, rec, data, sex="Male", age=60):
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{rec}.mat"
    scipy.io.savemat(file, {"ECG": {"sex": sex, "age": age, "data": data}})
    return file


@pytest.fixture()
def cpsc_dir(tmp_path):
    root = tmp_path / "cpsc"
    d1, d2 = root / "TrainingSet1", root / "TrainingSet2"
    data = {
        "A0001": np.round(RNG.normal(size=(12, 1000)), 3),
        "A0002": np.round(RNG.normal(size=(12, 1000)), 3),
        "A0003": np.round(RNG.normal(size=(12, 1500)), 3),  # another length
    }
    write_cpsc(d1, "A0001", data["A0001"], "Male", 74)
    write_cpsc(d1, "A0002", data["A0002"], "Female", np.nan)
    write_cpsc(d2, "A0003", data["A0003"], "Male", 49)
    # bad records
    trunc = write_cpsc(d2, "A0005", RNG.normal(size=(12, 1000)))
    trunc.write_bytes(trunc.read_bytes()[:600])
    write_cpsc(d2, "A0006", RNG.normal(size=(11, 1000)))  # 11 leads
    nan = RNG.normal(size=(12, 1000))
    nan[4, 100:103] = np.nan
    write_cpsc(d2, "A0007", nan)
    write_cpsc(d2, "A0008", RNG.normal(size=(12, 1000)))  # label 10: no such class
    write_cpsc(d2, "A0009", RNG.normal(size=(12, 1000)))  # label "AF": not a number
    (root / "REFERENCE.csv").write_text(
        "Recording,First_label,Second_label,Third_label\n"
        "A0001,1,,\n"
        "A0002,2,5,\n"
        "A0003,7,8,9\n"
        "A0004,3,,\n"  # no file
        "A0005,1,,\n"
        "A0006,1,,\n"
        "A0007,4,,\n"
        "A0008,10,,\n"
        "A0009,AF,,\n"
    )
    return root, data


CPSC_BAD = {
    "A0004": "missing",
    "A0005": "cannot be read",
    "A0006": "11 leads",
    "A0007": "NaN",
    "A0008": "'10' is not a CPSC2018 class",
    "A0009": "'AF' is not a CPSC2018 class",
}


def test_cpsc_reads_values_labels_and_meta(cpsc_dir):
    root, data = cpsc_dir
    with pytest.warns(UserWarning, match="6 record\\(s\\) skipped"):
        ds = load_cpsc2018(root, progress=False)
    assert isinstance(ds, ECGDataset) and ds.fs == 500.0 and ds.leads == LEADS
    assert list(ds.meta.index) == ["A0001", "A0002", "A0003"]
    assert isinstance(ds.signals, list)  # lengths differ and no window was asked for
    for rec, sig in zip(ds.meta.index, ds.signals):
        assert sig.dtype == np.float32 and sig.shape == (data[rec].shape[1], 12)
        np.testing.assert_array_equal(sig, data[rec].T.astype(np.float32))
    assert list(ds.labels.columns) == list(CPSC_CLASSES)
    assert ds.labels.loc["A0001"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert ds.labels.loc["A0002", ["AF", "RBBB"]].tolist() == [1, 1] and ds.labels.loc["A0002"].sum() == 2
    assert ds.labels.loc["A0003", ["PVC", "STD", "STE"]].tolist() == [1, 1, 1]
    assert ds.meta.loc["A0001", "sex"] == 0.0 and ds.meta.loc["A0001", "age"] == 74
    assert ds.meta.loc["A0002", "sex"] == 1.0 and np.isnan(ds.meta.loc["A0002", "age"])
    assert ds.meta.loc["A0002", "first_label"] == "AF"
    assert ds.meta.loc["A0003", "n_samples_source"] == 1500


def test_cpsc_bad_records_are_skipped_and_named(cpsc_dir):
    root, _ = cpsc_dir
    ds = quiet(load_cpsc2018, root)
    assert len(ds.skipped) == len(CPSC_BAD)
    assert set(ds.skipped.skipped) == set(CPSC_BAD)
    for rec, why in CPSC_BAD.items():
        assert why in ds.skipped.skipped[rec], (rec, ds.skipped.skipped[rec])
    assert "A0004" in ds.skipped.summary()


@pytest.mark.parametrize("rec", sorted(CPSC_BAD))
def test_cpsc_strict_raises_naming_the_record(cpsc_dir, rec):
    root, _ = cpsc_dir
    with pytest.raises(RecordError) as info:
        load_cpsc2018(root, records=["A0001", rec], strict=True, progress=False)
    assert info.value.record == rec and CPSC_BAD[rec] in info.value.problem


def test_cpsc_window_resample_and_records(cpsc_dir):
    root, data = cpsc_dir
    ds = load_cpsc2018(root, records=["A0003", "A0001"], seconds=2.5, crop="start", progress=False)
    assert list(ds.meta.index) == ["A0003", "A0001"] and len(ds.skipped) == 0
    assert isinstance(ds.signals, np.ndarray) and ds.signals.shape == (2, 1250, 12)
    np.testing.assert_array_equal(ds.signals[0], data["A0003"].T[:1250].astype(np.float32))
    np.testing.assert_array_equal(ds.signals[1, :1000], data["A0001"].T.astype(np.float32))
    assert (ds.signals[1, 1000:] == 0).all()  # padded
    down = load_cpsc2018(root, records=["A0001"], fs=100, progress=False)
    assert down.fs == 100.0 and down.signals.shape == (1, 200, 12)
    expect = ecg_resample(data["A0001"].T.astype(np.float32), 500, 100)
    np.testing.assert_allclose(down.signals[0], expect, atol=1e-6)
    with pytest.raises(KeyError, match="A9999"):
        load_cpsc2018(root, records=["A9999"], progress=False)


def test_cpsc_without_reference_has_no_labels(tmp_path):
    d = np.round(RNG.normal(size=(12, 700)), 3)
    write_cpsc(tmp_path / "x", "A0100", d)
    ds = load_cpsc2018(tmp_path, progress=False)
    assert ds.labels is None and list(ds.meta.index) == ["A0100"]
    sig, info = read_cpsc_mat(tmp_path / "x" / "A0100.mat")
    np.testing.assert_array_equal(sig, d.T.astype(np.float32))
    assert info == {"sex": "Male", "age": 60.0}


# ============================================================================ CinC 2021

def _checksum(row) -> int:
    s = int(np.sum(row.astype(np.int64))) & 0xFFFF
    return s - 0x10000 if s >= 0x8000 else s


def write_cinc(folder, rec, val, fs=500, dx="426783006", age="74", sex="Male", leads=LEADS,
               gain=1000, baseline=0, n_sig_header=None, mat_format="4", extra_comments=()):
    """A challenge record: ``rec.mat`` (MATLAB v4, int16 ``val``, leads × samples) + ``rec.hea``."""
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / f"{rec}.mat", {"val": val}, format=mat_format)
    n_sig = n_sig_header or len(leads)
    gain_text = f"{gain}/mV" if baseline == 0 else f"{gain}({baseline})/mV"
    lines = [f"{rec} {n_sig} {fs} {val.shape[1]} 05-Feb-2020 11:39:16"]
    for i, lead in enumerate(leads[:n_sig]):
        row = val[min(i, len(val) - 1)]
        lines.append(f"{rec}.mat 16+24 {gain_text} 16 0 {int(row[0])} {_checksum(row)} 0 {lead}")
    lines += [f"# Age: {age}", f"# Sex: {sex}", f"# Dx: {dx}", "# Rx: Unknown", "# Hx: Unknown",
              "# Sx: Unknown", *extra_comments]
    (folder / f"{rec}.hea").write_text("\n".join(lines) + "\n")


def int_val(n, n_leads=12, scale=1000.0):
    return np.round(smooth_leads(n, n_leads) * scale + RNG.integers(-20, 20, size=(n_leads, n))).astype(np.int16)


@pytest.fixture()
def cinc_dir(tmp_path):
    root = tmp_path / "cinc"
    vals = {"A0001": int_val(1000), "A0002": int_val(1000), "HR00001": int_val(2000)}
    write_cinc(root / "cpsc_2018", "A0001", vals["A0001"], dx="426783006")
    write_cinc(root / "cpsc_2018", "A0002", vals["A0002"], dx="164889003,59118001", age="NaN",
               sex="Unknown")
    # PTB-XL in the challenge: another folder, 1000 Hz would be resampled; here 500 Hz, 4 s,
    # a baseline, and a lead order that must be put right
    perm = [6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5]
    write_cinc(root / "ptb-xl" / "g1", "HR00001", vals["HR00001"][perm], dx="270492004, 164934002",
               age="56", sex="Female", leads=[LEADS[i] for i in perm], baseline=-5,
               extra_comments=["# Site: test"])
    # bad records
    write_cinc(root / "georgia", "E00001", int_val(1000))
    (root / "georgia" / "E00001.mat").unlink()  # missing signal file
    write_cinc(root / "georgia", "E00002", int_val(1000))
    raw = (root / "georgia" / "E00002.mat").read_bytes()
    (root / "georgia" / "E00002.mat").write_bytes(raw[: len(raw) // 2])  # truncated
    write_cinc(root / "georgia", "E00003", int_val(1000, n_leads=11))  # 11 rows, header 12
    write_cinc(root / "georgia", "E00004", int_val(1000, n_leads=11), n_sig_header=11)
    write_cinc(root / "georgia", "E00005", int_val(1000), fs=250)  # rate disagrees
    nan = int_val(1000)
    nan[3, 200:210] = -32768  # WFDB's NaN marker in format 16
    write_cinc(root / "georgia", "E00006", nan)
    write_cinc(root / "georgia", "E00007", int_val(1000), dx="AF,426783006")  # not SNOMED
    write_cinc(root / "georgia", "E00008", int_val(1000), dx="")  # no label
    return root, vals, perm


CINC_BAD = {
    "E00001": "missing",
    "E00002": "truncated",
    "E00003": "holds 11 leads",
    "E00004": "header lists 11 signals",
    "E00005": "250 Hz",
    "E00006": "NaN",
    "E00007": "cannot be parsed as SNOMED",
    "E00008": "Dx line is empty",
}


def test_cinc_mat_file_is_matlab_v4_with_24_byte_offset(tmp_path):
    val = int_val(300)
    write_cinc(tmp_path, "A0001", val)
    raw = (tmp_path / "A0001.mat").read_bytes()
    mopt, rows, cols, imagf, namlen = np.frombuffer(raw[:20], "<i4")
    assert (mopt, rows, cols, imagf, namlen) == (30, 12, 300, 0, 4)  # 30: int16, little-endian
    assert raw[20:24] == b"val\x00" and len(raw) == 24 + 2 * 12 * 300  # "16+24"
    np.testing.assert_array_equal(np.frombuffer(raw[24:], "<i2").reshape(300, 12), val.T)
    rec = wfdb.rdrecord(str(tmp_path / "A0001"))
    np.testing.assert_allclose(rec.p_signal, val.T / 1000.0)
    sig, fs, info = read_cinc_record(tmp_path / "A0001")
    assert fs == 500.0 and info["dx"] == ["426783006"] and info["age"] == 74 and info["sex"] == "Male"
    np.testing.assert_allclose(sig, val.T / 1000.0, atol=1e-7)


def test_cinc_reads_values_labels_and_meta(cinc_dir):
    root, vals, perm = cinc_dir
    with pytest.warns(UserWarning, match="8 record\\(s\\) skipped"):
        ds = load_cinc2021(root, progress=False)
    assert ds.fs == 500.0 and list(ds.meta.index) == ["A0001", "A0002", "HR00001"]
    assert isinstance(ds.signals, list)
    np.testing.assert_allclose(ds.signals[0], vals["A0001"].T / 1000.0, atol=1e-7)
    np.testing.assert_allclose(ds.signals[1], vals["A0002"].T / 1000.0, atol=1e-7)
    # written in a permuted order with baseline -5: back in LEADS order, (val + 5) / 1000 mV
    np.testing.assert_allclose(ds.signals[2], (vals["HR00001"].T + 5) / 1000.0, atol=1e-7)
    assert all(s.dtype == np.float32 for s in ds.signals)
    assert list(ds.labels.columns) == ["59118001", "164889003", "164934002", "270492004", "426783006"]
    assert ds.labels.loc["A0001"].tolist() == [0, 0, 0, 0, 1]
    assert ds.labels.loc["A0002"].tolist() == [1, 1, 0, 0, 0]
    assert ds.labels.loc["HR00001"].tolist() == [0, 0, 1, 1, 0]
    m = ds.meta
    assert m.loc["A0001", "age"] == 74 and m.loc["A0001", "sex"] == 0.0
    assert np.isnan(m.loc["A0002", "age"]) and pd.isna(m.loc["A0002", "sex"])
    assert m.loc["HR00001", "sex"] == 1.0 and m.loc["HR00001", "site"] == "test"
    assert m.loc["A0002", "dx_names"] == ["atrial fibrillation", "right bundle branch block"]
    assert m.loc["A0001", "source"] == "cpsc_2018" and m.loc["HR00001", "source"] == "ptb-xl"
    assert pd.isna(m.loc["A0001", "rx"])
    assert snomed_name("426783006") == "sinus rhythm" and snomed_name("123") == "123"


def test_cinc_bad_records_are_skipped_and_named(cinc_dir):
    root, _, _ = cinc_dir
    ds = quiet(load_cinc2021, root)
    assert set(ds.skipped.skipped) == set(CINC_BAD) and len(ds.skipped) == 8
    for rec, why in CINC_BAD.items():
        assert why in ds.skipped.skipped[rec], (rec, ds.skipped.skipped[rec])


@pytest.mark.parametrize("rec", sorted(CINC_BAD))
def test_cinc_strict_raises_naming_the_record(cinc_dir, rec):
    root, _, _ = cinc_dir
    with pytest.raises(RecordError) as info:
        load_cinc2021(root, records=["A0001", rec], strict=True, progress=False, source_fs=500)
    assert info.value.record == rec and CINC_BAD[rec] in info.value.problem


def test_cinc_rate_mismatch_against_source_fs_and_resampling(cinc_dir):
    root, vals, _ = cinc_dir
    ds = quiet(load_cinc2021, root, records=["A0001", "E00005"], source_fs=500)
    assert list(ds.meta.index) == ["A0001"] and "expected 500 Hz" in ds.skipped.skipped["E00005"]
    # with fs= every rate is welcome: 500 Hz and 250 Hz records both come out at 100 Hz
    both = load_cinc2021(root, records=["A0001", "E00005"], fs=100, seconds=2, progress=False)
    assert both.fs == 100.0 and both.signals.shape == (2, 200, 12) and len(both.skipped) == 0
    expect = ecg_resample((vals["A0001"].T / 1000.0).astype(np.float32), 500, 100)
    np.testing.assert_allclose(both.signals[0], expect, atol=1e-5)
    assert both.meta["fs_source"].tolist() == [500.0, 250.0]


def test_cinc_window_codes_and_equivalents(cinc_dir):
    root, vals, _ = cinc_dir
    ds = load_cinc2021(root, records=["A0001", "A0002", "HR00001"], n_samples=1500, crop="center",
                       codes=["164889003", "713427006", "426783006"], merge_equivalent=True,
                       progress=False)
    assert ds.signals.shape == (3, 1500, 12)
    np.testing.assert_allclose(ds.signals[2], (vals["HR00001"].T[250:1750] + 5) / 1000.0, atol=1e-7)
    np.testing.assert_allclose(ds.signals[0, 250:1250], vals["A0001"].T / 1000.0, atol=1e-7)
    assert (ds.signals[0, :250] == 0).all() and (ds.signals[0, 1250:] == 0).all()
    # complete RBBB (713427006) is merged into RBBB (59118001), which A0002 carries
    assert list(ds.labels.columns) == ["164889003", "59118001", "426783006"]
    assert ds.labels.loc["A0002"].tolist() == [1, 1, 0]
    assert ds.labels.loc["HR00001"].tolist() == [0, 0, 0]


def test_cinc_matlab_v5_file_falls_back_to_loadmat(tmp_path):
    val = int_val(800)
    write_cinc(tmp_path, "Q0001", val, mat_format="5", baseline=3)
    ds = load_cinc2021(tmp_path, progress=False)
    np.testing.assert_allclose(ds.signals[0], (val.T - 3) / 1000.0, atol=1e-7)


def test_cinc_header_comment_parsing():
    info = parse_header_comments(["Age: 61", "Sex: F", "Dx: 164889003, 426783006", "Rx: Unknown",
                                  "Hx: hypertension"], "r")
    assert info["age"] == 61 and info["sex"] == "Female" and info["dx"] == ["164889003", "426783006"]
    assert info["rx"] is None and info["hx"] == "hypertension"
    with pytest.raises(RecordError, match="no '# Dx:' line"):
        parse_header_comments(["Age: 61"], "r")


# ============================================================================ MIMIC-IV-ECG

MIMIC_MM_COLUMNS = (["subject_id", "study_id", "cart_id", "ecg_time"] + [f"report_{i}" for i in range(18)]
                    + ["bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end",
                       "t_end", "p_axis", "qrs_axis", "t_axis"])


def write_mimic_record(root, subject, study, sig_mimic_order, fs=500, sig_names=MIMIC_LEADS):
    """WFDB record in MIMIC's layout; ``sig_mimic_order`` is samples × leads, mV."""
    rel = f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"
    folder = root / rel.rsplit("/", 1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    n_sig = sig_mimic_order.shape[1]
    wfdb.wrsamp(str(study), fs=fs, units=["mV"] * n_sig, sig_name=list(sig_names)[:n_sig],
                p_signal=sig_mimic_order, fmt=["16"] * n_sig, adc_gain=[200.0] * n_sig,
                baseline=[0] * n_sig, write_dir=str(folder))
    return rel


def mimic_signal(n=5000):
    return np.round(RNG.normal(scale=0.5, size=(n, 12)) * 200) / 200  # exact in 1/200 mV steps


@pytest.fixture()
def mimic_dir(tmp_path):
    root = tmp_path / "mimic"
    root.mkdir()
    good = {40000001: mimic_signal(), 40000002: mimic_signal()}
    rows, mm = [], []
    for i, (study, sig) in enumerate(good.items()):
        subject = 10000032 + i
        rows.append((subject, study, str(study), f"2180-07-2{i} 08:00:00",
                     write_mimic_record(root, subject, study, sig)))
    bad = {}
    subject = 10000099
    bad[40000003] = "missing"
    rows.append((subject, 40000003, "40000003", "2180-01-01 00:00:00", f"files/p1000/p{subject}/s40000003/40000003"))
    rel = write_mimic_record(root, subject, 40000004, mimic_signal())
    dat = root / (rel + ".dat")
    dat.write_bytes(dat.read_bytes()[:5000])
    bad[40000004] = "truncated"
    rows.append((subject, 40000004, "40000004", "2180-01-01 00:00:00", rel))
    rows.append((subject, 40000005, "40000005", "2180-01-01 00:00:00",
                 write_mimic_record(root, subject, 40000005, mimic_signal()[:, :11])))
    bad[40000005] = "11 signals"
    rows.append((subject, 40000006, "40000006", "2180-01-01 00:00:00",
                 write_mimic_record(root, subject, 40000006, mimic_signal(2500), fs=250)))
    bad[40000006] = "250 Hz"
    nan = mimic_signal()
    nan[100:120, 2] = np.nan
    rows.append((subject, 40000007, "40000007", "2180-01-01 00:00:00",
                 write_mimic_record(root, subject, 40000007, nan)))
    bad[40000007] = "NaN"
    pd.DataFrame(rows, columns=["subject_id", "study_id", "file_name", "ecg_time", "path"]).to_csv(
        root / "record_list.csv", index=False)
    for subject, study, *_ in rows:
        row = dict.fromkeys(MIMIC_MM_COLUMNS, np.nan)
        row.update(subject_id=subject, study_id=study, cart_id=6848296, ecg_time="2180-07-20 08:00:00",
                   report_0="Sinus rhythm", report_1="Left axis deviation.", report_4="Abnormal ECG",
                   bandwidth="0.005-150 Hz", filtering="60 Hz notch Baseline filter",
                   rr_interval=659 + study % 10, qrs_axis=-45)
        mm.append(row)
    pd.DataFrame(mm, columns=MIMIC_MM_COLUMNS).to_csv(root / "machine_measurements.csv", index=False)
    return root, good, bad


def test_mimic_reads_values_in_standard_order_with_meta(mimic_dir):
    root, good, bad = mimic_dir
    with pytest.warns(UserWarning, match="5 record\\(s\\) skipped"):
        ds = load_mimic_ecg(root, progress=False)
    assert ds.fs == 500.0 and ds.labels is None and ds.meta.index.name == "study_id"
    assert list(ds.meta.index) == list(good)
    assert isinstance(ds.signals, np.ndarray) and ds.signals.shape == (2, 5000, 12)
    assert ds.signals.dtype == np.float32
    order = [MIMIC_LEADS.index(lead) for lead in LEADS]  # aVL and aVF swap places
    for i, sig in enumerate(good.values()):
        np.testing.assert_array_equal(ds.signals[i], sig[:, order].astype(np.float32))
    assert not np.array_equal(ds.signals[0][:, 4], good[40000001][:, 4].astype(np.float32))
    m = ds.meta.loc[40000001]
    assert m["report"] == "Sinus rhythm. Left axis deviation. Abnormal ECG"
    assert m["rr_interval"] == 660 and m["qrs_axis"] == -45 and m["subject_id"] == 10000032
    assert m["path"].endswith("s40000001/40000001") and m["bandwidth"] == "0.005-150 Hz"
    assert isinstance(m["ecg_time"], pd.Timestamp)


def test_mimic_bad_records_are_skipped_and_named(mimic_dir):
    root, _, bad = mimic_dir
    ds = quiet(load_mimic_ecg, root)
    assert set(ds.skipped.skipped) == {str(s) for s in bad} and len(ds.skipped) == len(bad)
    for study, why in bad.items():
        assert why in ds.skipped.skipped[str(study)], (study, ds.skipped.skipped[str(study)])


@pytest.mark.parametrize("study", [40000003, 40000004, 40000005, 40000006, 40000007])
def test_mimic_strict_raises_naming_the_record(mimic_dir, study):
    root, _, bad = mimic_dir
    with pytest.raises(RecordError, match=str(study)) as info:
        load_mimic_ecg(root, records=[40000001, study], strict=True, progress=False)
    assert bad[study] in info.value.problem


def test_mimic_window_resample_and_nan_fill(mimic_dir):
    root, good, _ = mimic_dir
    order = [MIMIC_LEADS.index(lead) for lead in LEADS]
    ds = load_mimic_ecg(root, records=[40000002], fs=100, seconds=8, crop="end", progress=False)
    assert ds.fs == 100.0 and ds.signals.shape == (1, 800, 12)
    full = ecg_resample(good[40000002][:, order].astype(np.float32), 500, 100)
    np.testing.assert_allclose(ds.signals[0], full[200:], atol=1e-5)
    filled = load_mimic_ecg(root, records=[40000007], nan="fill", max_gap=20, progress=False)
    assert len(filled.skipped) == 0 and not np.isnan(filled.signals).any()
    with pytest.raises(RecordError, match="gap of 20 samples"):
        load_mimic_ecg(root, records=[40000007], nan="fill", max_gap=10, strict=True, progress=False)
    with pytest.raises(KeyError, match="123"):
        load_mimic_ecg(root, records=[123], progress=False)


def test_join_report():
    assert join_report(["Sinus rhythm", np.nan, "", " Normal ECG. ", None]) == "Sinus rhythm. Normal ECG"
    assert join_report([np.nan] * 3) == ""
