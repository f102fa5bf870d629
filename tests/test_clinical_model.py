"""The tabular encoder handles missing values; the deployed model takes the ECG and nothing else."""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
import torch

from ecgkit.clinical.model import (ECGClassifier, JointEmbedding, MultimodalClassifier, TabularEncoder,
                                   TabularScaler, masked_bce, vicreg_loss)


class TinyECGEncoder(torch.nn.Module):
    """A stand-in ECG encoder (same interface as ecgkit.nn.ConvNeXt1D) to keep tests fast."""

    def __init__(self, dim=8):
        super().__init__()
        self.dim = dim
        self.conv = torch.nn.Conv1d(12, dim, 5, stride=5)

    def forward(self, x):
        return self.conv(x).mean(-1)


def _encoder(n=5, seed=0):
    torch.manual_seed(seed)
    return TabularEncoder(n, dim=16, depth=2, heads=4).eval()


def test_all_missing_row_works_and_nan_never_propagates():
    enc = _encoder()
    values = torch.tensor([[np.nan] * 5, [0.5, np.nan, -1.0, np.nan, 2.0], [0.1, 0.2, 0.3, 0.4, 0.5]],
                          dtype=torch.float32)
    missing = torch.isnan(values).float()
    out = enc(values, missing)
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    # a NaN the mask does not flag is treated as missing, not propagated
    out2 = enc(values, torch.zeros_like(missing))
    torch.testing.assert_close(out, out2)
    # gradients stay finite too (training on rows with NaNs)
    enc.train()
    values.requires_grad_(False)
    loss = enc(values, missing).pow(2).sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_masked_values_do_not_change_the_output():
    enc = _encoder()
    rng = np.random.default_rng(0)
    values = torch.tensor(rng.normal(size=(4, 5)), dtype=torch.float32)
    missing = torch.tensor(rng.random((4, 5)) < 0.5, dtype=torch.float32)
    missing[0] = 1.0                                   # one row entirely missing
    base = enc(values, missing)
    changed = values.clone()
    changed[missing.bool()] = torch.tensor(rng.normal(size=int(missing.sum())) * 100, dtype=torch.float32)
    torch.testing.assert_close(enc(changed, missing), base)
    changed[missing.bool()] = float("nan")
    torch.testing.assert_close(enc(changed, missing), base)
    # whereas an observed value does change it (the test can fail)
    observed = (~missing.bool()).nonzero()[0]
    moved = values.clone()
    moved[observed[0], observed[1]] += 3.0
    assert not torch.allclose(enc(moved, missing)[observed[0]], base[observed[0]])


def test_missing_differs_from_a_measured_zero():
    enc = _encoder()
    zeros = torch.zeros(1, 5)
    assert not torch.allclose(enc(zeros, torch.zeros(1, 5)), enc(zeros, torch.ones(1, 5)))


def test_shape_errors_are_clear():
    enc = _encoder()
    with pytest.raises(ValueError, match=r"shape \(batch, 5\)"):
        enc(torch.zeros(2, 4), torch.zeros(2, 4))


def test_scaler_standardises_on_training_rows_and_marks_missing():
    train = pd.DataFrame({"potassium": [4.0, 5.0, np.nan], "troponin": [5.0, 50.0, 500.0],
                          "never": [np.nan] * 3})
    scaler = TabularScaler().fit(train)
    values, missing = scaler.transform(pd.DataFrame({"potassium": [4.5, np.nan], "troponin": [50.0, "x"],
                                                     "never": [np.nan, 1.0]}).apply(pd.to_numeric, errors="coerce"))
    assert values.dtype == np.float32 and np.isfinite(values).all()
    np.testing.assert_array_equal(missing, [[0, 0, 1], [1, 1, 0]])
    assert values[0, 0] == pytest.approx(0.0)                     # the training mean of potassium
    assert values[0, 1] == pytest.approx(0.0, abs=0.25)           # log scale: 50 is the middle of 5..500
    assert values[1, 0] == 0.0 and values[1, 1] == 0.0
    with pytest.raises(KeyError, match="lacks columns"):
        scaler.transform(pd.DataFrame({"potassium": [4.0]}))


def test_deployed_model_takes_the_ecg_only():
    params = list(inspect.signature(ECGClassifier.forward).parameters)
    assert params == ["self", "ecg"]
    torch.manual_seed(0)
    model = ECGClassifier(TinyECGEncoder(), n_labels=5, n_flags=3).eval()
    ecg = torch.randn(2, 12, 100)
    out = model(ecg)
    assert out.diagnosis.shape == (2, 5) and out.labs.shape == (2, 3)
    with pytest.raises(TypeError):
        model(ecg, torch.zeros(2, 4), torch.zeros(2, 4))          # there is nowhere to put a record
    # the multimodal reference does need (and use) the clinical record
    mm = MultimodalClassifier(TinyECGEncoder(), TabularEncoder(4, dim=8, heads=2), n_labels=5).eval()
    a = mm(ecg, torch.zeros(2, 4), torch.zeros(2, 4)).diagnosis
    b = mm(ecg, torch.full((2, 4), 3.0), torch.zeros(2, 4)).diagnosis
    assert not torch.allclose(a, b)


def test_vicreg_is_small_for_aligned_spread_embeddings_and_large_for_collapse():
    torch.manual_seed(0)
    z = torch.randn(64, 8) * 2
    aligned, parts = vicreg_loss(z, z)
    assert parts["invariance"] == 0.0 and parts["variance"] == 0.0
    collapsed, parts_c = vicreg_loss(torch.zeros(64, 8), torch.zeros(64, 8))
    assert parts_c["variance"] == pytest.approx(1.0, abs=0.02) and collapsed > aligned
    with pytest.raises(ValueError):
        vicreg_loss(z[:1], z[:1])
    joint = JointEmbedding(TinyECGEncoder(), TabularEncoder(4, dim=8, heads=2), proj_dim=6)
    za, zb = joint(torch.randn(4, 12, 100), torch.zeros(4, 4), torch.ones(4, 4))
    assert za.shape == zb.shape == (4, 6)


def test_masked_bce_ignores_unmeasured_targets():
    logits = torch.tensor([[0.0, 5.0], [0.0, -5.0]])
    target = torch.tensor([[1.0, float("nan")], [0.0, float("nan")]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(2), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(masked_bce(logits, target), expected)
    assert float(masked_bce(logits, torch.full((2, 2), float("nan")))) == 0.0
