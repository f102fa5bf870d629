"""Evaluation of chapter 09: AUROC, the share of the gap closed with bootstrap intervals, the
lab-abnormality heads, the ablation table, the paper's claims beside ours, and per-patient
explanations as a clinician reads them.

Bootstrap intervals resample the test records (percentile intervals, fixed seed); each replicate
recomputes every model's AUROCs on the same resample, so differences and ratios are paired
(:func:`ecgkit.metrics.macro_auroc_bootstrap`, :func:`ecgkit.metrics.auroc_ranks`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import auroc_ranks as auroc
from ..metrics import macro_auroc_bootstrap
from ..metrics import percentile_interval as _interval
from .labs import FLAG_NAMES, REFERENCE_RANGES, lab_status

__all__ = ["auroc", "auroc_table", "macro_auroc_bootstrap", "gap_closed", "ablation_table",
           "lab_head_auroc", "PAPER_CLAIMS", "claims_table", "explanations"]


def auroc_table(y_true: pd.DataFrame, probs: dict) -> pd.DataFrame:
    """Per-label and macro AUROC (rows) of each model (columns), plus positives per label."""
    rows = {name: auroc(y_true.to_numpy(), p[y_true.columns].to_numpy()) for name, p in probs.items()}
    frame = pd.DataFrame(rows, index=y_true.columns)
    frame.loc["macro"] = frame.mean(skipna=True)
    frame["positives"] = list(y_true.sum().astype(int)) + [int(y_true.to_numpy().sum())]
    frame.index.name = "label"
    return frame


def gap_closed(y_true: pd.DataFrame, signal: pd.DataFrame, ours: pd.DataFrame, multimodal: pd.DataFrame,
               n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, min_gap: float = 0.01) -> pd.DataFrame:
    """Macro AUROC of the three models and the share of the gap closed,
    (ours − signal-only) / (multimodal − signal-only), with percentile bootstrap intervals.

    Each replicate resamples the test records and recomputes all three macro AUROCs (over the
    labels with a positive and a negative in that replicate) and the ratio. The ratio is
    reported only where the denominator is at least ``min_gap``: a replicate whose gap is
    smaller is counted as undefined (column ``n_valid`` says how many were defined), and when
    the gap on all records is smaller the estimate is NaN rather than a huge or negative number."""
    est, reps = macro_auroc_bootstrap(y_true, [signal, ours, multimodal], n_boot, seed)

    def stats(m):        # (..., 3) macro AUROCs -> (..., 6) rows of the table
        gain, gap = m[..., 1] - m[..., 0], m[..., 2] - m[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(gap >= min_gap, gain / gap, np.nan)
        return np.concatenate([m, gain[..., None], gap[..., None], share[..., None]], axis=-1)

    estimate, reps = stats(est), stats(reps)
    low, high, n_valid = _interval(reps, alpha)
    names = ["signal-only", "ours", "multimodal", "ours − signal-only", "multimodal − signal-only",
             "gap closed"]
    return pd.DataFrame({"estimate": estimate, "low": low, "high": high, "n_valid": n_valid},
                        index=pd.Index(names, name="quantity"))


def ablation_table(y_true: pd.DataFrame, probs: dict, design: dict, reference: str = "ours",
                   n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Macro AUROC of each model with its interval and the paired difference to ``reference``.

    ``design`` maps a model name to what it was trained with, e.g. ``{"stage 1": "none",
    "stage 3 heads": "yes"}`` (:func:`ecgkit.clinical.train.ablation_design`)."""
    names = list(probs)
    est, reps = macro_auroc_bootstrap(y_true, [probs[n] for n in names], n_boot, seed)
    ref = names.index(reference)
    low, high, _ = _interval(reps, alpha)
    dlow, dhigh, _ = _interval(reps - reps[:, [ref]], alpha)
    rows = []
    for j, name in enumerate(names):
        rows.append({"model": name, **design[name],
                     "macro AUROC": est[j], "low": low[j], "high": high[j],
                     f"Δ vs {reference}": est[j] - est[ref], "Δ low": dlow[j], "Δ high": dhigh[j]})
    return pd.DataFrame(rows).set_index("model")


#: What the paper claims (its abstract); it reports no number we can check here.
PAPER_CLAIMS = {
    "beats signal-only": "ours (ECG only at inference) outperforms a signal-only baseline in "
                         "multi-label diagnosis (MIMIC-IV-ECG)",
    "closes the gap": "ours bridges a substantial portion of the gap to a fully multimodal "
                      "model that needs all data at inference",
}


def _ci(row) -> str:
    return f"{row['estimate']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"


