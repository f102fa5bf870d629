"""Training the U-Net on per-sample labels: cardiologists' (LUDB, QT Database) and/or synthetic.

The training unit is an *item*: one ECG stretch as ``(signal leads × n float32, labels leads × n
int8)`` at the network's rate, labels :data:`~ecgkit.data.delineation.LABELS` with −1 for samples
nobody marked (ignored by the loss). :func:`annotated_items` makes items of annotated ECGs
(:mod:`ecgkit.data.delineation`), :func:`synthetic_items` of the synthetic cohort.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ...nn import UNet1D
from .inference import standardise
from .labels import FS, fiducials_to_mask

#: Label of samples the loss ignores (every negative label: unmarked, no T onset marked, padding).
IGNORE = -1


# --------------------------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------------------------

def _resample_item(signal: np.ndarray, labels: np.ndarray, fs_in: float, fs_out: float):
    """(leads × n) signal and labels at ``fs_in`` → at ``fs_out`` (labels by nearest sample)."""
    if fs_in == fs_out:
        return np.ascontiguousarray(signal, dtype=np.float32), np.ascontiguousarray(labels, dtype=np.int8)
    from ...data.preprocess import ecg_resample

    sig = ecg_resample(signal, fs_in, fs_out, axis=1).astype(np.float32)
    n = sig.shape[1]
    src = np.minimum(np.floor(np.arange(n) * fs_in / fs_out).astype(np.int64), labels.shape[1] - 1)
    return np.ascontiguousarray(sig), np.ascontiguousarray(labels[:, src], dtype=np.int8)


def annotated_items(ecgs, fs: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Items of annotated ECGs (:class:`~ecgkit.data.delineation.AnnotatedECG`) at ``fs``."""
    return [_resample_item(e.signal.T, e.labels.T, e.fs, fs) for e in ecgs]


def synthetic_items(n_records: int, seed: int, fs: float, progress: bool = False):
    """Items of the synthetic cohort (``n_records``, ``seed``; its generator's fiducials as
    labels) at ``fs``."""
    if n_records <= 0:
        return []
    from ...data.ptbxl import load_ptbxl
    from ...data.synthetic import synthetic_cohort

    folder = synthetic_cohort(n_records=n_records, seed=seed, progress=progress)
    ds = load_ptbxl(folder, rate=500, progress=progress)
    fid = pd.read_csv(folder / "fiducials.csv.gz")
    signals = np.asarray(ds.signals, dtype=np.float32).transpose(0, 2, 1)
    groups = {k: g for k, g in fid.groupby("ecg_id")}
    items = []
    for r, ecg_id in enumerate(ds.meta.index):
        if ecg_id in groups:
            mask = fiducials_to_mask(groups[ecg_id], signals.shape[-1])
            items.append(_resample_item(signals[r], mask, 500, fs))
    return items


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------

