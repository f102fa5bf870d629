"""The synthetic cohort: deterministic, PTB-XL layout, and labels that the signal bears out."""
from __future__ import annotations

import ast
import filecmp
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgkit.data import synthetic as syn
from ecgkit.data.synthetic.write import record_paths
from ecgkit.data.wfdb_io import LEADS, read_wfdb

# a bigger or different cohort for a stress run: ECGKIT_SYNTH_TEST_N=600 ECGKIT_SYNTH_TEST_SEED=5
N = int(os.environ.get("ECGKIT_SYNTH_TEST_N", 60))
SEED = int(os.environ.get("ECGKIT_SYNTH_TEST_SEED", 0))
FS = 500
L = {name: i for i, name in enumerate(LEADS)}


# ------------------------------------------------------------------------------------------
# fixtures: one noisy and one clean cohort of the same hearts
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    return syn.make_synthetic_ptbxl(tmp_path_factory.mktemp("noisy"), N, seed=SEED, noise=1.0,
                                    progress=False)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return syn.make_synthetic_ptbxl(tmp_path_factory.mktemp("clean"), N, seed=SEED, noise=0.0,
                                    progress=False)


class Cohort:
    """A written cohort with its tables and signals loaded."""

    def __init__(self, root: Path):
        self.root = root
        self.db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
        self.scp = pd.read_csv(root / "scp_statements.csv", index_col=0)
        self.labs = pd.read_csv(root / "labs.csv", index_col="ecg_id")
        self.fid = pd.read_csv(root / "fiducials.csv.gz")
        self.codes = self.db["scp_codes"].apply(ast.literal_eval)
        self._sig: dict[int, np.ndarray] = {}

    def signal(self, ecg_id: int) -> np.ndarray:
        if ecg_id not in self._sig:
            self._sig[ecg_id] = read_wfdb(self.root / self.db.loc[ecg_id, "filename_hr"], fs=FS)[0]
        return self._sig[ecg_id]

    def with_code(self, code: str) -> list[int]:
        return [i for i, c in self.codes.items() if code in c]

    def beats(self, ecg_id: int, lead: str = "all") -> pd.DataFrame:
        f = self.fid
        return f[(f.ecg_id == ecg_id) & (f.lead == lead)]


@pytest.fixture(scope="module")
def C(clean) -> Cohort:
    return Cohort(clean)


@pytest.fixture(scope="module")
def Nz(noisy) -> Cohort:
    return Cohort(noisy)


def heart_rate(beats: pd.DataFrame) -> float:
    return 60.0 / (np.diff(beats.r_peak.values).mean() / FS)


def qtc_ms(beats: pd.DataFrame) -> float:
    """Median Bazett QTc over beats (QT from QRS onset to T end, RR = the preceding interval)."""
    r = beats.r_peak.values
    qt = (beats.t_off.values - beats.qrs_on.values)[1:] / FS
    rr = np.diff(r) / FS
    ok = beats.t_off.values[1:] >= 0
    return float(np.median(qt[ok] / np.sqrt(rr[ok])) * 1000)


def median_beat_measure(x: np.ndarray, beats: pd.DataFrame, fn) -> float:
    return float(np.median([fn(x, b) for b in beats.itertuples()]))


# ------------------------------------------------------------------------------------------
# determinism and files
# ------------------------------------------------------------------------------------------

def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_identical_bytes(noisy, tmp_path):
    again = syn.make_synthetic_ptbxl(tmp_path / "again", N, seed=SEED, noise=1.0, progress=False,
                                     workers=2)  # two processes instead of one: same bytes
    files = _tree(noisy)
    assert files == _tree(again)
    assert len(files) > 4 * N
    _, mismatch, errors = filecmp.cmpfiles(noisy, again, files, shallow=False)
    assert mismatch == [] and errors == []


def test_different_seed_differs(noisy, tmp_path):
    other = syn.make_synthetic_ptbxl(tmp_path / "other", 12, seed=SEED + 1, noise=1.0,
                                     progress=False)
    a = (noisy / "records500/00000/00001_hr.dat").read_bytes()
    b = (other / "records500/00000/00001_hr.dat").read_bytes()
    assert a != b
    assert (pd.read_csv(other / "ptbxl_database.csv")["patient_id"].iloc[0]
            != pd.read_csv(noisy / "ptbxl_database.csv")["patient_id"].iloc[0])


def test_noise_does_not_change_the_heart(C, Nz):
    """Same seed, noise 0 vs 1: same patients, labels and fiducials; only the noise differs."""
    assert (C.db["scp_codes"] == Nz.db["scp_codes"]).all()
    assert C.fid.equals(Nz.fid)
    x0, x1 = C.signal(1), Nz.signal(1)
    assert 0.003 < np.abs(x1 - x0).mean() < 0.5


