"""Lab-abnormality labels follow the written reference ranges exactly, at both sides of every limit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgkit.clinical.labs import (FLAG_NAMES, FLAGS, REFERENCE_RANGES, abnormality_flags, lab_status,
                                  reference_table, status_table)


def _below(x):
    return np.nextafter(x, -np.inf)


def _above(x):
    return np.nextafter(x, np.inf)


@pytest.mark.parametrize("lab", list(REFERENCE_RANGES.index))
def test_status_at_both_sides_of_each_limit(lab):
    low, high = REFERENCE_RANGES.at[lab, "low"], REFERENCE_RANGES.at[lab, "high"]
    assert np.isfinite(low) or np.isfinite(high), lab
    if np.isfinite(low):
        assert list(lab_status([_below(low), low, _above(low)], lab)) == ["low", "normal", "normal"]
        assert lab_status([low - 1.0], lab)[0] == "low"
    if np.isfinite(high):
        assert list(lab_status([_below(high), high, _above(high)], lab)) == ["normal", "normal", "high"]
        assert lab_status([high * 10], lab)[0] == "high"
    if not np.isfinite(low):      # no lower limit: nothing is low
        assert lab_status([0.0], lab)[0] == "normal"
    if not np.isfinite(high):     # no upper limit: nothing is high
        assert lab_status([1e6], lab)[0] == "normal"


def test_hand_picked_values():
    assert list(lab_status([3.4, 3.5, 4.2, 5.1, 5.2], "potassium")) == ["low", "normal", "normal", "normal", "high"]
    assert list(lab_status([14.0, 15.0], "troponin")) == ["normal", "high"]
    assert list(lab_status([93.0, 94.0, 100.0], "spo2")) == ["low", "normal", "normal"]
    assert list(lab_status([119.0, 120.0], "haemoglobin")) == ["low", "normal"]


def test_missing_is_no_label_never_normal():
    out = lab_status([np.nan, None, "n/a", 4.0], "potassium")
    assert list(out) == [None, None, None, "normal"]


def test_unknown_lab_is_a_clear_error():
    with pytest.raises(KeyError, match="no reference range for 'lactate'"):
        lab_status([1.0], "lactate")


def test_flags_follow_the_ranges_and_keep_missing():
    values = pd.DataFrame({"potassium": [3.4, 3.5, 5.1, 5.2, np.nan],
                           "troponin": [14.0, 14.5, np.nan, 3.0, 100.0]}, index=list("abcde"))
    flags = abnormality_flags(values)
    assert list(flags.columns) == [f"{lab}_{d}" for lab, d in FLAGS]
    np.testing.assert_array_equal(flags["potassium_high"].to_numpy(), [0, 0, 0, 1, np.nan])
    np.testing.assert_array_equal(flags["potassium_low"].to_numpy(), [1, 0, 0, 0, np.nan])
    np.testing.assert_array_equal(flags["troponin_high"].to_numpy(), [0, 1, np.nan, 0, 1])
    assert flags["calcium_low"].isna().all()          # column absent: not measured anywhere
    statuses = status_table(values)
    assert statuses.loc["d", "potassium"] == "high" and statuses.loc["e", "potassium"] is None


def test_flag_without_a_limit_on_its_side_is_refused():
    with pytest.raises(ValueError, match="no low limit"):
        abnormality_flags(pd.DataFrame({"troponin": [1.0]}), flags=(("troponin", "low"),))


def test_table_is_documented_and_matches_the_generator():
    from ecgkit.data.synthetic import LAB_REFERENCE

    table = reference_table()
    assert {"unit", "low", "high", "rule", "source"} <= set(table.columns)
    assert table["source"].str.len().min() > 10
    for lab, (low, high) in LAB_REFERENCE.items():     # the cohort's labs are labelled with the same limits
        ours_low, ours_high = REFERENCE_RANGES.at[lab, "low"], REFERENCE_RANGES.at[lab, "high"]
        if np.isfinite(ours_low):
            assert ours_low == low, lab
        if np.isfinite(ours_high):
            assert ours_high == high, lab
    assert set(FLAG_NAMES) == {f"{lab}_{d}" for lab, d in FLAGS}