def _as_items(data) -> list[tuple[np.ndarray, np.ndarray]]:
    """``data``: a list of items, or ``(signals, masks)`` arrays records × leads × n."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        return [(s, m) for s, m in zip(data[0], data[1])]
    return list(data)


def _augment_batch(items, window: int, rng: np.random.Generator, augment: bool, fs: float = FS):
    """One random ``window`` of every item (all its leads), augmented, as tensors
    (leads in all, 1, window) and (leads in all, window); items shorter than the window are padded
    (edge values, labels :data:`IGNORE`)."""
    xs, ys = [], []
    for s, m in _as_items(items):
        n = s.shape[-1]
        stretch = float(np.exp(rng.uniform(np.log(0.75), np.log(1.33)))) if augment else 1.0
        span = min(n, int(round(window * stretch)))
        target = min(window, int(round(span / stretch)))
        start = int(rng.integers(0, n - span + 1))
        seg = s[:, start:start + span]
        lab = m[:, start:start + span]
        if target != span:  # time stretch: linear interpolation, labels by nearest sample
            pos = np.linspace(0, span - 1, target)
            near = np.rint(pos).astype(int)
            lo = np.floor(pos).astype(int)
            hi = np.minimum(lo + 1, span - 1)
            w = (pos - lo).astype(np.float32)
            seg = seg[:, lo] * (1 - w) + seg[:, hi] * w
            lab = lab[:, near]
        seg = np.array(seg, dtype=np.float32)
        lab = np.array(lab, dtype=np.int8)
        if augment:
            L = seg.shape[0]
            t = np.arange(seg.shape[1]) / fs
            seg *= rng.uniform(0.5, 2.0, (L, 1)).astype(np.float32) * \
                np.where(rng.random((L, 1)) < 0.1, -1, 1).astype(np.float32)
            f = rng.uniform(0.05, 0.6, (L, 1))
            seg += (rng.uniform(0, 0.4, (L, 1)) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3, (L, 1)))
                    ).astype(np.float32)
            seg += (rng.uniform(0, 0.06, (L, 1)) * rng.standard_normal(seg.shape)).astype(np.float32)
        if seg.shape[1] < window:       # a short item: pad, the padding ignored by the loss
            pad = window - seg.shape[1]
            seg = np.pad(seg, ((0, 0), (0, pad)), mode="edge")
            lab = np.pad(lab, ((0, 0), (0, pad)), constant_values=IGNORE)
        xs.append(seg)
        ys.append(lab)
    x = standardise(torch.from_numpy(np.concatenate(xs))[:, None])
    y = torch.from_numpy(np.concatenate(ys).astype(np.int64))
    y[y < 0] = IGNORE                   # unmarked, no T onset marked, padding
    return x, y


#: Cross-entropy class weights (none, P, QRS, T): the short waves count more.
CLASS_WEIGHTS = (0.5, 1.5, 1.5, 1.0)


def train_step(model: nn.Module, optimiser: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor) -> float:
    """One optimisation step (weighted cross-entropy, :data:`IGNORE` labels left out); returns
    the loss."""
    model.train()
    optimiser.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y, weight=torch.tensor(CLASS_WEIGHTS), ignore_index=IGNORE)
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def train_delineator(n_records: int = 300, epochs: int = 6, seed: int = 0, window: int = 2048,
                     augment: bool = True, progress: bool = True, records_per_batch: int = 4,
                     lr: float = 3e-3, base: int = 8, depth: int = 4, kernel: int = 7,
                     fs: float = FS, data=None, **_ignored) -> UNet1D:
    """Train a :class:`UNet1D` (``base=8, kernel=7`` by default: fast enough on a CPU for the
    20×-faster-than-NeuroKit2 goal) at ``fs`` Hz for ``epochs``.

    ``data``: training items (:func:`annotated_items`, :func:`synthetic_items`) or
    ``(signals, masks)`` arrays records × leads × n at ``fs``; default the synthetic cohort
    (``n_records``, ``seed``). An epoch draws as many windows as the items' samples fill
    (items drawn in proportion to their length), ``records_per_batch`` items per step, one random
    ``window`` of all an item's leads each, augmented with a time stretch (×0.75–1.33, a rate
    change), amplitude scaling (×0.5–2, 10 % inverted), baseline wander (0.05–0.6 Hz, up to
    0.4 mV) and Gaussian noise (up to 0.06 mV). Loss: cross-entropy with :data:`CLASS_WEIGHTS`,
    unmarked samples ignored; AdamW with a one-cycle learning-rate schedule. The history is in
    ``model.history``; the rate in ``model.fs``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    items = _as_items(data) if data is not None else synthetic_items(n_records, seed, fs, progress)
    if not items:
        raise ValueError("no training data")
    lengths = np.array([max(m.shape[-1], window) for _, m in items], dtype=float)
    weights = lengths / lengths.sum()
    steps_per_epoch = max(1, int(np.ceil(lengths.sum() / window / records_per_batch)))
    model = UNet1D(base=base, depth=depth, kernel=kernel)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    history = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        losses = []
        for _ in range(steps_per_epoch):
            idx = rng.choice(len(items), size=min(records_per_batch, len(items)), replace=False, p=weights)
            x, y = _augment_batch([items[i] for i in np.sort(idx)], window, rng, augment, fs)
            losses.append(train_step(model, opt, x, y))
            sched.step()
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "seconds": time.perf_counter() - t0})
        if progress:
            print(f"delineator epoch {epoch + 1}/{epochs}: loss {history[-1]['loss']:.4f} "
                  f"({history[-1]['seconds']:.0f} s)", flush=True)
    model.eval()
    model.history = history
    model.fs = float(fs)
    model.class_weights = list(CLASS_WEIGHTS)
    model.train_config = dict(n_records=n_records, epochs=epochs, seed=seed, window=window,
                              augment=augment, records_per_batch=records_per_batch, lr=lr, fs=fs)
    return model
