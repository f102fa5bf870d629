"""ALFRED step 1: a 1-D U-Net that labels every sample of every lead as P, QRS, T or none.

Classes (:data:`CLASSES`): 0 none, 1 P wave, 2 QRS complex, 3 T wave.

Leads are processed independently, as a batch of single-channel signals, so any lead set and any
number of leads works (one included; all-NaN columns are missing leads and are skipped). The
network sees 500 Hz input (:data:`FS`); other rates are resampled with
:func:`ecgkit.data.preprocess.ecg_resample` and the fiducials are mapped back to the input rate.
Each lead is standardised (mean removed, divided by its standard deviation, floored at 0.01 mV).

**Beats.** Which QRS complexes are beats is not left to a vote over the leads' U-Net labels (a
few noisy leads outvote nothing on real ECGs and add beats): :func:`delineate` anchors the beats
on a QRS detector run on one multi-lead QRS-energy signal (:mod:`ecgkit.alfred.beats`) and keeps
the U-Net for the wave boundaries (:func:`align_beats`).

Ground truth comes from the synthetic cohort's per-lead fiducials (:func:`fiducials_to_mask`).
**T onset:** the generator writes no ``t_on``, so the T label starts at
``t_peak − (t_off − t_peak)`` (the T wave mirrored about its peak), but never before ``qrs_off``
(the ST segment is labelled T only when the T wave is that wide). Predicted T onsets are therefore
reported (``t_on``) but not scored.

The quick-profile weights ship with the package (``ecgkit/resources/delineator-quick``,
safetensors, about 0.3 MB) so that nothing trains on first use; ``python -m ecgkit.alfred.delineation
train --profile quick --out ecgkit/resources/delineator-quick`` retrains them from scratch and
records their scores on held-out synthetic records (:func:`held_out_scores`). Other weights are
cached as safetensors under ``cache_dir("models", "delineator-<key>")``, keyed by the training
configuration, :data:`ecgkit.versions.VERSIONS` (generator and delineator) and the seed
(:func:`load_delineator`); a profile with neither shipped nor cached weights is trained once, with
a message saying so.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..cache import key as cache_key
from ..config import ProfileSettings, cache_dir
from ..vocabulary import LEADS
from ..versions import VERSIONS

__all__ = [
    "CLASSES", "FS", "DELINEATOR_VERSION", "PROFILES", "OUTPUT_COLUMNS", "SCORED",
    "fiducials_to_mask", "mask_to_fiducials", "UNet1D", "standardise", "train_delineator",
    "train_step", "load_delineator", "save_delineator", "read_delineator", "delineator_key",
    "delineator_config", "shipped_delineator_dir", "held_out_records", "held_out_scores",
    "delineate", "score_delineation", "neurokit_fiducials", "align_beats", "P_SHARE", "WEAK_SHARE",
    "SPLIT_RR", "WEAK_ENERGY", "DelineatorSettings", "compare_with_neurokit",
]

#: Bump when the model, the labels or the training loop change (part of the cache key).
DELINEATOR_VERSION = VERSIONS["delineator"]
CLASSES = ("none", "P", "QRS", "T")
FS = 500
#: Columns of the fiducials frames returned here (samples at the input rate, −1 = absent).
OUTPUT_COLUMNS = ("p_on", "p_peak", "p_off", "qrs_on", "r_peak", "qrs_off", "t_on", "t_peak",
                  "t_off")
#: Fiducials scored by :func:`score_delineation`.
SCORED = ("p_on", "p_off", "qrs_on", "qrs_off", "r_peak", "t_off")


@dataclass(frozen=True)
class DelineatorSettings(ProfileSettings):
    """The training configuration of the delineator (defaults: the quick profile's)."""

    window: int = 2048
    augment: bool = True
    records_per_batch: int = 4
    lr: float = 3e-3
    base: int = 8
    depth: int = 4
    kernel: int = 7
    n_records: int = 300
    epochs: int = 10

    PROFILES = {"full": dict(n_records=2000, epochs=15)}


#: Training profiles for :func:`load_delineator`.
PROFILES = {name: DelineatorSettings.for_profile(name).as_dict() for name in ("quick", "full")}
#: Minimum durations (ms) below which a predicted segment is discarded as spurious.
MIN_MS = {1: 30.0, 2: 30.0, 3: 50.0}
#: Gaps (ms) of "none" shorter than this inside one wave are closed.
GAP_MS = 12.0


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------

def _fill(row: np.ndarray, on: int, off: int, value: int) -> None:
    n = row.shape[0]
    if on < 0 and off < 0:
        return
    on = 0 if on < 0 else on
    off = n - 1 if off < 0 else off
    if off < on or on >= n or off < 0:
        return
    row[max(on, 0):min(off, n - 1) + 1] = value


def fiducials_to_mask(fiducials: pd.DataFrame, n_samples: int, leads=LEADS) -> np.ndarray:
    """Per-lead fiducials (columns ``lead, p_on, p_off, qrs_on, qrs_off, t_peak, t_off``) →
    an int8 mask (len(leads) × n_samples) of :data:`CLASSES` indices.

    P = ``p_on..p_off``, QRS = ``qrs_on..qrs_off``, T = ``max(qrs_off + 1, t_peak − (t_off −
    t_peak))..t_off`` (or ``t_on..t_off`` when a ``t_on`` column is given). −1 marks an absent
    point; a wave with only one of its bounds present is cut at the record's edge. Rows whose
    lead is not in ``leads`` (such as the generator's ``"all"``) are ignored.
    """
    leads = list(leads)
    mask = np.zeros((len(leads), int(n_samples)), dtype=np.int8)
    index = {name: i for i, name in enumerate(leads)}
    upper = {str(name).upper(): i for i, name in enumerate(leads)}
    has_ton = "t_on" in fiducials.columns
    for row in fiducials.itertuples(index=False):
        lead = str(row.lead)
        i = index.get(lead, upper.get(lead.upper()))
        if i is None:
            continue
        m = mask[i]
        t_off, t_peak = int(row.t_off), int(row.t_peak)
        if has_ton and int(row.t_on) >= 0:
            t_on = int(row.t_on)
        elif t_peak >= 0 and t_off >= 0:
            t_on = max(2 * t_peak - t_off, int(row.qrs_off) + 1 if int(row.qrs_off) >= 0 else -1)
        else:
            t_on = t_peak if t_peak >= 0 else -1
            if t_on < 0 and t_off >= 0:
                t_on = -1  # T cut by the record's start: from sample 0
        _fill(m, t_on, t_off, 3)
        _fill(m, int(row.p_on), int(row.p_off), 1)
        _fill(m, int(row.qrs_on), int(row.qrs_off), 2)
    return mask


def _runs(labels: np.ndarray):
    """(value, start, stop) of constant runs (stop exclusive)."""
    if labels.size == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return labels[starts], starts, stops


def _clean(labels: np.ndarray, fs: float) -> np.ndarray:
    """Close short gaps inside a wave, then drop segments shorter than :data:`MIN_MS`."""
    labels = labels.astype(np.int8).copy()
    gap = int(round(GAP_MS * fs / 1000))
    vals, starts, stops = _runs(labels)
    for k in range(1, len(vals) - 1):
        if vals[k] == 0 and vals[k - 1] == vals[k + 1] != 0 and stops[k] - starts[k] <= gap:
            labels[starts[k]:stops[k]] = vals[k - 1]
    vals, starts, stops = _runs(labels)
    for v, a, b in zip(vals, starts, stops):
        if v != 0 and (b - a) < MIN_MS[int(v)] * fs / 1000:
            labels[a:b] = 0
    return labels


def _extremum(sig: np.ndarray | None, a: int, b: int) -> int:
    """Sample of the largest deflection in ``[a, b]`` (from the line joining its ends), or the
    middle when there is no signal."""
    if sig is None or b <= a:
        return (a + b) // 2
    seg = np.asarray(sig[a:b + 1], dtype=float)
    base = seg[0] + (seg[-1] - seg[0]) * (np.arange(seg.size) / (seg.size - 1))
    return a + int(np.argmax(np.abs(seg - base)))


def mask_to_fiducials(mask: np.ndarray, fs: float = FS, signal: np.ndarray | None = None,
                      leads=None) -> pd.DataFrame:
    """A label mask (n_samples, or leads × n_samples) → fiducials, one row per beat and lead.

    Spurious segments are removed first (gaps under :data:`GAP_MS` inside a wave closed, then
    segments shorter than :data:`MIN_MS` dropped). Every QRS segment is a beat; its P wave is the
    last P segment between the previous QRS and this one, its T wave the first T segment between
    this QRS and the next. ``r_peak`` is the sample of largest ``|signal|`` inside the QRS
    (largest deflection from the segment's baseline for P and T peaks) when ``signal`` (same
    shape as ``mask``) is given, else the segment's middle. Columns: ``lead, beat`` and
    :data:`OUTPUT_COLUMNS` in samples at ``fs`` (−1 = absent).
    """
    mask = np.asarray(mask)
    single = mask.ndim == 1
    mask = mask[None] if single else mask
    if signal is not None:
        signal = np.asarray(signal)
        signal = signal[None] if signal.ndim == 1 else signal
        if signal.shape != mask.shape:
            raise ValueError(f"signal shape {signal.shape} differs from mask shape {mask.shape}")
    if leads is None:
        leads = list(LEADS) if mask.shape[0] == len(LEADS) else list(range(mask.shape[0]))
    rows = []
    for i, lead in enumerate(leads):
        lab = _clean(mask[i], fs)
        sig = None if signal is None else signal[i]
        vals, starts, stops = _runs(lab)
        seg = {c: (starts[vals == c].astype(np.int64), (stops[vals == c] - 1).astype(np.int64))
               for c in (1, 2, 3)}
        q_ons, q_offs = seg[2]
        p_on, p_off = seg[1]
        t_on, t_off = seg[3]
        nq = q_ons.size
        if nq == 0:
            continue
        prev_end = np.concatenate([[-1], q_offs[:-1]])
        next_start = np.concatenate([q_ons[1:], [lab.size]])
        # P: the last P segment ending before the QRS, if it starts after the previous QRS
        pi = np.searchsorted(p_off, q_ons, side="left") - 1
        has_p = (pi >= 0) & (p_on[np.maximum(pi, 0)] > prev_end) if p_on.size else np.zeros(nq, bool)
        # T: the first T segment starting after the QRS, if it ends before the next QRS
        ti = np.searchsorted(t_on, q_offs, side="right")
        has_t = (ti < t_on.size) & (t_off[np.minimum(ti, max(t_on.size - 1, 0))] < next_start) \
            if t_on.size else np.zeros(nq, bool)
        for k in range(nq):
            q_on, q_off = int(q_ons[k]), int(q_offs[k])
            if sig is not None:
                r = q_on + int(np.argmax(np.abs(sig[q_on:q_off + 1])))
            else:
                r = (q_on + q_off) // 2
            if has_p[k]:
                pa, pb = int(p_on[pi[k]]), int(p_off[pi[k]])
                pp = (pa, _extremum(sig, pa, pb), pb)
            else:
                pp = (-1, -1, -1)
            if has_t[k]:
                ta, tb = int(t_on[ti[k]]), int(t_off[ti[k]])
                tt = (ta, _extremum(sig, ta, tb), tb)
            else:
                tt = (-1, -1, -1)
            rows.append((lead, k, *pp, q_on, r, q_off, *tt))
    out = pd.DataFrame(rows, columns=["lead", "beat", *OUTPUT_COLUMNS])
    for c in ("beat", *OUTPUT_COLUMNS):
        out[c] = out[c].astype(np.int64)
    return out


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__(
            nn.Conv1d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv1d(c_out, c_out, k, padding=k // 2, bias=False), nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
        )


class UNet1D(nn.Module):
    """A small 1-D U-Net: (batch, in_channels, n) → logits (batch, n_classes, n).

    ``depth`` poolings by 2; level ``i`` has ``base·(i+1)`` channels (linear growth keeps it fast
    on a CPU), the bottleneck ``base·(depth+1)``. Any length works: the input is padded
    (edge values) to a multiple of ``2**depth`` and the output cropped back.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 4, base: int = 16, depth: int = 4,
                 kernel: int = 7):
        super().__init__()
        self.config = dict(in_channels=in_channels, n_classes=n_classes, base=base, depth=depth,
                           kernel=kernel)
        self.depth = depth
        chans = [base * (i + 1) for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c = in_channels
        for i in range(depth):
            self.down.append(_Block(c, chans[i], kernel))
            c = chans[i]
        self.bottom = _Block(c, chans[depth], kernel)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(depth)):
            self.up.append(nn.ConvTranspose1d(chans[i + 1], chans[i], 2, stride=2))
            self.dec.append(_Block(2 * chans[i], chans[i], kernel))
        self.head = nn.Conv1d(chans[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        mult = 2 ** self.depth
        pad = (-n) % mult
        if pad:
            x = F.pad(x, (0, pad), mode="replicate")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool1d(x, 2)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)[..., :n]


def standardise(x: np.ndarray | torch.Tensor, floor: float = 0.01):
    """Per-lead standardisation along the last axis: mean removed, divided by max(sd, floor mV)."""
    if isinstance(x, torch.Tensor):
        mu = x.mean(-1, keepdim=True)
        sd = x.std(-1, keepdim=True).clamp_min(floor)
        return (x - mu) / sd
    x = np.asarray(x, dtype=np.float32)
    mu = x.mean(-1, keepdims=True)
    sd = np.maximum(x.std(-1, keepdims=True), floor)
    return ((x - mu) / sd).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def _training_data(n_records: int, seed: int, progress: bool):
    """Signals (records × 12 × 5000, float32) and masks (records × 12 × 5000, int8) of the
    synthetic cohort for these arguments."""
    from ..data.ptbxl import load_ptbxl
    from ..synthetic import synthetic_cohort

    folder = synthetic_cohort(n_records=n_records, seed=seed, progress=progress)
    ds = load_ptbxl(folder, rate=500, progress=progress)
    fid = pd.read_csv(folder / "fiducials.csv.gz")
    signals = np.ascontiguousarray(np.asarray(ds.signals, dtype=np.float32).transpose(0, 2, 1))
    n = signals.shape[-1]
    groups = {k: g for k, g in fid.groupby("ecg_id")}
    masks = np.zeros(signals.shape, dtype=np.int8)
    for r, ecg_id in enumerate(ds.meta.index):
        if ecg_id in groups:
            masks[r] = fiducials_to_mask(groups[ecg_id], n)
    return signals, masks


def _augment_batch(sig: np.ndarray, mask: np.ndarray, window: int, rng: np.random.Generator,
                   augment: bool):
    """Random windows (one per record, all its leads) with augmentation → tensors
    (records·leads, 1, window) and (records·leads, window)."""
    xs, ys = [], []
    n = sig.shape[-1]
    for s, m in zip(sig, mask):
        stretch = float(np.exp(rng.uniform(np.log(0.75), np.log(1.33)))) if augment else 1.0
        span = min(n, int(round(window * stretch)))
        start = int(rng.integers(0, n - span + 1))
        seg = s[:, start:start + span]
        lab = m[:, start:start + span]
        if span != window:  # time stretch: linear interpolation, labels by nearest sample
            pos = np.linspace(0, span - 1, window)
            near = np.rint(pos).astype(int)
            lo = np.floor(pos).astype(int)
            hi = np.minimum(lo + 1, span - 1)
            w = (pos - lo).astype(np.float32)
            seg = seg[:, lo] * (1 - w) + seg[:, hi] * w
            lab = lab[:, near]
        seg = np.array(seg, dtype=np.float32)
        if augment:
            L = seg.shape[0]
            t = np.arange(window) / FS
            seg *= rng.uniform(0.5, 2.0, (L, 1)).astype(np.float32) * \
                np.where(rng.random((L, 1)) < 0.1, -1, 1).astype(np.float32)
            f = rng.uniform(0.05, 0.6, (L, 1))
            seg += (rng.uniform(0, 0.4, (L, 1)) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3, (L, 1)))
                    ).astype(np.float32)
            seg += (rng.uniform(0, 0.06, (L, 1)) * rng.standard_normal(seg.shape)).astype(np.float32)
        xs.append(seg)
        ys.append(lab)
    x = standardise(torch.from_numpy(np.concatenate(xs))[:, None])
    y = torch.from_numpy(np.concatenate(ys).astype(np.int64))
    return x, y


#: Cross-entropy class weights (none, P, QRS, T): the short waves count more.
CLASS_WEIGHTS = (0.5, 1.5, 1.5, 1.0)


def train_step(model: nn.Module, optimiser: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor) -> float:
    """One optimisation step (weighted cross-entropy); returns the loss."""
    model.train()
    optimiser.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y, weight=torch.tensor(CLASS_WEIGHTS))
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def train_delineator(n_records: int = 300, epochs: int = 6, seed: int = 0, window: int = 2048,
                     augment: bool = True, progress: bool = True, records_per_batch: int = 4,
                     lr: float = 3e-3, base: int = 8, depth: int = 4, kernel: int = 7,
                     data=None) -> UNet1D:
    """Train a :class:`UNet1D` (``base=8, kernel=7`` by default: about 3× faster than
    ``base=16`` on a CPU, which the 20×-faster-than-NeuroKit2 goal needs) on the synthetic cohort (``n_records``, ``seed``) for ``epochs``.

    Each step takes ``records_per_batch`` records and one random ``window`` of all their leads
    (so a batch holds ``12·records_per_batch`` single-lead signals), augmented with a time
    stretch (×0.75–1.33, i.e. a rate change), amplitude scaling (×0.5–2, 10 % inverted), baseline
    wander (0.05–0.6 Hz, up to 0.4 mV) and Gaussian noise (up to 0.06 mV). Loss: cross-entropy
    with :data:`CLASS_WEIGHTS`; AdamW with a one-cycle learning-rate schedule. ``data``:
    optional ``(signals records×leads×n, masks)`` to use instead of the cohort.
    The training history is in ``model.history``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    signals, masks = data if data is not None else _training_data(n_records, seed, progress)
    model = UNet1D(base=base, depth=depth, kernel=kernel)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, int(np.ceil(len(signals) / records_per_batch)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    history = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(signals))
        losses = []
        for b in range(steps_per_epoch):
            idx = np.sort(order[b * records_per_batch:(b + 1) * records_per_batch])
            x, y = _augment_batch(signals[idx], masks[idx], window, rng, augment)
            losses.append(train_step(model, opt, x, y))
            sched.step()
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "seconds": time.perf_counter() - t0})
        if progress:
            print(f"delineator epoch {epoch + 1}/{epochs}: loss {history[-1]['loss']:.4f} "
                  f"({history[-1]['seconds']:.0f} s)", flush=True)
    model.eval()
    model.history = history
    model.train_config = dict(n_records=n_records, epochs=epochs, seed=seed, window=window,
                              augment=augment, records_per_batch=records_per_batch, lr=lr)
    return model


