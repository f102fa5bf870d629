"""Per-record ECG statistics on signals of known truth, robustness, and the cohort comparison."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from ecgkit.data.wfdb_io import LEADS
from ecgkit.describe import compare_cohorts, ecg_fiducials, ecg_summary

AMP_COLUMNS = [f"amp_{lead}" for lead in LEADS]
# Per-lead gains of the constructed record below; V1 and aVR point down as on a real ECG.
GAINS = np.array([0.8, 1.2, 0.4, -1.0, 0.3, 0.8, -0.6, -1.2, 0.9, 1.5, 1.3, 1.0])


def constructed(hr: float, fs: float, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """A 12-lead record whose intervals are known exactly.

    Each beat: a 100 ms P wave (0.15 mV) starting 160 ms before QRS onset (PR = 160 ms), a
    piecewise linear q-R-S complex of exactly 90 ms (q −0.1, R +1.0, S −0.3 mV: 1.3 mV peak to
    peak), a 100 ms ST segment and a 160 ms T wave (QT = 350 ms); lead k is this times GAINS[k]
    plus 10 µV of noise.
    """
    t = np.arange(int(round(seconds * fs))) / fs
    y = np.zeros_like(t)
    for on in np.arange(0.3, seconds, 60.0 / hr):
        y += np.interp(t, on + np.array([0, 0.015, 0.045, 0.075, 0.090]), [0, -0.1, 1.0, -0.3, 0],
                       left=0, right=0)
        for start, dur, amp in ((on - 0.160, 0.100, 0.15), (on + 0.190, 0.160, 0.30)):
            u = (t - start) / dur
            y += np.where((u > 0) & (u < 1), amp * np.sin(np.pi * u) ** 2, 0)
    noise = 0.01 * np.random.default_rng(seed).standard_normal((t.size, 12))
    return (y[:, None] * GAINS + noise).astype(np.float32)


def simulated(hr: float, fs: float, seed: int = 1) -> np.ndarray:
    """neurokit2's 12-lead simulation (method='multileads'), or one simulated lead tiled."""
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            df = nk.ecg_simulate(duration=10, sampling_rate=fs, heart_rate=hr, method="multileads",
                                 random_state=seed)
            return df[list(LEADS)].to_numpy(dtype=np.float32)
        except (TypeError, ValueError, KeyError):
            y = nk.ecg_simulate(duration=10, sampling_rate=fs, heart_rate=hr, random_state=seed)
            return np.tile(np.asarray(y, dtype=np.float32)[:, None], (1, 12))


@pytest.fixture(scope="module")
def sims():
    return {(hr, fs): simulated(hr, fs) for hr in (70, 110) for fs in (500, 100)}


@pytest.mark.parametrize("hr", [70, 110])
@pytest.mark.parametrize("fs", [500, 100])
def test_heart_rate_of_neurokit_simulation(sims, hr, fs):
    row = ecg_summary(sims[(hr, fs)], fs, progress=False).iloc[0]
    assert abs(row.hr_bpm - hr) <= 3
    assert row.n_beats >= int(hr / 6) - 1


def test_neurokit_ecgsyn_qrs_is_finite_and_plausible():
    import neurokit2 as nk

    # ecgsyn draws Q, R and S as Gaussians in phase: their tails make its QRS wider at slow rates
    # (≈150 ms at 70 bpm, ≈125 ms at 110 bpm); here we only ask for a plausible value.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = nk.ecg_simulate(duration=10, sampling_rate=500, heart_rate=110, method="ecgsyn", random_state=1)
    row = ecg_summary(np.tile(y[:, None], (1, 12)), 500, progress=False).iloc[0]
    assert abs(row.hr_bpm - 110) <= 3
    assert 60 <= row.qrs_ms <= 140


@pytest.fixture(scope="module")
def truth():
    records = [constructed(hr, fs) for hr in (70, 110) for fs in (500, 100)]
    rates = [fs for _ in (70, 110) for fs in (500, 100)]
    table = ecg_summary(records, rates, ids=["70@500", "70@100", "110@500", "110@100"], progress=False)
    return records, rates, table


def test_intervals_of_a_record_of_known_truth(truth):
    _, _, table = truth
    assert list(table.index) == ["70@500", "70@100", "110@500", "110@100"]
    assert (table.error == "").all()
    np.testing.assert_allclose(table.hr_bpm, [70, 70, 110, 110], atol=3)
    # QRS is 90 ms: the band-limited velocity widens abrupt edges by ~10 ms, at 500 and 100 Hz alike
    assert table.qrs_ms.between(60, 140).all()
    np.testing.assert_allclose(table.qrs_ms, 90, atol=15)
    assert table.qrs_ms.max() - table.qrs_ms.min() <= 6
    np.testing.assert_allclose(table.pr_ms, 160, atol=20)
    np.testing.assert_allclose(table.qt_ms, 350, atol=25)
    np.testing.assert_allclose(table.qtc_ms, table.qt_ms / np.sqrt(60 / table.hr_bpm), rtol=0.02)


def test_amplitudes_per_lead(truth):
    _, _, table = truth
    expected = 1.3 * np.abs(GAINS)
    at500 = table.loc[["70@500", "110@500"], AMP_COLUMNS].to_numpy()
    at100 = table.loc[["70@100", "110@100"], AMP_COLUMNS].to_numpy()
    np.testing.assert_allclose(at500, np.broadcast_to(expected, at500.shape), rtol=0.06)
    # 100 Hz sampling misses the apex of a sharp R: lower, but not by much
    np.testing.assert_allclose(at100, np.broadcast_to(expected, at100.shape), rtol=0.2)


