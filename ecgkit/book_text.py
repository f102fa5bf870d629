"""Sentences the book's chapters choose from recorded results, so that a sentence cannot
contradict the table beside it (issue 16). Each function takes recorded tables or metrics and
returns plain text (markdown); the tests cover every branch."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def is_synthetic(info: dict) -> bool:
    """Whether a results file was recorded on the synthetic cohort (its ``dataset`` line)."""
    return "synthetic" in str(info.get("dataset", "")).lower()


# ---- chapter 01: what the expert collection retrieves -------------------------------------

def own_card_table(examples: pd.DataFrame, conditions=None) -> pd.DataFrame:
    """For each question of the retrieval examples and each collection setting: whether a chunk of
    the condition's own expert card (``expert/conditions/<key>.md``; a condition with variants,
    such as LVH by Sokolow-Lyon or Cornell, counts each) came back, and what came back instead."""
    if conditions is None:
        from .knowledge import CONDITIONS as conditions
    rows = []
    for (question, collections), group in examples.groupby(["question", "collections"], sort=False):
        name = question.removeprefix("How is ").split(" reflected")[0].strip().lower()
        keys = {c.key for c in conditions if c.name.lower() == name or c.name.lower().startswith(name + " (")}
        own = {f"expert/conditions/{k}.md" for k in keys}
        sources = list(group.sort_values("rank")["source"])
        rows.append({"condition": name, "collections": collections, "own card": any(s in own for s in sources),
                     "retrieved": ", ".join(sources)})
    return pd.DataFrame(rows)


def expert_collection_sentence(examples: pd.DataFrame, conditions=None) -> str:
    """What adding the expert collection did in the examples, condition by condition."""
    table = own_card_table(examples, conditions)
    widened = table[table["collections"].str.contains("expert")]
    hit = widened.loc[widened["own card"], "condition"].tolist()
    miss = widened.loc[~widened["own card"], "condition"].tolist()
    if not len(widened):
        return "The examples did not query the expert collection."
    text = (f"With the expert collection, the condition's own card comes back within the top 2 for "
            f"{len(hit)} of {len(widened)} conditions" + (f" ({', '.join(hit)})" if hit else ""))
    if miss:
        detail = "; ".join(f"{c}: {widened.set_index('condition').loc[c, 'retrieved']}" for c in miss)
        text += (f"; for {', '.join(miss)} it does not: other cards or general chapters rank higher ({detail}). "
                 "The expert collection can put a condition's own criteria in front of the model, "
                 "but does not always.")
    else:
        text += ": the expert collection puts the condition's own criteria in front of the model."
    return text


# ---- chapter 02: how much was measured, on what ---------------------------------------------

def measured_sentence(metrics: dict, delineation_records: int | None, dataset: str = "") -> str:
    """How many real records were measured (of the records the ``dataset`` line names, where the
    metric does not say), and on how many synthetic records delineation was scored."""
    import re

    m = metrics.get("records_measured", {})
    done, of, failed = m.get("value"), m.get("of"), m.get("failed") or 0
    if of is None and re.search(r"(\d+) records", dataset):
        of = int(re.search(r"(\d+) records", dataset).group(1))
    parts = []
    if done is not None:
        parts.append(f"The U-Net delineated and measured **{done} of the {of if of is not None else '?'} real "
                     f"records** of this run" + (f" ({failed} could not be measured)" if failed else "") + ".")
    if delineation_records:
        parts.append(f"Delineation accuracy itself is scored on **{delineation_records} held-out synthetic "
                     "records** only: PTB-XL has no sample-level annotation to score it against.")
    return " ".join(parts)


# ---- chapter 09: the gap, the ablations, the explanations -----------------------------------

def gap_sentences(gap: pd.DataFrame, has_labs: bool) -> str:
    """The share of the gap closed, said only as far as the gap table supports it."""
    g, d = gap.loc["gap closed"], gap.loc["multimodal − signal-only"]
    m = gap["estimate"]
    if _finite(g["estimate"]):
        text = (f"Share of the gap closed: {g['estimate']:.2f}"
                + (f" (95 % interval {g['low']:.2f} to {g['high']:.2f}; " if _finite(g["low"]) and _finite(g["high"])
                   else " (no interval: ")
                + f"the ratio was defined, a gap of at least 0.01, in {int(g['n_valid'])} of the resamples).")
        if g["estimate"] > 1 and m["ours"] > m["multimodal"]:
            text += (f" The ECG-only model ({m['ours']:.3f}) is above the multimodal reference "
                     f"({m['multimodal']:.3f}), so the share exceeds 1: the multimodal model is no upper bound here.")
            text += (" The diagnoses are defined by the ECG itself and the record adds correlated, not defining, "
                     "information; a fused model can lean on easy tabular cues (troponin for infarction) and "
                     "learn less from the signal in the same number of steps." if has_labs else
                     " The record here is biometrics only (age, sex, height, weight), which say little about "
                     "these diagnoses, so fusing it costs the multimodal model steps without adding much.")
    else:
        text = ("The share of the gap closed is **undefined** here: the multimodal model is not better than "
                f"signal-only by at least 0.01 macro AUROC ({d['estimate']:+.3f}), so there is no gap to close.")
        if m["ours"] > m["multimodal"]:
            text += (f" Ours ({m['ours']:.3f}) is above the multimodal reference ({m['multimodal']:.3f}) as well.")
    if _finite(d["estimate"]) and not (_finite(d["low"]) and d["low"] > 0):
        text += (f" The gap itself, multimodal − signal-only = {d['estimate']:+.3f}"
                 + (f" [{d['low']:+.3f}, {d['high']:+.3f}]" if _finite(d["low"]) and _finite(d["high"]) else "")
                 + ", is not clearly above zero.")
    return text


def identical_rows(frame: pd.DataFrame, columns) -> dict:
    """Rows whose ``columns`` repeat an earlier row's exactly: {row: the earlier row}."""
    seen, copies = {}, {}
    for name, row in frame[list(columns)].iterrows():
        key = tuple(np.round(row.to_numpy(dtype=float), 12))
        if key in seen:
            copies[name] = seen[key]
        else:
            seen[key] = name
    return copies