def test_ptbxl_layout(noisy):
    db = pd.read_csv(noisy / "ptbxl_database.csv")
    assert db.columns[0] == "ecg_id"
    need = ["ecg_id", "patient_id", "age", "sex", "height", "weight", "report", "scp_codes",
            "heart_axis", "strat_fold", "filename_lr", "filename_hr"]
    assert set(need) <= set(db.columns)
    assert list(db.ecg_id) == list(range(1, N + 1))
    assert set(db.sex) <= {0, 1} and db.sex.nunique() == 2
    assert db.age.between(18, 100).all()
    assert db.height.dropna().between(140, 210).all() and db.weight.dropna().between(35, 200).all()
    for row in db.itertuples():
        assert row.filename_lr == f"records100/00000/{row.ecg_id:05d}_lr"
        assert row.filename_hr == f"records500/00000/{row.ecg_id:05d}_hr"
        assert (noisy / (row.filename_hr + ".dat")).stat().st_size == 5000 * 12 * 2
        assert (noisy / (row.filename_lr + ".dat")).stat().st_size == 1000 * 12 * 2
        codes = ast.literal_eval(row.scp_codes)
        assert isinstance(codes, dict) and codes
        assert all(isinstance(v, float) and v in (0.0, 15.0, 35.0, 50.0, 80.0, 100.0)
                   for v in codes.values())
    # folders of 1000 records, as in PTB-XL
    assert record_paths(999) == ("records100/00000/00999_lr", "records500/00000/00999_hr")
    assert record_paths(1000) == ("records100/01000/01000_lr", "records500/01000/01000_hr")
    assert record_paths(21837)[1] == "records500/21000/21837_hr"
    hea = (noisy / "records500/00000/00001_hr.hea").read_text().splitlines()
    assert hea[0] == "00001_hr 12 500 5000"
    assert [ln.split()[-1] for ln in hea[1:]] == list(syn.HEADER_LEADS)
    assert all(" 16 1000.0(0)/mV 16 0 " in ln for ln in hea[1:])


def test_reads_back_with_wfdb_and_read_wfdb(noisy):
    for ecg_id in (1, 17, N):
        for rate, suffix, n in ((500, "hr", 5000), (100, "lr", 1000)):
            base = noisy / f"records{rate}/00000/{ecg_id:05d}_{suffix}"
            rec = wfdb.rdrecord(str(base))
            assert rec.fs == rate and rec.p_signal.shape == (n, 12)
            assert rec.units == ["mV"] * 12 and rec.sig_name == list(syn.HEADER_LEADS)
            d = np.round(rec.p_signal * 1000).astype(np.int64)
            assert list(d.sum(0) % 65536) == rec.checksum       # the header checksums are right
            assert list(d[0]) == rec.init_value
            x, fs, _ = read_wfdb(base, fs=rate)
            assert x.dtype == np.float32 and x.shape == (n, 12) and fs == rate
            np.testing.assert_allclose(x, rec.p_signal, atol=1e-6)  # same lead order
            assert 0.2 < np.abs(x).max() < 10


def test_leads_obey_einthoven_and_goldberger(C, Nz):
    for co in (C, Nz):
        for ecg_id in co.db.index[:20]:
            for rate, col in ((500, "filename_hr"), (100, "filename_lr")):
                x = read_wfdb(co.root / co.db.loc[ecg_id, col], fs=rate)[0].astype(float)
                i, ii = x[:, 0], x[:, 1]
                tol = 0.0011  # one quantisation step (1 µV) plus rounding of the halves
                assert np.abs(x[:, L["III"]] - (ii - i)).max() < tol
                assert np.abs(x[:, L["aVR"]] + (i + ii) / 2).max() < tol
                assert np.abs(x[:, L["aVL"]] - (i - ii / 2)).max() < tol
                assert np.abs(x[:, L["aVF"]] - (ii - i / 2)).max() < tol


def test_all_leads_come_from_one_dipole(C):
    """The 8 independent leads of a clean record span only 3 dimensions (X, Y, Z)."""
    for ecg_id in C.db.index[:15]:
        x = C.signal(ecg_id).astype(float)
        eight = np.column_stack([x[:, :2], x[:, 6:]])
        sv = np.linalg.svd(eight - eight.mean(0), compute_uv=False)
        assert sv[3] / sv[0] < 2e-3, sv / sv[0]
        assert sv[2] / sv[0] > 0.02  # and it really is three-dimensional


