"""ALFRED evaluation: PPV, NPV, sensitivity, specificity per superclass and macro, with
bootstrap 95% intervals, and the ablation table beside the paper's numbers.

An answer without a label for a class (LLM error, unparseable answer) counts as a negative
prediction for that class (``missing="negative"``), as a clinician would read "no finding";
how many there were is reported next to the scores.
"""
from __future__ import annotations

import pandas as pd


from ..metrics import RATES, auroc_ci, bootstrap_ci, multilabel_report, paired_auroc_difference
from ..results import paper_numbers
from .answer import SUPERCLASSES
from .pipeline import Diagnoses
from .probabilities import apply_thresholds

__all__ = ["score_diagnoses", "ablation_table", "per_class_table", "score_probabilities",
           "probability_table", "probability_per_class", "paired_comparisons", "probability_verdicts",
           "rules_vs_paper"]


def score_diagnoses(truth: pd.DataFrame, diagnoses: Diagnoses, n_boot: int = 1000,
                    seed: int = 0, groups=None) -> pd.DataFrame:
    """Bootstrap intervals of the rates: rows ``(class, metric)`` for the five superclasses and
    ``macro``; columns estimate, low, high, n_valid. ``truth`` is aligned on the predictions'
    records (booleans, one column per superclass)."""
    y_true = truth.loc[diagnoses.predictions.index, list(SUPERCLASSES)].astype(float)
    y_pred = diagnoses.predictions[list(SUPERCLASSES)]
    metric = lambda t, p: multilabel_report(t, p, missing="negative")[list(RATES)]  # noqa: E731
    return bootstrap_ci(y_true, y_pred, metric, n_boot=n_boot, seed=seed, groups=groups)


def _cell(row) -> str:
    """``estimate [low, high]``; "–" when undefined; an interval of zero width (a constant
    answer, too few records) is said to be not estimable instead of printed as [x, x]."""
    if pd.isna(row["estimate"]):
        return "–"
    if pd.isna(row["low"]) or pd.isna(row["high"]) or row["high"] - row["low"] < 1e-9:
        return f"{row['estimate']:.3f} (no interval: constant)"
    return f"{row['estimate']:.3f} [{row['low']:.2f}, {row['high']:.2f}]"


def _macro_cell(table: pd.DataFrame, metric: str) -> str:
    """:func:`_cell` of the macro row, saying over how many classes the mean was taken when a
    class's rate is undefined (e.g. no positive record of it, no negative prediction)."""
    cell = _cell(table.loc[("macro", metric)])
    classes = [c for c in SUPERCLASSES if (c, metric) in table.index]
    defined = sum(pd.notna(table.loc[(c, metric), "estimate"]) for c in classes)
    if cell != "–" and classes and defined < len(classes):
        cell += f" (mean of {defined} of {len(classes)} classes)"
    return cell


