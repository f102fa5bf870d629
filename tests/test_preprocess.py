"""Preprocessing: filters, resampling, windows, standardization, NaN filling."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ecgkit.data.errors import RecordError
from ecgkit.data.bulk import collect_records, prepare_record
from ecgkit.data.preprocess import (
    LeadStandardizer,
    ecg_bandpass,
    ecg_fill_nan,
    ecg_notch,
    ecg_remove_baseline,
    ecg_resample,
    fixed_length,
    resample_length,
    window_samples,
)

FS = 500.0


def tone(freq, seconds=20.0, fs=FS, amp=1.0, phase=0.3):
    t = np.arange(int(seconds * fs)) / fs
    return amp * np.sin(2 * np.pi * freq * t + phase)


def power_at(x, freq, fs=FS):
    """Power of ``x`` at ``freq`` by projection on a sine/cosine pair (exact for whole cycles)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.arange(len(x)) / fs
    c = 2 * np.mean(x * np.cos(2 * np.pi * freq * t))
    s = 2 * np.mean(x * np.sin(2 * np.pi * freq * t))
    return (c * c + s * s) / 2


def dominant_freq(x, fs):
    spec = np.abs(np.fft.rfft(x - x.mean()))
    return np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(spec)]


# ----------------------------------------------------------------------------- filters

def test_bandpass_removes_drift_and_mains_keeps_10hz():
    drift, keep, mains = tone(0.1, amp=2.0), tone(10.0, amp=1.0), tone(60.0, amp=0.5)
    x = np.stack([drift + keep + mains] * 12, axis=1).astype(np.float32)
    y = ecg_bandpass(x, FS, low=0.5, high=40.0)
    assert y.shape == x.shape and y.dtype == np.float32
    lead = y[:, 3]
    p_keep, p_drift, p_mains = power_at(lead, 10.0), power_at(lead, 0.1), power_at(lead, 60.0)
    assert p_keep == pytest.approx(power_at(keep, 10.0), rel=0.02)  # 10 Hz passes unchanged
    assert p_drift < 1e-4 * power_at(drift, 0.1)  # drift: > 40 dB down
    assert p_mains < 2e-3 * power_at(mains, 60.0)  # 60 Hz (1.5 × the cutoff): > 27 dB down
    # zero phase: the kept 10 Hz sine is in place, sample by sample (away from the edges)
    mid = slice(int(2 * FS), int(18 * FS))
    assert np.max(np.abs(lead[mid] - keep[mid])) < 0.05  # one sample of delay would give 0.13


def test_bandpass_works_along_time_of_a_batch_and_1d():
    x = tone(0.1, seconds=10) + tone(10.0, seconds=10)
    batch = np.stack([np.stack([x] * 12, axis=1)] * 3).astype(np.float32)  # 3 × 5000 × 12
    y = ecg_bandpass(batch, FS)
    one = ecg_bandpass(x, FS)
    assert y.shape == batch.shape
    np.testing.assert_allclose(y[1, :, 5], one, atol=1e-4)


def test_batches_are_processed_in_chunks_with_the_same_result(monkeypatch):
    import ecgkit.data.preprocess as pp

    x = np.stack([tone(0.1 * (k + 1), seconds=4) + tone(8.0, seconds=4) for k in range(5)])
    batch = np.repeat(x[:, :, None], 12, axis=2).astype(np.float32)  # 5 × 2000 × 12
    whole_f, whole_r = ecg_bandpass(batch, FS), ecg_resample(batch, FS, 100)
    monkeypatch.setattr(pp, "_CHUNK_VALUES", 2 * 2000 * 12)  # two records per chunk
    np.testing.assert_array_equal(ecg_bandpass(batch, FS), whole_f)
    np.testing.assert_array_equal(ecg_resample(batch, FS, 100), whole_r)
    assert whole_r.shape == (5, 400, 12)
    np.testing.assert_allclose(whole_f[3, :, 0], ecg_bandpass(x[3], FS), atol=1e-5)


def test_remove_baseline_and_notch():
    drift, keep, mains = tone(0.1, amp=2.0), tone(5.0), tone(50.0, amp=0.5)
    y = ecg_remove_baseline(drift + keep, FS, cutoff=0.5)
    assert power_at(y, 0.1) < 1e-3 * power_at(drift, 0.1)
    assert power_at(y, 5.0) == pytest.approx(power_at(keep, 5.0), rel=0.02)
    z = ecg_notch(keep + mains, FS, freq=50)
    assert power_at(z, 50.0) < 1e-3 * power_at(mains, 50.0)
    assert power_at(z, 5.0) == pytest.approx(power_at(keep, 5.0), rel=0.02)