def ablation_with_notes(abl: pd.DataFrame, has_labs: bool, copies: dict | None = None) -> tuple[pd.DataFrame, str]:
    """The ablation table with a note on each row that is an exact copy of another (without lab
    values there are no stage-3 heads: "no stage 3" is ours and "no stage 1" is signal-only),
    and a sentence saying so."""
    copies = copies if copies is not None else identical_rows(
        abl, [c for c in ("macro AUROC", "low", "high") if c in abl.columns])
    prefer = ("ours", "signal-only", "multimodal")
    copies = {(b if b not in prefer and a in prefer else a): (a if b not in prefer and a in prefer else b)
              for a, b in copies.items()}
    frame = abl.copy()
    frame["note"] = ["same model as " + copies[n] + ("" if has_labs else " (no lab heads)") if n in copies else ""
                     for n in frame.index]
    if not copies:
        return frame.drop(columns="note"), ""
    pairs = ", ".join(f"“{a}” = “{b}”" for a, b in copies.items())
    text = (f"Rows that repeat another exactly are the same model: {pairs}."
            + ("" if has_labs else " Without laboratory values there are no stage-3 heads, so these rows "
               "are not ablations and say nothing about stage 1 or stage 3."))
    return frame, text


def explanations_view(ex: pd.DataFrame, column: str = "the ECG suggests (probability)") -> tuple[pd.DataFrame, str]:
    """The explanations table without a column that says the same in every row (e.g. "no lab
    heads"), and that statement once."""
    if column in ex.columns and ex[column].nunique() == 1 and len(ex) > 1:
        return ex.drop(columns=column), f"In every row, {column.split(' (')[0]}: {ex[column].iloc[0]}."
    return ex, ""
