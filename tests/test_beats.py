"""Beats (ecgkit.alfred.beats) and delineation with 1 to 12 leads: synthetic records whose beats
are known, edge beats, missing leads. Uses the shipped quick delineator (nothing trains)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from ecgkit.alfred import beats as B
from ecgkit.alfred import delineation as D
from ecgkit.alfred.features import extract_features, pad_leads
from ecgkit.data.synthetic import simulate_ecg

FS = 500


@pytest.fixture(scope="module")
def model():
    return D.load_delineator("quick", progress=False)


def _true_r(fid: pd.DataFrame) -> np.ndarray:
    return np.sort(fid.loc[fid["lead"] == "all", "r_peak"].to_numpy())


def _our_r(fid: pd.DataFrame) -> np.ndarray:
    return np.sort(fid.loc[fid["lead"] == "all", "r_peak"].to_numpy())


def _matched(a: np.ndarray, b: np.ndarray, tol: int = 25) -> int:
    return sum(1 for x in a if b.size and np.abs(b - x).min() <= tol)


@pytest.mark.parametrize("cond,seed", [("NORM", 3), ("SBRAD", 1), ("STACH", 2), ("AFIB", 1),
                                       ("CLBBB", 4)])
def test_anchors_find_every_true_beat_and_nothing_else(cond, seed):
    sig, fid = simulate_ecg(cond, seed=seed)
    truth = B.counted(_true_r(fid), len(sig), FS)
    anchors = B.counted(B.qrs_anchors(sig, FS), len(sig), FS)
    assert len(anchors) == len(truth)
    assert _matched(truth, anchors, tol=40) == len(truth)


@pytest.mark.parametrize("cond,seed", [("NORM", 1), ("SBRAD", 2), ("STACH", 1), ("AFIB", 2),
                                       ("SARRH", 3)])
def test_delineated_beats_equal_the_true_beats_and_heart_rate(model, cond, seed):
    sig, fid = simulate_ecg(cond, seed=seed)
    out = D.delineate(sig, FS, model=model)
    ours, truth = B.counted(_our_r(out), len(sig), FS), B.counted(_true_r(fid), len(sig), FS)
    assert len(ours) == len(truth) and _matched(truth, ours) == len(truth)
    feats, _ = extract_features(sig, FS, out)
    true_hr = 60000.0 / np.mean(np.diff(truth) * 1000.0 / FS)
    assert abs(feats["heart_rate"] - true_hr) < 1.0
    # every lead row belongs to a beat that has an "all" row
    assert set(out.loc[out["lead"] != "all", "beat"]) <= set(out.loc[out["lead"] == "all", "beat"])


def test_combination_signal_ignores_missing_and_flat_leads():
    sig, _ = simulate_ecg("NORM", seed=3)
    x = sig.astype(float).copy()
    x[:, 5] = np.nan
    x[:, 7] = 0.0
    c = B.combination_signal(x, FS)
    assert c.shape == (len(x),) and np.isfinite(c).all() and c.max() > 0
    assert not B.combination_signal(np.full((5000, 3), np.nan), FS).any()
    assert B.qrs_anchors(np.zeros((5000, 2)), FS).size == 0


def test_an_artefact_in_one_lead_does_not_hide_the_beats(model):
    sig, fid = simulate_ecg("NORM", seed=3)
    x = sig.astype(float).copy()
    x[200:260, 6] += 5.0                          # a 5 mV electrode pop in V1
    out = D.delineate(x, FS, model=model)
    ours, truth = B.counted(_our_r(out), len(x), FS), B.counted(_true_r(fid), len(x), FS)
    assert len(ours) == len(truth) and _matched(truth, ours) == len(truth)


def test_edge_beats_are_not_counted_and_feed_no_rr():
    r = np.array([10, 40, 500, 1000, 1500, 1990])
    assert list(B.counted(r, 2000, FS)) == [500, 1000, 1500]          # 100 ms = 50 samples
    assert list(B.rr_intervals(r, 2000, FS)) == [1000.0, 1000.0]
    # a truncated beat at the start of a real delineation leaves the heart rate alone
    sig, fid = simulate_ecg("NORM", seed=3)
    base, _ = extract_features(sig, FS, fid)
    extra = fid[fid["lead"] == "all"].iloc[:1].copy()
    extra["beat"] = fid["beat"].max() + 1
    extra[list(D.OUTPUT_COLUMNS)] = -1
    extra[["qrs_on", "r_peak", "qrs_off"]] = [0, 12, 30]
    with_edge, _ = extract_features(sig, FS, pd.concat([fid, extra], ignore_index=True))
    assert with_edge["heart_rate"] == pytest.approx(base["heart_rate"])
    assert with_edge["rr_irregularity"] == pytest.approx(base["rr_irregularity"])


def test_align_beats_with_anchors_drops_unconfirmed_and_split_beats():
    rows = []
    leads = ["I", "II", "III", "aVF", "V1", "V2", "V3", "V4"]
    beats_at = [300, 800, 1300, 1800, 2300]
    for lead in leads:
        for b, r in enumerate(beats_at):
            rows.append({"lead": lead, "beat": b, **{c: -1 for c in D.OUTPUT_COLUMNS},
                         "p_on": r - 100, "p_off": r - 60, "qrs_on": r - 20, "r_peak": r,
                         "qrs_off": r + 25, "t_off": r + 200})
    # noise labelled QRS in two leads halfway between two beats, and an anchor on it
    for lead in ("I", "V1"):
        rows.append({"lead": lead, "beat": 9, **{c: -1 for c in D.OUTPUT_COLUMNS},
                     "qrs_on": 1040, "r_peak": 1050, "qrs_off": 1070})
    fid = pd.DataFrame(rows)
    out = D.align_beats(fid, 2600, FS, anchors=np.array(beats_at[:-1] + [1050, 2300]))
    glob = out[out["lead"] == "all"]
    assert list(glob["r_peak"]) == beats_at                    # the anchors are the R peaks
    assert (out[out["lead"] != "all"].groupby("beat").size() == len(leads)).all()
    # an anchor the U-Net does not see in any lead is no beat; a beat it sees everywhere but
    # the detector missed is rescued
    out2 = D.align_beats(fid, 2600, FS, anchors=np.array([300, 800, 1800, 2300, 2550]))
    assert list(out2.loc[out2["lead"] == "all", "qrs_on"]) == [r - 20 for r in beats_at]


def test_one_and_two_lead_delineation(model):
    sig, fid = simulate_ecg("NORM", seed=3)
    truth = B.counted(_true_r(fid), len(sig), FS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # no "empty table" warning
        one = D.delineate(sig[:, 1], FS, model=model)
        two = D.delineate(sig[:, [0, 6]], FS, model=model, leads=["I", "V1"])
    for out, names in ((one, {0}), (two, {"I", "V1"})):
        assert len(out) and set(out["lead"]) - {"all"} == names
        assert len(B.counted(_our_r(out), len(sig), FS)) == len(truth)
    # other rates work with fewer leads too
    low = D.delineate(sig[::5, 1], 100, model=model)
    assert (low["lead"] == "all").sum() >= len(truth)


def test_missing_leads_are_skipped_and_an_empty_record_says_why(model):
    sig, _ = simulate_ecg("NORM", seed=3)
    padded = pad_leads(sig[:, [0, 1]], ["I", "MLII"])
    assert padded.shape == (len(sig), 12) and np.isnan(padded[:, 2:]).all()
    out = D.delineate(padded, FS, model=model)
    assert set(out["lead"]) == {"I", "II", "all"}
    with pytest.warns(UserWarning, match="no usable lead"):
        empty = D.delineate(np.full((5000, 12), np.nan), FS, model=model)
    assert empty.empty and "no usable lead" in empty.attrs["note"]
    with pytest.raises(ValueError):
        pad_leads(sig[:, :2], ["I", "X7"])


def test_measure_two_and_one_lead_records(model):
    from ecgkit.alfred.pipeline import measure_ecgs

    sig, _ = simulate_ecg("NORM", seed=3)
    two = measure_ecgs(sig[None, :, :2], FS, model=model, leads=["I", "II"], progress=False)
    f, r = two.features.iloc[0], two.rules[0]
    assert 60 < f["heart_rate"] < 100 and f["p_wave_ratio"] == 1.0
    assert not np.isnan(f["p_axis"])                       # derived from I and II
    assert r.loc["sinus_rhythm", "positive"] is True
    assert r.loc["atrial_fibrillation", "positive"] is False
    # a rule that needs a lead that was not recorded is undetermined, and says what is missing
    assert r.loc["lvh_sokolow_lyon", "positive"] is None
    assert "missing: s_amplitude_V1" in r.loc["lvh_sokolow_lyon", "evidence"]
    assert np.isnan(f["r_amplitude_V5"])
    one = measure_ecgs(sig[None, :, 1:2], FS, model=model, leads=["II"], progress=False)
    r1 = one.rules[0]
    assert r1.loc["sinus_rhythm", "positive"] is None                   # no P axis from one lead
    assert "missing: p_axis" in r1.loc["sinus_rhythm", "evidence"]
    assert r1.loc["atrial_fibrillation", "positive"] is False           # rhythm still judged
    assert one.features.iloc[0]["heart_rate"] == pytest.approx(f["heart_rate"], abs=0.5)


def test_axis_from_two_limb_leads_matches_twelve(model):
    sig, fid = simulate_ecg("NORM", seed=3)
    full, _ = extract_features(sig, FS, fid)
    part, _ = extract_features(sig[:, [1, 2]], FS, fid, leads=["II", "III"])
    for key in ("p_axis", "qrs_axis", "t_axis"):
        assert part[key] == pytest.approx(full[key], abs=15), key


def test_atrial_fibrillation_found_and_sinus_rhythm_not_irregular(model):
    from ecgkit.alfred.pipeline import measure_ecgs

    sigs = [simulate_ecg(c, seed=s)[0] for c, s in (("AFIB", 1), ("AFIB", 2), ("NORM", 1),
                                                     ("NORM", 3), ("SBRAD", 1), ("STACH", 1))]
    m = measure_ecgs(np.stack(sigs), FS, model=model, progress=False)
    pos = [r["positive"] for r in m.rules]
    assert pos[0]["atrial_fibrillation"] is True and pos[1]["atrial_fibrillation"] is True
    assert m.features["p_wave_ratio"].iloc[:2].max() < 0.8
    for p in pos[2:]:
        assert p["atrial_fibrillation"] is False and p["irregular_rhythm"] is False
        assert p["premature_complexes"] is False
    assert pos[4]["sinus_bradycardia"] is True and pos[5]["sinus_tachycardia"] is True


def test_beat_agreement_and_worst_records():
    sig, fid = simulate_ecg("NORM", seed=3)
    r = _true_r(fid)
    fids = [fid, fid[fid["beat"] != fid["beat"].iloc[len(fid) // 2]]]       # one beat missing
    table, summary = B.beat_agreement(np.stack([sig, sig]), FS, fids,
                                      reference_peaks_list=[r, r], ids=["a", "b"])
    assert list(table.columns) == ["n_ours", "n_ref", "diff", "hr_ours", "hr_ref", "hr_diff",
                                   "count_ok", "hr_ok"]
    assert table.loc["a", "diff"] == 0 and table.loc["a", "hr_diff"] == pytest.approx(0.0)
    assert table.loc["b", "diff"] == -1 and table.loc["b", "count_ok"]
    assert summary["records"] == 2 and summary["count_within"] == 1.0
    assert list(B.worst_records(table, 1)) == ["b"]
    # two references side by side: the second finds one beat fewer in record "b" (still agree)
    # and three fewer in "a" (disagree: left out of the "references agree" shares)
    other = table.assign(n_ref=table["n_ref"] - [3, 1], count_ok=[False, True])
    both, agree = B.agreement_summary({"x": table, "y": other})
    assert list(agree) == [False, True] and list(both.columns) == ["vs x (lead II)", "vs y (lead II)"]
    assert both.loc["records where the references agree", "vs x (lead II)"] == 1
    assert both.loc["beat count within ±1, all records", "vs y (lead II)"] == 0.5
    assert both.loc["beat count within ±1, references agree", "vs y (lead II)"] == 1.0
    assert both.loc["beats (reference)", "vs y (lead II)"] == table["n_ref"].sum() - 4
    # a real reference detector runs too
    t2, s2 = B.beat_agreement(sig[None], FS, [fid], reference="xqrs")
    assert abs(t2["diff"].iloc[0]) <= 1 and s2["hr_within"] == 1.0
    t3, _ = B.beat_agreement(sig[None], FS, [fid], reference="neurokit")
    assert abs(t3["diff"].iloc[0]) <= 1
    with pytest.raises(ValueError):
        B.reference_peaks(sig[:, 1], FS, "nope")


def test_real_ptbxl_beats_agree_with_xqrs(shared_ptbxl, model):
    """Ten real PTB-XL records (folds 1-9): beats agree with wfdb's xqrs on lead II."""
    from ecgkit.data.ptbxl import load_ptbxl

    ds = load_ptbxl(shared_ptbxl, rate=500, progress=False)
    ids = ds.meta.index[ds.meta["strat_fold"] <= 9][:10]
    sig = np.asarray(ds.signals, dtype=np.float32)[[ds.meta.index.get_loc(i) for i in ids]]
    fids = D.delineate(sig, FS, model=model)
    table, summary = B.beat_agreement(sig, FS, fids, reference="xqrs", ids=ids)
    assert summary["count_within"] >= 0.9 and summary["hr_within"] >= 0.8


def test_reference_peaks_many_cached(tmp_cache, capsys):
    """Reference R peaks of many leads: computed once, then read back equal (empty leads kept)."""
    sig, _ = simulate_ecg("NORM", seed=4)
    leads = [sig[:, 1], np.zeros(100), sig[:, 0]]
    first = B.reference_peaks_many(leads, FS, "xqrs")
    again = B.reference_peaks_many(leads, FS, "xqrs")
    out = capsys.readouterr().out
    assert "computed and cached" in out and "from cache" in out
    assert [list(p) for p in again] == [list(p) for p in first] == [list(B.reference_peaks(x, FS)) for x in leads]
    assert len(first[1]) == 0 and len(first[0]) > 5