def test_vcg_round_trip_matches_inverse_dower():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 3))
    ecg = syn.vcg_to_ecg(v)
    back = syn.ecg_to_vcg(ecg)
    # the inverse Dower matrix is a regression, not an exact inverse: close, not equal
    assert np.corrcoef(v.ravel(), back.ravel())[0, 1] > 0.98
    np.testing.assert_allclose(ecg[:, L["III"]], ecg[:, 1] - ecg[:, 0])


def test_100hz_is_the_decimated_500hz(Nz):
    from scipy.signal import resample_poly
    for ecg_id in (2, 30):
        x500 = Nz.signal(ecg_id).astype(float)
        x100 = read_wfdb(Nz.root / Nz.db.loc[ecg_id, "filename_lr"], fs=100)[0].astype(float)
        ref = resample_poly(x500, 1, 5, axis=0, padtype="line")
        assert np.abs(ref - x100)[20:-20].max() < 0.01
        assert np.abs(x500[::5] - x100).max() > 1e-3  # not mere sample dropping


# ------------------------------------------------------------------------------------------
# statements, labels, folds
# ------------------------------------------------------------------------------------------

def test_scp_statements_table(noisy):
    scp = pd.read_csv(noisy / "scp_statements.csv", index_col=0)
    assert list(scp.columns[:7]) == ["description", "diagnostic", "form", "rhythm",
                                     "diagnostic_class", "diagnostic_subclass",
                                     "Statement Category"]
    for col in ("diagnostic", "form", "rhythm"):
        assert set(scp[col].dropna()) <= {1.0}
    expect = {"NORM": ("NORM", "NORM"), "IMI": ("MI", "IMI"), "AMI": ("MI", "AMI"),
              "ASMI": ("MI", "AMI"), "LVH": ("HYP", "LVH"), "CLBBB": ("CD", "CLBBB"),
              "CRBBB": ("CD", "CRBBB"), "LAFB": ("CD", "LAFB/LPFB"), "1AVB": ("CD", "_AVB"),
              "ISC_": ("STTC", "ISC_"), "ISCAL": ("STTC", "ISCA"), "NDT": ("STTC", "STTC"),
              "LNGQT": ("STTC", "STTC")}
    for code, (cls, sub) in expect.items():
        assert (scp.loc[code, "diagnostic_class"], scp.loc[code, "diagnostic_subclass"]) == (cls, sub)
    for code in ("SR", "SBRAD", "STACH", "AFIB", "SARRH"):
        assert scp.loc[code, "rhythm"] == 1.0 and np.isnan(scp.loc[code, "diagnostic"])
    db = pd.read_csv(noisy / "ptbxl_database.csv")
    used = {c for s in db.scp_codes for c in ast.literal_eval(s)}
    assert used <= set(scp.index)


def test_statements_agree_with_real_ptbxl(shared_ptbxl):
    """Codes and classes match PTB-XL's own table (the shared subset carries all of it)."""
    root = shared_ptbxl
    real = pd.read_csv(root / "scp_statements.csv", index_col=0)
    ours = syn.scp_statements()
    for code in ours.index:
        assert code in real.index
        for col in ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass",
                    "Statement Category"):
            a, b = ours.loc[code, col], real.loc[code, col]
            assert (pd.isna(a) and pd.isna(b)) or a == b, (code, col, a, b)


def test_cohort_spans_the_conditions(C):
    used = {c for codes in C.codes for c in codes}
    need = {"NORM", "SR", "SBRAD", "STACH", "AFIB", "1AVB", "CLBBB", "CRBBB", "LAFB", "LVH",
            "IMI", "LNGQT", "NDT"}
    assert need <= used, need - used
    assert used & {"AMI", "ASMI"} and used & {"ISC_", "ISCAL", "ISCIN"}
    supers = {C.scp.loc[c, "diagnostic_class"] for c in used} - {np.nan}
    assert {"NORM", "MI", "STTC", "CD", "HYP"} <= supers
    liks = [v for codes in C.codes for c, v in codes.items() if C.scp.loc[c, "diagnostic"] == 1]
    assert np.mean(np.array(liks) >= 50) > 0.75
    # every record has exactly one rhythm statement
    rhythm = set(C.scp.index[C.scp.rhythm == 1.0])
    assert all(len(rhythm & set(codes)) == 1 for codes in C.codes)


def test_patients_never_span_folds(noisy):
    db = pd.read_csv(noisy / "ptbxl_database.csv")
    assert db.groupby("patient_id").strat_fold.nunique().max() == 1
    assert set(db.strat_fold) == set(range(1, 11))
    assert db.groupby("patient_id").size().max() >= 3          # several records per patient
    assert db.patient_id.nunique() < len(db) * 0.7


