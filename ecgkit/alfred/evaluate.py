"""ALFRED evaluation: PPV, NPV, sensitivity, specificity per superclass and macro, with
bootstrap 95% intervals, and the ablation table beside the paper's numbers.

An answer without a label for a class (LLM error, unparseable answer) counts as a negative
prediction for that class (``missing="negative"``), as a clinician would read "no finding";
how many there were is reported next to the scores.
"""
from __future__ import annotations

import pandas as pd

from ..metrics import RATES, bootstrap_ci, multilabel_report
from ..results import paper_numbers
from .answer import SUPERCLASSES
from .pipeline import Diagnoses

__all__ = ["score_diagnoses", "ablation_table", "per_class_table"]


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
    if pd.isna(row["estimate"]):
        return "–"
    return f"{row['estimate']:.3f} [{row['low']:.2f}, {row['high']:.2f}]"


def ablation_table(scores: dict, diagnoses: dict, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration: macro PPV/NPV/Sens/Spec (estimate [95% CI]) as ``ours``, the
    paper's values as ``paper`` (blank for the book's own baselines), records, LLM, errors and
    unparseable answers. ``scores`` / ``diagnoses`` map configuration names to
    :func:`score_diagnoses` results and :class:`Diagnoses`."""
    paper = paper_numbers("alfred", "ablation") if paper is None else paper
    reported = paper.pivot(index="configuration", columns="metric", values="value")
    rows = {}
    for name, table in scores.items():
        d = diagnoses[name]
        row = {}
        for m in RATES:
            row[("ours", m)] = _cell(table.loc[("macro", m)])
        for m in RATES:
            row[("paper", m)] = reported.loc[name, m] if name in reported.index else float("nan")
        row[("run", "records")] = d.n
        row[("run", "LLM")] = d.llm
        row[("run", "LLM errors")] = d.errors
        row[("run", "unparseable")] = d.unparsed
        rows[name] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
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
