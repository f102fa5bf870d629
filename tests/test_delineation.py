"""ALFRED step 1: the U-Net delineator, its labels, scoring and caching."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ecgkit.alfred import delineation as D


def _hand_fiducials(n_beats=5, rr=400, lead="II", start=100):
    rows = []
    for b in range(n_beats):
        q = start + b * rr + 80
        rows.append({"lead": lead, "beat": b, "p_on": q - 80, "p_peak": q - 55, "p_off": q - 30,
                     "qrs_on": q, "r_peak": q + 25, "qrs_off": q + 45, "t_peak": q + 150,
                     "t_off": q + 200})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n", [2048, 5000, 1000, 777, 33])
@pytest.mark.parametrize("batch", [1, 12])
def test_unet_shapes(n, batch):
    torch.manual_seed(0)
    model = D.UNet1D(base=4, depth=4).eval()
    with torch.inference_mode():
        out = model(torch.randn(batch, 1, n))
    assert out.shape == (batch, 4, n)


def test_default_unet_and_depth():
    model = D.UNet1D().eval()
    assert model.config["base"] == 16 and model.config["depth"] == 4
    with torch.inference_mode():
        assert model(torch.randn(3, 1, 1001)).shape == (3, 4, 1001)
    with torch.inference_mode():
        assert D.UNet1D(base=4, depth=2).eval()(torch.randn(2, 1, 99)).shape == (2, 4, 99)


def test_mask_round_trip():
    fid = _hand_fiducials()
    mask = D.fiducials_to_mask(fid, 2400, leads=["I", "II"])
    assert mask.shape == (2, 2400) and mask.dtype == np.int8
    assert not mask[0].any()
    q = 180
    # waves occupy [onset, offset): an offset is the first sample after the wave
    assert mask[1, q - 80] == 1 and mask[1, q - 31] == 1 and mask[1, q - 30] == 0
    assert mask[1, q] == 2 and mask[1, q + 44] == 2 and mask[1, q + 45] == 0
    # T onset: t_peak − (t_off − t_peak) = q + 100
    assert mask[1, q + 99] == 0 and mask[1, q + 100] == 3 and mask[1, q + 199] == 3
    assert mask[1, q + 200] == 0
    back = D.mask_to_fiducials(mask[1], 500, leads=["II"])
    assert len(back) == len(fid)
    for col in ("p_on", "p_off", "qrs_on", "qrs_off", "t_off"):
        np.testing.assert_array_equal(back[col].to_numpy(), fid[col].to_numpy())
    assert (back["t_on"] == fid["t_peak"] - 50).all()


def test_mask_cleanup_and_signal_peaks():
    mask = np.zeros(1000, np.int8)
    mask[100:150] = 2
    mask[120:123] = 0          # short gap inside the QRS: closed
    mask[400:405] = 2          # 10 ms "QRS": spurious
    mask[600:610] = 1          # 20 ms "P": spurious
    sig = np.zeros(1000)
    sig[130] = -3.0
    out = D.mask_to_fiducials(mask, 500, signal=sig)
    assert len(out) == 1
    row = out.iloc[0]
    assert (row.qrs_on, row.qrs_off, row.r_peak) == (100, 150, 130)
    assert row.p_on == -1 and row.t_off == -1


def test_missing_waves_give_absent_points():
    fid = _hand_fiducials(n_beats=2)
    fid.loc[0, ["p_on", "p_peak", "p_off"]] = -1     # AF-like beat: no P
    mask = D.fiducials_to_mask(fid, 1000, leads=["II"])
    out = D.mask_to_fiducials(mask, 500, leads=["II"])
    assert out.loc[0, "p_on"] == -1 and out.loc[1, "p_on"] == fid.loc[1, "p_on"]


def test_score_delineation():
    truth = _hand_fiducials(n_beats=8)
    exact = D.score_delineation(truth, truth, 500)
    assert (exact["sensitivity"] == 1).all() and (exact["ppv"] == 1).all()
    assert (exact["mean_error_ms"] == 0).all()
    shifted = truth.copy()
    cols = list(D.SCORED)
    shifted[cols] = shifted[cols] + 100            # 200 ms at 500 Hz
    far = D.score_delineation(shifted, truth, 500, tolerance_ms=150)
    assert (far["sensitivity"] == 0).all() and (far["ppv"] == 0).all()
    near = truth.copy()
    near[cols] = near[cols] + 5                    # 10 ms late
    s = D.score_delineation(near, truth, 500)
    assert np.allclose(s["mean_error_ms"], 10.0) and (s["sensitivity"] == 1).all()
    missed = truth.drop(index=3)
    m = D.score_delineation(missed, truth, 500)
    assert np.allclose(m["sensitivity"], 7 / 8) and (m["ppv"] == 1).all()
    # lists of frames (one per record) and leads found in one frame only
    both = D.score_delineation([truth, missed], [truth, truth.assign(lead="II")], 500)
    assert np.allclose(both["sensitivity"], 15 / 16)
    extra = pd.concat([truth, truth.assign(lead="all")])
    assert (D.score_delineation(truth, extra, 500)["sensitivity"] == 1).all()


def _tiny_data(n=4):
    from ecgkit.data.synthetic import simulate_ecg
    sigs, masks = [], []
    for i, cond in enumerate(["NORM", "STACH", "AFIB", "CLBBB"][:n]):
        s, f = simulate_ecg(cond, seed=i, duration=5)
        sigs.append(s.T)
        masks.append(D.fiducials_to_mask(f, s.shape[0]))
    return np.stack(sigs).astype(np.float32), np.stack(masks)


def test_training_reduces_loss():
    torch.manual_seed(0)
    sig, mask = _tiny_data()
    rng = np.random.default_rng(0)
    x, y = D._augment_batch((sig, mask), 1024, rng, augment=True)
    assert x.shape == (48, 1, 1024) and y.shape == (48, 1024)
    model = D.UNet1D(base=8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = [D.train_step(model, opt, x, y) for _ in range(25)]
    assert losses[-1] < 0.7 * losses[0]


def test_train_delineator_and_delineate(tmp_cache):
    data = _tiny_data(2)
    model = D.train_delineator(epochs=1, window=512, data=data, records_per_batch=2,
                               progress=False)
    assert len(model.history) == 1 and np.isfinite(model.history[0]["loss"])
    sig = data[0][0].T                                   # samples × 12
    out = D.delineate(sig, 500, model=model)
    assert isinstance(out, pd.DataFrame) and set(D.OUTPUT_COLUMNS) <= set(out.columns)
    outs = D.delineate(np.stack([sig, sig]), 500, model=model, batch_size=5)
    assert len(outs) == 2 and outs[0].equals(outs[1])
    low = D.delineate(sig[::5, :3], 100, model=model)    # other rate, three leads
    assert set(low["lead"]) <= {0, 1, 2}
    if len(low):
        assert low[list(D.OUTPUT_COLUMNS)].max().max() < sig.shape[0] // 5


def test_safetensors_round_trip(tmp_cache):
    torch.manual_seed(0)
    model = D.UNet1D(base=4, depth=3).eval()
    # give the batch norms non-trivial running statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 1, 256) * 3 + 1)
    model.eval()
    folder = tmp_cache / "models" / "delineator-test"
    path = D.save_delineator(model, folder, {"note": "test"})
    assert path.name == "model.safetensors" and path.is_file()
    again = D.read_delineator(folder)
    x = torch.randn(5, 1, 300)
    with torch.inference_mode():
        assert torch.equal(model(x), again(x))


def test_load_delineator_caches(tmp_cache, monkeypatch):
    calls = []

    def fake_train(ecgs, kw, progress=True, exclude=()):  # stands in for the real training (minutes)
        calls.append(kw)
        torch.manual_seed(kw["seed"])
        m = D.UNet1D(base=kw["base"], depth=kw["depth"], kernel=kw["kernel"]).eval()
        m.history, m.fs = [], kw["fs"]
        return m

    monkeypatch.delenv("ECGKIT_DELINEATION", raising=False)
    monkeypatch.setattr(D, "train_on", fake_train)
    a = D.load_delineator("quick", seed=2, progress=False)     # seed 0 ships: another seed trains
    b = D.load_delineator("quick", seed=2, progress=False)
    assert len(calls) == 1
    folders = list((tmp_cache / "models").glob("delineator-*"))
    assert len(folders) == 1 and (folders[0] / "model.safetensors").is_file()
    x = torch.randn(2, 1, 500)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))
    D.load_delineator("quick", seed=1, progress=False)
    assert len(calls) == 2 and len(list((tmp_cache / "models").glob("delineator-*"))) == 2


def _shipped_meta():
    import json

    return json.loads((D.shipped_delineator_dir("quick") / "config.json").read_text())


def test_quick_delineator_ships_and_nothing_trains_on_first_use(tmp_cache, monkeypatch):
    def refuse(**kw):
        raise AssertionError("the quick delineator must not train on first use")

    monkeypatch.setattr(D, "train_delineator", refuse)
    monkeypatch.setattr(D, "train_on", refuse)
    meta = _shipped_meta()
    # retrain when a version is bumped or a setting changes
    assert meta["key"] == D.delineator_key(D.delineator_config("quick"), meta["data"]["fingerprint"])
    assert meta["train"] == D.delineator_config("quick")
    model = D.load_delineator("quick", progress=False)
    assert model.fs == meta["train"]["fs"] == 250
    assert model.meta["key"] == meta["key"]
    assert not (tmp_cache / "models").exists() or not list((tmp_cache / "models").glob("delineator-*"))
    assert (D.shipped_delineator_dir("quick") / "model.safetensors").stat().st_size < 2_000_000


def test_shipped_delineator_keeps_its_recorded_scores_on_held_out_records():
    """The shipped model, scored again on the recorded held-out synthetic records, gives what
    was recorded with it (delineation is deterministic)."""
    model = D.load_delineator("quick", progress=False)
    held = _shipped_meta()["held_out_synthetic"]
    scores = D.held_out_scores(model, n_records=held["n_records"], seed=held["seed"])
    for fid, row in held["scores"].items():
        assert scores.loc[fid, "sensitivity"] == pytest.approx(row["sensitivity"], abs=0.005), fid
        assert scores.loc[fid, "mean_error_ms"] == pytest.approx(row["mean_error_ms"], abs=0.5), fid
    assert scores.loc["qrs_on", "sensitivity"] >= 0.98 and scores.loc["t_off", "sensitivity"] >= 0.98


def test_shipped_delineator_records_its_cross_validation():
    """Folds by record, five fold models beside the weights, and held-out scores against the
    cardiologists that a delineator which learnt nothing could not reach."""
    meta = _shipped_meta()
    cv = meta["cross_validation"]
    assert sorted(set(cv["folds"].values())) == [1, 2, 3, 4, 5] == sorted(cv["models"])
    assert {g.split("/")[0] for g in cv["folds"]} == {"ludb", "qtdb"}
    folds = D.read_fold_models(D.shipped_delineator_dir("quick"))
    assert sorted(folds) == [1, 2, 3, 4, 5] and all(m.fs == 250 for m in folds.values())
    scores = D.scores_frame(cv["scores"])
    ludb = scores.xs("ludb", level="database")
    assert (ludb["sensitivity"] >= 0.98).all() and (ludb["ppv"] >= 0.9).all()
    assert (ludb["mean_error_ms"].abs() <= 5).all()
    assert ludb.loc["qrs_on", "sd_error_ms"] <= 12 and ludb.loc["p_off", "sd_error_ms"] <= 15
    assert meta["class_weights"] and meta["data"]["databases"]["ludb"]["records"] == 100


@pytest.mark.slow
def test_retraining_from_scratch_gives_the_shipped_model(tmp_path):
    """`python -m ecgkit.alfred.delineation train` on the shared annotated ECGs (no
    cross-validation) gives the shipped key and its held-out synthetic scores (several minutes)."""
    from ecgkit.config import project_root

    data = project_root().parent / "shared" / "data" / "delineation"
    if not (data / "ludb-odd.npz").is_file():
        pytest.skip(f"no annotated ECGs at {data}")
    assert D.main(["train", "--profile", "quick", "--data", str(data), "--no-cv",
                   "--out", str(tmp_path / "retrained")]) == 0
    again = D.read_delineator(tmp_path / "retrained")
    assert again.meta["key"] == _shipped_meta()["key"]
    recorded = _shipped_meta()["held_out_synthetic"]["scores"]
    for fid, row in again.meta["held_out_synthetic"]["scores"].items():
        assert row["sensitivity"] >= recorded[fid]["sensitivity"] - 0.02, fid
        assert abs(row["mean_error_ms"] - recorded[fid]["mean_error_ms"]) <= 3.0, fid


def test_neurokit_fiducials():
    from ecgkit.data.synthetic import simulate_ecg
    sig, truth = simulate_ecg("NORM", seed=3)
    one = D.neurokit_fiducials(sig[:, 1], 500, method="dwt", lead="II")
    assert list(one.columns) == ["lead", "beat", *D.OUTPUT_COLUMNS] and len(one) >= 5
    s = D.score_delineation(one, truth[truth["lead"] == "II"], 500)
    assert s.loc["r_peak", "sensitivity"] > 0.8
    peak = D.neurokit_fiducials(sig[:, 1], 500, method="peak")
    assert (peak["qrs_on"] == -1).all() or len(peak)
    flat = D.neurokit_fiducials(np.zeros(5000), 500)
    assert len(flat) == 0 and "note" in flat.attrs


def test_align_beats_numbers_beats_across_leads_and_drops_lone_detections():
    import pandas as pd
    from ecgkit.alfred.delineation import OUTPUT_COLUMNS, align_beats

    rows = []
    for lead in ["I", "II", "III", "V1"]:
        shift = 0 if lead != "V1" else 4  # leads disagree a little
        for beat, qrs_on in enumerate([100, 600, 1100]):
            rows.append({"lead": lead, "beat": beat, **{c: -1 for c in OUTPUT_COLUMNS},
                         "p_on": qrs_on - 80, "p_off": qrs_on - 30, "qrs_on": qrs_on + shift,
                         "r_peak": qrs_on + 20, "qrs_off": qrs_on + 45 + shift, "t_off": qrs_on + 300})
    # lead III sees a spurious QRS on a T wave, which shifts its own beat numbers
    rows.append({"lead": "III", "beat": 9, **{c: -1 for c in OUTPUT_COLUMNS}, "qrs_on": 350, "qrs_off": 380})
    out = align_beats(pd.DataFrame(rows), 1500, fs=500)
    glob = out[out["lead"] == "all"]
    assert list(glob["beat"]) == [0, 1, 2] and list(glob["qrs_on"]) == [100, 600, 1100]
    assert list(glob["qrs_off"]) == [145, 645, 1145]   # second-latest offset: one late lead is ignored
    assert not ((out["lead"] == "III") & (out["qrs_on"] == 350)).any()
    assert (out[out["lead"] != "all"].groupby("beat").size() == 4).all()


def test_train_command_reads_settings_as_json(monkeypatch, tmp_path):
    seen = {}

    def fake_train(ecgs, config, progress=True, exclude=()):
        seen.update(config)
        m = D.UNet1D(base=2, depth=1, kernel=3).eval()
        m.history, m.fs = [{"epoch": 1, "loss": 1.0, "seconds": 0.0}], config["fs"]
        return m

    monkeypatch.delenv("ECGKIT_DELINEATION", raising=False)
    monkeypatch.setattr(D, "train_on", fake_train)
    monkeypatch.setattr(D, "held_out_scores", lambda model: pd.DataFrame({"sensitivity": [1.0]}, index=["qrs_on"]))
    assert D.main(["train", "--set", "augment=false", "--set", "epochs=3", "--set", "lr=0.001",
                   "--out", str(tmp_path / "m")]) == 0
    assert seen["augment"] is False and seen["epochs"] == 3 and seen["lr"] == 0.001
    with pytest.raises(TypeError, match="unknown setting"):
        D.main(["train", "--set", "epochz=3", "--out", str(tmp_path / "n")])


def test_neurokit_comparison_cached(tmp_cache, capsys):
    """compare_with_neurokit(cache=True): the scores and seconds measured once are read back."""
    model = D.load_delineator("quick", progress=False)
    first = D.compare_with_neurokit(2, 1000, model, cache=True)
    again = D.compare_with_neurokit(2, 1000, model, cache=True)
    assert "computed and cached" in capsys.readouterr().out
    assert again["unet_seconds"] == first["unet_seconds"] and again["measured_at"] == first["measured_at"]
    for name in ("unet", "neurokit"):
        pd.testing.assert_frame_equal(again["scores"][name], first["scores"][name], check_dtype=False,
                                      check_names=False)
