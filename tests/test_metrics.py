"""Generic metrics: hand-computed confusion matrices, NaN when undefined, macro, bootstrap."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ecgkit.metrics import binary_metrics, bootstrap_ci, multilabel_report


def test_binary_metrics_hand_computed():
    # tp=2 (0,1), fn=1 (2), fp=1 (3), tn=2 (4,5)
    m = binary_metrics([1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 0, 0])
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"]) == (2, 1, 1, 2, 6)
    assert m["PPV"] == pytest.approx(2 / 3) and m["NPV"] == pytest.approx(2 / 3)
    assert m["Sens"] == pytest.approx(2 / 3) and m["Spec"] == pytest.approx(2 / 3)
    m = binary_metrics([True, True, False, False, False], [True, False, False, False, False])
    assert m["PPV"] == 1.0 and m["NPV"] == pytest.approx(3 / 4)
    assert m["Sens"] == 0.5 and m["Spec"] == 1.0


def test_undefined_metrics_are_nan():
    m = binary_metrics([0, 0, 0], [0, 1, 0])       # no positives: Sens undefined
    assert math.isnan(m["Sens"]) and m["Spec"] == pytest.approx(2 / 3) and m["PPV"] == 0.0
    m = binary_metrics([1, 0], [0, 0])              # nothing predicted positive: PPV undefined
    assert math.isnan(m["PPV"]) and m["NPV"] == 0.5
    m = binary_metrics([], [])
    assert m["n"] == 0 and all(math.isnan(m[k]) for k in ("PPV", "NPV", "Sens", "Spec"))


def test_missing_predictions():
    with pytest.raises(ValueError):
        binary_metrics([1, 0], [1, None])
    assert binary_metrics([1, 0], [1, None], missing="negative")["tn"] == 1
    assert binary_metrics([1, 0], [1, None], missing="drop")["n"] == 1
    with pytest.raises(ValueError):
        binary_metrics([1, 0], [1])
    with pytest.raises(ValueError):
        binary_metrics([1, 0], [2, 0])


def test_multilabel_report_and_macro():
    yt = pd.DataFrame({"A": [1, 1, 0, 0], "B": [0, 0, 0, 0], "C": [1, 0, 1, 0]}).astype(bool)
    yp = pd.DataFrame({"A": [1, 0, 0, 0], "B": [0, 1, 0, 0], "C": [1, 0, 1, 0]}).astype(bool)
    r = multilabel_report(yt, yp, ["A", "B", "C"])
    assert list(r.index) == ["A", "B", "C", "macro"]
    assert r.loc["A", "Sens"] == 0.5 and r.loc["A", "PPV"] == 1.0
    assert math.isnan(r.loc["B", "Sens"]) and r.loc["B", "Spec"] == 0.75
    assert r.loc["C", "Sens"] == 1.0
    # macro: mean over the classes where defined (B's NaN sensitivity is skipped)
    assert r.loc["macro", "Sens"] == pytest.approx((0.5 + 1.0) / 2)
    assert r.loc["macro", "Spec"] == pytest.approx((1.0 + 0.75 + 1.0) / 3)
    assert r.loc["macro", "PPV"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert r.loc["macro", "n"] == 4 and r.loc["macro", "tp"] == 3
    # default classes: the columns; arrays with classes work too
    assert list(multilabel_report(yt, yp).index) == ["A", "B", "C", "macro"]
    r2 = multilabel_report(yt.to_numpy(), yp.to_numpy(), ["A", "B", "C"])
    pd.testing.assert_frame_equal(r, r2)


def _data(n=200, seed=3):
    rng = np.random.default_rng(seed)
    yt = pd.DataFrame(rng.random((n, 3)) < 0.3, columns=["A", "B", "C"])
    flip = rng.random((n, 3)) < 0.2
    yp = pd.DataFrame(yt.to_numpy() ^ flip, columns=yt.columns)
    return yt, yp


def test_bootstrap_deterministic_and_contains_estimate():
    yt, yp = _data()
    a = bootstrap_ci(yt, yp, n_boot=100, seed=7)
    b = bootstrap_ci(yt, yp, n_boot=100, seed=7)
    c = bootstrap_ci(yt, yp, n_boot=100, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert ("macro", "Sens") in a.index and ("A", "PPV") in a.index
    assert (a["low"] <= a["estimate"]).all() and (a["estimate"] <= a["high"]).all()
    assert (a["low"] < a["high"]).all()
    report = multilabel_report(yt, yp)
    assert a.loc[("macro", "Spec"), "estimate"] == pytest.approx(report.loc["macro", "Spec"])


def test_bootstrap_binary_scalar_and_groups():
    yt, yp = _data(150)
    ci = bootstrap_ci(yt["A"].to_numpy(), yp["A"].to_numpy(), n_boot=100)
    assert list(ci.index) == ["PPV", "NPV", "Sens", "Spec"]
    assert (ci["low"] <= ci["estimate"]).all() and (ci["estimate"] <= ci["high"]).all()
    acc = bootstrap_ci(yt["A"], yp["A"], lambda t, p: float(np.mean(np.asarray(t) == np.asarray(p))),
                       n_boot=100)
    assert list(acc.index) == ["value"]
    groups = np.repeat(np.arange(50), 3)             # 50 patients with 3 records each
    g1 = bootstrap_ci(yt, yp, n_boot=50, groups=groups, seed=1)
    g2 = bootstrap_ci(yt, yp, n_boot=50, groups=groups, seed=1)
    pd.testing.assert_frame_equal(g1, g2)
    assert (g1["low"] <= g1["estimate"]).all() and (g1["estimate"] <= g1["high"]).all()


def test_bootstrap_nan_class_does_not_crash():
    yt = pd.DataFrame({"A": [True, False] * 20, "B": [False] * 40})
    yp = pd.DataFrame({"A": [True, True] * 20, "B": [False, True] * 20})
    ci = bootstrap_ci(yt, yp, n_boot=30)
    assert ci.loc[("B", "Sens"), "n_valid"] == 0 and math.isnan(ci.loc[("B", "Sens"), "low"])
    assert ci.loc[("macro", "Sens"), "n_valid"] == 30


# ----------------------------------------------------------------------------- AUROC


def test_auroc_hand_computed_and_undefined():
    from ecgkit.metrics import auroc

    y = pd.DataFrame({"A": [1, 1, 0, 0], "B": [0, 0, 0, 0]})
    s = pd.DataFrame({"A": [0.9, 0.4, 0.5, 0.1], "B": [0.1, 0.2, 0.3, 0.4]})
    result = auroc(y, s)
    assert result["A"] == pytest.approx(0.75)           # 3 of the 4 positive-negative pairs in order
    assert math.isnan(result["B"]) and result["macro"] == pytest.approx(0.75)
    s.loc[0, "A"] = np.nan                                # a missing score leaves the record out
    assert auroc(y, s)["A"] == pytest.approx(0.5)
    assert auroc(np.array([[1], [0]]), np.array([[0.2], [0.1]]), ["X"])["X"] == 1.0


def test_auroc_ci_contains_estimate_and_is_deterministic():
    from ecgkit.metrics import auroc, auroc_ci

    rng = np.random.default_rng(0)
    y = pd.DataFrame(rng.integers(0, 2, (80, 2)).astype(bool), columns=["A", "B"])
    s = y.astype(float) + rng.normal(0, 0.8, (80, 2))
    ci = auroc_ci(y, s, n_boot=200, seed=1)
    assert list(ci.index) == ["A", "B", "macro"]
    assert np.allclose(ci["estimate"], auroc(y, s).to_numpy())
    assert (ci["low"] <= ci["estimate"]).all() and (ci["estimate"] <= ci["high"]).all()
    assert ci.equals(auroc_ci(y, s, n_boot=200, seed=1))


def test_paired_auroc_difference():
    from ecgkit.metrics import auroc, paired_auroc_difference

    rng = np.random.default_rng(0)
    y = pd.DataFrame(rng.integers(0, 2, (100, 2)).astype(bool), columns=["A", "B"])
    good = y.astype(float) + rng.normal(0, 0.5, (100, 2))
    noise = pd.DataFrame(rng.normal(0, 1, (100, 2)), columns=["A", "B"])
    diff = paired_auroc_difference(y, good, noise, n_boot=300)
    assert np.allclose(diff["auroc_a"], auroc(y, good)) and np.allclose(diff["auroc_b"], auroc(y, noise))
    assert np.allclose(diff["difference"], diff["auroc_a"] - diff["auroc_b"])
    assert (diff["low"] > 0).all() and (diff["p_value"] < 0.01).all() and (diff["p_value"] > 0).all()
    # a configuration against itself: difference 0 in every replicate, p = 1
    same = paired_auroc_difference(y, good, good, n_boot=100)
    assert (same["difference"] == 0).all() and (same["p_value"] == 1.0).all()
    # paired: the same draws for both; patients drawn whole with groups
    grouped = paired_auroc_difference(y, good, noise, n_boot=100, groups=np.arange(100) // 2)
    assert (grouped["n_valid"] == 100).all()
    with pytest.raises(ValueError):
        paired_auroc_difference(y, good, noise.iloc[:50])


def test_fast_metrics_equal_sklearn_with_ties():
    """The bootstrap's counting and rank AUROC give sklearn's values, ties included."""
    from sklearn.metrics import confusion_matrix, roc_auc_score

    from ecgkit.metrics import auroc
    rng = np.random.default_rng(3)
    for _ in range(20):
        t = rng.integers(0, 2, 40).astype(bool)
        s = rng.integers(0, 6, 40) / 5.0          # coarse scores: many ties
        p = s > 0.5
        tn, fp, fn, tp = confusion_matrix(t, p, labels=[False, True]).ravel()
        m = binary_metrics(t, p)
        assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
        if 0 < t.sum() < t.size:
            assert auroc(t[:, None].astype(float), s[:, None]).iloc[0] == pytest.approx(roc_auc_score(t, s), abs=1e-12)


def test_paired_auroc_difference_vectorised_equals_replicate_by_replicate():
    """The block-wise bootstrap gives the replicates that scoring each resample with auroc() gives."""
    from ecgkit.metrics import _draws, auroc, paired_auroc_difference

    rng = np.random.default_rng(0)
    cols = list("ABCDE")
    t = pd.DataFrame(rng.integers(0, 2, (40, 5)), columns=cols).astype(float)
    t["E"] = 0.0                                                      # a class without positives
    a = pd.DataFrame(rng.random((40, 5)).round(1), columns=cols)
    b = pd.DataFrame(rng.random((40, 5)).round(1), columns=cols)
    fast = paired_auroc_difference(t, a, b, n_boot=250, seed=4)
    reps = np.array([(auroc(t.iloc[i], a.iloc[i]) - auroc(t.iloc[i], b.iloc[i])).to_numpy()
                     for i in _draws(40, 250, 4)])
    for j, name in enumerate(cols + ["macro"]):
        col = reps[~np.isnan(reps[:, j]), j]
        if not col.size:
            assert fast.loc[name, "n_valid"] == 0
            continue
        assert fast.loc[name, "n_valid"] == col.size
        assert fast.loc[name, "low"] == pytest.approx(np.quantile(col, 0.025), abs=1e-12)
        assert fast.loc[name, "high"] == pytest.approx(np.quantile(col, 0.975), abs=1e-12)


def test_auroc_ci_vectorised_equals_the_generic_bootstrap():
    from ecgkit.metrics import auroc, auroc_ci

    rng = np.random.default_rng(1)
    t = pd.DataFrame(rng.integers(0, 2, (30, 3)), columns=list("ABC")).astype(float)
    s = pd.DataFrame(rng.random((30, 3)).round(1), columns=list("ABC"))
    fast = auroc_ci(t, s, n_boot=300, seed=2)
    generic = bootstrap_ci(t, s, metric_fn=lambda a, b: auroc(a, b, list("ABC")), n_boot=300, seed=2)
    assert list(fast.index) == ["A", "B", "C", "macro"] and fast.index.name == "class"
    np.testing.assert_allclose(fast.to_numpy(dtype=float), generic.to_numpy(dtype=float), atol=1e-12)
