"""Three-stage training, the three models compared on one split, and the ablations.

Stages (chapter 09):

1. **joint-embedding pretraining** (:func:`pretrain`): the ECG encoder and the tabular encoder
   of the clinical record, aligned with VICReg (:func:`ecgkit.clinical.model.vicreg_loss`) on the
   training part;
2. **diagnosis fine-tuning**: the ECG encoder + a multi-label diagnosis head (binary
   cross-entropy);
3. **joint training** of the diagnosis head and the lab-abnormality heads (binary flags from
   the written reference ranges, missing values masked out of the loss), from the stage-2 model.

Models, all on the same split and the same number of supervised steps:

==================  =========================================================  ======================
name                training                                                   input at inference
==================  =========================================================  ======================
signal-only         stage 2 from scratch, continued diagnosis-only             ECG
ours                stage 1 → 2 → 3                                            ECG
multimodal          stage 1's two encoders, fused, trained on the diagnoses     ECG + clinical record
no stage 1          stage 2 → 3 from scratch (ablation)                        ECG
no stage 3          stage 1 → 2, continued diagnosis-only (ablation)           ECG
ECG-only stage 1    stage 1 on two crops of the ECG (no record) → 2 → 3        ECG
==================  =========================================================  ======================

"Continued diagnosis-only" runs stage 2 for as many more steps as stage 3 has, with a fresh
optimiser exactly as stage 3 does, so every ECG-only model sees the same number of updates and
differs only in its initialisation and its heads. The multimodal reference starts from both
stage-1 encoders, so it has everything ours has plus the record at inference: the gap between
them is the worth of the record *at inference*. The ECG-only control spends stage 1's steps on
VICReg between two crops of the same ECG: it tells a gain from the clinical record apart from a
gain from pretraining as such. Models share prefixes: signal-only and no-stage-1 branch from one
stage-2 checkpoint, ours and no-stage-3 from another. Without laboratory values (real PTB-XL:
biometrics only) there are no lab heads: ours is stage 1 → 2 and the two ablations coincide with
ours and signal-only.

Every stage's weights are cached as safetensors under ``cache_dir("clinical", "weights")``,
keyed by a hash of the data, the configuration, the stage and its parent's key; a rerun loads
them. Seeds are fixed per stage.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..cache import key as cache_key
from ..config import cache_dir
from ..config import ProfileSettings
from ..hashing import content_sha256
from .model import (ECGClassifier, ECGViews, JointEmbedding, MultimodalClassifier, TabularEncoder,
                    TabularScaler, masked_bce, vicreg_loss)
from .records import ClinicalRecords

__all__ = ["TransferConfig", "TransferData", "prepare_transfer_data", "TransferRun", "run_transfer",
           "MODELS", "ABLATIONS", "ablation_design"]

MODELS = ("signal-only", "ours", "multimodal")
ABLATIONS = ("ours", "no stage 1", "no stage 3", "ECG-only stage 1", "signal-only")


def ablation_design(has_labs: bool = True) -> dict:
    """What each ECG-only model was trained with (without labs there are no stage-3 heads)."""
    heads = "yes" if has_labs else "no"
    return {"ours": {"stage 1": "ECG ↔ clinical record", "stage 3 heads": heads},
            "no stage 1": {"stage 1": "none", "stage 3 heads": heads},
            "no stage 3": {"stage 1": "ECG ↔ clinical record", "stage 3 heads": "no"},
            "ECG-only stage 1": {"stage 1": "ECG ↔ ECG (two crops; control)", "stage 3 heads": heads},
            "signal-only": {"stage 1": "none", "stage 3 heads": "no"}}




@dataclass(frozen=True)
class TransferConfig(ProfileSettings):
    """Training settings; :meth:`for_profile` gives the quick (CPU minutes) and full settings."""

    encoder: str = "small"          # ESI ConvNeXt1D variant
    batch_size: int = 32
    pretrain_steps: int = 200       # stage 1
    finetune_steps: int = 100       # stage 2
    joint_steps: int = 100          # stage 3 (and the diagnosis-only continuation)
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.1             # share of a stage's steps with linear warm-up, then cosine
    crop_seconds: float | None = 5.0   # random crop in training; inference sees the whole record
    tab_dim: int = 64
    tab_depth: int = 2
    proj_dim: int = 128
    lab_weight: float = 1.0         # weight of the lab-abnormality loss in stage 3
    feature_dropout: float = 0.1    # extra random masking of measured values in training
    ecg_only_control: bool = True   # also train the control: stage 1 on two crops of the ECG, no record
    seed: int = 0

    PROFILES = {"full": dict(encoder="tiny", batch_size=128, pretrain_steps=4000, finetune_steps=2000,
                             joint_steps=2000, lr=5e-4, crop_seconds=5.0, tab_dim=128, tab_depth=3,
                             proj_dim=512)}


@dataclass
class TransferData:
    """Arrays aligned by record: preprocessed ECGs, diagnoses, clinical inputs, lab flags."""

    ecg: np.ndarray                  # (N, 12, T) float32, band-passed, lead-standardised
    y: pd.DataFrame                  # (N, C) diagnoses, 0/1
    values: np.ndarray               # (N, F) standardised clinical values, 0 where missing
    missing: np.ndarray              # (N, F) 1.0 where missing
    flags: pd.DataFrame              # (N, K) lab-abnormality flags, NaN where unmeasured
    clinical: pd.DataFrame           # the raw clinical values (for explanations)
    parts: dict                      # part -> row positions
    fs: float
    source: str
    features: list = field(default_factory=list)
    dropped: dict = field(default_factory=dict)

    @property
    def ids(self) -> pd.Index:
        return self.y.index

    @property
    def has_labs(self) -> bool:
        return self.flags.shape[1] > 0

    def fingerprint(self) -> str:
        """sha256 of the arrays, the parts and the column names (part of the cache keys)."""
        return content_sha256(self.ecg, self.y.to_numpy(float), self.values, self.missing,
                              self.flags.to_numpy(float),
                              {k: [int(i) for i in v] for k, v in self.parts.items()},
                              [list(self.y.columns), list(self.flags.columns), self.features])


def prepare_transfer_data(dataset, records: ClinicalRecords, view: str = "superdiagnostic",
                          min_flag_positives: int = 5) -> TransferData:
    """Labels of ``view`` (records without one dropped and counted), ECGs band-passed 0.5–40 Hz
    and standardised per lead on the training part, the clinical record standardised on the
    training part, and the lab flags with at least ``min_flag_positives`` positive (and as many
    negative) training records (the others are dropped and listed in ``dropped``)."""
    from ..data.preprocess import LeadStandardizer, ecg_bandpass

    if not records.values.index.equals(dataset.meta.index):
        raise ValueError("the clinical records are not aligned with the dataset (index differs)")
    labels = dataset.label_view(view)
    keep = ~labels.y.index.isin(labels.unlabelled)
    dropped = {f"records without a {view} label": int((~keep).sum())}
    pos = np.flatnonzero(keep)
    part_of = np.full(len(dataset), "", dtype=object)
    for part in ("train", "val", "test"):
        part_of[dataset.part(part)] = part
    parts = {p: np.flatnonzero(part_of[pos] == p) for p in ("train", "val", "test")}
    if len(parts["train"]) < 2:
        raise ValueError(f"{dataset.name}: {len(parts['train'])} labelled training records; need at least 2")
    signals = np.asarray(dataset.signals[pos], dtype=np.float32)
    signals = ecg_bandpass(signals, dataset.fs, 0.5, min(40.0, 0.45 * dataset.fs))
    scaler_ecg = LeadStandardizer().fit(signals[parts["train"]])
    ecg = np.ascontiguousarray(scaler_ecg.transform(signals).transpose(0, 2, 1), dtype=np.float32)
    clinical = records.values.iloc[pos]
    train_clin = clinical.iloc[parts["train"]]
    features = [c for c in clinical.columns if train_clin[c].notna().any()]
    dropped.update({f"feature {c}: never measured in training": 1 for c in clinical.columns if c not in features})
    scaler = TabularScaler().fit(train_clin[features])
    values, missing = scaler.transform(clinical[features])
    flags = records.flags().iloc[pos]
    good = []
    for c in flags.columns:
        train_flag = flags[c].to_numpy()[parts["train"]]
        n_pos = int(np.nansum(train_flag))
        n_neg = int(np.sum(train_flag == 0))
        if n_pos >= min_flag_positives and n_neg >= min_flag_positives:
            good.append(c)
        elif flags[c].notna().any():
            dropped[f"flag {c}: {n_pos} positive training records"] = 1
    y = labels.y.iloc[pos].astype(float)
    return TransferData(ecg=ecg, y=y, values=values, missing=missing, flags=flags[good].astype(float),
                        clinical=clinical, parts=parts, fs=float(dataset.fs),
                        source=records.source, features=features, dropped=dropped)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------

def _key(*parts) -> str:
    return cache_key("clinical", list(parts))


def _seed_for(cfg: TransferConfig, name: str) -> int:
    return int(hashlib.sha256(f"{cfg.seed}|{name}".encode()).hexdigest()[:8], 16)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _crop(x: np.ndarray, length: int | None, rng: np.random.Generator) -> np.ndarray:
    if length is None or length >= x.shape[-1]:
        return x
    starts = rng.integers(0, x.shape[-1] - length + 1, size=x.shape[0])
    idx = starts[:, None] + np.arange(length)[None, :]
    return np.take_along_axis(x, idx[:, None, :].repeat(x.shape[1], axis=1), axis=2)


class _Batches:
    """Shuffled training batches (epoch by epoch), random crops, extra feature masking."""

    def __init__(self, data: TransferData, cfg: TransferConfig, seed: int, two_views: bool = False):
        self.data, self.cfg, self.two_views = data, cfg, two_views
        self.rng = np.random.default_rng(seed)
        self.train = data.parts["train"]
        self.order: list[int] = []
        self.length = int(round(cfg.crop_seconds * data.fs)) if cfg.crop_seconds else None

    def __call__(self, device) -> dict:
        bs = min(self.cfg.batch_size, len(self.train))
        if len(self.order) < bs:
            self.order = list(self.rng.permutation(self.train))
        idx, self.order = np.sort(self.order[:bs]), self.order[bs:]
        d = self.data
        missing = d.missing[idx].copy()
        if self.cfg.feature_dropout:
            missing = np.maximum(missing, (self.rng.random(missing.shape) < self.cfg.feature_dropout))
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)
        batch = {"ecg": t(_crop(d.ecg[idx], self.length, self.rng)), "y": t(d.y.to_numpy()[idx]),
                 "values": t(d.values[idx]), "missing": t(missing), "flags": t(d.flags.to_numpy()[idx])}
        if self.two_views:     # a second, independent crop of the same records
            batch["ecg2"] = t(_crop(d.ecg[idx], self.length, self.rng))
        return batch


def _lr(step: int, steps: int, cfg: TransferConfig) -> float:
    warm = max(1, int(cfg.warmup * steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def _train(model, loss_fn, data, cfg, steps, name, progress) -> list[float]:
    torch.manual_seed(_seed_for(cfg, name))
    device = _device()
    model.to(device).train()
    batches = _Batches(data, cfg, _seed_for(cfg, name + "|batches"), two_views=loss_fn is _vicreg_views)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    bar = tqdm(range(steps), desc=name, disable=not progress, mininterval=2.0)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, cfg)
        loss = loss_fn(model, batches(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        history.append(loss.item())
        bar.set_postfix(loss=f"{history[-1]:.3f}", refresh=False)
    model.eval()
    return history


def _cached_stage(model, key: str, train_fn, progress) -> tuple[torch.nn.Module, list, bool]:
    """Load ``model``'s weights from the cache under ``key``, else train and save them."""
    folder = cache_dir("clinical", "weights")
    path, meta = folder / f"{key}.safetensors", folder / f"{key}.json"
    if path.is_file() and meta.is_file():
        model.load_state_dict(load_file(str(path)))
        model.to(_device()).eval()
        return model, json.loads(meta.read_text())["history"], True
    history = train_fn()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)
    meta.write_text(json.dumps({"history": history}))
    return model, history, False