def claims_table(gap: pd.DataFrame, substantial: float = 0.3) -> pd.DataFrame:
    """The paper's claims beside ours, from :func:`gap_closed`, with a verdict.

    Verdicts: *agrees* (the 95 % interval is on the claimed side), *same direction, not
    significant*, *disagrees* (the estimate is on the other side), *cannot be assessed* (for the
    gap share: the multimodal model is not clearly better than signal-only, so there is no gap
    to close). "Substantial" is read as a share of at least ``substantial``."""
    gain, gapd, share = gap.loc["ours − signal-only"], gap.loc["multimodal − signal-only"], gap.loc["gap closed"]
    if gain["low"] > 0:
        v1 = "agrees"
    elif gain["estimate"] > 0:
        v1 = "same direction, not significant"
    else:
        v1 = "disagrees"
    if not np.isfinite(share["estimate"]) or not gapd["low"] > 0:
        v2 = (f"cannot be assessed: multimodal − signal-only = {_ci(gapd)} is not clearly above 0, "
              "so there is no gap to close")
        ours2 = (f"share {share['estimate']:.2f} [{share['low']:.2f}, {share['high']:.2f}]"
                 if np.isfinite(share["estimate"]) else "share undefined")
    else:
        ours2 = f"share {share['estimate']:.2f} [{share['low']:.2f}, {share['high']:.2f}]"
        if share["estimate"] > 1 and share["low"] > 0:
            v2 = "agrees, and more: ours is above the multimodal reference (share > 1)"
        elif share["estimate"] >= substantial and share["low"] > 0:
            v2 = "agrees"
        elif share["estimate"] >= substantial:
            v2 = "same direction, not significant"
        else:
            v2 = f"disagrees (share below {substantial:g})"
    rows = [{"claim": "beats signal-only", "paper": PAPER_CLAIMS["beats signal-only"],
             "ours": f"Δ macro AUROC {_ci(gain)}", "verdict": v1},
            {"claim": "closes the gap", "paper": PAPER_CLAIMS["closes the gap"], "ours": ours2, "verdict": v2}]
    return pd.DataFrame(rows).set_index("claim")


def lab_head_auroc(flags: pd.DataFrame, probs: dict, n_boot: int = 1000, seed: int = 0,
                   alpha: float = 0.05) -> pd.DataFrame:
    """AUROC of each lab-abnormality head (rows) for each model (columns) from the ECG alone;
    records where the value was not measured are left out. The first model gets a percentile
    bootstrap interval (``low``, ``high``; measured test records resampled); with positives and
    measured counts."""
    rows = []
    rng = np.random.default_rng(seed)
    first = next(iter(probs)) if probs else None
    for flag in flags.columns:
        seen = flags[flag].notna().to_numpy()
        y = flags[flag].to_numpy()[seen]
        row = {"flag": flag, "finding": FLAG_NAMES.get(flag, flag)}
        for name, p in probs.items():
            row[name] = float(auroc(y[:, None], p[flag].to_numpy()[seen][:, None])[0]) if seen.any() else np.nan
        row["low"] = row["high"] = np.nan
        if first is not None and np.isfinite(row[first]) and n_boot:
            p1 = probs[first][flag].to_numpy()[seen]
            idx = rng.integers(0, len(y), size=(n_boot, len(y)))
            reps = auroc(y[idx][..., None], p1[idx][..., None])[:, 0]
            reps = reps[np.isfinite(reps)]
            if reps.size:
                row["low"], row["high"] = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
        row["positives"], row["measured"] = int(y.sum()), int(seen.sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("flag")


def _measured(lab: str, value: float) -> str:
    if not np.isfinite(value):
        return f"{lab}: not measured"
    low, high = REFERENCE_RANGES.at[lab, "low"], REFERENCE_RANGES.at[lab, "high"]
    unit = REFERENCE_RANGES.at[lab, "unit"].split(" ")[0]
    ref = f"{low:g}–{high:g}" if np.isfinite(low) and np.isfinite(high) else (
        f"< {high:g}" if np.isfinite(high) else f"≥ {low:g}")
    return f"{lab} {value:g} {unit} ({lab_status([value], lab)[0]}; ref {ref})"


def explanations(diag: pd.DataFrame, labs: pd.DataFrame, y_true: pd.DataFrame, clinical: pd.DataFrame,
                 base_rates: pd.Series | None = None, per_label: int = 1, threshold: float = 0.5,
                 top: int = 3) -> pd.DataFrame:
    """For each diagnosis (except NORM), the ``per_label`` test records the model is surest of among
    those that carry it: the diagnosis probability, the lab abnormalities the ECG embedding
    predicts (probability ≥ ``threshold``, at most ``top``, most likely first, each with its base
    rate in training when ``base_rates`` is given; else the most likely one, marked as below
    threshold) and what the measured values were, against their reference range."""
    rows = []

    def shown_as(flag, p):
        base = f" (base rate {base_rates[flag]:.2f})" if base_rates is not None and flag in base_rates else ""
        return f"{FLAG_NAMES.get(flag, flag)} {p:.2f}{base}"

    for label in [c for c in diag.columns if c != "NORM"]:
        carriers = y_true.index[y_true[label] > 0]
        for rec in diag.loc[carriers, label].sort_values(ascending=False).index[:per_label]:
            p = labs.loc[rec].sort_values(ascending=False) if labs.shape[1] else pd.Series(dtype=float)
            shown = p[p >= threshold].iloc[:top]
            if len(shown):
                suggests = "; ".join(shown_as(f, v) for f, v in shown.items())
            elif len(p):
                suggests = f"none ≥ {threshold:g} (most likely: {shown_as(p.index[0], p.iloc[0])})"
            else:
                suggests = "no lab heads (no laboratory values in this dataset)"
            labs_named = list(dict.fromkeys(f.rsplit("_", 1)[0] for f in (shown.index if len(shown) else p.index[:1])))
            measured = "; ".join(_measured(lab, float(clinical.at[rec, lab])) for lab in labs_named
                                 if lab in clinical.columns and lab in REFERENCE_RANGES.index)
            others = [c for c in y_true.columns if y_true.at[rec, c] > 0 and c != label]
            rows.append({"record": rec, "diagnosis": label, "p(diagnosis)": float(diag.at[rec, label]),
                         "also labelled": ", ".join(others) or "–",
                         "the ECG suggests (probability)": suggests, "measured": measured or "–"})
    return pd.DataFrame(rows).set_index(["diagnosis", "record"]) if rows else pd.DataFrame()
