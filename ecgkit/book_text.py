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
    annotated = metrics.get("annotated_ecgs", {})
    if annotated.get("value"):
        parts.append(f"Delineation accuracy is scored against cardiologists' wave boundaries on "
                     f"**{annotated['value']} annotated ECGs** ({annotated.get('databases', 'LUDB, QT Database')}; "
                     "each by a model that never saw its record)"
                     + (f" and on {delineation_records} held-out synthetic records." if delineation_records else "."))
    elif delineation_records:
        parts.append(f"Delineation accuracy is scored on **{delineation_records} held-out synthetic "
                     "records** only in this run (no ECGs with cardiologists' boundaries were given: "
                     "`ECGKIT_DELINEATION`).")
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


# ---- chapters 04-05: ESI's claims, said only as far as the recorded comparisons go ------------

def retrieval_sentence(direction: dict, statements: int | None) -> str:
    """Chapter 04: retrieval against no retrieval (the ``retrieval_direction`` metric), ours
    beside the paper's, and whether the statements scored are enough to call it (the scorecard's
    rule: fewer than ten items is not a test)."""
    from .scorecard import NOT_TESTABLE, Comparison, verdict

    ours, paper, kind = direction.get("ours"), direction.get("paper"), direction.get("value")
    if kind == "not comparable" or not (_finite(ours) and _finite(paper)):
        return "The retrieval settings cannot be compared with the paper's here."
    said = (f"documents + expert against no retrieval {ours:+.3f} F1 (paper, both textbooks against none: "
            f"{paper:+.4f})")
    v = verdict(1, Comparison(ours, items=statements, items_name="statements scored"))
    if v.label == NOT_TESTABLE:
        return (f"On the {statements} statement{'s' if statements != 1 else ''} scored here, {said}: "
                + ("the same direction as the paper's" if kind == "same direction" else "the reverse of the paper's")
                + f", but {v.reason.replace('rests on', 'it rests on')}, so it is an observation, not a finding.")
    if kind == "same direction":
        return f"Retrieval helps here as in the paper: {said}, on {statements} statements."
    return (f"**Our retrieval ordering is the reverse of the paper's**: {said}, on {statements} statements; "
            "a small model copies and garbles retrieved text more than it uses it.")


def _cohort(task: str) -> str:
    return "the synthetic cohort" if str(task).startswith("synthetic") else "the real subset"


def esi_baseline_sentences(comparisons: pd.DataFrame) -> str:
    """Chapter 05: what the paired comparisons say about ESI against each baseline, cohort by
    cohort (rows (task, baseline) with ``verdict`` better / worse / no detectable difference)."""
    names = {"random init": "a random, untrained encoder", "SimCLR": "SimCLR",
             "supervised (scratch)": "the supervised encoder (trained on the labels themselves)"}
    parts = []
    for base in ("random init", "SimCLR", "supervised (scratch)"):
        rows = comparisons[comparisons.index.get_level_values("baseline") == base]
        if not len(rows):
            continue
        by = {}
        for (task, _), row in rows.iterrows():
            by.setdefault(row["verdict"], []).append(f"{_cohort(task)} ({row['difference']:+.3f})")
        said = []
        for key, verb in (("better", "beats"), ("worse", "does worse than"),
                          ("no detectable difference", "is not distinguishable from")):
            if key in by:
                on = " and ".join(by[key])
                said.append(f"{verb} {names[base]} on {'both cohorts: ' if len(by[key]) == len(rows) > 1 else ''}{on}")
        parts.append("ESI " + "; it ".join(said) if said else f"ESI cannot be compared with {names[base]}")
    return ". ".join(parts) + "." if parts else ""


def identification_sentence(ident: pd.DataFrame, column: str = "lp_accuracy") -> str:
    """Chapter 05: identification linear-probe accuracy of ESI against the random encoder, set by
    set (an average over sets can hide that they disagree), with the patients each rests on."""
    from .scorecard import MIN_ITEMS

    lines = []
    for task in dict.fromkeys(ident.index.get_level_values(0)):
        if (task, "ESI") not in ident.index or (task, "random init") not in ident.index:
            continue
        esi, rnd = ident.loc[(task, "ESI")], ident.loc[(task, "random init")]
        d, n = float(esi[column] - rnd[column]), int(esi["patients"])
        verdict = ("random features identify patients better than ESI" if d < -0.02 else
                   "ESI identifies patients better than random features" if d > 0.02 else
                   "ESI and random features identify patients about equally well (within 0.02)")
        few = f"; {n} patients are too few to call it" if n < MIN_ITEMS else ""
        lines.append(f"- {_cohort(task)} ({n} patients): ESI {esi[column]:.3f}, random {rnd[column]:.3f} "
                     f"({d:+.3f}): {verdict}{few}.")
    if not lines:
        return ""
    text = ("Identification linear-probe accuracy, ESI against the random encoder (means over seeds, no "
            "interval recorded for the difference):\n\n" + "\n".join(lines))
    if any("random features identify patients better" in line for line in lines):
        text += ("\n\nWhere random features are ahead: they keep the individual waveform shape, while pretraining "
                 "towards shared statements (texts, labels) pulls records of different patients with the same "
                 "findings together.")
    return text