def test_folds_are_stratified(tmp_path):
    out = syn.make_synthetic_ptbxl(tmp_path / "f", 300, seed=3, noise=0.0, progress=False,
                                   rates=(100,))
    db = pd.read_csv(out / "ptbxl_database.csv")
    scp = pd.read_csv(out / "scp_statements.csv", index_col=0)
    assert db.filename_hr.isna().all() and not (out / "records500").exists()
    sup = db.scp_codes.apply(lambda s: {scp.loc[c, "diagnostic_class"]
                                        for c in ast.literal_eval(s)} - {np.nan})
    sizes = db.strat_fold.value_counts()
    assert sizes.max() - sizes.min() <= 15
    for cls in ("NORM", "MI", "CD"):
        per_fold = db[sup.apply(lambda s: cls in s)].strat_fold.value_counts()
        assert len(per_fold) == 10, (cls, per_fold)          # every fold has some
        assert per_fold.max() <= 3 * per_fold.mean()
    assert db.groupby("patient_id").strat_fold.nunique().max() == 1


def test_reports_follow_the_codes(C):
    for ecg_id, codes in C.codes.items():
        rep = C.db.loc[ecg_id, "report"]
        assert rep.endswith("ECG.")
        if "NORM" in codes:
            assert "ormal ECG." in rep
        if "AFIB" in codes:
            assert rep.startswith("Atrial fibrillation")
        if "SBRAD" in codes:
            assert rep.startswith("Sinus bradycardia")
        for code, words in (("LVH", "left ventricular hypertrophy"),
                            ("CLBBB", "left bundle branch block"),
                            ("CRBBB", "right bundle branch block"), ("IMI", "inferior infarct"),
                            ("LNGQT", "prolonged qt"), ("1AVB", "1st degree a-v block")):
            if code in codes:
                assert words in rep.lower(), (code, rep)
        if any(c in codes for c in ("IMI", "AMI", "ASMI", "LVH", "CLBBB", "CRBBB")) \
                and max(codes.values()) >= 50:
            assert "Abnormal ECG." in rep


# ------------------------------------------------------------------------------------------
# labels borne out by the signal and the fiducials
# ------------------------------------------------------------------------------------------

def test_fiducial_table(C):
    f = C.fid
    assert list(f.columns) == ["ecg_id", "lead", "beat", "p_on", "p_peak", "p_off", "qrs_on",
                               "r_peak", "qrs_off", "t_peak", "t_off"]
    assert set(f.lead) == {"all", *LEADS}
    assert set(f.ecg_id) == set(C.db.index)
    g = f[f.lead == "all"]
    assert (g.qrs_on >= 0).all() and (g.qrs_off < 5000).all()
    has_p = g.p_on >= 0
    assert (g.p_on[has_p] < g.p_peak[has_p]).all() and (g.p_peak[has_p] < g.p_off[has_p]).all()
    assert (g.p_off[has_p] <= g.qrs_on[has_p]).all()
    assert (g.qrs_on < g.r_peak).all() and (g.r_peak < g.qrs_off).all()
    has_t = g.t_off >= 0
    assert (g.qrs_off[has_t] < g.t_peak[has_t]).all() and (g.t_peak[has_t] < g.t_off[has_t]).all()
    # the leads share the wave boundaries of the dipole
    per = f.groupby(["ecg_id", "beat"])[["qrs_on", "qrs_off", "p_on", "t_off"]].nunique()
    assert (per == 1).all().all()


def test_r_peaks_are_qrs_extrema(C):
    f = C.fid[C.fid.lead != "all"]
    for ecg_id, grp in f.groupby("ecg_id"):
        x = C.signal(ecg_id)
        li = grp.lead.map(L).values
        r = grp.r_peak.values
        v, a, b = x[r, li], x[r - 1, li], x[r + 1, li]
        is_max = (v >= a) & (v >= b)
        is_min = (v <= a) & (v <= b)
        assert (is_max | is_min).all()
        # and, where the QRS is clear, its largest deflection (f waves aside)
        if "AFIB" in C.codes[ecg_id]:
            continue
        for row, lead_i in zip(grp.itertuples(), li):
            q = x[row.qrs_on:row.qrs_off + 1, lead_i]
            if np.abs(q).max() >= 0.5:
                assert abs(x[row.r_peak, lead_i]) >= np.abs(q).max() - 0.1


def test_rate_labels_match_r_peaks(C):
    seen = set()
    for ecg_id, codes in C.codes.items():
        hr = heart_rate(C.beats(ecg_id))
        if "SBRAD" in codes:
            assert hr < 60
            seen.add("SBRAD")
        elif "STACH" in codes:
            assert hr > 100
            seen.add("STACH")
        elif "SR" in codes or "SARRH" in codes:
            assert 60 <= hr <= 100
    assert seen == {"SBRAD", "STACH"}