def test_fiducials_line_up_with_the_table(truth):
    records, rates, table = truth
    fid = ecg_fiducials(records[0], rates[0])
    assert {"R peaks", "QRS onsets", "QRS offsets", "P onsets", "T offsets"} <= set(fid)
    qrs = (fid["QRS offsets"] - fid["QRS onsets"]) / rates[0] * 1000
    assert np.nanmedian(qrs) == pytest.approx(table.qrs_ms.iloc[0], abs=2)
    assert len(fid["R peaks"]) == table.n_beats.iloc[0]


def test_bad_records_give_nans_and_an_error_without_touching_the_others(truth):
    records, rates, table = truth
    good = records[0]
    flat = np.zeros_like(good)
    nan = good.copy()
    nan[1000:1100, :] = np.nan
    v3_nan = good.copy()
    v3_nan[:, LEADS.index("V3")] = np.nan
    wrong = good[:, :11]
    batch = [good, flat, nan, v3_nan, wrong, records[2]]
    out = ecg_summary(batch, 500, progress=False)
    assert len(out) == 6
    numeric = [c for c in out.columns if c not in ("error", "n_beats")]
    for i in (1, 2, 4):
        assert out.error.iloc[i] != ""
        assert out.loc[i, numeric].isna().all()
    assert "flat" in out.error.iloc[1] and "non-finite" in out.error.iloc[2]
    assert "V3" in out.error.iloc[3]
    assert np.isnan(out.amp_V3.iloc[3]) and np.isfinite(out.qrs_ms.iloc[3]) and np.isfinite(out.amp_V4.iloc[3])
    assert (out.error != "").sum() == 4
    # the good records are measured exactly as on their own
    pd.testing.assert_series_equal(out.iloc[0], table.iloc[0], check_names=False)
    pd.testing.assert_series_equal(out.iloc[5].drop("error"), table.iloc[2].drop("error"),
                                   check_names=False)


def test_input_forms_and_progress_bar(truth, capsys):
    records, _, _ = truth
    one = ecg_summary(records[0], 500, progress=True)  # one samples × leads array
    assert len(one) == 1 and "ECG summary" in capsys.readouterr().err
    stacked = ecg_summary(np.stack([records[0], records[0]]), 500, progress=False)  # records × samples × 12
    assert len(stacked) == 2 and stacked.index.name == "record"
    assert stacked.columns[-1] == "error" and set(AMP_COLUMNS) <= set(stacked.columns)


def _cohort(seed: int, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {"hr_bpm": rng.normal(70, 12, n), "qrs_ms": rng.normal(92, 10, n)}
    data.update({c: rng.lognormal(0, 0.35, n) for c in AMP_COLUMNS})
    data["error"] = [""] * n
    return pd.DataFrame(data)


def test_compare_identical_cohorts_is_similar():
    real = _cohort(0)
    table = compare_cohorts(real, real.copy())
    assert list(table.index) == ["hr_bpm", "qrs_ms"] + AMP_COLUMNS  # "error" is not a statistic
    assert (table.verdict == "similar").all()
    np.testing.assert_allclose(table.difference, 0)
    assert {"real_median", "real_iqr", "synthetic_median", "synthetic_iqr", "std_difference"} <= set(table.columns)


def test_compare_flags_doubled_amplitudes_as_higher():
    real = _cohort(0)
    synthetic = _cohort(1)  # an independent draw of the same population
    synthetic[AMP_COLUMNS] *= 2
    table = compare_cohorts(real, synthetic)
    assert (table.loc[AMP_COLUMNS, "verdict"] == "synthetic higher").all()
    assert (table.loc[AMP_COLUMNS, "std_difference"] > 0.8).all()
    assert (table.loc[AMP_COLUMNS, "effect"] == "large").all()
    assert (table.loc[["hr_bpm", "qrs_ms"], "verdict"] == "similar").all()
    halved = compare_cohorts(synthetic, real, names=("a", "b"))
    assert (halved.loc[AMP_COLUMNS, "verdict"] == "b lower").all()


def test_compare_handles_missing_values_and_constant_columns():
    a = pd.DataFrame({"x": [1.0, np.nan, np.nan], "c": [5.0] * 3, "d": [1.0, 2.0, 3.0]})
    b = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": [5.0] * 3, "d": [1.0, 2.0, 3.0]})
    table = compare_cohorts(a, b, names=("A", "B"))
    assert table.loc["x", "verdict"] == "too few values" and table.loc["x", "A_n"] == 1
    assert table.loc["c", "verdict"] == "similar" and table.loc["c", "std_difference"] == 0
    b2 = b.assign(c=6.0)
    assert compare_cohorts(a, b2).loc["c", "verdict"] == "synthetic higher"


def test_a_verdict_of_lower_needs_medians_that_differ_as_printed():
    # tight cohorts (tiny IQRs): a 0.0004 mV median difference is many robust SDs, but both medians
    # print as 0.800, so the verdict may not say "lower"
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"amp_aVR": 0.8002 + rng.normal(0, 1e-5, 30)})
    synthetic = pd.DataFrame({"amp_aVR": 0.7998 + rng.normal(0, 1e-5, 30)})
    table = compare_cohorts(real, synthetic)
    assert abs(table.loc["amp_aVR", "std_difference"]) > 1
    assert table.loc["amp_aVR", "verdict"] == "similar"
    from ecgkit.results import format_number, value_decimals
    m = table.loc["amp_aVR"]
    assert format_number(m.real_median, value_decimals(m.real_median)) == format_number(
        m.synthetic_median, value_decimals(m.synthetic_median))
    # a difference that shows at the printed precision keeps its direction
    lower = compare_cohorts(real, synthetic - 0.05)
    assert lower.loc["amp_aVR", "verdict"] == "synthetic lower"
