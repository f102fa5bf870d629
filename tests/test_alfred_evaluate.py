"""ALFRED's evaluation of label probabilities: AUROC, fold-9 thresholds, paired comparisons."""
import numpy as np
import pandas as pd

from ecgkit.alfred.answer import SUPERCLASSES
from ecgkit.alfred.evaluate import (paired_comparisons, probability_per_class, probability_table,
                                    probability_verdicts,
                                    score_probabilities)
from ecgkit.alfred.probabilities import threshold_from_validation


def _case(n=120, seed=0, signal=2.0):
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame(rng.random((n, 5)) < 0.4, columns=list(SUPERCLASSES),
                         index=[f"r{i}" for i in range(n)])
    informative = 1 / (1 + np.exp(-(signal * (truth.to_numpy() - 0.5) + rng.normal(0, 1, (n, 5)))))
    constant = np.full((n, 5), 0.7)
    return (truth, pd.DataFrame(informative, index=truth.index, columns=truth.columns),
            pd.DataFrame(constant, index=truth.index, columns=truth.columns))


def test_informative_probabilities_beat_a_constant_answer():
    truth, good, constant = _case()
    val, test = truth.index[:60], truth.index[60:]
    scored = {}
    for name, probs in (("Proposed", good), ("Base", constant)):
        thr = threshold_from_validation(probs.loc[val], truth.loc[val])
        scored[name] = score_probabilities(truth, probs.loc[test], thr, n_boot=200)
    assert scored["Proposed"]["auroc"].loc["macro", "estimate"] > 0.7
    assert np.isnan(scored["Base"]["auroc"].loc["macro", "low"]) or \
        scored["Base"]["auroc"].loc["macro", "estimate"] == 0.5
    table = probability_table(scored)
    assert table.loc["Proposed", ("paper", "PPV")] == 0.443 and table.loc["Proposed", ("run", "records")] == 60
    assert table.loc["Base", ("run", "P(yes) sd")] == 0.0               # a constant answer says so
    assert "no interval" in table.loc["Base", ("ours", "Spec")] or table.loc["Base", ("ours", "Spec")] == "–"
    per_class = probability_per_class(scored)
    assert set(per_class.index.get_level_values("class")) == set(SUPERCLASSES) | {"macro"}
    pairs = paired_comparisons(truth.loc[test], {"Proposed": good.loc[test], "Base": constant.loc[test]},
                               [("Proposed", "Base")], n_boot=200)
    row = pairs.loc["Proposed − Base"]
    assert row["difference"] > 0.2 and row["low"] > 0 and row["verdict"] == "A higher" and row["p"] < 0.05
    verdicts = probability_verdicts(scored, pairs)
    assert verdicts["informative"] == ["Proposed"] and verdicts["uninformative"] == ["Base"]
    assert verdicts["inverted"] == []
    flipped = {"Flipped": score_probabilities(truth, 1 - good.loc[test], thr, n_boot=200)}
    assert probability_verdicts(flipped, pairs.iloc[:0])["inverted"] == ["Flipped"]
    assert len(verdicts["differences"]) == 1 and verdicts["differences"][0].startswith("Proposed − Base: +")


def test_equal_configurations_show_no_difference():
    truth, good, _ = _case(seed=1)
    pairs = paired_comparisons(truth, {"A": good, "B": good.copy()}, [("A", "B")], n_boot=100)
    assert pairs.loc["A − B", "difference"] == 0 and pairs.loc["A − B", "verdict"] == "no difference shown"