def test_neurokit_finds_the_fiducial_r_peaks(C):
    import neurokit2 as nk
    checked = 0
    for ecg_id, codes in C.codes.items():
        if not ({"SR", "SBRAD", "STACH"} & set(codes)):
            continue
        x = C.signal(ecg_id)[:, L["II"]]
        beats = C.beats(ecg_id, "II")
        truth = beats.r_peak.values
        truth = truth[(truth > 150) & (truth < 4850)]  # detectors skip beats at the edges
        p = beats.p_peak.values[beats.p_peak.values >= 0]
        if x[truth].min() < max(0.3, 3 * np.abs(x[p]).max()):  # a dominant upright R in II
            continue
        _, info = nk.ecg_peaks(x, sampling_rate=FS)
        found = np.asarray(info["ECG_R_Peaks"])
        dist = np.abs(truth[:, None] - found[None, :]).min(axis=1)
        assert np.mean(dist <= 3) >= 0.95, (ecg_id, truth, found)
        checked += 1
    assert checked >= 10


def test_atrial_fibrillation(C):
    af = C.with_code("AFIB")
    assert af
    for ecg_id in af:
        g = C.beats(ecg_id)
        rr = np.diff(g.r_peak.values)
        assert rr.std() / rr.mean() > 0.1                       # irregularly irregular
        assert (C.fid[C.fid.ecg_id == ecg_id][["p_on", "p_peak", "p_off"]] == -1).all().all()
        # fibrillatory baseline: activity between T end and the next QRS in V1 / III
        x = C.signal(ecg_id)
        seg = np.concatenate([x[a + 20:b - 20, [L["V1"], L["III"]]]
                              for a, b in zip(g.t_off.values[:-1], g.qrs_on.values[1:])
                              if a > 0 and b - a > 60])
        assert seg.std(axis=0).max() > 0.01
    sinus = [i for i, c in C.codes.items() if "SR" in c]
    cv = [np.diff(C.beats(i).r_peak.values).std() / np.diff(C.beats(i).r_peak.values).mean()
          for i in sinus]
    assert np.max(cv) < 0.1
    for ecg_id in sinus:
        assert (C.beats(ecg_id).p_on >= 0).mean() > 0.7


def test_pr_interval_and_first_degree_block(C):
    avb = set(C.with_code("1AVB"))
    assert avb
    for ecg_id, codes in C.codes.items():
        g = C.beats(ecg_id)
        g = g[g.p_on >= 0]
        if g.empty:
            continue
        pr_ms = np.median(g.qrs_on - g.p_on) / FS * 1000
        if ecg_id in avb:
            assert pr_ms > 200
        else:
            assert 110 <= pr_ms <= 200


def test_bundle_branch_blocks_are_wide(C):
    bbb = set(C.with_code("CLBBB") + C.with_code("CRBBB"))
    assert bbb
    for ecg_id in C.db.index:
        qrs_ms = np.median(C.beats(ecg_id).eval("qrs_off - qrs_on")) / FS * 1000
        assert (qrs_ms >= 120) == (ecg_id in bbb), (ecg_id, qrs_ms, C.codes[ecg_id])


def _net_area_axis(x, b) -> float:
    q = x[b.qrs_on:b.qrs_off + 1]
    return float(np.degrees(np.arctan2(q[:, L["aVF"]].sum(), q[:, L["I"]].sum())))


def test_left_anterior_fascicular_block_axis(C):
    lafb = C.with_code("LAFB")
    assert lafb
    for ecg_id in C.db.index:
        ax = median_beat_measure(C.signal(ecg_id), C.beats(ecg_id), _net_area_axis)
        if ecg_id in lafb:
            assert ax <= -45, ax
        elif not ({"IMI", "CLBBB"} & set(C.codes[ecg_id])):
            assert ax > -45, (ecg_id, ax, C.codes[ecg_id])


def _sokolow(x, b) -> float:
    q = x[b.qrs_on:b.qrs_off + 1]
    base = x[b.qrs_on]
    return float(base[L["V1"]] - q[:, L["V1"]].min()
                 + max(q[:, L["V5"]].max() - base[L["V5"]], q[:, L["V6"]].max() - base[L["V6"]]))


def test_lvh_voltage(C):
    lvh = C.with_code("LVH")
    assert lvh
    sl = {i: median_beat_measure(C.signal(i), C.beats(i), _sokolow) for i in C.db.index}
    assert min(sl[i] for i in lvh) > 3.5
    others = [sl[i] for i, c in C.codes.items() if "LVH" not in c and "CLBBB" not in c]
    assert max(others) <= 3.5
    # LVH with strain: T inverted in V6 in at least one severe case
    strained = [i for i in lvh if "repolarization" in C.db.loc[i, "report"]]
    for i in strained:
        b = C.beats(i, "V6")
        assert np.median(C.signal(i)[b.t_peak.values[b.t_peak.values >= 0], L["V6"]]) < 0.05


