"""Chapters 06–09: ECG-LLM dataset, fine-tuning, evaluation; clinical knowledge transfer."""
from __future__ import annotations

import numpy as np
import pytest


def test_06_dataset(results):
    r = results("06_ecgllm_dataset")
    assert r.metric("topic_leaks") == 0 and r.metric("ngram8_overlap") < 0.05
    counts = r.table("counts")
    assert {s for s, _ in counts.index} == {"train", "eval"} and (counts["mcq"] > 0).all()
    assert r.metric("items") == pytest.approx(777, abs=50)     # the template generator, seeded


def test_07_finetuning_lowers_the_held_out_loss(results):
    r = results("07_ecgllm_finetune")
    loss = r.table("heldout_loss")
    # the adapter learnt: held-out-topic loss falls (recorded 2.52 -> 2.28), as does the train loss (2.34 -> 1.93)
    assert loss.loc["eval", "change"] < -0.15 and loss.loc["train", "change"] < -0.25
    assert r.metric("optimizer_steps") >= 40 and "+lora-" in r.info["adapter"]
    assert r.info["adapter"].endswith("+lora-" + r.metrics["adapter"]["key"][:12])   # 08 loads it by this key


def test_07_training_curve(results):
    r = results("07_ecgllm_finetune")
    curve = r.table("curve")
    held = curve["held-out-topic loss"]
    assert list(curve.index[:2]) == [0, 5] and len(curve) >= 9                 # measured every 5 steps from step 0
    # recorded: 3.906 before training -> 3.474 after 45 steps (-11 %), still falling
    assert r.metric("heldout_verdict") == "falls clearly"
    assert held.iloc[-1] < 0.95 * held.iloc[0] and held.iloc[-1] <= held.iloc[len(held) // 2]
    assert held.iloc[0] == pytest.approx(3.906, abs=0.05) and held.iloc[-1] == pytest.approx(3.474, abs=0.08)


def test_08_evaluation(results):
    r = results("08_ecgllm_evaluation")
    table = r.table("results")
    assert list(table.index) == ["base", "fine-tuned", "RAG", "fine-tuned + RAG", "endpoint"]
    assert table.loc["endpoint", ("", "note")].startswith("skipped")
    mcq = r.table("mcq_accuracy")
    acc = mcq[("option log-likelihood", "accuracy")].dropna()
    assert acc.between(0.2, 1).all()
    assert r.info["adapter"] == results("07_ecgllm_finetune").info["adapter"]    # 07's adapter reused
    assert r.table("judge_control").loc["n", "value"] >= 8
    # recorded: retrieval lifts SmolLM2's multiple-choice accuracy (0.33 -> 0.67, 0.71 with the adapter)
    assert acc.loc["RAG"] == pytest.approx(0.667, abs=0.05) and acc.loc["base"] == pytest.approx(0.333, abs=0.05)
    control = r.table("judge_control")["value"]
    assert control["compared_on"] == "expected" and int(control["ties"]) <= 1   # the expected rating breaks ties
    assert "fine-tuned vs base" in r.table("findings").index
    assert table.loc["endpoint", ("LLM judge", "status")] == "not run"           # skipped, never judged


def test_08_paired_tests_repetition_control_and_the_verdicts(results):
    r = results("08_ecgllm_evaluation")
    assert r.info["adapter"].endswith("+lora-" + results("07_ecgllm_finetune").metrics["adapter"]["key"][:12])
    # every local configuration generated with the repetition penalty and no repeated 4-grams
    assert all("repetition_penalty=1.15" in r.metrics["repetition_control"][c]
               for c in ("base", "fine-tuned", "RAG", "fine-tuned + RAG"))
    text = r.table("text_metrics")
    assert r.metric("open_cut_at_max_tokens") == text["cut at max tokens"].sum() <= text["answers"].sum()
    paired = r.table("paired_text_tests")
    assert ("fine-tuned vs base", "rougeL") in paired.index and (paired["questions"] == text["answers"].min()).all()
    assert (paired["low"] <= paired["mean difference"]).all() and (paired["mean difference"] <= paired["high"]).all()
    assert paired["wilcoxon p"].between(0, 1).all()
    found = r.table("findings")
    assert set(found["agree"]) <= {"yes", "no", "partly", "in direction only (no paired test significant)"}
    assert (found.loc[found["agree"] != "yes", "why"].str.len() > 0).all()          # every disagreement says why
    if r.info["llm"].startswith("local:SmolLM2"):
        # recorded: the 135M model's adapter does not beat its base (2 of 5 methods, no paired test significant)
        assert found.loc["fine-tuned vs base", "agree"] == "no"
        assert not (paired.xs("rougeL", level="metric")["verdict"] == "base better").all()


def test_09_clinical_transfer(results):
    r = results("09_clinical_transfer")
    auc = r.table("auroc")
    assert list(auc.index) == ["NORM", "MI", "STTC", "CD", "HYP", "macro"]
    macro = auc.loc["macro", ["signal-only", "ours"]].astype(float)
    assert (macro > 0.6).all(), macro                          # both learn the diagnoses
    if "PTB-XL (real)" in r.info["dataset"]:
        assert macro["ours"] == pytest.approx(0.828, abs=0.03)
        assert macro["signal-only"] == pytest.approx(0.801, abs=0.03)
    gap = r.table("gap_closed")
    assert gap.loc["ours", "estimate"] == pytest.approx(macro["ours"])
    assert np.isfinite(r.metric("train_seconds"))
