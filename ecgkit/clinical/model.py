"""Models of chapter 09: a mask-aware tabular encoder, the joint embedding, the classifiers.

**Tabular encoder** (:class:`TabularEncoder`). Clinical records are mostly incomplete, so a
missing value is an input of its own, never a number: each feature *i* becomes a token
``x_i · w_i + b_i`` when measured and a learned mask token ``m_i`` when not (selected with
``torch.where`` on the missing mask after the value was zeroed, so a NaN can neither reach the
output nor a gradient, and whatever sits under the mask cannot change the output). The tokens and
a [CLS] token go through a small pre-norm transformer; the [CLS] output is the record's embedding.
Values are standardised by :class:`TabularScaler` (fitted on the training part; log first for the
right-skewed troponin, NT-proBNP and creatinine).

**Joint-embedding objective: VICReg** (:func:`vicreg_loss`; Bardes, Ponce & LeCun 2022), not
contrastive InfoNCE, because

1. clinical records are highly redundant: most patients have normal labs, and patients have
   several ECGs with near-identical records. InfoNCE treats every other record in the batch as
   a negative and so pushes apart pairs that are clinically the same (false negatives); VICReg
   has no negatives: it pulls each ECG embedding to its own record's embedding (invariance) and
   keeps both embeddings informative with a per-dimension variance hinge and a decorrelation
   (covariance) penalty;
2. it works with the small batches a CPU affords (InfoNCE's signal grows with the number of
   negatives per batch);
3. the two branches need not be alike (a ConvNeXt on signals, a transformer on 15 numbers):
   VICReg regularises each branch's embedding on its own.

**Classifiers.** :class:`ECGClassifier` is what is deployed: ``forward(ecg)`` takes the signal
and nothing else and returns diagnosis logits and, when trained with stage 3, the logits of the
lab-abnormality flags. :class:`MultimodalClassifier` (the upper reference) takes the ECG and the
clinical record.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOG_FEATURES", "TabularScaler", "TabularEncoder", "Projector", "JointEmbedding", "ECGViews",
           "vicreg_loss", "Prediction", "ECGClassifier", "MultimodalClassifier", "masked_bce"]

#: right-skewed values standardised on a log scale
LOG_FEATURES = ("troponin", "nt_probnp", "creatinine")


class TabularScaler:
    """Per-feature standardisation fitted on training rows, NaN-aware.

    ``transform`` returns ``(values, missing)``: float32 arrays, standardised values with 0 where
    missing, and 1.0 where missing. A feature never measured in training gets mean 0, sd 1."""

    def __init__(self, log_features=LOG_FEATURES):
        self.log_features = tuple(log_features)
        self.features: list[str] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def _raw(self, values: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.features if c not in values.columns]
        if missing:
            raise KeyError(f"the clinical table lacks columns {missing} the scaler was fitted on")
        x = values[self.features].to_numpy(dtype=float, na_value=np.nan).copy()
        for j, c in enumerate(self.features):
            if c in self.log_features:
                with np.errstate(invalid="ignore", divide="ignore"):
                    x[:, j] = np.log1p(np.where(x[:, j] >= 0, x[:, j], np.nan))
        x[~np.isfinite(x)] = np.nan
        return x

    def fit(self, values: pd.DataFrame) -> "TabularScaler":
        self.features = list(values.columns)
        x = self._raw(values)
        seen = np.isfinite(x).sum(axis=0)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN columns
            mean = np.nanmean(x, axis=0)
            std = np.nanstd(x, axis=0)
        self.mean = np.where(seen > 0, mean, 0.0)
        self.std = np.where((seen > 1) & (std > 1e-8), std, 1.0)
        return self

    def transform(self, values: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None:
            raise RuntimeError("TabularScaler.fit first")
        x = self._raw(values)
        missing = ~np.isfinite(x)
        z = np.where(missing, 0.0, (np.nan_to_num(x) - self.mean) / self.std)
        return z.astype(np.float32), missing.astype(np.float32)

    def to_dict(self) -> dict:
        return {"features": self.features, "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std], "log_features": list(self.log_features)}


class TabularEncoder(nn.Module):
    """Mask-aware encoder of a clinical record: per-feature tokens (value embedding or mask
    token), a [CLS] token, a small transformer. ``forward(values, missing) -> (B, dim)``."""

    def __init__(self, n_features: int, dim: int = 64, depth: int = 2, heads: int = 4,
                 dropout: float = 0.1):
        super().__init__()
        self.n_features, self.dim = n_features, dim
        self.value_weight = nn.Parameter(torch.randn(n_features, dim) * 0.02)
        self.feature_bias = nn.Parameter(torch.randn(n_features, dim) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(n_features, dim) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.transformer = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def tokens(self, values: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        if values.shape != missing.shape or values.shape[-1] != self.n_features:
            raise ValueError(f"expected values and missing of shape (batch, {self.n_features}), "
                             f"got {tuple(values.shape)} and {tuple(missing.shape)}")
        missing = missing.bool() | ~torch.isfinite(values)          # a NaN is missing too
        values = torch.where(missing, torch.zeros_like(values), values)
        observed = values.unsqueeze(-1) * self.value_weight + self.feature_bias
        return torch.where(missing.unsqueeze(-1), self.mask_token.expand_as(observed), observed)

    def forward(self, values: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        tok = self.tokens(values, missing)
        tok = torch.cat([self.cls.expand(tok.shape[0], -1, -1), tok], dim=1)
        return self.norm(self.transformer(tok)[:, 0])


class Projector(nn.Sequential):
    """VICReg expander: Linear-BN-ReLU-Linear."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__(nn.Linear(dim_in, dim_out), nn.BatchNorm1d(dim_out), nn.ReLU(inplace=True),
                         nn.Linear(dim_out, dim_out))