def ablation_table(scores: dict, diagnoses: dict, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration: macro PPV/NPV/Sens/Spec (estimate [95% CI], and over how many
    classes when fewer than five are defined) as ``ours``, the paper's values as ``paper`` (blank
    for the book's own baselines), records, whether an LLM answered (its name, the same in every
    row, belongs in the caption), errors and unparseable answers. ``scores`` / ``diagnoses`` map
    configuration names to :func:`score_diagnoses` results and :class:`Diagnoses`."""
    rows = {}
    for name, table in scores.items():
        d = diagnoses[name]
        rows[name] = {**{("ours", m): _macro_cell(table, m) for m in RATES},
                      ("run", "records"): d.n, ("run", "LLM"): "no" if d.llm in ("none", None) else "yes",
                      ("run", "LLM errors"): d.errors, ("run", "unparseable"): d.unparsed}
    return _beside_paper(rows, paper)


def _beside_paper(rows: dict, paper: pd.DataFrame | None) -> pd.DataFrame:
    """``rows`` (configuration → {(group, column): value}) with the paper's macro rates inserted
    after the ``ours`` columns (NaN for the book's own baselines)."""
    paper = paper_numbers("alfred", "ablation") if paper is None else paper
    reported = paper.pivot(index="configuration", columns="metric", values="value")
    out = {}
    for name, row in rows.items():
        ours = {k: v for k, v in row.items() if k[0] == "ours"}
        theirs = {("paper", m): reported.loc[name, m] if name in reported.index else float("nan")
                  for m in RATES}
        out[name] = {**ours, **theirs, **{k: v for k, v in row.items() if k[0] != "ours"}}
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    frame.index.name = "configuration"
    return frame


def per_class_table(scores: dict) -> pd.DataFrame:
    """Estimates per configuration × superclass (rows) and metric (columns), macro included."""
    parts = {}
    for name, table in scores.items():
        est = table["estimate"].unstack()[list(RATES)]
        parts[name] = est.reindex(list(SUPERCLASSES) + ["macro"])
    return pd.concat(parts, names=["configuration", "class"]).round(3)


def score_probabilities(truth: pd.DataFrame, probs: pd.DataFrame, thresholds: pd.Series,
                        n_boot: int = 1000, seed: int = 0) -> dict:
    """The LLM's label probabilities (records × superclasses) against ``truth``: AUROC per class
    and macro with bootstrap intervals, and PPV/NPV/Sens/Spec of the labels at ``thresholds``
    (chosen on the validation fold, :func:`~ecgkit.alfred.probabilities.threshold_from_validation`).
    Records without a probability are left out of that class's AUROC and count as negative."""
    classes = list(SUPERCLASSES)
    y = truth.loc[probs.index, classes].astype(float)
    labels = apply_thresholds(probs[classes], thresholds[classes])
    metric = lambda t, p: multilabel_report(t, p, missing="negative")[list(RATES)]  # noqa: E731
    return {"auroc": auroc_ci(y, probs[classes], n_boot=n_boot, seed=seed),
            "rates": bootstrap_ci(y, labels, metric, n_boot=n_boot, seed=seed),
            "thresholds": thresholds[classes], "n": len(probs),
            "yes_share": float(labels.eq(True).to_numpy().mean()),
            "spread": float(probs[classes].std().mean())}


def probability_table(scored: dict, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration: macro AUROC and macro PPV/NPV/Sens/Spec at the fold-9
    thresholds (estimate [95% CI]), the paper's rates beside them, the records, the share of
    "yes" labels and the spread (mean standard deviation over records) of the probabilities."""
    rows = {}
    for name, s in scored.items():
        rows[name] = {("ours", "AUROC"): _cell(s["auroc"].loc["macro"]),
                      **{("ours", m): _macro_cell(s["rates"], m) for m in RATES},
                      ("run", "records"): s["n"], ("run", "yes share"): round(s["yes_share"], 3),
                      ("run", "P(yes) sd"): round(s["spread"], 3)}
    return _beside_paper(rows, paper)


def probability_per_class(scored: dict) -> pd.DataFrame:
    """Configuration × class: AUROC with its interval, the fold-9 threshold, Sens and Spec."""
    parts = {}
    for name, s in scored.items():
        auc = s["auroc"][["estimate", "low", "high"]].rename(
            columns={"estimate": "AUROC", "low": "AUROC low", "high": "AUROC high"})
        rates = s["rates"]["estimate"].unstack()[["Sens", "Spec"]]
        frame = auc.join(rates, how="left").join(s["thresholds"].rename("threshold"), how="left")
        parts[name] = frame.reindex(list(SUPERCLASSES) + ["macro"])
    return pd.concat(parts, names=["configuration", "class"]).round(3)


def paired_comparisons(truth: pd.DataFrame, probs: dict, pairs, n_boot: int = 1000,
                       seed: int = 0) -> pd.DataFrame:
    """Macro AUROC of configuration A minus B on the same records (paired bootstrap), for each
    ``(A, B)`` of ``pairs``: does adding rules, retrieval or expert knowledge change anything?"""
    rows = []
    for a, b in pairs:
        common = probs[a].index.intersection(probs[b].index)
        y = truth.loc[common, list(SUPERCLASSES)].astype(float)
        d = paired_auroc_difference(y, probs[a].loc[common, list(SUPERCLASSES)],
                                    probs[b].loc[common, list(SUPERCLASSES)], n_boot=n_boot,
                                    seed=seed).loc["macro"]
        rows.append({"comparison": f"{a} − {b}", "records": len(common),
                     "AUROC A": d["auroc_a"], "AUROC B": d["auroc_b"], "difference": d["difference"],
                     "low": d["low"], "high": d["high"], "p": d["p_value"],
                     "verdict": ("A higher" if d["low"] > 0 else "B higher" if d["high"] < 0
                                 else "no difference shown")})
    return pd.DataFrame(rows).set_index("comparison").round(4)


def probability_verdicts(scored: dict, comparisons: pd.DataFrame) -> dict:
    """What the probability tables say, for the chapter's prose: the configurations whose macro
    AUROC interval lies above 0.5 (``informative``), below it (``inverted``: the model ranks
    the records the wrong way round) or includes it (``uninformative``), and the comparisons
    whose interval excludes 0 (``differences``, as ``"A − B: +0.071"``)."""
    out = {"informative": [], "inverted": [], "uninformative": []}
    for name, s in scored.items():
        macro = s["auroc"].loc["macro"]
        key = ("informative" if macro["low"] > 0.5 else "inverted" if macro["high"] < 0.5
               else "uninformative")
        out[key].append(name)
    out["differences"] = [f"{name}: {row['difference']:+.3f}" for name, row in comparisons.iterrows()
                          if row["verdict"] != "no difference shown"]
    return out


def rules_vs_paper(scores: pd.DataFrame, paper: pd.DataFrame | None = None, against: str = "Proposed") -> dict:
    """The rules-only macro rates (a :func:`score_diagnoses` table) against the paper's
    ``against`` row: per rate, ours, its interval, the paper's value and ``"above"`` / ``"below"``
    (the interval excludes the paper's value) or ``"within"``; ``above`` / ``below`` list the
    rates. The paper's numbers are GPT-4o-mini on all 2,198 fold-10 records; ours are on the
    records we have, so a difference is a statement about these records."""
    paper = paper_numbers("alfred", "ablation") if paper is None else paper
    reported = paper.pivot(index="configuration", columns="metric", values="value").loc[against]
    out = {"against": against, "rates": {}}
    for m in RATES:
        row = scores.loc[("macro", m)]
        theirs = float(reported[m])
        side = ("above" if row["low"] > theirs else "below" if row["high"] < theirs else "within")
        out["rates"][m] = {"ours": float(row["estimate"]), "low": float(row["low"]), "high": float(row["high"]),
                           "paper": theirs, "side": side}
    out["above"] = [m for m, v in out["rates"].items() if v["side"] == "above"]
    out["below"] = [m for m, v in out["rates"].items() if v["side"] == "below"]
    return out
