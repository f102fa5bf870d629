"""ESI's experiments: the step budget, the paired test and its verdict, the reading checks of CQA,
and a small seeded run of the method comparison on the synthetic cohort."""
import numpy as np
import pandas as pd
import pytest

from ecgkit.esi.train import RecordData, TrainConfig, fit, learning_rate, run_folder
from ecgkit.metrics import paired_macro_auroc_difference

TINY = TrainConfig(epochs=2, warmup_epochs=1, decay_every=1, lr=1e-3, batch_size=4)


def _simclr():
    import torch

    from ecgkit.nn import ecg_encoder
    from ecgkit.esi.model import SimCLRModel

    torch.manual_seed(0)
    return SimCLRModel(ecg_encoder("small"), embed_dim=8)


def test_a_step_budget_stops_the_run_mid_epoch(tmp_path):
    x = np.random.default_rng(0).standard_normal((24, 256, 12)).astype(np.float32) * 0.3   # 6 steps an epoch
    run = fit(_simclr(), RecordData(x), TrainConfig(**{**TINY.__dict__, "max_steps": 9}), tmp_path / "a",
              progress=False)
    assert run.steps == 9 and len(run.history) == 2            # one full epoch and the part of the second
    short = fit(_simclr(), RecordData(x), TrainConfig(**{**TINY.__dict__, "max_steps": 4}), tmp_path / "b",
                progress=False)
    assert short.steps == 4


def test_step_budget_schedule_and_cache_key(tmp_cache):
    cfg = TrainConfig(epochs=6, warmup_epochs=1, decay_every=4, lr=1e-3, max_steps=60)
    lr = [learning_rate(s, 1000, cfg) for s in range(60)]   # steps per epoch no longer matter
    assert lr[0] == pytest.approx(1e-4) and lr[9] == pytest.approx(1e-3)   # warm-up: 1/6 of 60 steps
    assert lr[39] == pytest.approx(1e-3) and lr[40] == pytest.approx(1e-4)  # x0.1 after 4/6 of them
    # without a budget the key is what it was; with one it differs
    assert run_folder("esi", {}, "d", TINY) == run_folder("esi", {}, "d", TrainConfig(**{**TINY.__dict__}))
    assert run_folder("esi", {}, "d", TINY) != run_folder("esi", {}, "d", TrainConfig(**{**TINY.__dict__, "max_steps": 5}))


def test_paired_macro_auroc_difference_and_verdict():
    from ecgkit.esi.experiments import verdict

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (200, 3)).astype(float)
    good = [y + rng.normal(0, 0.6, y.shape) for _ in range(3)]
    noise = [rng.normal(0, 1, y.shape) for _ in range(3)]
    r = paired_macro_auroc_difference(y, good, noise, n_boot=300)
    assert r["difference"] > 0.25 and r["low"] > 0 and r["p_value"] < 0.01 and r["runs"] == 3
    assert verdict(r["low"], r["high"]) == "better"
    worse = paired_macro_auroc_difference(y, noise, good, n_boot=300)
    assert verdict(worse["low"], worse["high"]) == "worse"
    same = paired_macro_auroc_difference(y, good, good, n_boot=100)
    assert same["difference"] == 0 and verdict(same["low"], same["high"]) != "better"
    # the rank AUROC agrees with sklearn's
    from ecgkit.metrics import auroc

    assert r["auroc_a"] == pytest.approx(np.mean([auroc(y, s)["macro"] for s in good]))
    with pytest.raises(ValueError, match="runs"):
        paired_macro_auroc_difference(y, good, noise[:2])


def test_suspect_descriptions_flags_contradictions():
    from ecgkit.esi.cqa import suspect_descriptions

    d = pd.DataFrame({"condition": ["incomplete right bundle branch block", "complete left bundle branch block",
                                    "low QRS voltages in the frontal and horizontal leads", "sinus rhythm"],
                      "description": ["A complete left bundle branch block widens the QRS beyond 120 ms.",
                                      "The QRS is wide with a broad notched R in V6 (left bundle branch).",
                                      "High voltage QRS complexes in the limb leads.",
                                      "P waves precede every QRS."]},
                     index=["IRBBB", "CLBBB", "LVOLT", "SR"])
    flagged = suspect_descriptions(d)
    assert list(flagged.index) == ["IRBBB", "LVOLT"]
    assert "complete" in flagged.loc["IRBBB", "problem"] and "right" in flagged.loc["IRBBB", "problem"]


def test_retrieval_direction():
    from ecgkit.esi.cqa import retrieval_direction

    table = pd.DataFrame({"F1": [0.50, 0.48, 0.47, 0.46], "paper F1": [0.80, "0.8200 / 0.8250", 0.82, 0.83]},
                         index=["none", "documents", "expert", "documents + expert"])
    assert retrieval_direction(table)["verdict"] == "reversed"
    table["F1"] = [0.40, 0.45, 0.45, 0.47]
    assert retrieval_direction(table)["verdict"] == "same direction"


