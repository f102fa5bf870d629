"""The smoke run's pieces: the stand-in endpoint (through the real client), the smoke sizes."""
import json
import math

import pytest

from ecgkit import smoke
from ecgkit.llm import OpenAIChat
from ecgkit.standin import CANDIDATES, StandIn, reply_text, top_tokens


@pytest.fixture
def server():
    with StandIn(model="standin-test") as s:
        yield s


def test_the_client_generates_and_discovers_the_model(server):
    llm = OpenAIChat(base_url=server.url, retries=0)
    assert llm.model == "standin-test"
    out = llm.generate(["Describe a normal ECG.", "Describe atrial fibrillation."], max_new_tokens=5)
    assert all(g.ok for g in out), [g.error for g in out]
    assert out[0].text != out[1].text                      # a function of the request
    assert out[0].text == llm.generate(["Describe a normal ECG."], max_new_tokens=5)[0].text
    assert out[0].completion_tokens == 5 and out[0].finish_reason == "length"
    assert server.stats["completions"] == 3


def test_top_logprobs_are_scored_like_vllm(server):
    llm = OpenAIChat(base_url=server.url, retries=0, top_logprobs=5)
    scores = llm.option_logprobs([("Is this NORM?", "NORM:", [" yes", " no", "maybe"])])[0]
    assert scores.ok, scores.error
    top = top_tokens({"messages": [{"role": "user", "content": "x"}]}, 5)
    assert len(top) == 5 and top == sorted(top, key=lambda t: -t["logprob"])
    assert sum(math.exp(t["logprob"]) for t in top_tokens({"messages": []}, len(CANDIDATES))) == pytest.approx(1)
    assert scores.status["maybe"] == "bound"              # not among the returned tokens
    assert all(v <= 0 for v in scores.logprobs.values())
    assert server.stats["logprob_requests"] == 1 and server.stats["continued"] == 1


def test_503_and_stalls_are_retried_until_an_answer():
    with StandIn(fail_every=2, stall_every=3, stall_seconds=1.5) as s:
        llm = OpenAIChat(base_url=s.url, model="m", timeout=0.5, retries=3, backoff=0.01, max_workers=1)
        out = llm.generate(["a", "b"], max_new_tokens=3)
        assert all(g.ok for g in out), [g.error for g in out]
        assert s.stats["failed_503"] >= 1 and s.stats["stalled"] >= 1
        none = OpenAIChat(base_url=s.url, model="m", timeout=0.5, retries=0).generate(["c"] * 3)
        assert any("HTTP 503" in (g.error or "") or "timed out" in (g.error or "") for g in none)


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ECGKIT_LLM_TIMEOUT", "2.5")
    assert OpenAIChat(base_url="http://127.0.0.1:9/v1", model="m").timeout == 2.5
    monkeypatch.delenv("ECGKIT_LLM_TIMEOUT")
    assert OpenAIChat(base_url="http://127.0.0.1:9/v1", model="m").timeout == 60


def test_bad_requests_get_vllm_like_errors(server):
    import requests

    assert requests.post(server.url + "/chat/completions", data="{", timeout=5).status_code == 400
    assert requests.post(server.url + "/chat/completions", json={"messages": []}, timeout=5).status_code == 400
    assert requests.get(server.url + "/nothing", timeout=5).status_code == 404


def test_stop_strings_cut_the_answer():
    payload = {"messages": [{"role": "user", "content": "q"}], "max_tokens": 30}
    text, _ = reply_text(payload)
    word = text.split()[3]
    cut, reason = reply_text({**payload, "stop": [" " + word]})
    assert reason == "stop" and word not in cut.split()[3:4] and text.startswith(cut)


def test_smoke_sizes_apply_only_when_smoke_is_on(monkeypatch):
    from ecgkit.alfred.delineation import PROFILES, delineator_config
    from ecgkit.data import sources

    monkeypatch.delenv(smoke.ENV, raising=False)
    assert delineator_config("full")["max_records"] == PROFILES["full"]["max_records"] == 0   # all
    assert delineator_config("full")["epochs"] == PROFILES["full"]["epochs"]
    assert sources.CohortSettings.for_profile("full").n_records == sources.SYNTHETIC_RECORDS["full"]
    monkeypatch.setenv(smoke.ENV, "0")
    assert not smoke.active()
    monkeypatch.setenv(smoke.ENV, "1")
    config = delineator_config("full")
    from ecgkit.alfred.delineation import DelineatorSettings

    assert config["max_records"] == DelineatorSettings.SMOKE["max_records"] > 0       # a few, not all
    assert config["epochs"] == 1 and config["folds"] == 2
    assert delineator_config("full", epochs=3)["epochs"] == 3          # explicit overrides still win
    from ecgkit.ecgllm.finetune import LoraSettings

    lora, paper = LoraSettings.for_profile("full"), LoraSettings.PROFILES["full"]
    assert lora.batch_size * lora.gradient_accumulation < paper["batch_size"] * paper["gradient_accumulation"]
    # sizes only: the full profile's branches (accumulation, checkpointing, every block, rank 16) stay
    assert lora.gradient_accumulation > 1 and lora.gradient_checkpointing and lora.top_layers is None and lora.r == 16
    seen = {}
    monkeypatch.setattr("ecgkit.data.sources.synthetic_cohort", lambda n_records, seed: seen.setdefault("n", n_records) and 1/0)
    with pytest.raises(ZeroDivisionError):
        sources.load_synthetic(profile="full")
    assert seen["n"] == sources.CohortSettings.SMOKE["n_records"] < sources.SYNTHETIC_RECORDS["full"]
    assert sources.CohortSettings.for_profile("quick").n_records == sources.SYNTHETIC_RECORDS["quick"]


