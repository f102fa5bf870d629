"""Delineating ECGs: the U-Net per lead, beats anchored on one multi-lead QRS detector."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from ...nn import UNet1D
from ...vocabulary import LEADS
from .labels import FS, OUTPUT_COLUMNS, _runs, mask_to_fiducials
from .scoring import _empty


def model_identity(model) -> str:
    """What a delineator's outputs depend on, for a cache key: its weights' hash, its rate and the
    class weights its logits are corrected for."""
    from ...hashing import content_sha256

    return (content_sha256(*model.state_dict().values()) + f"|{getattr(model, 'fs', '')}"
            f"|{getattr(model, 'class_weights', None)}")


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


def logit_adjustment(model) -> torch.Tensor:
    """What :func:`delineate` subtracts from the model's logits: the log of the class weights it
    was trained with (``model.class_weights``). Weighted cross-entropy learns posteriors tilted
    by the weights, which moves every boundary outwards (waves read wider by 6–12 ms on LUDB);
    subtracting their log undoes the tilt. Zero for a model that records no weights."""
    weights = getattr(model, "class_weights", None)
    if weights is None:
        return torch.zeros(1, 1, 1)
    return torch.log(torch.as_tensor(weights, dtype=torch.float32))[None, :, None]


def delineate(signals, fs: float = FS, model: UNet1D | None = None, batch_size: int = 64,
              leads=None, anchors: bool = True) -> list[pd.DataFrame] | pd.DataFrame:
    """Delineate ECGs: ``signals`` records × samples × leads (or a list of samples × leads arrays,
    or one record samples × leads / samples). Returns one fiducials frame per record (a single
    frame for a single record) in samples at ``fs``; see :func:`mask_to_fiducials`.

    All leads of all records go through the network in batches of ``batch_size`` single-lead
    signals; records are resampled to the model's rate (``model.fs``; 500 Hz for a model that does
    not say) and the fiducials mapped back to ``fs``. ``model``: default :func:`load_delineator` for the active profile. ``leads``: names (default
    :data:`LEADS` for 12 leads, else 0, 1, …). Any number of leads works, one included; leads
    that are entirely NaN (a missing lead padded) are left out of the frame.

    ``anchors`` (default): the beats are those of a QRS detector on a multi-lead combination
    signal (:func:`ecgkit.alfred.beats.qrs_anchors`) that the U-Net confirms, the wave boundaries
    are the U-Net's (:func:`align_beats`); ``False``: the beats are a vote over the U-Net's leads
    alone. A frame with no beat says why in ``attrs["note"]`` (and a warning is issued).
    The logits are corrected for the class weights of training (:func:`logit_adjustment`).
    """
    from ...data.preprocess import ecg_resample

    records, single = _as_records(signals)
    if model is None:
        from . import load_delineator

        model = load_delineator()
    model.eval()
    fs = float(fs)
    net_fs = float(getattr(model, "fs", FS))
    adjust = logit_adjustment(model)
    prepared, present = [], []
    for rec in records:
        x = np.asarray(rec, dtype=np.float32)
        usable = np.isfinite(x).any(0)            # an all-NaN column is a missing lead
        present.append(usable)
        x = np.nan_to_num(x[:, usable], nan=0.0, posinf=0.0, neginf=0.0)
        xn = x if fs == net_fs or x.shape[1] == 0 else ecg_resample(x, fs, net_fs, axis=0)
        prepared.append(np.ascontiguousarray(xn.T))  # leads × n
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
                pred = (model(x) - adjust).argmax(1).numpy().astype(np.int8)
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
                from ..beats import combination_signal, qrs_anchors
                energy = combination_signal(p.T, net_fs)
                anchor = qrs_anchors(p.T, net_fs, energy=energy)
                anchor = anchor if len(anchor) else None   # nothing found: the U-Net's vote
            per_lead = mask_to_fiducials(m, net_fs, signal=p, leads=names)
            fid = align_beats(per_lead, p.shape[1], net_fs, anchors=anchor, energy=energy)
            if fid.empty and anchor is not None and not per_lead.empty:
                fid = align_beats(per_lead, p.shape[1], net_fs)   # no anchor confirmed: vote
            if fid.empty:
                fid = _empty("no QRS complex found" if per_lead.empty else
                             "no beat confirmed across leads")
        if "note" in fid.attrs:
            warnings.warn(f"delineate: {fid.attrs['note']}", stacklevel=2)
        if fs != net_fs:
            cols = list(OUTPUT_COLUMNS)
            vals = fid[cols].to_numpy()
            scaled = np.where(vals >= 0, np.minimum(np.rint(vals * fs / net_fs),
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
