"""Downstream evaluation: metrics on hand-computed cases, zero-shot, linear probe, identification,
the ablation helpers and the experiment tables."""
import numpy as np
import pandas as pd
import pytest
import torch

from ecgkit.data import load_ptbxl
from ecgkit.esi import downstream as D
from ecgkit.esi.experiments import pretraining_corpus, summary


def test_macro_auc_by_hand_and_single_outcome_classes():
    y = pd.DataFrame({"A": [1, 0, 1, 0], "B": [0, 0, 0, 0], "C": [1, 1, 0, 0]})
    s = np.array([[0.9, 0.1, 0.2], [0.3, 0.2, 0.8], [0.4, 0.3, 0.1], [0.5, 0.4, 0.3]])
    macro, per = D.macro_auc(y, s)
    # A: positives 0.9, 0.4 vs negatives 0.3, 0.5 -> pairs won 3 of 4; C: 0.2, 0.8 vs 0.1, 0.3 -> 3 of 4
    assert per["A"] == pytest.approx(0.75) and per["C"] == pytest.approx(0.75) and np.isnan(per["B"])
    assert macro == pytest.approx(0.75)
    with pytest.raises(ValueError, match="shape"):
        D.macro_auc(y, s[:, :2])
    with pytest.raises(ValueError, match="undefined"):
        D.macro_auc(y[["B"]], s[:, :1])


def test_thresholds_chosen_on_validation_then_f1():
    y_val = np.array([[1], [1], [0], [0]])
    s_val = np.array([[0.9], [0.6], [0.5], [0.1]])
    t = D.best_thresholds(y_val, s_val)
    assert t[0] == pytest.approx(0.6)
    y_test = np.array([[1], [0], [1], [0]])
    s_test = np.array([[0.7], [0.65], [0.2], [0.1]])
    # predicted positive: 0.7, 0.65 -> TP 1, FP 1, FN 1 -> F1 0.5
    assert D.macro_f1(y_test, s_test, t) == pytest.approx(0.5)


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (80, 2))
    x = rng.standard_normal((80, 6)) + 3 * np.c_[y, np.zeros((80, 4))]
    scores = D.linear_probe(x[:60], y[:60], x[60:])
    assert D.macro_auc(y[60:], scores)[0] > 0.95
    constant = D.linear_probe(x[:60], np.c_[y[:60, :1], np.zeros((60, 1))], x[60:])
    assert np.all(constant[:, 1] == 0)            # no positives in training: no classifier


class FakeESI(torch.nn.Module):
    """ECG embedding = first 2 values of lead I; prompts embedded by a fixed table."""

    def __init__(self, table):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.text = type("T", (), {"embed": lambda _, prompts, max_length=128: torch.tensor(
            [table[p] for p in prompts], dtype=torch.float32)})()

    def encode_ecg(self, x):
        return torch.nn.functional.normalize(x[:, 0, :2], dim=-1)


def test_zero_shot_is_cosine_similarity_to_class_prompts():
    prompts = D.class_prompts(["NORM", "MI"])
    assert prompts == ["ECG findings: normal ECG.", "ECG findings: myocardial infarction."]
    model = FakeESI({prompts[0]: [1.0, 0.0], prompts[1]: [0.0, 1.0]})
    signals = np.zeros((3, 10, 12), dtype=np.float32)
    signals[:, :2, 0] = [[3, 4], [1, 0], [0, 2]]
    scores = D.zero_shot_scores(model, signals, prompts)
    assert np.allclose(scores, [[0.6, 0.8], [1, 0], [0, 1]])
    with pytest.raises(ValueError, match="text tower"):
        D.zero_shot_scores(type("M", (), {"text": None})(), signals, prompts)


def test_identification_by_hand():
    # patient 1 and 2 records close together; patient 3's query is nearer patient 1
    features = np.array([[1, 0], [0, 1], [0.7, 0.7], [0.99, 0.1], [0.1, 0.99], [1, 0.05], [5, 5]])
    patients = [1, 2, 3, 1, 2, 3, 4]          # patient 4 has one record: left out
    enrolled, query = D.identification_pairs(patients)
    assert enrolled.tolist() == [0, 1, 2] and query.tolist() == [3, 4, 5]
    result = D.identification(features, patients)
    assert result["patients"] == 3
    assert result["nn_accuracy"] == pytest.approx(2 / 3)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    sims = unit[[3, 4, 5]] @ unit[[0, 1, 2]].T
    # genuine 0.995, 0.995, 0.742 vs impostors 0.1, 0.775, 0.1, 0.775, 0.999, 0.05: 5 + 5 + 3 of 18 won
    genuine, impostor = np.diag(sims), sims[~np.eye(3, dtype=bool)]
    wins = sum((g > i) + 0.5 * (g == i) for g in genuine for i in impostor)
    assert result["nn_auc"] == pytest.approx(wins / (len(genuine) * len(impostor)))
    assert result["nn_auc"] == pytest.approx(13 / 18)
    assert 0 <= result["lp_accuracy"] <= 1 and 0 <= result["lp_auc"] <= 1