def test_filter_arguments_are_checked():
    x = np.zeros((1000, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="Nyquist"):
        ecg_bandpass(x, 100.0, low=0.5, high=60.0)
    with pytest.raises(ValueError, match="below"):
        ecg_bandpass(x, FS, low=40.0, high=10.0)
    with pytest.raises(ValueError, match="positive"):
        ecg_bandpass(x, 0)
    with pytest.raises(ValueError, match="Nyquist"):
        ecg_notch(x, 100.0, freq=60.0)


# ----------------------------------------------------------------------------- resampling

def test_resample_500_100_500_keeps_frequency_and_amplitude():
    x = tone(5.0, seconds=10, amp=1.5)
    down = ecg_resample(x, 500, 100)
    assert len(down) == 1000
    assert dominant_freq(down, 100) == pytest.approx(5.0, abs=0.1)
    assert np.sqrt(2 * power_at(down, 5.0, fs=100)) == pytest.approx(1.5, rel=0.01)
    up = ecg_resample(down, 100, 500)
    assert len(up) == len(x)
    mid = slice(500, 4500)
    np.testing.assert_allclose(up[mid], x[mid], atol=0.02)


def test_resample_batch_axis_rational_rates_and_errors():
    x = np.stack([tone(3.0, seconds=4)] * 12, axis=1).astype(np.float32)
    batch = np.stack([x, 2 * x])
    y = ecg_resample(batch, 500, 257)  # 257 Hz (INCART) is a rational factor
    assert y.shape == (2, resample_length(2000, 500, 257), 12) and y.dtype == np.float32
    assert y.shape[1] == 1028
    np.testing.assert_allclose(y[1], 2 * y[0], rtol=1e-5, atol=1e-5)
    assert ecg_resample(x, 500, 500) is not x  # same rate: a copy
    for bad in (0, -100, float("nan"), None):
        with pytest.raises(ValueError, match="positive"):
            ecg_resample(x, 500, bad)
        with pytest.raises(ValueError, match="positive"):
            ecg_resample(x, bad, 500)


# ----------------------------------------------------------------------------- windows

def test_fixed_length_shapes_and_centering():
    x = np.arange(10 * 12, dtype=np.float32).reshape(10, 12)
    c = fixed_length(x, 6)
    np.testing.assert_array_equal(c, x[2:8])
    np.testing.assert_array_equal(fixed_length(x, 6, mode="start"), x[:6])
    np.testing.assert_array_equal(fixed_length(x, 6, mode="end"), x[4:])
    p = fixed_length(x, 15)
    assert p.shape == (15, 12)
    np.testing.assert_array_equal(p[2:12], x)  # 5 padded samples: 2 before, 3 after
    assert (p[:2] == 0).all() and (p[12:] == 0).all()
    s = fixed_length(x, 15, mode="start", pad_value=-1)
    np.testing.assert_array_equal(s[:10], x)
    assert (s[10:] == -1).all()
    assert fixed_length(x, 10).shape == (10, 12)
    assert fixed_length(x[:, 0], 4).shape == (4,)


def test_fixed_length_random_is_reproducible_and_in_range():
    x = np.arange(100, dtype=np.float32)[:, None].repeat(12, axis=1)
    a = fixed_length(x, 20, mode="random", rng=np.random.default_rng(0))
    b = fixed_length(x, 20, mode="random", rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    start = int(a[0, 0])
    np.testing.assert_array_equal(a[:, 0], np.arange(start, start + 20))
    starts = {int(fixed_length(x, 20, mode="random", rng=seed)[0, 0]) for seed in range(30)}
    assert len(starts) > 5 and min(starts) >= 0 and max(starts) <= 80
    with pytest.raises(ValueError):
        fixed_length(x, 20, mode="middle")
    with pytest.raises(ValueError):
        fixed_length(x, 0)


def test_window_samples():
    assert window_samples(500, seconds=10) == 5000
    assert window_samples(100, n_samples=250) == 250
    assert window_samples(100) is None
    with pytest.raises(ValueError):
        window_samples(100, seconds=1, n_samples=100)


# ----------------------------------------------------------------------------- standardizer

def test_standardizer_uses_train_statistics_only():
    rng = np.random.default_rng(1)
    scale = np.linspace(0.1, 2.0, 12)
    train = (rng.normal(size=(40, 500, 12)) * scale + np.arange(12)).astype(np.float32)
    test = (rng.normal(size=(10, 500, 12)) * 3 * scale + 100).astype(np.float32)
    st = LeadStandardizer().fit(train)
    mean, std = st.mean_.copy(), st.std_.copy()
    np.testing.assert_allclose(mean, train.reshape(-1, 12).mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, train.reshape(-1, 12).std(0), rtol=1e-5)
    z_test = st.transform(test)
    # the statistics did not move, and the test split is not re-centred on itself
    np.testing.assert_array_equal(st.mean_, mean)
    np.testing.assert_array_equal(st.std_, std)
    assert z_test.dtype == np.float32
    assert np.all(z_test.reshape(-1, 12).mean(0) > 5)
    np.testing.assert_allclose(z_test, (test - mean) / std, rtol=1e-4, atol=1e-4)
    z_train = st.fit_transform(train)
    np.testing.assert_allclose(z_train.reshape(-1, 12).mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z_train.reshape(-1, 12).std(0), 1, atol=1e-3)


def test_standardizer_round_trips_through_dict_and_json():
    rng = np.random.default_rng(2)
    train = [rng.normal(size=(n, 12)).astype(np.float32) * 2 + 1 for n in (300, 700, 512)]
    st = LeadStandardizer().fit(train)
    flat = np.concatenate(train).astype(np.float64)
    np.testing.assert_allclose(st.mean_, flat.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(st.std_, flat.std(0), rtol=1e-6)
    again = LeadStandardizer.from_dict(json.loads(json.dumps(st.to_dict())))
    x = rng.normal(size=(100, 12)).astype(np.float32)
    np.testing.assert_array_equal(again.transform(x), st.transform(x))
    np.testing.assert_allclose(again.inverse_transform(again.transform(x)), x, atol=1e-5)
    out = st.transform(train)
    assert isinstance(out, list) and [o.shape for o in out] == [t.shape for t in train]


def test_standardizer_nan_aware_flat_lead_and_errors():
    x = np.random.default_rng(3).normal(size=(2000, 12)).astype(np.float32)
    x[:, 0] = 0.0  # a flat lead: std floor, no division by zero
    x[::3, 1] = np.nan
    st = LeadStandardizer(min_std=1e-3).fit(x)
    assert np.isfinite(st.mean_).all() and np.isfinite(st.std_).all()
    assert st.std_[0] == pytest.approx(1e-3)
    assert st.mean_[1] == pytest.approx(np.nanmean(x[:, 1]), abs=1e-6)
    z = st.transform(x)
    assert (z[:, 0] == 0).all()
    with pytest.raises(RuntimeError, match="not fitted"):
        LeadStandardizer().transform(x)
    with pytest.raises(ValueError, match="leads"):
        st.transform(x[:, :11])
    x[:, 4] = np.nan
    with pytest.raises(ValueError, match="aVL"):
        LeadStandardizer().fit(x)


# ----------------------------------------------------------------------------- NaN gaps

def test_fill_nan_interpolates_short_gaps_and_reports():
    x = np.tile(np.arange(20, dtype=np.float32)[:, None], (1, 12))
    x[5:8, 2] = np.nan
    x[0:2, 7] = np.nan  # a leading gap: nearest value
    y, n = ecg_fill_nan(x, max_gap=3)
    assert n == 5
    np.testing.assert_allclose(y[:, 2], np.arange(20))
    np.testing.assert_allclose(y[:2, 7], [2, 2])
    assert np.isnan(x[5:8, 2]).all()  # the input is left alone
    same, zero = ecg_fill_nan(np.ones((5, 12), dtype=np.float32))
    assert zero == 0 and same.shape == (5, 12)


def test_fill_nan_raises_naming_the_lead():
    x = np.zeros((100, 12), dtype=np.float32)
    x[10:30, 7] = np.nan
    with pytest.raises(ValueError, match="V2 has a NaN gap of 20 samples"):
        ecg_fill_nan(x, max_gap=10)
    y, n = ecg_fill_nan(x, max_gap=20)
    assert n == 20
    x[:, 3] = np.nan
    with pytest.raises(ValueError, match="aVR is all NaN"):
        ecg_fill_nan(x, max_gap=50)


# ----------------------------------------------------------------------------- reader pipeline

def test_prepare_record_and_collect_records():
    sig = np.stack([tone(2.0, seconds=2)] * 12, axis=1).astype(np.float32)
    out = prepare_record(sig, 500, "r1", fs=100, n_samples=150)
    assert out.shape == (150, 12) and out.dtype == np.float32
    bad = sig.copy()
    bad[3:5, 0] = np.nan
    with pytest.raises(RecordError, match="r2.*NaN samples in leads \\['I'\\]"):
        prepare_record(bad, 500, "r2")
    assert not np.isnan(prepare_record(bad, 500, "r2", nan="fill")).any()

    def read_one(i):
        if i == 2:
            raise RecordError(f"rec{i}", "broken")
        return np.full((10 + i, 12), i, dtype=np.float32), {"i": i}

    with pytest.warns(UserWarning, match="rec2: broken"):
        kept, sigs, metas, skipped = collect_records([0, 1, 2, 3], read_one, name="t", progress=False)
    assert kept == [0, 1, 3] and isinstance(sigs, list) and len(skipped) == 1
    assert skipped.skipped == {"rec2": "broken"}
    with pytest.raises(RecordError, match="rec2"):
        collect_records([0, 1, 2, 3], read_one, name="t", strict=True, progress=False)