def test_settings_reject_unknown_keys_and_set_a_budget():
    from ecgkit.esi import experiments as X

    cfg = X.settings("quick", steps=50)
    assert cfg["pretrain"].max_steps == 50 and cfg["seeds"] >= 3 and cfg["finetune"] is None
    assert X.settings("full")["pretrain"].max_steps is None           # the paper's epochs, unchanged
    with pytest.raises(KeyError, match="unknown"):
        X.settings("quick", seedz=3)


#: linear-probe macro AUC of the seeded small run below, as recorded (26 synthetic test records, so
#: the tolerance is wide: it covers thread counts and BLAS, not a change of method)
SMALL_RUN = {"ESI": 0.562, "SimCLR": 0.552, "supervised (scratch)": 0.460, "random init": 0.719}


def small_run():
    """ESI, SimCLR, supervised and the random encoder on a 300-record synthetic cohort, plain-label
    texts, 40 steps of 16, seed 0: the method comparison end to end in about a minute."""
    from ecgkit.data import load_synthetic
    from ecgkit.esi import experiments as X
    from ecgkit.esi.downstream import label_texts, ptbxl_task
    from ecgkit.esi.train import ESIConfig

    ds = load_synthetic(300, rate=100)
    texts = {ds.name: label_texts(ds)}
    corpus = X.pretraining_corpus([ds], texts, texts)
    cfg = X.settings("quick", seeds=1)
    cfg["pretrain"] = TrainConfig(epochs=4, warmup_epochs=1, decay_every=3, lr=2e-3, batch_size=16, max_steps=40)
    tasks = [ptbxl_task(ds, name="synthetic superdiagnostic")]
    ids = [X.identification_set(ds, 40)]
    rows, run = X.method_comparison(0, corpus, tasks, ids, ESIConfig(), cfg, progress=False)
    return corpus, tasks, pd.DataFrame(rows), run


@pytest.mark.slow
def test_small_seeded_method_comparison(tmp_cache):
    from ecgkit.esi import experiments as X

    corpus, tasks, rows, run = small_run()
    assert corpus.labels.shape == (len(corpus), 5)
    assert set(corpus.ids).isdisjoint({f"{corpus.ids[0].split(':')[0]}:{r}" for r in
                                       tasks[0].y.index[np.r_[tasks[0].val, tasks[0].test]]})  # folds 9-10 unseen
    lp = rows[(rows.protocol == "linear probe") & (rows.metric == "auc")].set_index("method")["value"]
    assert set(lp.index) == {"ESI", "SimCLR", "supervised (scratch)", "random init"}
    for steps in (run["esi"].fit.steps, run["simclr"].steps, run["supervised"].steps):
        assert steps == 40                                            # one budget for every method
    print(lp.round(4).to_dict(), run["esi"].fit.history)
    for method, value in SMALL_RUN.items():
        assert lp[method] == pytest.approx(value, abs=0.08), method
    # ESI learns from its pairs: the training loss falls well below where it starts
    history = run["esi"].fit.history
    assert history[-1]["loss"] < history[0]["loss"] - 0.5, history
    assert history[-1]["contrastive"] < np.log(16) - 0.2, history   # below chance for a batch of 16
    table = X.paired_comparisons({0: run}, tasks, n_boot=200)
    assert list(table.index.get_level_values("baseline")) == list(X.BASELINES)
    assert table["verdict"].isin(["better", "worse", "no detectable difference"]).all()


def test_expert_card_texts_are_a_third_ablation_source(monkeypatch):
    from ecgkit.data import load_synthetic
    from ecgkit.esi import experiments as X
    from ecgkit.esi.downstream import label_texts
    from ecgkit.esi.train import ESIConfig

    ds = load_synthetic(60, rate=100)
    plain = {ds.name: label_texts(ds)}
    cqa_like = {ds.name: "CQA " + plain[ds.name]}
    cards = {ds.name: "CARD " + plain[ds.name]}
    corpus = X.pretraining_corpus([ds], cqa_like, plain, cards=cards)
    assert len(corpus.cards) == len(corpus) and corpus.cards[0].startswith("CARD ")
    assert corpus.subset([1, 0]).cards == [corpus.cards[1], corpus.cards[0]]
    seen = {}
    monkeypatch.setattr(X, "_esi_variant_rows",
                        lambda name, corpus, texts, *a, **k: seen.setdefault(name, texts[0].split()[0]) and [])
    X.ablations(corpus, [], [], ESIConfig(), X.settings("quick", seeds=1), [0], progress=False)
    assert seen == {"ESI (full)": "CQA", X.CARD_TEXTS: "CARD", "w/o CQA": "ECG", "w/o L_cap": "CQA", "w/o L_con": "CQA"}
    seen.clear()
    X.ablations(X.pretraining_corpus([ds], cqa_like, plain), [], [], ESIConfig(), X.settings("quick", seeds=1), [0],
                progress=False)
    assert X.CARD_TEXTS not in seen                     # no card texts given: the paper's four rows