def vicreg_loss(za: torch.Tensor, zb: torch.Tensor, sim: float = 25.0, var: float = 25.0,
                cov: float = 1.0, eps: float = 1e-4) -> tuple[torch.Tensor, dict]:
    """VICReg (Bardes et al. 2022): invariance (MSE between the pair) + variance hinge (sd ≥ 1
    per dimension) + covariance (off-diagonal squared covariances / dim), for each branch."""
    n, d = za.shape
    if n < 2:
        raise ValueError("VICReg needs batches of at least 2")
    inv = F.mse_loss(za, zb)
    za, zb = za - za.mean(0), zb - zb.mean(0)
    std_a, std_b = torch.sqrt(za.var(0) + eps), torch.sqrt(zb.var(0) + eps)
    variance = (F.relu(1 - std_a).mean() + F.relu(1 - std_b).mean()) / 2
    off = ~torch.eye(d, dtype=torch.bool, device=za.device)
    cov_a, cov_b = (za.T @ za) / (n - 1), (zb.T @ zb) / (n - 1)
    covariance = cov_a[off].pow(2).sum() / d + cov_b[off].pow(2).sum() / d
    loss = sim * inv + var * variance + cov * covariance
    return loss, {"invariance": inv.item(), "variance": variance.item(), "covariance": covariance.item()}


class JointEmbedding(nn.Module):
    """Stage 1: ECG encoder and tabular encoder, each with a VICReg expander."""

    def __init__(self, ecg_encoder: nn.Module, tab_encoder: TabularEncoder, proj_dim: int = 128):
        super().__init__()
        self.ecg_encoder, self.tab_encoder = ecg_encoder, tab_encoder
        self.ecg_projector = Projector(ecg_encoder.dim, proj_dim)
        self.tab_projector = Projector(tab_encoder.dim, proj_dim)

    def forward(self, ecg, values, missing):
        return (self.ecg_projector(self.ecg_encoder(ecg)),
                self.tab_projector(self.tab_encoder(values, missing)))


class ECGViews(nn.Module):
    """The control for stage 1: VICReg between two crops of the same ECG (no clinical record)."""

    def __init__(self, encoder: nn.Module, proj_dim: int = 128):
        super().__init__()
        self.encoder = encoder
        self.projector = Projector(encoder.dim, proj_dim)

    def forward(self, view_a, view_b):
        return self.projector(self.encoder(view_a)), self.projector(self.encoder(view_b))


class Prediction(NamedTuple):
    diagnosis: torch.Tensor      # (B, n_labels) logits
    labs: torch.Tensor           # (B, n_flags) logits; (B, 0) without lab heads


class ECGClassifier(nn.Module):
    """The deployed model: ECG in, diagnosis (and lab-abnormality) logits out. No clinical input."""

    def __init__(self, encoder: nn.Module, n_labels: int, n_flags: int = 0, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.diagnosis_head = nn.Linear(encoder.dim, n_labels)
        self.lab_heads = nn.Linear(encoder.dim, n_flags) if n_flags else None

    def embed(self, ecg: torch.Tensor) -> torch.Tensor:
        return self.encoder(ecg)

    def forward(self, ecg: torch.Tensor) -> Prediction:
        h = self.dropout(self.embed(ecg))
        labs = self.lab_heads(h) if self.lab_heads is not None else h.new_zeros((h.shape[0], 0))
        return Prediction(self.diagnosis_head(h), labs)


class MultimodalClassifier(nn.Module):
    """The upper reference: ECG and clinical record at inference, embeddings concatenated."""

    def __init__(self, ecg_encoder: nn.Module, tab_encoder: TabularEncoder, n_labels: int,
                 dropout: float = 0.1):
        super().__init__()
        self.ecg_encoder, self.tab_encoder = ecg_encoder, tab_encoder
        dim = ecg_encoder.dim + tab_encoder.dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, dim // 2), nn.GELU(),
                                  nn.Linear(dim // 2, n_labels))

    def forward(self, ecg, values, missing) -> Prediction:
        h = torch.cat([self.ecg_encoder(ecg), self.tab_encoder(values, missing)], dim=1)
        logits = self.head(h)
        return Prediction(logits, logits.new_zeros((logits.shape[0], 0)))


def masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the entries whose target is not NaN (0 when none are)."""
    known = torch.isfinite(target)
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], target[known])