def test_every_notebook_gets_the_full_profile_and_known_parameters():
    from pathlib import Path

    from ecgkit.reproduce import notebooks

    for nb in notebooks(Path(__file__).resolve().parents[1] / "notebooks"):
        params = smoke.notebook_parameters(nb)
        assert params["profile"] == "full"
        cell = next(c for c in json.loads(nb.read_text())["cells"]
                    if "parameters" in c.get("metadata", {}).get("tags", []))
        source = "".join(cell["source"])
        unknown = [k for k in params if f"{k} =" not in source]
        assert not unknown, f"{nb.name}: no parameter {unknown}"


def test_gpu_branches_are_skipped_with_a_reason_without_cuda():
    rows = smoke.branches(cuda=False, bitsandbytes=False)
    skipped = {r["branch"] for r in rows if r["status"] == "skipped"}
    assert any("QLoRA" in b for b in skipped) and any("bf16" in b for b in skipped)
    assert all(r["reason"] for r in rows if r["status"] == "skipped")
    assert all(r["status"] == "executed" for r in smoke.branches(cuda=True, bitsandbytes=True))


def test_toy_ptbxl_keeps_each_superclass_per_fold_and_links_the_signals(tiny_ptbxl, tmp_path):
    import pandas as pd

    from ecgkit.data import load_real

    toy = smoke.toy_ptbxl(tiny_ptbxl, tmp_path / "toy", per_class=1)
    meta = pd.read_csv(toy / "ptbxl_database.csv", index_col="ecg_id")
    # record 5 (rhythm only) has no superclass; 6 (IMI) shares fold 10 with 5 and is kept
    assert sorted(meta.index) == [1, 2, 3, 4, 6]
    assert (toy / "records500" / "00000" / "00001_hr.dat").is_symlink()
    assert len(load_real(toy, rate=100)) == 5


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    """ESI pretraining (the full model) and the paper's LoRA under `accelerate launch
    --num_processes 2` (gloo) end where one process with the same global batch ends."""
    rows = smoke.multiprocess_check(tmp_path)
    assert [r["processes"] for r in rows] == [2, 2]
    assert all(r["equal"] for r in rows), rows


def test_every_smoke_size_is_a_field_of_its_class_and_shrinks_the_full_profile(monkeypatch):
    """Each settings class's ``SMOKE`` names fields it has, with sizes at or below the full
    profile's (toy sizes, never other branches); the settings layer imports nothing above it."""
    import ast
    import dataclasses
    import importlib
    from pathlib import Path

    import ecgkit.config
    from ecgkit.config import ProfileSettings

    for module in ("alfred.delineation", "alfred.prompt", "clinical.train", "data.sources", "ecgllm",
                   "ecgllm.finetune", "esi.cqa", "esi.experiments", "esi.train"):
        importlib.import_module(f"ecgkit.{module}")   # the modules that define the settings classes
    monkeypatch.delenv(smoke.ENV, raising=False)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    with_smoke = {c.__name__: c for c in subclasses(ProfileSettings) if c.SMOKE}
    assert {"DelineatorSettings", "CohortSettings", "LoraSettings"} <= set(with_smoke)
    for name, cls in with_smoke.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(cls.SMOKE) <= fields, f"{name}.SMOKE names no field {set(cls.SMOKE) - fields}"
        full = cls.for_profile("full")
        for key, toy in cls.SMOKE.items():
            limit = getattr(full, key)
            if key.startswith("max_") and limit == 0:     # 0: no limit (every record)
                continue
            assert toy <= limit, f"{name}.SMOKE[{key!r}] = {toy} is above the full profile's"
    tree = ast.parse(Path(ecgkit.config.__file__).read_text())
    upward = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
              and (node.level > 0 or (node.module or "").split(".")[0] == "ecgkit")]
    upward += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
               if a.name.split(".")[0] == "ecgkit"]
    assert not upward, f"ecgkit/config.py imports from the package: {upward}"