# --------------------------------------------------------------------------------------------
# Saving and the cache
# --------------------------------------------------------------------------------------------

def delineator_key(config: dict) -> str:
    """Cache key: the training config and the generator's version (the delineator's own version
    is the key's version)."""
    return cache_key("delineator", {**config, "generator": VERSIONS["synthetic"]}, DELINEATOR_VERSION)


def save_delineator(model: UNet1D, folder: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (architecture and ``extra``) to ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=folder)
    os.close(fd)
    save_file(state, tmp)
    meta = {"model": model.config, **(extra or {})}
    (folder / "config.json.tmp").write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, folder / "model.safetensors")
    os.replace(folder / "config.json.tmp", folder / "config.json")
    return folder / "model.safetensors"


def read_delineator(folder: str | os.PathLike) -> UNet1D:
    """A model written by :func:`save_delineator` (safetensors only; no pickle), in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / "config.json").read_text())
    model = UNet1D(**meta["model"])
    model.load_state_dict(load_file(folder / "model.safetensors"))
    model.eval()
    model.meta = meta
    return model


def delineator_config(profile: str | None = None, seed: int = 0, **overrides) -> dict:
    """The training configuration of a profile's delineator (:class:`DelineatorSettings`)."""
    return {**DelineatorSettings.for_profile(profile, **overrides).as_dict(), "seed": int(seed)}


