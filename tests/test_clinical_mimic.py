"""The MIMIC-IV reader joins labs to ECGs correctly on small hand-made files in the native format."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgkit.clinical.mimic import (LABEVENTS_COLUMNS, join_labs, lab_itemids, mimic_clinical_records,
                                   read_d_labitems)

ECGS = [  # subject_id, study_id, ecg_time
    (1, 100, "2180-01-01 12:00:00"),
    (1, 101, "2180-01-05 08:00:00"),
    (2, 200, "2180-01-01 12:00:00"),
    (3, 300, ""),                        # no time: nothing can be matched
]
ITEMS = [  # itemid, label, fluid, category
    (50971, "Potassium", "Blood", "Chemistry"),
    (50822, "Potassium, Whole Blood", "Blood", "Blood Gas"),
    (99999, "Potassium", "Urine", "Chemistry"),          # right label, wrong fluid
    (50893, "Calcium, Total", "Blood", "Chemistry"),
    (51222, "Hemoglobin", "Blood", "Hematology"),
    (51003, "Troponin T", "Blood", "Chemistry"),
    (50912, "Creatinine", "Blood", "Chemistry"),
    (51081, "Creatinine, Urine", "Urine", "Chemistry"),
    (50960, "Magnesium", "Blood", "Chemistry"),
]
EVENTS = [  # subject_id, itemid, charttime, value, valuenum, valueuom
    (1, 50971, "2180-01-01 10:00:00", "4.0", 4.0, "mEq/L"),     # 2 h before ECG 100: the nearest
    (1, 50971, "2180-01-01 15:00:00", "6.0", 6.0, "mEq/L"),     # 3 h after
    (1, 50971, "2180-01-01 12:00:00", "HEMOLYZED", None, "mEq/L"),  # no number: dropped, counted
    (1, 99999, "2180-01-01 12:00:00", "40", 40.0, "mEq/L"),     # urine potassium: not a blood lab
    (1, 50893, "2179-12-31 12:00:00", "8.0", 8.0, "mg/dL"),     # exactly 24 h before: inside
    (1, 51222, "2180-01-02 12:00:01", "10.0", 10.0, "g/dL"),    # 24 h + 1 s after: outside
    (1, 51003, "2180-01-01 11:00:00", "0.01", 0.01, "ng/mL"),   # tie, 1 h before ...
    (1, 51003, "2180-01-01 13:00:00", "0.50", 0.50, "ng/mL"),   # ... and 1 h after: the earlier wins
    (1, 51081, "2180-01-01 12:00:00", "100", 100.0, "mg/dL"),   # urine creatinine: excluded
    (1, 51222, "2180-01-05 00:00:00", "9.0", 9.0, "g/dL"),      # for ECG 101 (8 h before)
    (1, 50822, "2180-01-05 07:00:00", "3.0", 3.0, "mEq/L"),     # whole-blood potassium, ECG 101
    (2, 50912, "2180-01-01 12:00:00", "1.0", 1.0, "mg/dL"),     # same instant as ECG 200
    (2, 50893, "2180-01-01 12:30:00", "2.2", 2.2, "furlongs"),  # unit without conversion: dropped
    (3, 50971, "2180-01-01 12:00:00", "5.0", 5.0, "mEq/L"),     # subject 3's ECG has no time
    (4, 50971, "2180-01-01 12:00:00", "9.9", 9.9, "mEq/L"),     # subject without an ECG
]


@pytest.fixture
def mimic(tmp_path):
    ecg_dir, hosp = tmp_path / "mimic-iv-ecg", tmp_path / "hosp"
    ecg_dir.mkdir()
    hosp.mkdir()
    pd.DataFrame([{"subject_id": s, "study_id": st, "file_name": str(st), "ecg_time": t,
                   "path": f"files/p{s:04d}/p{s}/s{st}/{st}"} for s, st, t in ECGS]
                 ).to_csv(ecg_dir / "record_list.csv", index=False)
    pd.DataFrame(ITEMS, columns=["itemid", "label", "fluid", "category"]).to_csv(hosp / "d_labitems.csv", index=False)
    rows = []
    for i, (s, item, t, value, num, uom) in enumerate(EVENTS, start=1):
        rows.append({"labevent_id": i, "subject_id": s, "hadm_id": 20000 + s, "specimen_id": 7000 + i,
                     "itemid": item, "charttime": t, "storetime": t, "value": value, "valuenum": num,
                     "valueuom": uom, "ref_range_lower": None, "ref_range_upper": None, "flag": None,
                     "priority": "ROUTINE", "comments": None})
    events = pd.DataFrame(rows, columns=list(LABEVENTS_COLUMNS))
    events.to_csv(hosp / "labevents.csv.gz", index=False, compression="gzip")
    pd.DataFrame({"subject_id": [1, 2], "gender": ["M", "F"], "anchor_age": [60, 70], "anchor_year": [2180, 2178],
                  "anchor_year_group": ["2017 - 2019"] * 2, "dod": [None, None]}).to_csv(hosp / "patients.csv", index=False)
    return ecg_dir, hosp


def test_items_match_label_and_fluid(mimic):
    items = lab_itemids(read_d_labitems(mimic[1]))
    assert items.to_dict() == {50971: "potassium", 50822: "potassium", 50893: "calcium", 50960: "magnesium",
                               51003: "troponin", 50912: "creatinine", 51222: "haemoglobin"}


def test_join_nearest_within_the_window(mimic):
    rec = mimic_clinical_records(*mimic, window_hours=24, progress=False)
    v = rec.values
    assert list(v.index) == [100, 101, 200, 300]
    assert v.at[100, "potassium"] == 4.0                       # nearest (2 h before beats 3 h after)
    assert v.at[100, "calcium"] == pytest.approx(8.0 * 0.2495)  # exactly 24 h: the edge is inside
    assert np.isnan(v.at[100, "haemoglobin"])                   # 24 h + 1 s: outside
    assert v.at[100, "troponin"] == pytest.approx(10.0)         # tie: the earlier value, ng/mL -> ng/L
    assert np.isnan(v.at[100, "creatinine"])                    # only urine creatinine for subject 1
    assert v.at[101, "haemoglobin"] == pytest.approx(90.0)      # g/dL -> g/L
    assert v.at[101, "potassium"] == 3.0                        # whole-blood item, 4 days from the others
    # other subjects' events never match: subject 2 has no potassium although subject 1 has one at 10:00
    assert np.isnan(v.at[200, "potassium"])
    assert v.at[200, "creatinine"] == pytest.approx(88.42)      # same instant counts
    assert np.isnan(v.at[200, "calcium"])                        # unknown unit dropped
    assert v.loc[300].drop(["age", "sex"]).isna().all()           # no ecg_time
    assert np.isnan(v.at[100, "nt_probnp"])                       # no item in d_labitems
    # biometrics from patients: age at the ECG
    assert v.at[100, "age"] == 60 and v.at[200, "age"] == 72 and v.at[200, "sex"] == 1.0
    assert rec.kinds["potassium"] == "lab" and rec.kinds["age"] == "biometric"
    problems = rec.problems
    assert problems["labevents: no numeric value"] == 1
    assert problems["labevents: calcium in unit 'furlongs' (no conversion)"] == 1
    assert problems["record_list: ECGs without ecg_time (no labs matched)"] == 1
    # the flags follow from the converted values (potassium 3.0 < 3.5 is low; haemoglobin 90 < 120 is low)
    flags = rec.flags()
    assert flags.at[101, "potassium_low"] == 1.0 and flags.at[101, "haemoglobin_low"] == 1.0
    assert flags.at[100, "potassium_low"] == 0.0 and np.isnan(flags.at[300, "potassium_low"])


def test_directions_and_window(mimic):
    before = mimic_clinical_records(*mimic, direction="before", progress=False).values
    after = mimic_clinical_records(*mimic, direction="after", progress=False).values
    narrow = mimic_clinical_records(*mimic, window_hours=2, progress=False).values
    assert before.at[100, "potassium"] == 4.0 and after.at[100, "potassium"] == 6.0
    assert before.at[100, "troponin"] == pytest.approx(10.0) and after.at[100, "troponin"] == pytest.approx(500.0)
    assert np.isnan(after.at[100, "calcium"])                  # the calcium was drawn before
    assert narrow.at[100, "potassium"] == 4.0                   # exactly 2 h: inside
    assert np.isnan(narrow.at[100, "calcium"]) and np.isnan(narrow.at[101, "haemoglobin"])
    with pytest.raises(ValueError, match="direction"):
        join_labs(pd.DataFrame({"subject_id": [1], "ecg_time": ["2180-01-01"]}), pd.DataFrame(), direction="around")


def test_join_reports_the_time_offset():
    ecgs = pd.DataFrame({"subject_id": [1], "ecg_time": ["2180-01-01 12:00:00"]}, index=pd.Index([9], name="study_id"))
    labs = pd.DataFrame({"subject_id": [1, 1], "labevent_id": [1, 2], "lab": ["potassium", "potassium"],
                         "charttime": pd.to_datetime(["2180-01-01 09:00:00", "2180-01-01 16:00:00"]),
                         "value": [4.1, 4.9]})
    out = join_labs(ecgs, labs, window_hours=6, hours=True)
    assert out.at[9, "potassium"] == 4.1 and out.at[9, "potassium_hours"] == -3.0


def test_missing_tables_are_clear_errors(tmp_path, mimic):
    with pytest.raises(FileNotFoundError, match="d_labitems"):
        mimic_clinical_records(mimic[0], tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="record_list.csv"):
        mimic_clinical_records(tmp_path, mimic[1], progress=False)
