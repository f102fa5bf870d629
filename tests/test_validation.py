"""ecgkit.alfred.validation: rules against PTB-XL statements (small hand-made cases)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ecgkit.alfred import validation as V
from ecgkit.alfred.rules import RULES, evaluate_rules


def _measured(results: dict[str, list]):
    """A Measured-like object: ids and one rules frame per record with the given results (rules
    not named are None)."""
    n = len(next(iter(results.values())))
    base = evaluate_rules({})
    frames = []
    for i in range(n):
        f = base.copy()
        f["positive"] = pd.Series([None] * len(f), index=f.index, dtype=object)
        for key, vals in results.items():
            f.at[key, "positive"] = vals[i]
        frames.append(f)
    return SimpleNamespace(ids=pd.Index([f"r{i}" for i in range(n)]), rules=frames)


def test_validate_rules_counts_and_rates():
    # 10 records; SR truth: r0-r5 present, r6-r9 absent
    sr_truth = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    sr_rule = [True, True, True, False, None, True, False, False, True, None]
    st = pd.DataFrame({"SR": sr_truth, "AFIB": [0] * 9 + [1]}, dtype=float,
                      index=[f"r{i}" for i in range(10)])
    m = _measured({"sinus_rhythm": sr_rule, "atrial_fibrillation": [False] * 9 + [True],
                   "short_pr": [True] * 10})
    t = V.validate_rules(m, st)
    r = t.loc["sinus_rhythm"]
    assert (r["tp"], r["fn"], r["tn"], r["fp"]) == (4, 1, 2, 1)
    assert r["n_pos"] == 6 and r["n_assessed"] == 8 and r["undetermined"] == 2
    assert r["undetermined_pos"] == 1
    assert r["sens"] == pytest.approx(0.8) and r["spec"] == pytest.approx(2 / 3)
    lo, hi = r["sens_low"], r["sens_high"]
    assert lo < 0.8 < hi and 0 <= lo and hi <= 1
    assert r["target"] == "not met" and r["statements"] == "SR"
    a = t.loc["atrial_fibrillation"]
    assert (a["sens"], a["spec"]) == (1.0, 1.0)
    assert a["target"] == "n/a (<5 pos)"          # 1 positive
    # a rule without a statement: no rates, but counted
    s = t.loc["short_pr"]
    assert s["statements"] == "no PTB-XL statement" and math.isnan(s["sens"])
    assert s["n_positive_rule"] == 10
    # every rule has a row, in rules.py order; rules never determined count as undetermined
    assert list(t.index) == [r.key for r in RULES]
    assert t.loc["complete_lbbb", "undetermined"] == 10
    assert math.isnan(t.loc["complete_lbbb", "sens"])
    # only some records
    t2 = V.validate_rules(m, st, ids=["r0", "r3", "r6"])
    assert (t2.loc["sinus_rhythm", ["tp", "fn", "tn", "fp"]].tolist()) == [1, 1, 1, 0]


def test_target_met_and_unknown_truth():
    n = 20
    truth = [1.0] * 6 + [0.0] * 12 + [np.nan] * 2      # two records without a stated axis
    rule = [True] * 6 + [False] * 12 + [True, True]
    st = pd.DataFrame({"meta:axis_right": truth}, index=[f"r{i}" for i in range(n)])
    t = V.validate_rules(_measured({"right_axis_deviation": rule}), st)
    r = t.loc["right_axis_deviation"]
    assert r["n_known"] == 18 and r["n_assessed"] == 18 and r["n_pos"] == 6
    assert (r["sens"], r["spec"], r["target"]) == (1.0, 1.0, "met")
    # a mapping given explicitly; codes that are no column count as absent
    t = V.validate_rules(_measured({"right_axis_deviation": rule}), st,
                         mapping={"right_axis_deviation": ("XYZ",)})
    assert t.loc["right_axis_deviation", "n_pos"] == 0
    assert t.loc["right_axis_deviation", "fp"] == 8


def test_wilson():
    p, lo, hi = V.wilson(8, 10)
    assert p == 0.8 and lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert V.wilson(0, 5)[1] == 0.0 and V.wilson(5, 5)[2] == 1.0
    assert all(math.isnan(v) for v in V.wilson(0, 0))


def test_mapping_covers_every_rule():
    keys = {r.key for r in RULES}
    assert set(V.STATEMENTS) | set(V.NO_STATEMENT) == keys
    assert not set(V.STATEMENTS) & set(V.NO_STATEMENT)
    assert all(V.STATEMENTS[k] for k in V.STATEMENTS)
    assert set(V.TARGET_RULES) <= set(V.STATEMENTS)
    meta = {c for codes in V.STATEMENTS.values() for c in codes if c.startswith("meta:")}
    assert meta <= set(V.META_STATEMENTS)
    table = V.mapping_table()
    assert list(table.index) == [r.key for r in RULES]
    assert (table.loc[list(V.NO_STATEMENT), "statements"] == "no PTB-XL statement").all()
    for k in ("sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia", "atrial_fibrillation",
              "first_degree_av_block", "complete_lbbb", "complete_rbbb", "low_qrs_voltage"):
        assert k in V.TARGET_RULES


def test_mapped_codes_exist_in_scp_statements(shared_ptbxl):
    scp = pd.read_csv(shared_ptbxl / "scp_statements.csv", index_col=0)
    codes = {c for codes in V.STATEMENTS.values() for c in codes if not c.startswith("meta:")}
    assert codes <= set(scp.index), codes - set(scp.index)


def test_statement_table_from_scp_codes():
    meta = pd.DataFrame({
        "scp_codes": ["{'NORM': 100.0, 'SR': 0.0}", "{'AFIB': 0.0, 'LVH': 50.0}", "{}",
                      {"SBRAD": 0.0}],
        "heart_axis": ["ALAD", np.nan, "LAD", "RAD"],
        "static_noise": [np.nan, " , alles,  ", np.nan, np.nan],
        "pacemaker": [np.nan, np.nan, "ja, pacemaker", np.nan],
    }, index=pd.Index([1, 2, 3, 4], name="ecg_id"))
    st = V.statement_table(meta)
    assert st.loc[1, "SR"] == 1 and st.loc[1, "NORM"] == 1 and st.loc[1, "AFIB"] == 0
    assert st.loc[2, "AFIB"] == 1 and st.loc[2, "LVH"] == 1     # likelihood 0 = present
    assert st.loc[3].drop([c for c in st.columns if c.startswith("meta:")]).sum() == 0
    assert st.loc[4, "SBRAD"] == 1
    assert st.loc[1, "meta:axis_left"] == 1 and math.isnan(st.loc[2, "meta:axis_left"])
    assert st.loc[3, "meta:axis_left"] == 0 and st.loc[4, "meta:axis_right"] == 1
    assert list(st["meta:static_noise"]) == [0, 1, 0, 0]
    assert list(st["meta:pacemaker"]) == [0, 0, 1, 0]
    assert "meta:burst_noise" not in st.columns                  # no such column in meta
    # fixed codes, a Series input, no meta columns
    st2 = V.statement_table(meta["scp_codes"], codes=["SR", "AFIB", "CLBBB"])
    assert list(st2.columns) == ["SR", "AFIB", "CLBBB"]
    assert st2["SR"].tolist() == [1, 0, 0, 0] and st2["CLBBB"].sum() == 0
    # a dataset-like object with an scp table: its codes are columns even when absent
    ds = SimpleNamespace(meta=meta, scp=pd.DataFrame(index=["SR", "CRBBB"]))
    st3 = V.statement_table(ds, meta=False)
    assert "CRBBB" in st3.columns and st3["CRBBB"].sum() == 0 and "meta:axis_left" not in st3


def test_validation_table_side_by_side():
    idx = [f"r{i}" for i in range(6)]
    st = pd.DataFrame({"SR": [1, 1, 1, 0, 0, 0]}, index=idx, dtype=float)
    ours = _measured({"sinus_rhythm": [True, True, False, False, False, True]})
    base = _measured({"sinus_rhythm": [True, None, False]})
    base.ids = pd.Index(["r0", "r1", "r3"])
    t = V.validation_table(ours, base, st)
    assert t.loc["sinus_rhythm", ("ours_all", "sens")] == pytest.approx(2 / 3)
    assert t.loc["sinus_rhythm", ("ours_same", "n_assessed")] == 3
    assert t.loc["sinus_rhythm", ("neurokit2", "undetermined")] == 1
    assert t.loc["sinus_rhythm", ("neurokit2", "sens")] == 1.0


def test_baseline_ids_fixed_and_enriched():
    ids = pd.Index(range(1, 501))
    a, b = V.baseline_ids(ids, profile="quick"), V.baseline_ids(ids, profile="quick")
    assert len(a) == 150 and a.equals(b) and a.is_monotonic_increasing
    assert len(V.baseline_ids(ids, profile="full")) == 500
    # with statements: every positive of the key statements is in, the rest a seeded draw
    st = pd.DataFrame(0.0, index=ids, columns=["SR", "SBRAD", "CLBBB", "LVOLT"])
    rare = [7, 77, 177, 277, 377, 477, 499]
    st.loc[rare[:3], "SBRAD"] = 1
    st.loc[rare[3:5], "CLBBB"] = 1
    st.loc[rare[5:], "LVOLT"] = 1
    st.loc[:400, "SR"] = 1                       # SR is not enriched
    c = V.baseline_ids(ids, st, profile="quick")
    assert len(c) == 150 and set(rare) <= set(c) and c.is_monotonic_increasing
    assert c.equals(V.baseline_ids(ids, st, profile="quick"))
    assert len(V.baseline_ids(ids, st, n=5)) == 5


def test_neurokit_path_same_columns_as_ours():
    from ecgkit.alfred.pipeline import measure_ecgs
    from ecgkit.data.synthetic import simulate_ecg

    sig, _ = simulate_ecg(("NORM",), seed=0)
    sig = np.asarray(sig, dtype=float)
    ours = measure_ecgs(sig[None], 500, ages=[55], sexes=[0], ids=["x"], progress=False)
    nk = V.measure_with_neurokit(sig[None], 500, ages=[55], sexes=[0], ids=["x"],
                                 progress=False)
    assert type(nk) is type(ours)
    assert list(nk.features.columns) == list(ours.features.columns)
    assert list(nk.ids) == ["x"] and nk.fs == 500.0 and not nk.failed
    assert list(nk.rules[0].columns) == list(ours.rules[0].columns)
    assert list(nk.rules[0].index) == list(ours.rules[0].index)
    fid = nk.fiducials[0]
    assert list(fid.columns) == list(ours.fiducials[0].columns)
    beats = fid[fid["lead"].astype(str) == "all"]
    assert len(beats) >= 8                      # ~10 beats in 10 s at the default rate
    assert nk.features.loc["x", "heart_rate"] == pytest.approx(
        ours.features.loc["x", "heart_rate"], rel=0.1)
    t = V.validate_rules(nk, pd.DataFrame({"SR": [1.0]}, index=["x"]))
    assert t.loc["sinus_rhythm", "n_pos"] == 1


def test_median_consensus_and_several_baselines():
    fid = pd.DataFrame({
        "lead": ["I", "II", "V1", "all", "I", "II", "V1", "all"],
        "beat": [0, 0, 0, 0, 1, 1, 1, 1],
        "p_on": [-1] * 8, "p_peak": [-1] * 8, "p_off": [-1] * 8,
        "qrs_on": [100, 60, 104, 100, 600, 598, -1, 598],
        "r_peak": [120] * 4 + [620] * 4,
        "qrs_off": [150, 152, 230, 152, 650, 700, -1, 650],
        "t_on": [-1] * 8, "t_peak": [-1] * 8, "t_off": [-1] * 8,
    })
    out = V.median_consensus(fid)
    alls = out[out["lead"] == "all"].set_index("beat")
    assert alls.loc[0, "qrs_on"] == 100 and alls.loc[0, "qrs_off"] == 152
    assert alls.loc[1, "qrs_on"] == 599 and alls.loc[1, "qrs_off"] == 675
    assert fid.loc[3, "qrs_on"] == 100 and out["qrs_on"].dtype == np.int64   # a copy
    assert V.median_consensus(fid.iloc[:0]).empty
    idx = [f"r{i}" for i in range(4)]
    st = pd.DataFrame({"SR": [1, 1, 0, 0]}, index=idx, dtype=float)
    ours = _measured({"sinus_rhythm": [True, True, False, False]})
    b1 = _measured({"sinus_rhythm": [False, True]})
    b1.ids = pd.Index(["r0", "r2"])
    b2 = _measured({"sinus_rhythm": [True, False]})
    b2.ids = pd.Index(["r0", "r2"])
    t = V.validation_table(ours, {"nk": b1, "nk_median": b2}, st)
    assert list(dict.fromkeys(t.columns.get_level_values(0))) == [
        "rule", "ours_all", "ours_same", "nk", "nk_median"]
    assert t.loc["sinus_rhythm", ("nk", "sens")] == 0 and t.loc["sinus_rhythm", ("nk_median", "sens")] == 1


def _with_features(measured, **columns):
    measured.features = pd.DataFrame(columns, index=measured.ids)
    return measured


def test_rhythm_checks_count_where_the_rules_fire():
    # r0 AF, r1 AF, r2 sinus with PACs, r3 sinus tachycardia at 110 bpm, r4 sinus tachycardia at 95 bpm
    statements = pd.DataFrame({"AFIB": [1, 1, 0, 0, 0], "PAC": [0, 0, 1, 0, 0], "STACH": [0, 0, 0, 1, 1]},
                              index=[f"r{i}" for i in range(5)], dtype=float)
    before = _with_features(_measured({"atrial_fibrillation": [True, True, True, False, False],
                                       "sinus_tachycardia": [False, False, False, False, False]}),
                            heart_rate=[90, 80, 70, 110, 95])
    after = _with_features(_measured({"atrial_fibrillation": [True, False, False, False, False],
                                      "sinus_tachycardia": [False, False, False, True, False]}),
                           heart_rate=[90, 80, 70, 110, 95])
    table = V.rhythm_checks({"before": before, "after": after}, statements)
    af = table.loc[("atrial_fibrillation", "AF records")]
    assert (af["n, before"], af["fires, before"], af["fires, after"]) == (2, 1.0, 0.5)
    ect = table.loc[("atrial_fibrillation", "sinus with premature beats or sinus arrhythmia, no AF")]
    assert (ect["n, after"], ect["fires, before"], ect["fires, after"]) == (1, 1.0, 0.0)
    st = table.loc[("sinus_tachycardia", "sinus tachycardia records, our rate > 100 bpm")]
    assert (st["n, after"], st["fires, after"]) == (1, 1.0)
    assert table.loc[("sinus_tachycardia", "sinus tachycardia records"), "fires, after"] == 0.5
    only = V.rhythm_checks({"after": after}, statements, ids=["r0", "r2"])
    assert only.loc[("atrial_fibrillation", "AF records"), "n, after"] == 1


def test_rules_moved_names_the_rules_and_their_measurements():
    statements = pd.DataFrame({"AFIB": [1, 1, 0, 0]}, index=[f"r{i}" for i in range(4)], dtype=float)
    before = _with_features(_measured({"atrial_fibrillation": [True, True, True, True]}),
                            p_wave_ratio=[0.2, 0.3, 0.6, 0.7], rr_irregularity=[0.2] * 4)
    after = _with_features(_measured({"atrial_fibrillation": [True, True, False, False]}),
                           p_wave_ratio=[0.2, 0.3, 0.9, 1.0], rr_irregularity=[0.2] * 4)
    moved = V.rules_moved(before, after, statements)
    af = moved.loc["atrial fibrillation"]
    assert af["moved"] == "moved" and af["spec before"] == 0 and af["spec after"] == 1
    assert (af["fires before"], af["fires after"]) == (4, 2)
    assert "p_wave_ratio 0.45 → 0.6" in af["medians before → after"]
    same = V.rules_moved(before, before, statements)
    assert (same["moved"] == "").all()