def shipped_delineator_dir(profile: str = "quick") -> Path:
    """Where the package keeps a profile's trained weights (only ``quick`` ships)."""
    return Path(__file__).resolve().parents[1] / "resources" / f"delineator-{profile}"


def load_delineator(profile: str | None = None, seed: int = 0, progress: bool = True,
                    **overrides) -> UNet1D:
    """The delineator for a profile (:data:`PROFILES`): the shipped weights when their key matches
    this configuration, else the cache, else trained once (with a message) and cached."""
    from ..config import profile as active_profile

    name = active_profile(profile)
    config = delineator_config(name, seed, **overrides)
    key = delineator_key(config)
    shipped = shipped_delineator_dir(name)
    if (shipped / "config.json").is_file():
        if json.loads((shipped / "config.json").read_text()).get("key") == key:
            return read_delineator(shipped)
    folder = cache_dir("models", f"delineator-{key}")
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        return read_delineator(folder)
    print(f"training the {name}-profile delineator once (no shipped or cached weights for key "
          f"{key}; {config['n_records']} synthetic records, {config['epochs']} epochs); "
          f"`python -m ecgkit.alfred.delineation train --profile {name}` does this ahead of time",
          flush=True)
    t = time.perf_counter()
    model = train_delineator(progress=progress, **config)
    seconds = time.perf_counter() - t
    save_delineator(model, folder, {"key": key, "train": config, "history": model.history,
                                    "train_seconds": seconds, "profile": name})
    return read_delineator(folder)