def test_identification_separates_individuals_from_noise():
    rng = np.random.default_rng(0)
    person = rng.standard_normal((30, 16))
    features = np.concatenate([person + 0.1 * rng.standard_normal((30, 16)),
                               person + 0.1 * rng.standard_normal((30, 16))])
    patients = np.r_[np.arange(30), np.arange(30)]
    good = D.identification(features, patients)
    assert good["nn_accuracy"] == 1.0 and good["lp_accuracy"] > 0.9 and good["nn_auc"] > 0.99
    bad = D.identification(rng.standard_normal((60, 16)), patients)
    assert bad["nn_accuracy"] < 0.3 and bad["nn_auc"] < 0.7
    with pytest.raises(ValueError, match="at least 2 patients"):
        D.identification(features[:2], [1, 2])


def test_misaligned_breaks_exactly_the_requested_share():
    texts = [f"text {i}" for i in range(20)]
    assert D.misaligned(texts, 0.0) == texts
    full = D.misaligned(texts, 1.0, seed=3)
    assert sorted(full) == sorted(texts) and all(a != b for a, b in zip(full, texts))
    half = D.misaligned(texts, 0.5, seed=3)
    assert sum(a != b for a, b in zip(half, texts)) == 10 and sorted(half) == sorted(texts)
    with pytest.raises(ValueError):
        D.misaligned(texts, 1.5)


def test_tasks_and_label_texts(tiny_ptbxl):
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    task = D.ptbxl_task(ds)
    # folds [1, 2, 8, 9, 10, 10]; record 5 has no diagnostic statement -> dropped
    assert task.train.tolist() == [0, 1, 2] and task.val.tolist() == [3] and task.test.tolist() == [5]
    texts = D.label_texts(ds)
    assert texts.loc[1] == "ECG findings: normal ECG; sinus rhythm."
    assert texts.loc[5] == "ECG findings: sinus rhythm."
    assert len(D.subsample(10, 0.3)) == 3 and D.subsample(10, 0.01).tolist() != []


def test_pretraining_corpus_takes_training_folds_in_order_up_to_the_limit(tiny_ptbxl):
    ds = load_ptbxl(tiny_ptbxl, 100, progress=False)
    texts = {ds.name: D.label_texts(ds)}
    corpus = pretraining_corpus([ds], texts, texts)
    assert len(corpus) == 3 and corpus.signals.shape == (3, 1000, 12)
    assert corpus.ids == [f"{ds.name}:1", f"{ds.name}:2", f"{ds.name}:3"]
    assert len(pretraining_corpus([ds], texts, texts, limit=2)) == 2
    with pytest.raises(KeyError, match="no text"):
        pretraining_corpus([ds], {ds.name: texts[ds.name].iloc[:1]}, texts)


def test_summary_mean_sd_over_seeds():
    rows = [{"seed": s, "method": m, "protocol": "linear probe", "task": "t", "metric": "auc", "value": v}
            for s, m, v in [(0, "ESI", 0.8), (1, "ESI", 0.9), (0, "SimCLR", 0.7), (1, "SimCLR", 0.7)]]
    table = summary(rows, ["method", "protocol"])
    assert table.loc[("ESI", "linear probe"), ("t", "mean")] == pytest.approx(0.85)
    assert table.loc[("ESI", "linear probe"), ("t", "sd")] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert table.loc[("SimCLR", "linear probe"), ("t", "n")] == 2
    assert D.mean_sd([0.8, 0.9]) == "0.850 ± 0.071" and D.mean_sd([0.8]) == "0.800 ± –"


def test_best_thresholds_equal_the_f1_search():
    """The vectorised threshold search picks what trying each threshold with sklearn's F1 picks."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=(60, 4))
    y[:, 3] = 0                                   # a class without positives
    s = np.round(rng.random((60, 4)), 1)         # ties
    got = D.best_thresholds(y, s)
    for j in range(4):
        cands = np.unique(s[:, j])
        f1 = [f1_score(y[:, j], s[:, j] >= t, zero_division=0) for t in cands]
        assert got[j] == cands[int(np.argmax(f1))]