def test_long_qt(C):
    lq = set(C.with_code("LNGQT"))
    assert lq
    for ecg_id in C.db.index:
        assert (qtc_ms(C.beats(ecg_id)) > 460) == (ecg_id in lq)


def _q_depth(x, b, lead) -> float:
    """Most negative value in the first 40 ms of QRS before any r wave (> 0.05 mV)."""
    w = x[b.qrs_on:b.qrs_on + 21, L[lead]] - x[b.qrs_on, L[lead]]
    up = np.nonzero(w > 0.05)[0]
    w = w[:up[0]] if up.size else w
    return float(w.min()) if w.size else 0.0


def test_infarcts_have_pathological_q_waves(C):
    checked = 0
    for ecg_id, codes in C.codes.items():
        leads = (["III", "aVF"] if "IMI" in codes else []) + \
                (["V2", "V3"] if ("AMI" in codes or "ASMI" in codes) else [])
        for lead in leads:
            depth = median_beat_measure(C.signal(ecg_id), C.beats(ecg_id), lambda x, b: _q_depth(x, b, lead))
            assert depth < -0.1, (ecg_id, lead, depth)
            checked += 1
    assert checked >= 4
    # normal hearts have no such Q in V2/V3
    for ecg_id in C.with_code("NORM"):
        for lead in ("V2", "V3"):
            d = median_beat_measure(C.signal(ecg_id), C.beats(ecg_id), lambda x, b: _q_depth(x, b, lead))
            assert d > -0.1


def _st_t(x, b, lead):
    """(ST level at J + 60 ms, T value at the T peak fiducial) relative to the PR segment."""
    base = x[b.qrs_on - 5, L[lead]]
    return x[b.qrs_off + 30, L[lead]] - base, x[b.t_peak, L[lead]] - base


def test_ischaemia_depresses_st_and_inverts_t():
    kw = dict(noise=0, seed=11)
    for code, lead in (("ISCAL", "V5"), ("ISCIN", "aVF"), ("ISC_", "V5")):
        sig0, f0 = syn.simulate_ecg(["NORM"], **kw)
        sig1, f1 = syn.simulate_ecg([code], **kw)
        b0 = f0[(f0.lead == lead) & (f0.t_peak >= 0)].iloc[1]
        b1 = f1[(f1.lead == lead) & (f1.t_peak >= 0)].iloc[1]
        st0, t0 = _st_t(sig0, b0, lead)
        st1, t1 = _st_t(sig1, b1, lead)
        assert st1 < -0.05 and st1 < st0 - 0.05, (code, st0, st1)
        assert t1 < 0 < t0, (code, t0, t1)
        assert code in f1.attrs["scp_codes"]


def test_ischaemia_in_the_cohort(C):
    for code, lead in (("ISCAL", "V5"), ("ISCIN", "aVF")):
        for ecg_id in C.with_code(code):
            beats = C.fid[(C.fid.ecg_id == ecg_id) & (C.fid.lead == lead) & (C.fid.t_peak >= 0)]
            st = np.median([_st_t(C.signal(ecg_id), b, lead)[0] for b in beats.itertuples()])
            assert st < -0.04, (ecg_id, code, st)


# ------------------------------------------------------------------------------------------
# laboratory values and demographics act on the ECG
# ------------------------------------------------------------------------------------------

def _t_amp(sig, fid, lead="V3"):
    b = fid[(fid.lead == lead) & (fid.t_peak >= 0)]
    return float(np.median(sig[b.t_peak.values, L[lead]]))


def test_hyperkalaemia_peaks_t_and_widens_qrs():
    for seed in (1, 2, 3):
        s0, f0 = syn.simulate_ecg(["NORM"], labs={"potassium": 4.2}, noise=0, seed=seed)
        s1, f1 = syn.simulate_ecg(["NORM"], labs={"potassium": 7.2}, noise=0, seed=seed)
        assert _t_amp(s1, f1) > 1.5 * _t_amp(s0, f0) > 0
        m0, m1 = f0.attrs["measurements"], f1.attrs["measurements"]
        assert m1["qrs_ms"] > m0["qrs_ms"] + 10
        assert "EL" in f1.attrs["scp_codes"] and "hyperkalemia" in f1.attrs["report"]


