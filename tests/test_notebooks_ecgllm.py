"""Notebooks 06-08 (ECG-LLM) run with tiny parameters and record what the chapters show."""
from pathlib import Path

import pandas as pd
import pytest

from ecgkit.reproduce import notebooks, run_notebook
from ecgkit.results import load_results

pytestmark = pytest.mark.slow

TINY_TRAINING = {"n_train": 8, "max_steps": 1}


def test_ecgllm_notebooks_record_their_tables(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setenv("ECGKIT_RESULTS", str(results))
    monkeypatch.delenv("ECGKIT_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("ECGKIT_ECGLLM_RATINGS", raising=False)
    monkeypatch.setenv("ECGKIT_LLM_THREADS", "1")      # tiny batches: one thread is as fast and steadier
    out = tmp_path / "out"

    run_notebook(notebooks("notebooks", ["06"])[0], out, {"profile": "quick", "seed": 0, "n_examples": 3})
    r = load_results("06_ecgllm_dataset", results)
    assert r.metric("topic_leaks") == 0 and 0 <= r.metric("ngram8_overlap") < 0.2
    assert r.info["generator"] == "templates only"
    counts = r.table("counts")
    assert {s for s, _ in counts.index} == {"train", "eval"} and (counts["mcq"] > 0).all()
    assert len(r.table("examples")) == 3

    run_notebook(notebooks("notebooks", ["07"])[0], out, {"profile": "quick", **TINY_TRAINING, "n_heldout": 2})
    r = load_results("07_ecgllm_finetune", results)
    assert r.table("training").loc["optimizer steps", "value"] == 1
    assert set(r.table("heldout_loss").index) == {"eval", "train"}
    assert r.metric("train_steps_per_second") > 0 and "+lora-" in r.info["adapter"]

    run_notebook(notebooks("notebooks", ["08"])[0], out,
                 {"profile": "quick", **TINY_TRAINING, "n_mcq": 4, "n_open": 2, "n_judge": 1, "n_control": 2,
                  "max_new_tokens": 8, "top_k": 1})
    r = load_results("08_ecgllm_evaluation", results)
    table = r.table("results")
    assert list(table.index) == ["base", "fine-tuned", "RAG", "fine-tuned + RAG", "endpoint"]
    assert table.loc["endpoint", ("", "note")].startswith("skipped")
    assert r.info["adapter"] == load_results("07_ecgllm_finetune", results).info["adapter"]   # 07's adapter reused
    mcq = r.table("mcq_accuracy")
    assert (mcq[("", "n")] == 4).all() and mcq[("option log-likelihood", "accuracy")].between(0, 1).all()
    assert r.table("judge_control").loc["n", "value"] == 2
    ok = r.metric("judge_better_than_chance")
    assert (table[("LLM judge", "status")] == ("passed the control pairs" if ok else
                                              "failed the control pairs: not used to rank")).all()
    assert not any("judge" in c for c in r.table("rankings").columns) or ok
    assert (table[("experts", "status")] == "no filled rating sheet imported").all() and r.metric("expert_sheets") == 0
    sheet = pd.read_csv(r.metrics["rating_sheet"]["value"])
    assert len(sheet) == 8 and "configuration" not in sheet.columns
    assert Path(r.metrics["rating_sheet"]["key"]).is_file()
    assert "fine-tuned vs base" in r.table("findings").index
