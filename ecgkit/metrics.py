"""Classification metrics used across the book: PPV, NPV, sensitivity, specificity.

* :func:`binary_metrics`: one binary task, from its confusion counts.
  A metric whose denominator is zero (e.g. sensitivity of a class without positives) is NaN,
  never an error.
* :func:`multilabel_report`: one row per class plus a ``macro`` row (unweighted mean over the
  classes of each metric, NaN classes skipped; the counts of the macro row are sums over the
  classes). This is how the ALFRED paper reports its ablation table (macro over
  NORM/MI/STTC/CD/HYP).
* :func:`bootstrap_ci`: percentile bootstrap confidence intervals, resampling records (or
  patients, when ``groups`` is given: all records of a drawn patient come along), deterministic
  for a seed.
* :func:`auroc` / :func:`auroc_ci`: AUROC per class (and the macro mean) of continuous scores
  (e.g. LLM label probabilities), with bootstrap intervals; :func:`paired_auroc_difference`: the
  difference of two configurations' AUROC on the same records, the same bootstrap draws for both
  (paired), with an interval and a two-sided bootstrap p-value.
* :func:`auroc_ranks` (vectorised over resamples), :func:`macro_auroc_bootstrap` (every model on
  the same resamples) and :func:`percentile_interval`: the fast paired bootstrap of chapter 09.

Missing predictions (NaN/None, e.g. an unparseable LLM answer) are an error by default;
``missing="negative"`` counts them as negative predictions, ``missing="drop"`` leaves the
records out.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = ["RATES", "binary_metrics", "multilabel_report", "bootstrap_ci", "auroc", "auroc_ci",
           "paired_auroc_difference", "auroc_ranks", "macro_auroc_bootstrap", "percentile_interval"]

RATES = ("PPV", "NPV", "Sens", "Spec")


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def _as_float(x) -> np.ndarray:
    if isinstance(x, (pd.Series, pd.DataFrame)):
        x = x.to_numpy()
    try:  # fast path: numbers, booleans, None (-> NaN)
        return np.asarray(x, dtype=float).ravel()
    except (TypeError, ValueError):
        pass
    arr = np.asarray(x, dtype=object).ravel()
    out = np.full(arr.shape, np.nan)
    for i, v in enumerate(arr):
        if v is None:
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"not a binary label: {v!r}")
    return out


def _clean(y_true, y_pred, missing: str):
    t, p = _as_float(y_true), _as_float(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred {p.size}")
    if np.isnan(t).any():
        raise ValueError("y_true has missing values")
    bad = np.isnan(p)
    if bad.any():
        if missing == "negative":
            p = np.where(bad, 0.0, p)
        elif missing == "drop":
            t, p = t[~bad], p[~bad]
        else:
            raise ValueError(f"{int(bad.sum())} missing predictions; pass missing='negative' or "
                             "missing='drop'")
    for name, a in (("y_true", t), ("y_pred", p)):
        if not np.isin(a, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be binary (0/1 or False/True)")
    return t.astype(bool), p.astype(bool)


def binary_metrics(y_true, y_pred, missing: str = "error") -> dict:
    """PPV, NPV, Sens, Spec (NaN where the denominator is 0), n, tp, fp, tn, fn."""
    t, p = _clean(y_true, y_pred, missing)
    # counted directly: the bootstrap calls this thousands of times (sklearn's checks cost ~1 ms a call)
    tp, fp = int(np.count_nonzero(t & p)), int(np.count_nonzero(~t & p))
    fn, tn = int(np.count_nonzero(t & ~p)), int(np.count_nonzero(~t & ~p))
    return {"PPV": _ratio(tp, tp + fp), "NPV": _ratio(tn, tn + fn), "Sens": _ratio(tp, tp + fn),
            "Spec": _ratio(tn, tn + fp), "n": int(t.size), "tp": tp, "fp": fp, "tn": tn,
            "fn": fn}


def _frame(y, classes) -> pd.DataFrame:
    if isinstance(y, pd.DataFrame):
        return y
    arr = np.asarray(y, dtype=object)
    if arr.ndim != 2 or classes is None or arr.shape[1] != len(classes):
        raise ValueError("pass DataFrames, or 2-D arrays with one column per class")
    return pd.DataFrame(arr, columns=list(classes))


def multilabel_report(y_true, y_pred, classes: Optional[Sequence[str]] = None,
                      missing: str = "error") -> pd.DataFrame:
    """Per-class :func:`binary_metrics` (rows = ``classes``, default the columns of ``y_true``)
    and a ``macro`` row: mean of each rate over the classes where it is defined (NaN skipped;
    NaN when undefined everywhere); its ``n`` is the number of records, its ``tp``, ``fp``,
    ``tn``, ``fn`` are sums over the classes. Rows are aligned by
    position (both frames must have the same length)."""
    if classes is None:
        if not isinstance(y_true, pd.DataFrame):
            raise ValueError("classes is needed when y_true is not a DataFrame")
        classes = list(y_true.columns)
    classes = list(classes)
    yt, yp = _frame(y_true, classes), _frame(y_pred, classes)
    if len(yt) != len(yp):
        raise ValueError(f"y_true has {len(yt)} rows but y_pred {len(yp)}")
    rows = {c: binary_metrics(yt[c].to_numpy(), yp[c].to_numpy(), missing) for c in classes}
    macro = {}
    for k in ("PPV", "NPV", "Sens", "Spec", "n", "tp", "fp", "tn", "fn"):
        values = np.array([r[k] for r in rows.values()], dtype=float)
        if k in RATES:
            macro[k] = float(np.nanmean(values)) if (~np.isnan(values)).any() else math.nan
        else:
            macro[k] = int(values.sum())
    macro["n"] = len(yt)
    rows["macro"] = macro
    # one frame built once (the bootstrap calls this for every replicate)
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "class"
    return df


def _flatten(value) -> pd.Series:
    if isinstance(value, pd.DataFrame):
        cols = [c for c in RATES if c in value.columns] or list(value.columns)
        sub = value[cols]
        # the full product (class, metric), NaN kept, whatever the pandas version
        index = pd.MultiIndex.from_product([sub.index, cols])
        return pd.Series(sub.to_numpy(dtype=float).ravel(), index=index)
    if isinstance(value, pd.Series):
        return value
    if isinstance(value, dict):
        keys = [k for k in RATES if k in value] or list(value)
        return pd.Series({k: value[k] for k in keys}, dtype=float)
    return pd.Series({"value": float(value)})


def _take(y, idx):
    if isinstance(y, (pd.DataFrame, pd.Series)):
        return y.iloc[idx]
    return np.asarray(y, dtype=object)[idx]


def _draws(n: int, n_boot: int, seed: int, groups=None):
    """The bootstrap replicates' record indices: records (or, with ``groups``, patients) drawn
    with replacement, ``numpy`` generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != n:
            raise ValueError("groups must have one id per record")
        _, inverse = np.unique(groups, return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    for _ in range(n_boot):
        if groups is None:
            yield rng.integers(0, n, size=n)
        else:
            drawn = rng.integers(0, len(members), size=len(members))
            yield np.concatenate([members[g] for g in drawn])


def bootstrap_ci(y_true, y_pred, metric_fn: Optional[Callable] = None, n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05, groups=None) -> pd.DataFrame:
    """Percentile bootstrap intervals of ``metric_fn(y_true, y_pred)``.

    ``metric_fn`` returns a scalar, a dict (the rates PPV/NPV/Sens/Spec are kept when present)
    or a DataFrame such as :func:`multilabel_report` (its rate columns, every row, ``macro``
    included). Default: :func:`multilabel_report` for DataFrames, :func:`binary_metrics`
    otherwise. Records are drawn with replacement (``n_boot`` times, ``numpy`` generator with
    ``seed``); with ``groups`` (one patient id per record) patients are drawn instead and bring
    all their records. Replicates where a metric is NaN are skipped for that metric.

    Returns a DataFrame indexed like the flattened metric (``metric`` or ``(class, metric)``)
    with columns ``estimate`` (on all records), ``low``, ``high`` and ``n_valid`` (replicates
    where the metric was defined).
    """
    if metric_fn is None:
        metric_fn = multilabel_report if isinstance(y_true, pd.DataFrame) else binary_metrics
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    n = len(y_true)
    if len(y_pred) != n:
        raise ValueError(f"y_true has {n} records but y_pred {len(y_pred)}")
    if isinstance(y_true, pd.DataFrame) and isinstance(y_pred, pd.DataFrame):
        # convert once (True/False/None -> 1/0/NaN) so that each replicate is cheap
        y_true = y_true.apply(lambda c: pd.Series(_as_float(c), index=c.index))
        y_pred = y_pred.apply(lambda c: pd.Series(_as_float(c), index=c.index))
    estimate = _flatten(metric_fn(y_true, y_pred)).astype(float)
    reps = np.full((n_boot, len(estimate)), np.nan)
    for b, idx in enumerate(_draws(n, n_boot, seed, groups)):
        value = _flatten(metric_fn(_take(y_true, idx), _take(y_pred, idx))).astype(float)
        reps[b] = value.reindex(estimate.index).to_numpy()
    valid = ~np.isnan(reps)
    low = np.full(len(estimate), np.nan)
    high = np.full(len(estimate), np.nan)
    for j in range(len(estimate)):
        col = reps[valid[:, j], j]
        if col.size:
            low[j], high[j] = np.quantile(col, [alpha / 2, 1 - alpha / 2])
    return pd.DataFrame({"estimate": estimate.to_numpy(), "low": low, "high": high,
                         "n_valid": valid.sum(axis=0)}, index=estimate.index)


# ----------------------------------------------------------------------------- AUROC


def _score_frame(y, classes) -> pd.DataFrame:
    """Records × classes: a DataFrame's ``classes`` columns, or an array (one column per class)."""
    if isinstance(y, pd.DataFrame):
        return y[list(classes)] if classes is not None else y
    if isinstance(y, pd.Series):
        return y.to_frame(name=classes[0] if classes else (y.name if y.name is not None else "score"))
    arr = np.asarray(y, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    names = list(classes) if classes is not None else [f"class{j}" for j in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise ValueError(f"{arr.shape[1]} columns of scores for {len(names)} classes")
    return pd.DataFrame(arr, columns=names)


def _auroc_one(t: np.ndarray, s: np.ndarray) -> float:
    keep = ~(np.isnan(t) | np.isnan(s))
    t, s = t[keep], s[keep]
    if t.size == 0 or t.min() == t.max():
        return math.nan
    return float(auroc_ranks(t[:, None], s[:, None])[0])


def auroc(y_true, scores, classes: Optional[Sequence[str]] = None) -> pd.Series:
    """AUROC per class of continuous ``scores`` against binary ``y_true`` (records × classes,
    DataFrames or arrays; a single column also works), plus ``macro`` (mean over the classes
    where it is defined). A class with one label value only (or no scored record) is NaN;
    records with a missing score are left out of that class."""
    yt = _score_frame(y_true, classes)
    classes = list(yt.columns) if classes is None else list(classes)
    ys = _score_frame(scores, classes)
    if len(yt) != len(ys):
        raise ValueError(f"y_true has {len(yt)} records but scores {len(ys)}")
    values = {c: _auroc_one(_as_float(yt[c]), _as_float(ys[c])) for c in classes}
    defined = [v for v in values.values() if not math.isnan(v)]
    values["macro"] = float(np.mean(defined)) if defined else math.nan
    return pd.Series(values, name="AUROC", dtype=float)


def _macro_of(v: np.ndarray) -> np.ndarray:
    """Mean of per-class AUROCs ``v`` (..., C) over the defined (finite) classes: (...); NaN when none."""
    finite = np.isfinite(v)
    with np.errstate(invalid="ignore"):
        return np.where(finite.any(axis=-1), np.where(finite, v, 0).sum(axis=-1) / finite.sum(axis=-1), np.nan)


def auroc_ci(y_true, scores, classes: Optional[Sequence[str]] = None, n_boot: int = 1000, seed: int = 0,
             alpha: float = 0.05, groups=None) -> pd.DataFrame:
    """:func:`auroc` with percentile bootstrap intervals (:func:`bootstrap_ci`): rows are the
    classes and ``macro``; columns ``estimate``, ``low``, ``high``, ``n_valid``."""
    yt = _score_frame(y_true, classes)
    classes = list(yt.columns) if classes is None else list(classes)
    ys = _score_frame(scores, classes)
    yt, ys = yt.reset_index(drop=True), ys.reset_index(drop=True)
    t = np.column_stack([_as_float(yt[c]) for c in classes]) if classes else np.zeros((len(yt), 0))
    s = np.column_stack([_as_float(ys[c]) for c in classes]) if classes else np.zeros((len(ys), 0))
    if groups is not None or np.isnan(t).any() or np.isnan(s).any() or not 0 < alpha < 1 or not len(t):
        table = bootstrap_ci(yt, ys, metric_fn=lambda t, s: auroc(t, s, classes), n_boot=n_boot, seed=seed,
                             alpha=alpha, groups=groups)
        table.index.name = "class"
        return table
    # every replicate at once, in blocks: the same draws and AUROCs as bootstrap_ci with auroc()
    estimate = auroc(t, s, classes).to_numpy()
    draws = list(_draws(len(t), n_boot, seed))
    reps = np.full((n_boot, len(classes) + 1), np.nan)
    for start in range(0, n_boot, 200):
        idx = np.stack(draws[start:start + 200])
        v = auroc_ranks(t[idx], s[idx])
        reps[start:start + len(idx)] = np.column_stack([v, _macro_of(v)])
    low, high, n_valid = percentile_interval(reps, alpha)
    return pd.DataFrame({"estimate": estimate, "low": low, "high": high, "n_valid": n_valid},
                        index=pd.Index(list(classes) + ["macro"], name="class"))


def paired_auroc_difference(y_true, scores_a, scores_b, classes: Optional[Sequence[str]] = None,
                            n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, groups=None) -> pd.DataFrame:
    """AUROC of configuration A minus that of B on the same records, per class and ``macro``.

    Paired bootstrap: each replicate draws the records once (patients with ``groups``) and
    computes both AUROCs on them. Columns: ``auroc_a``, ``auroc_b``, ``difference`` (on all
    records), ``low``, ``high`` (percentile interval of the difference), ``p_value`` (two-sided:
    twice the smaller share of replicates on either side of 0, as ``(k + 1) / (n_valid + 1)``,
    at most 1) and ``n_valid``.
    """
    yt = _score_frame(y_true, classes)
    classes = list(yt.columns) if classes is None else list(classes)
    sa, sb = _score_frame(scores_a, classes), _score_frame(scores_b, classes)
    if not (len(yt) == len(sa) == len(sb)):
        raise ValueError(f"y_true has {len(yt)} records, scores_a {len(sa)}, scores_b {len(sb)}")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    t = np.column_stack([_as_float(yt[c]) for c in classes])
    a = np.column_stack([_as_float(sa[c]) for c in classes])
    b = np.column_stack([_as_float(sb[c]) for c in classes])

    def both(idx):
        ra = auroc(t[idx], a[idx], classes)
        rb = auroc(t[idx], b[idx], classes)
        return ra.to_numpy(), rb.to_numpy()

    def with_macro(v):      # per-class AUROCs (..., C) -> (..., C + 1), the macro over defined classes last
        return np.concatenate([v, _macro_of(v)[..., None]], axis=-1)

    everything = np.arange(len(t))
    est_a, est_b = both(everything)
    reps = np.full((n_boot, len(est_a)), np.nan)
    draws = list(_draws(len(t), n_boot, seed, groups))
    if groups is None and not (np.isnan(t).any() or np.isnan(a).any() or np.isnan(b).any()):
        # every replicate at once, in blocks (the same AUROCs as :func:`auroc`, without a loop)
        for start in range(0, n_boot, 200):
            idx = np.stack(draws[start:start + 200])
            reps[start:start + len(idx)] = with_macro(auroc_ranks(t[idx], a[idx])) - \
                with_macro(auroc_ranks(t[idx], b[idx]))
    else:   # missing scores or patients of unequal record counts: one replicate at a time
        for r, idx in enumerate(draws):
            ra, rb = both(idx)
            reps[r] = ra - rb
    rows = []
    for j, name in enumerate(classes + ["macro"]):
        col = reps[~np.isnan(reps[:, j]), j]
        low = high = p = math.nan
        if col.size:
            low, high = np.quantile(col, [alpha / 2, 1 - alpha / 2])
            # (k + 1) / (n + 1): never 0 from a finite number of replicates
            p = min(1.0, 2 * min((np.sum(col <= 0) + 1), (np.sum(col >= 0) + 1)) / (col.size + 1))
        rows.append({"class": name, "auroc_a": est_a[j], "auroc_b": est_b[j], "difference": est_a[j] - est_b[j],
                     "low": float(low), "high": float(high), "p_value": float(p), "n_valid": int(col.size)})
    return pd.DataFrame(rows).set_index("class")


def auroc_ranks(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUROC of each column (the Mann–Whitney statistic with average ranks for ties, equal to
    :func:`sklearn.metrics.roc_auc_score`), vectorised over leading axes: ``y`` and ``p`` of shape
    (..., n, C) give (..., C); NaN where a column has no positive or no negative."""
    y = np.asarray(y, dtype=float)
    ranks = rankdata(np.asarray(p, dtype=float), axis=-2)
    n_pos = y.sum(axis=-2)
    n_neg = y.shape[-2] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((ranks * y).sum(axis=-2) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), out, np.nan)


def macro_auroc_bootstrap(y_true: pd.DataFrame, probs: list, n_boot: int = 1000,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Macro AUROC of each model in ``probs`` on all records (shape (M,)) and on ``n_boot``
    resamples of the records (shape (n_boot, M)); every model is scored on the same resample.
    The macro mean skips labels without a positive or a negative in a resample."""
    cols = list(y_true.columns)
    y = y_true.to_numpy(float)
    p = np.stack([pr[cols].to_numpy(float) for pr in probs])            # (M, n, C)

    def macro(yy, pp):
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)         # a resample without positives
            return np.nanmean(auroc_ranks(np.broadcast_to(yy, pp.shape), pp), axis=-1)

    estimate = macro(y, p)
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, len(probs)))
    for start in range(0, n_boot, 200):
        idx = rng.integers(0, len(y), size=(min(200, n_boot - start), len(y)))
        reps[start:start + len(idx)] = macro(y[idx][:, None], np.transpose(p[:, idx], (1, 0, 2, 3)))
    return estimate, reps


def percentile_interval(reps: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of bootstrap replicates ``reps`` (n_boot, K): the percentile interval's low and
    high ends over the finite replicates (NaN when none) and how many replicates were finite."""
    valid = np.isfinite(reps)
    low = np.array([np.quantile(reps[valid[:, j], j], alpha / 2) if valid[:, j].any() else np.nan
                    for j in range(reps.shape[1])])
    high = np.array([np.quantile(reps[valid[:, j], j], 1 - alpha / 2) if valid[:, j].any() else np.nan
                     for j in range(reps.shape[1])])
    return low, high, valid.sum(axis=0)


def paired_macro_auroc_difference(y_true, runs_a: Sequence, runs_b: Sequence, n_boot: int = 1000,
                                  seed: int = 0, alpha: float = 0.05) -> dict:
    """Mean over runs (seeds) of macro AUROC(A) − macro AUROC(B), with a paired bootstrap over records.

    ``runs_a`` / ``runs_b``: one records × classes score array per run (run i of A is paired with
    run i of B). Each replicate draws the records once and recomputes every run's macro AUROC on
    them, so the interval covers the test records' sampling for the runs at hand. Returns
    ``auroc_a``, ``auroc_b`` (means over runs), ``difference``, ``low``, ``high``, ``p_value``
    (two-sided, as in :func:`paired_auroc_difference`), ``runs``, ``n_valid``.
    """
    t = np.asarray(_score_frame(y_true, None), dtype=float)
    a = [np.asarray(x, dtype=float).reshape(len(t), -1) for x in runs_a]
    b = [np.asarray(x, dtype=float).reshape(len(t), -1) for x in runs_b]
    if not a or len(a) != len(b):
        raise ValueError(f"need as many runs of A as of B (at least one), got {len(a)} and {len(b)}")

    def macro(idx, s):
        """Macro AUROC of scores ``s`` on the records ``idx`` (shape (..., n)): shape (...)."""
        return _macro_of(auroc_ranks(t[idx], s[idx]))

    every = np.arange(len(t))
    est_a = float(np.mean([macro(every, s) for s in a]))
    est_b = float(np.mean([macro(every, s) for s in b]))
    draws = np.stack(list(_draws(len(t), n_boot, seed))) if n_boot else np.zeros((0, len(t)), int)
    reps = np.empty(n_boot)
    for start in range(0, n_boot, 200):     # every replicate at once, in blocks (memory)
        idx = draws[start:start + 200]
        reps[start:start + 200] = np.mean([macro(idx, sa) - macro(idx, sb) for sa, sb in zip(a, b)], axis=0)
    reps = reps[np.isfinite(reps)]
    low = high = p = math.nan
    if reps.size:
        low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
        p = min(1.0, 2 * min(np.sum(reps <= 0) + 1, np.sum(reps >= 0) + 1) / (reps.size + 1))
    return {"auroc_a": est_a, "auroc_b": est_b, "difference": est_a - est_b, "low": float(low),
            "high": float(high), "p_value": float(p), "runs": len(a), "n_valid": int(reps.size)}
