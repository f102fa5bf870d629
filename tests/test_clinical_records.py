"""Clinical records: labs.csv + biometrics for the cohort, biometrics only for PTB-XL, bad values counted."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgkit.clinical.records import LABS, VITALS, biometrics, clinical_records, read_labs_csv
from ecgkit.data import load_ptbxl


def test_ptbxl_has_biometrics_only(tiny_ptbxl, tmp_cache):
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    rec = clinical_records(ds)
    assert list(rec.values.columns) == ["age", "sex", "height", "weight"]
    assert rec.values.index.equals(ds.meta.index)
    assert not rec.has_labs and "no laboratory values" in rec.source
    assert rec.values["height"].isna().all() and (rec.values["weight"] == 70).all()
    assert rec.flags().isna().all().all()          # no labs: every flag unknown, none "normal"


def test_labs_csv_joined_by_ecg_id_with_problems_counted(tiny_ptbxl, tmp_cache):
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    labs = pd.DataFrame({"ecg_id": [3, 1, 2, 2, 99], "potassium": ["6.5", "4.0", "bad", "5.0", "4.4"],
                         "troponin": [np.nan, 20.0, 5.0, 5.0, 1.0]})
    labs.to_csv(tiny_ptbxl / "labs.csv", index=False)
    rec = clinical_records(ds)
    v = rec.values
    assert set(LABS + VITALS) <= set(v.columns) and rec.kinds["potassium"] == "lab"
    assert rec.kinds["heart_rate"] == "vital" and rec.kinds["age"] == "biometric"
    assert v.at[1, "potassium"] == 4.0 and v.at[3, "potassium"] == 6.5
    assert np.isnan(v.at[2, "potassium"])                    # "bad" -> NaN (first row of the duplicate kept)
    assert v.loc[4:, "potassium"].isna().all()                # records without a row
    assert rec.problems["labs.csv: potassium not a number"] == 1
    assert rec.problems["labs.csv: records without a row"] == 3
    assert rec.problems["labs.csv: duplicate ecg_id rows dropped (first kept)"] == 1
    assert rec.problems["labs.csv: column calcium absent"] == 6
    flags = rec.flags()
    assert flags.at[3, "potassium_high"] == 1.0 and flags.at[1, "troponin_high"] == 1.0
    assert flags.at[1, "potassium_high"] == 0.0 and np.isnan(flags.at[2, "potassium_high"])
    assert rec.has_labs
    summary = rec.summary()
    assert summary.at["potassium", "unit"] == "mmol/L" and 0 < summary.at["potassium", "measured"] < 1


def test_labs_csv_without_ecg_id_is_refused(tmp_path):
    (tmp_path / "labs.csv").write_text("id,potassium\n1,4.0\n")
    with pytest.raises(ValueError, match="no ecg_id column"):
        read_labs_csv(tmp_path / "labs.csv", [1])


def test_biometrics_cleaned():
    meta = pd.DataFrame({"age": [300, 45, -1], "sex": [0, 1, 3], "height": [0, 170, 180],
                         "weight": [70, 500, 80]}, index=[1, 2, 3])
    problems = {}
    b = biometrics(meta, problems)
    assert b.at[1, "age"] == 90 and np.isnan(b.at[3, "age"])     # PTB-XL's 300 means over 89
    assert np.isnan(b.at[3, "sex"]) and np.isnan(b.at[1, "height"]) and np.isnan(b.at[2, "weight"])
    assert problems["biometrics: weight outside 25–300"] == 1