_HELD_OUT = [("NORM",), ("STACH",), ("SBRAD",), ("AFIB",), ("CLBBB",), ("CRBBB",), ("1AVB",),
             ("LVH",), ("IMI",), ("ISCAL",)]


def held_out_records(n_records: int = 20, seed: int = 1000):
    """Synthetic 12-lead records outside every training cohort (a mix of conditions and rhythms,
    seeds ``seed…``): signals (records × 5000 × 12) and the per-lead true fiducials."""
    from ..synthetic import simulate_ecg

    signals, truths = [], []
    for i in range(n_records):
        sig, fid = simulate_ecg(_HELD_OUT[i % len(_HELD_OUT)], seed=seed + i)
        signals.append(sig)
        truths.append(fid[fid["lead"] != "all"].reset_index(drop=True))
    return np.stack(signals), truths


def held_out_scores(model: UNet1D, n_records: int = 20, seed: int = 1000) -> pd.DataFrame:
    """:func:`score_delineation` of ``model`` on :func:`held_out_records`."""
    signals, truths = held_out_records(n_records, seed)
    return score_delineation(delineate(signals, FS, model=model), truths, FS)


def _train_command(argv=None) -> int:
    """``python -m ecgkit.alfred.delineation train``: retrain a profile's delineator from scratch."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ecgkit.alfred.delineation train",
                                     description="Train a profile's delineator from scratch on the "
                                     "synthetic cohort, score it on held-out synthetic records and "
                                     "write model.safetensors + config.json.")
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder to write (default: the cache folder of its key)")
    args = parser.parse_args(argv)
    config = delineator_config(args.profile, args.seed)
    key = delineator_key(config)
    out = Path(args.out) if args.out else cache_dir("models", f"delineator-{key}")
    t = time.perf_counter()
    model = train_delineator(progress=True, **config)
    seconds = time.perf_counter() - t
    scores = held_out_scores(model)
    print(scores.round(3).to_string())
    save_delineator(model, out, {"key": key, "train": config, "history": model.history,
                                 "train_seconds": round(seconds, 1), "profile": args.profile,
                                 "held_out": {"n_records": 20, "seed": 1000,
                                              "scores": scores.round(4).to_dict(orient="index")}})
    print(f"delineator {key} ({args.profile}) written to {out} after {seconds:.0f} s of training")
    return 0


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------

def _as_records(signals) -> tuple[list[np.ndarray], bool]:
    """Input → list of (samples × leads) arrays; a single record may be 1-D or 2-D."""
    if isinstance(signals, np.ndarray) and signals.ndim == 3:
        return [signals[i] for i in range(len(signals))], False
    if isinstance(signals, np.ndarray) or (hasattr(signals, "__array__") and not isinstance(signals, list)):
        arr = np.asarray(signals)
        if arr.ndim == 1:
            arr = arr[:, None]
        return [arr], True
    return [np.asarray(s) if np.asarray(s).ndim == 2 else np.asarray(s)[:, None] for s in signals], False


def delineate(signals, fs: float = FS, model: UNet1D | None = None, batch_size: int = 64,
              leads=None, anchors: bool = True) -> list[pd.DataFrame] | pd.DataFrame:
    """Delineate ECGs: ``signals`` records × samples × leads (or a list of samples × leads arrays,
    or one record samples × leads / samples). Returns one fiducials frame per record (a single
    frame for a single record) in samples at ``fs``; see :func:`mask_to_fiducials`.

    All leads of all records go through the network in batches of ``batch_size`` single-lead
    signals; records of other rates are resampled to 500 Hz and the fiducials mapped back.
    ``model``: default :func:`load_delineator` for the active profile. ``leads``: names (default
    :data:`LEADS` for 12 leads, else 0, 1, …). Any number of leads works, one included; leads
    that are entirely NaN (a missing lead padded) are left out of the frame.

    ``anchors`` (default): the beats are those of a QRS detector on a multi-lead combination
    signal (:func:`ecgkit.alfred.beats.qrs_anchors`) that the U-Net confirms, the wave boundaries
    are the U-Net's (:func:`align_beats`); ``False``: the beats are a vote over the U-Net's leads
    alone. A frame with no beat says why in ``attrs["note"]`` (and a warning is issued).
    """
    from ..data.preprocess import ecg_resample

    records, single = _as_records(signals)
    model = model if model is not None else load_delineator()
    model.eval()
    fs = float(fs)
    prepared, present = [], []
    for rec in records:
        x = np.asarray(rec, dtype=np.float32)
        usable = np.isfinite(x).any(0)            # an all-NaN column is a missing lead
        present.append(usable)
        x = np.nan_to_num(x[:, usable], nan=0.0, posinf=0.0, neginf=0.0)
        x500 = x if fs == FS or x.shape[1] == 0 else ecg_resample(x, fs, FS, axis=0)
        prepared.append(np.ascontiguousarray(x500.T))  # leads × n
    # group leads of equal length so they batch together
    items = [(r, l) for r, p in enumerate(prepared) for l in range(p.shape[0])]
    by_len: dict[int, list] = {}
    for r, l in items:
        by_len.setdefault(prepared[r].shape[1], []).append((r, l))
    masks = [np.zeros(p.shape, dtype=np.int8) for p in prepared]
    with torch.inference_mode():
        for n, group in by_len.items():
            for b in range(0, len(group), batch_size):
                chunk = group[b:b + batch_size]
                x = np.stack([prepared[r][l] for r, l in chunk])
                x = standardise(torch.from_numpy(x)[:, None])
                pred = model(x).argmax(1).numpy().astype(np.int8)
                for (r, l), p in zip(chunk, pred):
                    masks[r][l] = p
    out = []
    for rec, p, m, use in zip(records, prepared, masks, present):
        n_cols = use.size
        names = list(leads) if leads is not None else (list(LEADS) if n_cols == len(LEADS)
                                                       else list(range(n_cols)))
        if len(names) != n_cols:
            raise ValueError(f"{len(names)} lead names for {n_cols} leads")
        names = [nm for nm, u in zip(names, use) if u]
        if p.shape[0] == 0:
            fid = _empty("no usable lead (all leads missing)")
        else:
            anchor = None
            energy = None
            if anchors:
                from .beats import combination_signal, qrs_anchors
                energy = combination_signal(p.T, FS)
                anchor = qrs_anchors(p.T, FS, energy=energy)
                anchor = anchor if len(anchor) else None   # nothing found: the U-Net's vote
            per_lead = mask_to_fiducials(m, FS, signal=p, leads=names)
            fid = align_beats(per_lead, p.shape[1], FS, anchors=anchor, energy=energy)
            if fid.empty and anchor is not None and not per_lead.empty:
                fid = align_beats(per_lead, p.shape[1], FS)       # no anchor confirmed: vote
            if fid.empty:
                fid = _empty("no QRS complex found" if per_lead.empty else
                             "no beat confirmed across leads")
        if "note" in fid.attrs:
            warnings.warn(f"delineate: {fid.attrs['note']}", stacklevel=2)
        if fs != FS:
            cols = list(OUTPUT_COLUMNS)
            vals = fid[cols].to_numpy()
            scaled = np.where(vals >= 0, np.minimum(np.rint(vals * fs / FS),
                                                    len(rec) - 1), -1)
            fid[cols] = scaled.astype(np.int64)
        out.append(fid)
    return out[0] if single else out


#: The global ("all") P wave of a beat needs a P wave in at least this share of its leads.
P_SHARE = 0.5
#: Anchored beats: a beat the U-Net sees in fewer than this share of the leads is "weak".
WEAK_SHARE = 0.75
#: A weak beat that splits one RR interval into two short ones (each under this share of the
#: median RR, together within ±30 % of it) is noise, not a beat.
SPLIT_RR = 0.8
#: ... as is one whose QRS energy is under this share of the median beat's.
WEAK_ENERGY = 0.5


def _rescue_beats(beats, on, off, centre, code, n_leads, n_samples, fs, refractory_ms):
    """Add the beats the U-Net sees in at least :data:`WEAK_SHARE` of the leads (and 2 or more
    leads) but no anchor has within ``refractory_ms`` (the detector missed them)."""
    need = max(2, int(np.ceil(WEAK_SHARE * n_leads)))
    if n_leads < 2 or on.size == 0:
        return beats
    votes = np.zeros(n_samples + 1, dtype=np.int32)
    for a, b in zip(on, off):
        votes[a:b + 1] += 1
    values, starts, stops = _runs((votes >= need).astype(np.int8))
    taken = np.array([a for _, a in beats], dtype=float)
    used = {int(h) for hit, _ in beats for h in hit}
    ref = refractory_ms * fs / 1000.0
    added = []
    for v, a, b in zip(values, starts, stops):
        if v != 1:
            continue
        c = (a + b - 1) / 2.0
        if taken.size and np.abs(taken - c).min() < ref:
            continue
        near = np.flatnonzero((off >= a) & (on <= b - 1))
        near = np.array([h for h in near if h not in used], dtype=np.int64)
        if near.size == 0:
            continue
        order = near[np.argsort(np.abs(centre[near] - c), kind="stable")]
        _, first = np.unique(code[order], return_index=True)
        added.append((order[first], -1))
    if not added:
        return beats
    out = beats + added
    key = [a if a >= 0 else float(np.median(centre[h])) for h, a in out]
    return [out[i] for i in np.argsort(key, kind="stable")]


def _drop_split_beats(beats, n_leads, centre=None, energy=None, fs=FS):
    """Drop weak beats that split an RR interval in two (:data:`SPLIT_RR`), or that start or end
    the record at a short RR. Weak: U-Net QRS in under :data:`WEAK_SHARE` of the leads, or (given
    ``energy``, the QRS-energy signal of :func:`ecgkit.alfred.beats.combination_signal`) a peak
    energy under :data:`WEAK_ENERGY` of the median beat's, which also works with one or two
    leads."""
    if len(beats) < 3:
        return beats
    pos = np.array([a if a >= 0 else float(np.median(centre[h])) for h, a in beats], dtype=float)
    rr = np.diff(pos)
    med = float(np.median(rr))
    weak = np.array([h.size < WEAK_SHARE * n_leads for h, _ in beats]) if n_leads >= 3 \
        else np.zeros(len(beats), bool)
    if energy is not None and energy.size:
        w = int(round(0.05 * fs))
        peak = np.array([energy[max(0, int(p) - w):int(p) + w + 1].max(initial=0.0) for p in pos])
        weak |= peak < WEAK_ENERGY * np.median(peak)
    drop = set()
    for i in range(len(beats)):
        if not weak[i]:
            continue
        prev = rr[i - 1] if i > 0 else None
        nxt = rr[i] if i < len(rr) else None
        if prev is not None and nxt is not None:
            if prev < SPLIT_RR * med and nxt < SPLIT_RR * med and abs(prev + nxt - med) <= 0.3 * med:
                drop.add(i)
        elif (prev if prev is not None else nxt) < 0.6 * med:
            drop.add(i)
    return [b for i, b in enumerate(beats) if i not in drop]


def align_beats(fiducials: pd.DataFrame, n_samples: int, fs: float = FS, min_leads: int | None = None,
                merge_ms: float = 40.0, refractory_ms: float = 250.0, anchors=None,
                anchor_ms: float = 60.0, energy=None) -> pd.DataFrame:
    """Number beats consistently across leads and add one ``lead="all"`` row per beat.

    Each lead is delineated on its own, so its beat numbers and spurious detections (noise or a
    tall T wave labelled QRS in one lead) are its own.

    *With* ``anchors`` (R-peak samples of a QRS detector, :func:`ecgkit.alfred.beats.qrs_anchors`;
    what :func:`delineate` passes): every anchor is a beat when the QRS of at least ``min_leads``
    leads lies within ``anchor_ms`` of it (default: a quarter of the leads, at least 1), and each
    lead's QRS nearest to a beat gets that beat's number; lead detections no anchor confirms are
    dropped. The ``all`` row's ``r_peak`` is the anchor (one fiducial point for every beat, so
    RR intervals do not jump between R and S waves). Beats the U-Net sees in at least
    :data:`WEAK_SHARE` of the leads (2 or more) but no anchor has are added (the detector missed
    them); weak beats (U-Net QRS in fewer leads, or, given the QRS-energy signal ``energy``, under
    :data:`WEAK_ENERGY` of the median beat's energy) that split one RR interval into two short
    ones (:data:`SPLIT_RR`) are noise and dropped.

    *Without* anchors: a beat is kept where the QRS of at least ``min_leads`` leads (default 30 %
    of the leads, at least 2, or 1 for a single lead) overlap; of two candidates closer than
    ``refractory_ms`` the one more leads agree on stays; its ``r_peak`` is the leads' median.

    The ``all`` row takes the second-earliest QRS onset and second-latest offset (robust to one
    outlying lead) and the median of the other fiducials over the leads that have them (P only
    when at least :data:`P_SHARE` of the matched leads show one).
    """
    cols = list(OUTPUT_COLUMNS)
    if fiducials.empty:
        return fiducials
    lead_rows = fiducials[fiducials["lead"].astype(str) != "all"]
    leads = list(dict.fromkeys(lead_rows["lead"]))
    qrs = lead_rows[(lead_rows["qrs_on"] >= 0) & (lead_rows["qrs_off"] >= 0)].reset_index(drop=True)
    on = qrs["qrs_on"].to_numpy(np.int64)
    off = qrs["qrs_off"].to_numpy(np.int64)
    centre = (on + off) / 2.0
    code = pd.Index(leads).get_indexer(qrs["lead"])
    beats: list[tuple[np.ndarray, int]] = []   # (row indices into qrs, r_peak or -1)
    if anchors is not None:
        need = min_leads or max(1, int(np.ceil(0.25 * len(leads))))
        pad = anchor_ms * fs / 1000.0
        for a in np.sort(np.asarray(anchors, dtype=np.int64)):
            near = np.flatnonzero((off >= a - pad) & (on <= a + pad))
            if near.size == 0:
                continue
            # one QRS per lead: the one whose centre is nearest to the anchor
            order = near[np.argsort(np.abs(centre[near] - a), kind="stable")]
            _, first = np.unique(code[order], return_index=True)
            hit = order[first]
            if hit.size >= need:
                beats.append((hit, int(a)))
        # a lead's QRS may not serve two beats: keep it with the nearer anchor
        owner: dict[int, int] = {}
        for b, (hit, a) in enumerate(beats):
            for h in hit:
                if h not in owner or abs(centre[h] - a) < abs(centre[h] - beats[owner[h]][1]):
                    owner[h] = b
        beats = [(np.array([h for h in hit if owner[h] == b], dtype=np.int64), a)
                 for b, (hit, a) in enumerate(beats)]
        beats = [(h, a) for h, a in beats if h.size]
        beats = _rescue_beats(beats, on, off, centre, code, len(leads), n_samples, fs,
                              refractory_ms)
        beats = _drop_split_beats(beats, len(leads), centre,
                                  None if energy is None else np.asarray(energy, float), fs)
    else:
        need = min_leads or (1 if len(leads) == 1 else max(2, int(np.ceil(0.3 * len(leads)))))
        votes = np.zeros(n_samples + 1, dtype=np.int32)
        for a, b in zip(on, off):
            votes[a:b + 1] += 1
        values, starts, stops = _runs((votes >= need).astype(np.int8))
        runs = [(int(a), int(b) - 1) for v, a, b in zip(values, starts, stops) if v == 1]
        merged: list[list[int]] = []
        for a, b in runs:
            if merged and a - merged[-1][1] <= merge_ms * fs / 1000:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        strength = [int(votes[a:b + 1].max()) for a, b in merged]
        keep = []
        for i in sorted(range(len(merged)), key=lambda j: -strength[j]):
            c = sum(merged[i]) / 2
            if all(abs(c - sum(merged[k]) / 2) >= refractory_ms * fs / 1000 for k in keep):
                keep.append(i)
        merged = [merged[i] for i in sorted(keep)]
        pad = int(merge_ms * fs / 1000)
        for a, b in merged:
            near = np.flatnonzero((off >= a - pad) & (on <= b + pad))
            if near.size == 0:
                continue
            order = near[np.argsort(np.abs(centre[near] - (a + b) / 2), kind="stable")]
            _, first = np.unique(code[order], return_index=True)
            beats.append((np.sort(order[first]), -1))
    values = qrs[cols].to_numpy(np.int64)
    names = qrs["lead"].to_numpy(object)
    rows_lead, rows_all = [], []
    for beat, (hit, r) in enumerate(beats):
        hit = hit[np.argsort(code[hit], kind="stable")]
        v = values[hit]
        for h in hit:
            rows_lead.append((names[h], beat, *values[h].tolist()))
        glob = {}
        ons, offs = np.sort(v[:, cols.index("qrs_on")]), np.sort(v[:, cols.index("qrs_off")])
        glob["qrs_on"] = int(ons[min(1, len(ons) - 1)])
        glob["qrs_off"] = int(offs[max(len(offs) - 2, 0)])
        for j, col in enumerate(cols):
            if col in ("qrs_on", "qrs_off"):
                continue
            vals = np.sort(v[:, j])
            vals = vals[vals >= 0]
            k = len(vals)
            enough = k >= (P_SHARE * len(hit) if col.startswith("p_") else 1)
            # int(median): the middle value, or the mean of the two middle values, truncated
            glob[col] = (int(vals[k // 2]) if k % 2 else int((vals[k // 2 - 1] + vals[k // 2]) / 2)) \
                if enough and k else -1
        if r >= 0:
            glob["r_peak"] = r
        rows_all.append(("all", beat, *[glob[c] for c in cols]))
    out = pd.DataFrame(rows_lead + rows_all, columns=["lead", "beat"] + cols)
    out = out.astype({c: np.int64 for c in ["beat"] + cols})
    order = np.lexsort((np.arange(len(out)), out["beat"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------

def _match(truth: np.ndarray, pred: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """One-to-one matches within ``tol`` samples, closest pairs first."""
    if truth.size == 0 or pred.size == 0:
        return []
    d = np.abs(pred[None, :] - truth[:, None]).astype(float)
    ti, pi = np.nonzero(d <= tol)
    order = np.argsort(d[ti, pi], kind="stable")
    used_t, used_p, pairs = set(), set(), []
    for k in order:
        a, b = int(ti[k]), int(pi[k])
        if a not in used_t and b not in used_p:
            used_t.add(a)
            used_p.add(b)
            pairs.append((a, b))
    return pairs


def _groups(df: pd.DataFrame, keys: list[str]) -> dict:
    if not keys:
        return {(): df}
    return {(k if isinstance(k, tuple) else (k,)): g for k, g in df.groupby(keys, sort=False)}


def score_delineation(pred: pd.DataFrame | list, truth: pd.DataFrame | list, fs: float = FS,
                      tolerance_ms: float = 150.0, fiducials=SCORED) -> pd.DataFrame:
    """Sensitivity, PPV and the error (ms, predicted − true; mean and sd over matches) for each
    fiducial. Points are matched one to one within ``tolerance_ms`` (closest pairs first),
    separately in each (``ecg_id``, ``lead``) group — the keys both frames have. Leads present in
    only one frame (the generator's ``"all"`` rows) are left out. Lists of frames (one per
    record, as :func:`delineate` returns) are numbered as records 0, 1, …
    """
    def frame(x):
        if isinstance(x, (list, tuple)):
            return pd.concat([f.assign(ecg_id=i) for i, f in enumerate(x)], ignore_index=True)
        return x
    pred, truth = frame(pred), frame(truth)
    keys = [k for k in ("ecg_id", "lead") if k in pred.columns and k in truth.columns]
    if "lead" in keys:
        common = set(map(str, pred["lead"])) & set(map(str, truth["lead"]))
        pred = pred[pred["lead"].astype(str).isin(common)].assign(lead=lambda d: d["lead"].astype(str))
        truth = truth[truth["lead"].astype(str).isin(common)].assign(lead=lambda d: d["lead"].astype(str))
    gp, gt = _groups(pred, keys), _groups(truth, keys)
    tol = tolerance_ms * fs / 1000.0
    rows = []
    for fid in fiducials:
        tp = n_true = n_pred = 0
        errors = []
        for key in set(gp) | set(gt):
            t = gt[key][fid].to_numpy() if key in gt and fid in gt[key] else np.zeros(0)
            p = gp[key][fid].to_numpy() if key in gp and fid in gp[key] else np.zeros(0)
            t = t[(t >= 0) & ~pd.isna(t)].astype(float)
            p = p[(p >= 0) & ~pd.isna(p)].astype(float)
            pairs = _match(t, p, tol)
            tp += len(pairs)
            n_true += t.size
            n_pred += p.size
            errors += [(p[b] - t[a]) * 1000.0 / fs for a, b in pairs]
        err = np.asarray(errors)
        rows.append({"fiducial": fid, "n_true": n_true, "n_pred": n_pred, "matched": tp,
                     "sensitivity": tp / n_true if n_true else np.nan,
                     "ppv": tp / n_pred if n_pred else np.nan,
                     "mean_error_ms": float(err.mean()) if err.size else np.nan,
                     "sd_error_ms": float(err.std(ddof=1)) if err.size > 1 else np.nan})
    return pd.DataFrame(rows).set_index("fiducial")


# --------------------------------------------------------------------------------------------
# NeuroKit2 for comparison
# --------------------------------------------------------------------------------------------

_NK = {"p_on": "ECG_P_Onsets", "p_peak": "ECG_P_Peaks", "p_off": "ECG_P_Offsets",
       "qrs_on": "ECG_R_Onsets", "qrs_off": "ECG_R_Offsets", "t_on": "ECG_T_Onsets",
       "t_peak": "ECG_T_Peaks", "t_off": "ECG_T_Offsets"}


def _empty(note: str) -> pd.DataFrame:
    out = pd.DataFrame(columns=["lead", "beat", *OUTPUT_COLUMNS])
    out.attrs["note"] = note
    return out


def neurokit_fiducials(signal_lead, fs: float = FS, method: str = "dwt", lead=0) -> pd.DataFrame:
    """NeuroKit2's delineation (``nk.ecg_peaks`` then ``nk.ecg_delineate``) of one lead, in the
    format of :func:`mask_to_fiducials`. A 2-D input (samples × leads) is done lead by lead
    (named as in :data:`LEADS` for 12 leads). Failures give an empty frame with
    ``attrs["note"]`` saying why; ``"peak"`` has no QRS on/offsets (−1).
    """
    x = np.asarray(signal_lead, dtype=float)
    if x.ndim == 2:
        names = list(LEADS) if x.shape[1] == len(LEADS) else list(range(x.shape[1]))
        frames = [neurokit_fiducials(x[:, i], fs, method, lead=names[i]) for i in range(x.shape[1])]
        notes = [f"{names[i]}: {f.attrs['note']}" for i, f in enumerate(frames) if "note" in f.attrs]
        frames = [f for f in frames if len(f)]
        out = pd.concat(frames, ignore_index=True) if frames else _empty("no lead delineated")
        if notes:
            out.attrs["note"] = "; ".join(notes)
        return out
    import neurokit2 as nk

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, info = nk.ecg_peaks(x, sampling_rate=int(round(fs)))
            r = np.asarray(info["ECG_R_Peaks"], dtype=int)
            if r.size < 2:
                return _empty(f"{r.size} R peak(s) found")
            _, waves = nk.ecg_delineate(x, r, sampling_rate=int(round(fs)), method=method)
    except Exception as exc:  # neurokit raises assorted errors on hard signals
        return _empty(f"neurokit2 failed: {type(exc).__name__}: {exc}")
    out = pd.DataFrame({"lead": lead, "beat": np.arange(r.size), "r_peak": r})
    for col, key in _NK.items():
        v = np.asarray(waves.get(key, [np.nan] * r.size), dtype=float)
        if v.size != r.size:
            v = np.full(r.size, np.nan)
        out[col] = np.where(np.isnan(v), -1, v).astype(np.int64)
    return out[["lead", "beat", *OUTPUT_COLUMNS]]


def main(argv=None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "train":
        print("usage: python -m ecgkit.alfred.delineation train [--profile quick|full] [--seed N] [--out DIR]")
        return 2
    return _train_command(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())


def compare_with_neurokit(n_records: int = 20, seed: int = 1000, model: UNet1D | None = None,
                          batch_size: int = 64) -> dict:
    """The U-Net against NeuroKit2 (``dwt``, lead by lead) on ``n_records`` held-out synthetic
    records (seeds ``seed…``, outside training): ``scores`` (:func:`score_delineation` of each
    against the generator's ground truth), the seconds each took, and NeuroKit2's failed leads."""
    model = model if model is not None else load_delineator("quick", progress=False)
    signals, truths = held_out_records(n_records, seed)
    delineate(signals[:1], FS, model=model)  # warm-up
    t = time.perf_counter()
    unet = delineate(signals, FS, model=model, batch_size=batch_size)
    unet_s = time.perf_counter() - t
    t = time.perf_counter()
    nk = [neurokit_fiducials(s, FS, method="dwt") for s in signals]
    nk_s = time.perf_counter() - t
    return {"records": n_records, "unet_seconds": unet_s, "neurokit_seconds": nk_s,
            "nk_failed_leads": sum(12 - f["lead"].nunique() if len(f) else 12 for f in nk),
            "scores": {"unet": score_delineation(unet, truths, FS),
                       "neurokit": score_delineation(nk, truths, FS)}}