def text_source_sentence(ablation: pd.DataFrame, classification: pd.DataFrame) -> str:
    """Chapter 05: does text quality matter for ESI here? The linear-probe AUC of ESI pretrained on
    each of the three text sources (CQA, the expert cards' hand-written waveform texts, plain
    statement names), per task, against the seed-to-seed SD of ESI's AUC in the method comparison."""
    from .esi.experiments import CARD_TEXTS

    sources = {"ESI (full)": "CQA", CARD_TEXTS: "expert cards", "w/o CQA": "statement names"}
    if not set(sources) <= set(ablation.index):
        return ""
    lines, verdicts = [], []
    for column in [c for c in ablation.columns if str(c).endswith(": linear probe AUC")]:
        task = str(column).split(": ", 1)[0]
        values = {label: float(ablation.loc[row, column]) for row, label in sources.items()}
        sd = (float(classification.loc[("ESI", "linear probe"), (task, "sd")])
              if (task, "sd") in classification.columns and ("ESI", "linear probe") in classification.index else float("nan"))
        if not all(_finite(v) for v in values.values()):
            continue
        spread = max(values.values()) - min(values.values())
        best = max(values, key=values.get)
        within = bool(spread <= 2 * sd) if _finite(sd) else None
        verdicts.append(within)
        where = (f"within twice the seed-to-seed SD of ESI's AUC ({sd:.3f})" if within else
                 f"more than twice the seed-to-seed SD of ESI's AUC ({sd:.3f}); {best} highest" if _finite(sd) else
                 "no seed-to-seed SD recorded to judge it")
        lines.append(f"- {_cohort(task)}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items())
                     + f"; spread {spread:.3f}, {where}.")
    if not lines:
        return ""
    if any(v is None for v in verdicts):
        verdict = "Without a seed-to-seed SD the differences between the text sources cannot be judged."
    elif all(verdicts):
        verdict = ("Text quality does not measurably matter for ESI at this scale: hand-written texts, the LLM's "
                   "descriptions and bare statement names teach the encoder about equally well, so the statement "
                   "names the texts share carry what the contrastive loss learns here.")
    else:
        verdict = ("The text source moves the encoder by more than the seeds do on at least one task (one seed per "
                   "source, so a second seed is what would confirm it).")
    return ("Linear-probe macro AUC after pretraining on each text source (one seed each, same records and "
            "steps):\n\n" + "\n".join(lines) + "\n\n" + verdict)


def shuffled_zero_shot_sentence(misalignment: pd.DataFrame, test_records: int | None = None,
                                seeds: int | None = None) -> str:
    """Chapter 05: what zero-shot reads when every pair is shuffled, and what that number means."""
    columns = [c for c in misalignment.columns if str(c).startswith("zero-shot")]
    if not columns or not len(misalignment):
        return ""
    full = misalignment.index.max()
    value = float(misalignment.loc[full, columns[0]])
    on = ", ".join(x for x in (f"{seeds} seed{'s' if seeds != 1 else ''}" if seeds else "",
                                f"{test_records} test records" if test_records else "") if x)
    head = (f"At {full:.0%} shuffled the texts carry no information about their ECG, so zero-shot has nothing "
            f"to learn from and should sit near chance (0.5); here it reads {value:.3f}" + (f" ({on})" if on else ""))
    if abs(value - 0.5) <= 0.05:
        return head + ": at chance, as it should."
    if value < 0.5:
        return (head + ": below chance, meaning the class prompts rank the records the wrong way round. The "
                "shuffled texts cannot have taught that, and no interval is recorded for this run, so whether it "
                "is more than chance variation on these records cannot be told here.")
    return (head + ": above chance, so something other than the pairing (the prompts' words lying near "
            "frequent findings, or a single run's noise) separates the classes.")


def delineation_finding(tables: dict, metrics: dict) -> str:
    """Chapter 02's finding in two sentences, from its recorded cardiologist scores: how far our
    P and T offsets fall from the cardiologists' on LUDB (cross-validated) beside the previous
    delineator's, and how many fiducials reach the best published U-Net. Empty before it ran."""
    scores = tables.get("cardiologist_scores")
    if scores is None or not len(scores):
        return ""
    t = scores.reset_index().set_index(["method", "database", "fiducial"])

    def err(method, fid):
        key = (method, "ludb", fid)
        if key not in t.index:
            return None
        return f"{t.loc[key, 'mean_error_ms']:+.1f} ± {t.loc[key, 'sd_error_ms']:.1f} ms"

    ours = {f: err("ours (cross-validated)", f) for f in ("p_off", "t_off")}
    before = {f: err("ours before (synthetic only)", f) for f in ("p_off", "t_off")}
    if not all(ours.values()):
        return ""
    text = ("**Against cardiologists** (LUDB, each record delineated by a model that never saw it): "
            f"our P waves end {ours['p_off']} and our T waves {ours['t_off']} from the cardiologists' marks")
    if all(before.values()):
        text += f" (the previous delineator, trained on synthetic records: {before['p_off']} and {before['t_off']})"
    goal = metrics.get("fiducials_meeting_goal", {})
    if goal.get("value") is not None:
        text += (f"; {goal['value']} of {goal.get('of')} fiducials reach the best published U-Net's "
                 "sensitivity, PPV and spread (table below)")
    return text + "."
