"""Training stages (cached, seeded), the ECG-only deployed model, AUROC, gap closed, explanations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ecgkit.clinical.model import ECGClassifier, MultimodalClassifier
from ecgkit.clinical.evaluate import (ablation_table, auroc, auroc_table, claims_table, explanations, gap_closed,
                                      lab_head_auroc)
from ecgkit.clinical.train import TransferConfig, TransferData, run_transfer


def _data(n=48, flags=True, seed=0) -> TransferData:
    rng = np.random.default_rng(seed)
    ids = pd.Index(np.arange(1, n + 1), name="ecg_id")
    y = pd.DataFrame((rng.random((n, 3)) < 0.4).astype(float), index=ids, columns=["NORM", "MI", "HYP"])
    ecg = rng.normal(size=(n, 12, 200)).astype(np.float32)
    ecg[:, 0, :] += 2 * y["MI"].to_numpy()[:, None]            # some signal to learn
    values = rng.normal(size=(n, 3)).astype(np.float32)
    missing = (rng.random((n, 3)) < 0.3).astype(np.float32)
    values[missing.astype(bool)] = 0
    clinical = pd.DataFrame({"potassium": rng.normal(4.3, 0.8, n), "troponin": rng.lognormal(2, 1, n),
                             "age": rng.normal(60, 10, n)}, index=ids)
    fl = pd.DataFrame({"potassium_high": (clinical["potassium"] > 5.1).astype(float),
                       "troponin_high": (clinical["troponin"] > 14).astype(float)}, index=ids)
    fl.iloc[::7, 0] = np.nan
    if not flags:
        fl = fl.iloc[:, :0]
    parts = {"train": np.arange(0, 32), "val": np.arange(32, 40), "test": np.arange(40, n)}
    return TransferData(ecg=ecg, y=y, values=values, missing=missing, flags=fl, clinical=clinical,
                        parts=parts, fs=100.0, source="test", features=list(clinical.columns))


CFG = TransferConfig(batch_size=8, pretrain_steps=2, finetune_steps=2, joint_steps=2, crop_seconds=1.0,
                     tab_dim=16, tab_depth=1, proj_dim=16)


def test_run_transfer_trains_caches_and_deploys_ecg_only(tmp_cache):
    data = _data()
    run = run_transfer(data, CFG, progress=False)
    assert {"signal-only", "ours", "multimodal", "no stage 1", "no stage 3", "ECG-only stage 1"} <= set(run.models)
    assert not any(run.loaded.values())
    assert isinstance(run.models["ours"], ECGClassifier) and run.models["ours"].lab_heads.out_features == 2
    assert run.models["signal-only"].lab_heads is None and run.models["ECG-only stage 1"].lab_heads is not None
    # the multimodal reference starts from both stage-1 encoders (its key chains to stage 1's)
    assert run.keys["multimodal"] != run.keys["stage 1: joint embedding"]
    assert isinstance(run.models["multimodal"], MultimodalClassifier)
    assert len(set(run.keys.values())) == len(run.keys)            # every stage has its own weights
    assert len(list((tmp_cache / "clinical" / "weights").glob("*.safetensors"))) == len(run.keys)
    diag, labs = run.predict("ours")
    assert diag.shape == (8, 3) and list(labs.columns) == ["potassium_high", "troponin_high"]
    assert ((diag >= 0) & (diag <= 1)).all().all()
    # changing the clinical record changes nothing for the deployed model, but the multimodal one
    mm_before = run.predict("multimodal")[0]
    data.values[:] = 5.0
    data.missing[:] = 0.0
    data.clinical.loc[:, :] = 0.0
    pd.testing.assert_frame_equal(run.predict("ours")[0], diag)
    pd.testing.assert_frame_equal(run.predict("ours")[1], labs)
    assert not np.allclose(run.predict("multimodal")[0].to_numpy(), mm_before.to_numpy())
    # a rerun on the same inputs loads every stage and predicts the same
    again = run_transfer(_data(), CFG, progress=False)
    assert all(again.loaded.values())
    pd.testing.assert_frame_equal(again.predict("ours")[0], diag)
    # other inputs (seed) train anew
    other = run_transfer(_data(), TransferConfig(**{**CFG.__dict__, "seed": 1}), progress=False)
    assert not any(other.loaded.values())


def test_without_labs_ours_is_stage_1_then_2(tmp_cache):
    run = run_transfer(_data(flags=False), CFG, progress=False)
    assert run.models["ours"] is run.models["no stage 3"]
    assert run.models["no stage 1"] is run.models["signal-only"]
    assert run.predict("ours")[1].shape[1] == 0


def test_auroc_matches_sklearn_with_ties_and_is_nan_without_both_classes():
    rng = np.random.default_rng(0)
    y = (rng.random((50, 4)) < 0.3).astype(float)
    p = np.round(rng.random((50, 4)), 1)                       # many ties
    ours = auroc(y, p)
    for j in range(4):
        assert ours[j] == pytest.approx(roc_auc_score(y[:, j], p[:, j]))
    y[:, 2] = 0
    assert np.isnan(auroc(y, p)[2])
    stacked = auroc(np.stack([y, y]), np.stack([p, 1 - p]))   # vectorised over a leading axis
    assert stacked.shape == (2, 4) and stacked[1, 0] == pytest.approx(1 - ours[0])


def _preds(y, noise, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(y.to_numpy() + noise * rng.normal(size=y.shape), index=y.index, columns=y.columns)


def test_gap_closed_estimates_and_intervals():
    rng = np.random.default_rng(1)
    y = pd.DataFrame((rng.random((300, 3)) < 0.3).astype(float), columns=list("ABC"))
    signal, multi = _preds(y, 1.5, 2), _preds(y, 0.3, 3)
    half = (signal + multi) / 2
    same = gap_closed(y, signal, signal, multi, n_boot=200)
    assert same.at["gap closed", "estimate"] == pytest.approx(0.0)
    full = gap_closed(y, signal, multi, multi, n_boot=200)
    assert full.at["gap closed", "estimate"] == pytest.approx(1.0)
    assert full.at["gap closed", "low"] == pytest.approx(1.0) and full.at["gap closed", "n_valid"] == 200
    mid = gap_closed(y, signal, half, multi, n_boot=200)
    g = mid["estimate"]
    assert g["gap closed"] == pytest.approx(g["ours − signal-only"] / g["multimodal − signal-only"])
    assert mid.at["gap closed", "low"] < g["gap closed"] < mid.at["gap closed", "high"]
    assert (mid["low"] <= mid["estimate"] + 1e-12).all() and (mid["estimate"] <= mid["high"] + 1e-12).all()


def test_gap_closed_near_zero_denominator_is_undefined_not_huge():
    rng = np.random.default_rng(1)
    y = pd.DataFrame((rng.random((200, 2)) < 0.3).astype(float), columns=list("AB"))
    signal = _preds(y, 1.0, 2)
    out = gap_closed(y, signal, _preds(y, 0.5, 4), signal, n_boot=100)
    assert out.at["multimodal − signal-only", "estimate"] == 0.0
    assert np.isnan(out.at["gap closed", "estimate"]) and out.at["gap closed", "n_valid"] == 0


def test_tables_and_explanations():
    ids = pd.Index([11, 12, 13, 14], name="ecg_id")
    y = pd.DataFrame({"NORM": [1, 0, 0, 0], "MI": [0, 1, 1, 0], "HYP": [0, 0, 1, 1]}, index=ids, dtype=float)
    diag = pd.DataFrame({"NORM": [.9, .1, .2, .3], "MI": [.1, .8, .95, .2], "HYP": [.1, .2, .3, .7]}, index=ids)
    table = auroc_table(y, {"m": diag})
    assert table.at["MI", "m"] == 1.0 and table.at["macro", "m"] == pytest.approx(1.0)
    assert table.at["MI", "positives"] == 2
    labs = pd.DataFrame({"troponin_high": [.1, .6, .9, .2], "potassium_high": [.2, .7, .4, .1],
                         "nt_probnp_high": [.1, .2, .3, .45]}, index=ids)
    clinical = pd.DataFrame({"troponin": [5, 80, 900, 7], "potassium": [4, 6, 4.2, np.nan],
                             "nt_probnp": [50, 60, 70, 900]}, index=ids)
    ex = explanations(diag, labs, y, clinical, base_rates=pd.Series({"troponin_high": 0.2}))
    assert list(ex.index.get_level_values("diagnosis")) == ["MI", "HYP"]
    mi = ex.loc[("MI", 13)]                                    # the surest MI carrier
    assert mi["the ECG suggests (probability)"] == "troponin elevated 0.90 (base rate 0.20)"
    assert mi["measured"] == "troponin 900 ng/L (high; ref < 14)" and mi["also labelled"] == "HYP"
    hyp = ex.loc[("HYP", 14)]
    assert hyp["the ECG suggests (probability)"].startswith("none ≥ 0.5 (most likely: NT-proBNP elevated 0.45)")
    flags = pd.DataFrame({"troponin_high": [0, 1, 1, np.nan]}, index=ids)
    heads = lab_head_auroc(flags, {"ours": labs})
    assert heads.at["troponin_high", "ours"] == 1.0 and heads.at["troponin_high", "measured"] == 3
    assert heads.at["troponin_high", "low"] == 1.0 and heads.at["troponin_high", "high"] == 1.0


def test_ablation_table_and_claims():
    rng = np.random.default_rng(5)
    y = pd.DataFrame((rng.random((300, 3)) < 0.3).astype(float), columns=list("ABC"))
    signal, multi = _preds(y, 1.5, 2), _preds(y, 0.3, 3)
    ours = (signal + multi) / 2
    design = {"ours": {"stage 1": "clinical", "stage 3 heads": "yes"}, "signal-only": {"stage 1": "none", "stage 3 heads": "no"}}
    table = ablation_table(y, {"ours": ours, "signal-only": signal}, design, n_boot=200)
    assert table.at["ours", "Δ vs ours"] == 0.0 and table.at["signal-only", "Δ vs ours"] < 0
    assert table.at["signal-only", "Δ high"] < 0 and table.at["ours", "stage 1"] == "clinical"
    gap = gap_closed(y, signal, ours, multi, n_boot=200)
    claims = claims_table(gap)
    assert list(claims["verdict"]) == ["agrees", "agrees"]
    above = claims_table(gap_closed(y, signal, _preds(y, 0.1, 7), multi, n_boot=200))   # ours above multimodal
    assert above.at["closes the gap", "verdict"].startswith("agrees, and more")
    worse = claims_table(gap_closed(y, multi, signal, multi, n_boot=200))   # "ours" below signal-only, no gap
    assert worse.at["beats signal-only", "verdict"] == "disagrees"
    assert worse.at["closes the gap", "verdict"].startswith("cannot be assessed")
    small = claims_table(gap_closed(y, signal, _preds(y, 1.45, 2), multi, n_boot=200))
    assert small.at["closes the gap", "verdict"].startswith(("disagrees", "same direction"))