def _diag_loss(model, b):
    return masked_bce(model(b["ecg"]).diagnosis, b["y"])


def _joint_loss(cfg):
    def loss(model, b):
        out = model(b["ecg"])
        return masked_bce(out.diagnosis, b["y"]) + cfg.lab_weight * masked_bce(out.labs, b["flags"])
    return loss


def _vicreg(model, b):
    za, zb = model(b["ecg"], b["values"], b["missing"])
    return vicreg_loss(za, zb)[0]


def _vicreg_views(model, b):
    za, zb = model(b["ecg"], b["ecg2"])
    return vicreg_loss(za, zb)[0]


def _multimodal_loss(model, b):
    return masked_bce(model(b["ecg"], b["values"], b["missing"]).diagnosis, b["y"])


@dataclass
class TransferRun:
    """The trained models (in eval mode), their cache keys, loss histories and whether loaded."""

    data: TransferData
    cfg: TransferConfig
    models: dict
    keys: dict
    histories: dict
    loaded: dict

    def predict(self, name: str, part: str = "test", batch_size: int = 128) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(diagnosis probabilities, lab-flag probabilities) of model ``name`` on ``part``, whole records."""
        model, d = self.models[name], self.data
        pos = d.parts[part] if isinstance(part, str) else np.asarray(part)
        device = _device()
        diag, labs = [], []
        with torch.no_grad():
            for i in range(0, len(pos), batch_size):
                idx = pos[i:i + batch_size]
                t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)
                out = (model(t(d.ecg[idx]), t(d.values[idx]), t(d.missing[idx]))
                       if isinstance(model, MultimodalClassifier) else model(t(d.ecg[idx])))
                diag.append(torch.sigmoid(out.diagnosis).cpu().numpy())
                labs.append(torch.sigmoid(out.labs).cpu().numpy())
        ids = d.ids[pos]
        diag = pd.DataFrame(np.concatenate(diag), index=ids, columns=d.y.columns)
        lab_cols = list(d.flags.columns) if np.concatenate(labs).shape[1] else []
        labs = pd.DataFrame(np.concatenate(labs)[:, :len(lab_cols)], index=ids, columns=lab_cols)
        return diag, labs


def run_transfer(data: TransferData, cfg: TransferConfig, progress: bool = True) -> TransferRun:
    """Train (or load) every model and ablation of the chapter; see the module docstring."""
    from ..nn import ecg_encoder

    n_labels, n_flags, n_feat = data.y.shape[1], data.flags.shape[1], data.values.shape[1]
    base = _key(data.fingerprint(), asdict(cfg))
    models, keys, hist, loaded = {}, {}, {}, {}

    def new_encoder(name):
        torch.manual_seed(_seed_for(cfg, name + "|init"))
        return ecg_encoder(cfg.encoder, in_channels=data.ecg.shape[1])

    def new_tab(name):
        torch.manual_seed(_seed_for(cfg, name + "|tab-init"))
        return TabularEncoder(n_feat, cfg.tab_dim, cfg.tab_depth)

    def stage(name, model, parent, loss_fn, steps):
        key = _key(base, name, parent, steps)
        m, h, hit = _cached_stage(model, key, lambda: _train(model, loss_fn, data, cfg, steps, name, progress),
                                  progress)
        keys[name], hist[name], loaded[name] = key, h, hit
        return m, key

    def classifier(encoder_state, flags: int, name: str):
        m = ECGClassifier(new_encoder(name), n_labels, flags)
        if encoder_state is not None:
            m.encoder.load_state_dict(encoder_state)
        return m

    def branch(parent_model, flags: int, name: str):
        """A copy of a stage-2 classifier with (or without) fresh lab heads."""
        m = classifier(parent_model.encoder.state_dict(), flags, name)
        m.diagnosis_head.load_state_dict(parent_model.diagnosis_head.state_dict())
        return m

    extra = cfg.joint_steps
    # stage 1: joint embedding of the ECG and the clinical record
    joint, k1 = stage("stage 1: joint embedding", JointEmbedding(new_encoder("joint"), new_tab("joint"), cfg.proj_dim),
                      None, _vicreg, cfg.pretrain_steps)
    # stage 2 from scratch and from stage 1, then the diagnosis-only continuations and stage 3
    s2_scratch, k2s = stage("stage 2 (scratch)", classifier(None, 0, "s2-scratch"), None, _diag_loss, cfg.finetune_steps)
    s2_pre, k2p = stage("stage 2 (pretrained)", classifier(joint.ecg_encoder.state_dict(), 0, "s2-pre"), k1,
                        _diag_loss, cfg.finetune_steps)
    models["signal-only"], _ = stage("signal-only", branch(s2_scratch, 0, "signal-only"), k2s, _diag_loss, extra)
    models["no stage 3"], _ = stage("no stage 3", branch(s2_pre, 0, "no-stage-3"), k2p, _diag_loss, extra)
    if n_flags:
        models["ours"], _ = stage("ours", branch(s2_pre, n_flags, "ours"), k2p, _joint_loss(cfg), extra)
        models["no stage 1"], _ = stage("no stage 1", branch(s2_scratch, n_flags, "no-stage-1"), k2s,
                                        _joint_loss(cfg), extra)
    else:      # no labs, no lab heads: stage 3 has nothing to add
        models["ours"], models["no stage 1"] = models["no stage 3"], models["signal-only"]
        for a, b in (("ours", "no stage 3"), ("no stage 1", "signal-only")):
            keys[a], hist[a], loaded[a] = keys[b], hist[b], loaded[b]
    # the multimodal reference starts from both stage-1 encoders: it has everything ours has, plus
    # the record at inference
    mm = MultimodalClassifier(new_encoder("multimodal"), new_tab("multimodal"), n_labels)
    mm.ecg_encoder.load_state_dict(joint.ecg_encoder.state_dict())
    mm.tab_encoder.load_state_dict(joint.tab_encoder.state_dict())
    models["multimodal"], _ = stage("multimodal", mm, k1, _multimodal_loss, cfg.finetune_steps + extra)
    if cfg.ecg_only_control:
        # control: stage 1 with two crops of the same ECG instead of the clinical record (same steps)
        views, kc = stage("stage 1 control: ECG views", ECGViews(new_encoder("views"), cfg.proj_dim), None,
                          _vicreg_views, cfg.pretrain_steps)
        s2_views, k2v = stage("stage 2 (ECG-views pretrained)", classifier(views.encoder.state_dict(), 0, "s2-views"),
                              kc, _diag_loss, cfg.finetune_steps)
        models["ECG-only stage 1"], _ = stage("ECG-only stage 1", branch(s2_views, n_flags, "views-final"), k2v,
                                              _joint_loss(cfg) if n_flags else _diag_loss, extra)
    models["stage 1"] = joint
    return TransferRun(data, cfg, models, keys, hist, loaded)