def test_hypokalaemia_flattens_t_and_adds_u():
    s0, f0 = syn.simulate_ecg(["NORM"], labs={"potassium": 4.2}, noise=0, seed=4)
    s1, f1 = syn.simulate_ecg(["NORM"], labs={"potassium": 2.6}, noise=0, seed=4)
    assert _t_amp(s1, f1) < 0.6 * _t_amp(s0, f0)
    g0, g1 = f0[f0.lead == "all"].iloc[2], f1[f1.lead == "all"].iloc[2]
    # U wave: a bump 40-120 ms after T end, relative to the T wave
    u0 = np.abs(s0[g0.t_off + 20:g0.t_off + 60, L["V3"]]).max()
    u1 = np.abs(s1[g1.t_off + 20:g1.t_off + 60, L["V3"]]).max()
    assert u1 > 3 * u0 and u1 > 0.05


def test_calcium_changes_qt():
    q = {}
    for ca in (1.7, 2.36, 3.1):
        _, f = syn.simulate_ecg(["NORM"], labs={"calcium": ca}, noise=0, seed=5)
        q[ca] = qtc_ms(f[f.lead == "all"])
    assert q[1.7] > q[2.36] + 40 and q[3.1] < q[2.36] - 40


def test_women_have_longer_qtc_and_voltage_falls_with_age_and_weight():
    kw = dict(noise=0, heart_rate=70)
    d_qtc, d_age, d_bmi = [], [], []
    for seed in range(6):
        _, m = syn.simulate_ecg(["NORM"], sex=0, seed=seed, **kw)
        _, f = syn.simulate_ecg(["NORM"], sex=1, seed=seed, **kw)
        d_qtc.append(f.attrs["measurements"]["qtc_ms"] - m.attrs["measurements"]["qtc_ms"])
        _, y = syn.simulate_ecg(["NORM"], age=30, seed=seed, **kw)
        _, o = syn.simulate_ecg(["NORM"], age=80, seed=seed, **kw)
        d_age.append(o.attrs["measurements"]["sokolow_lyon_mv"]
                     / y.attrs["measurements"]["sokolow_lyon_mv"])
        _, thin = syn.simulate_ecg(["NORM"], weight=60, height=175, seed=seed, **kw)
        _, obese = syn.simulate_ecg(["NORM"], weight=115, height=175, seed=seed, **kw)
        d_bmi.append(obese.attrs["measurements"]["limb_qrs_max_mv"]
                     / thin.attrs["measurements"]["limb_qrs_max_mv"])
    assert min(d_qtc) > 5
    assert max(d_age) < 0.95
    assert np.median(d_bmi) < 0.9


def test_labs_table(C):
    labs = C.labs
    assert list(labs.columns) == list(syn.LAB_UNITS)
    assert labs.index.equals(C.db.index)
    assert 0 < labs.isna().mean().mean() < 0.15
    assert labs.potassium.dropna().between(2.0, 8.5).all()
    hr = np.array([heart_rate(C.beats(i)) for i in labs.index])
    ok = labs.heart_rate.notna().values
    assert np.abs(labs.heart_rate.values[ok] - hr[ok]).max() < 8
    # consequences of disease
    norm = C.with_code("NORM")
    mi = [i for i in C.db.index if C.db.loc[i, "infarction_stadium1"] == "Stadium I"]
    lvh = C.with_code("LVH")
    bnp = labs.nt_probnp
    assert bnp.loc[lvh].median() > 2 * bnp.loc[norm].median()
    if mi:
        assert labs.troponin.loc[mi].median() > 5 * labs.troponin.loc[norm].median()
    # potassium drives the T wave across the cohort too
    hk = labs.index[labs.potassium >= 6.0]
    if len(hk):
        assert all("EL" in C.codes[i] for i in hk)


def test_patient_keeps_his_morphology(C, tmp_path):
    """Records of one patient look more alike than records of different patients."""
    gt = pd.read_csv(C.root / "ground_truth.csv", index_col="ecg_id")
    feats = gt[["axis_deg", "sokolow_lyon_mv", "t_amp_v3_mv"]]
    stable = [i for i, c in C.codes.items() if set(c) & {"NORM"}]
    f = feats.loc[stable]
    pid = C.db.loc[stable, "patient_id"]
    within = f.groupby(pid).std().dropna()
    assert len(within) >= 3
    between = f.std()
    assert (within.median() < 0.5 * between).all(), (within.median(), between)


# ------------------------------------------------------------------------------------------
# API: simulate_ecg, cache, CLI
# ------------------------------------------------------------------------------------------

def test_simulate_ecg_shapes_and_errors():
    sig, fid = syn.simulate_ecg("AFIB", seed=1)
    assert sig.shape == (5000, 12) and sig.dtype == np.float32
    assert "AFIB" in fid.attrs["scp_codes"] and (fid.p_on == -1).all()
    s100, f100 = syn.simulate_ecg("AFIB", seed=1, fs=100, duration=5)
    assert s100.shape == (500, 12)
    g = f100[f100.lead == "all"]
    assert g.r_peak.max() < 500
    for bad in (["XYZ"], ["CLBBB", "CRBBB"], ["AFIB", "1AVB"]):
        with pytest.raises(ValueError):
            syn.simulate_ecg(bad)
    a, _ = syn.simulate_ecg(["LVH"], seed=9)
    b, _ = syn.simulate_ecg(["LVH"], seed=9)
    np.testing.assert_array_equal(a, b)


def test_separate_noise_sources():
    """mains=1 alone puts a 50 Hz line in the spectrum; baseline alone adds < 1 Hz power."""
    from ecgkit.data.synthetic.noise import electrode_noise
    rng = np.random.default_rng(0)
    x, _ = electrode_noise(5000, FS, rng, {"mains": 0.03}, 0.25)
    spec = np.abs(np.fft.rfft(x[:, 0]))
    freqs = np.fft.rfftfreq(5000, 1 / FS)
    assert freqs[spec.argmax()] == pytest.approx(50.0)
    x, _ = electrode_noise(5000, FS, rng, {"baseline": 0.1}, 0.25)
    spec = np.abs(np.fft.rfft(x[:, 1]))
    assert freqs[spec.argmax()] < 1.0
    x, _ = electrode_noise(5000, FS, rng, {"muscle": 0.01}, 0.25)
    spec = np.abs(np.fft.rfft(x[:, 2])) ** 2
    assert spec[freqs > 20].sum() > 0.9 * spec.sum()


def test_cohort_noise_keywords(tmp_path):
    a = syn.make_synthetic_ptbxl(tmp_path / "a", 3, seed=2, noise=0.0, mains=1.0, progress=False,
                                 rates=(500,))
    b = syn.make_synthetic_ptbxl(tmp_path / "b", 3, seed=2, noise=0.0, progress=False,
                                 rates=(500,))
    gt = pd.read_csv(a / "ground_truth.csv")
    assert (gt.baseline_mv == 0).all() and (gt.muscle_mv == 0).all()
    xa = read_wfdb(a / "records500/00000/00001_hr")[0]
    xb = read_wfdb(b / "records500/00000/00001_hr")[0]
    if gt.mains_mv.iloc[0] > 0:
        assert np.abs(xa - xb).max() > 0.002
    else:
        np.testing.assert_array_equal(xa, xb)


def test_synthetic_cohort_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_CACHE", str(tmp_path / "cache"))
    p = syn.synthetic_cohort(8, seed=4, noise=0.5, progress=False)
    assert (p / "ptbxl_database.csv").is_file() and (p / "synthetic.json").is_file()
    assert syn.GENERATOR_VERSION in p.name and "n8" in p.name and "seed4" in p.name
    stamp = (p / "ptbxl_database.csv").stat().st_mtime_ns
    assert syn.synthetic_cohort(8, seed=4, noise=0.5, progress=False) == p
    assert (p / "ptbxl_database.csv").stat().st_mtime_ns == stamp
    leftovers = [q.name for q in p.parent.iterdir() if q.name.startswith(".")]
    assert leftovers == []
    # a half-written folder (no synthetic.json) is replaced, not trusted
    q = p.parent / p.name.replace("seed4", "seed5")
    q.mkdir()
    (q / "junk").write_text("x")
    r = syn.synthetic_cohort(8, seed=5, noise=0.5, progress=False)
    assert r == q and not (q / "junk").exists() and (q / "synthetic.json").is_file()


def test_cli(tmp_path, capsys):
    assert syn.main(["--out", str(tmp_path / "cli"), "--n", "4", "--seed", "2", "--noise", "0",
                     "--no-progress"]) == 0
    assert (tmp_path / "cli/records500/00000/00004_hr.dat").is_file()
    assert "4 synthetic records" in capsys.readouterr().out


def test_benchmark_runs(monkeypatch):
    from ecgkit.benchmarks import synthetic as bench
    res = bench.run(n_records=10)
    assert res["records"] == 10 and res["seconds"] > 0
    assert res["records_per_s"] == pytest.approx(10 / res["seconds"])


def test_ptbxl_reader_loads_the_cohort(noisy):
    from ecgkit.data.ptbxl import load_ptbxl
    ds = load_ptbxl(noisy, 100, cache=False, strict=True, progress=False)
    assert len(ds) == N and np.asarray(ds.signals).shape == (N, 1000, 12)
    assert len(ds.skipped) == 0
    y = ds.labels
    assert {"NORM", "MI", "STTC", "CD", "HYP"} <= set(y.columns)
    assert y.values.sum() > N * 0.8
