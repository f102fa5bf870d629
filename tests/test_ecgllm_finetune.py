"""LoRA fine-tuning on a tiny random Llama: masked labels, a few steps, an adapter that reloads."""
import json

import numpy as np
import pytest
import torch

from ecgkit.ecgllm.finetune import (LoraSettings, finetune, finetuned_llm, load_finetuned, reference_nll,
                                    tokenize_chat)
from ecgkit.ecgllm.prompts import SYSTEM, training_messages

from ecgllm_fakes import tiny_llama

PROVENANCE = {"topic": "t", "key": "k", "source": "expert/features/delta_wave.md"}
OPEN = {**PROVENANCE, "id": "o1", "type": "open", "split": "train", "question": "What is a delta wave?",
        "reference": "A slurred upstroke of the QRS complex.", "options": [], "answer": None}
MCQ = {**PROVENANCE, "id": "m1", "type": "mcq", "split": "train", "question": "Which lead looks at the inferior wall?",
       "reference": "III", "options": ["V1", "III", "aVR", "I"], "answer": 1}


@pytest.fixture(scope="module")
def tiny(llm_dir, tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", llm_dir)


def _logits(model, tokenizer, text="Question: What is a delta wave?\nAnswer:"):
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits.float()


def test_tokenize_chat_masks_everything_but_the_answer(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    ids, labels = tokenize_chat(tok, training_messages(OPEN), max_length=512)
    answer = [i for i, label in zip(ids, labels) if label != -100]
    assert tok.decode(answer) == OPEN["reference"] + "<|im_end|>\n"
    n_prompt = labels.index(next(label for label in labels if label != -100))
    assert all(label == -100 for label in labels[:n_prompt]) and ids[n_prompt:] == labels[n_prompt:]
    assert SYSTEM in tok.decode(ids[:n_prompt])
    mcq_ids, mcq_labels = tokenize_chat(tok, training_messages(MCQ), max_length=512)
    assert tok.decode([i for i, label in zip(mcq_ids, mcq_labels) if label != -100]).startswith("B) III")
    assert tokenize_chat(tok, training_messages(OPEN), max_length=len(ids)) == (ids, labels)
    assert tokenize_chat(tok, training_messages(OPEN), max_length=len(ids) - 1) is None   # too long: skipped


def test_lora_steps_save_an_adapter_that_reloads(tiny, tmp_cache):
    settings = LoraSettings(r=4, alpha=8, max_steps=2, batch_size=2, learning_rate=5e-2, warmup_ratio=0.0,
                            quantize="none")
    result = finetune(str(tiny), [OPEN, MCQ, OPEN | {"id": "o2", "question": "What is a J point?"}], settings,
                      progress=False)
    assert not result.cached and result.steps == 2 and len(result.history) == 2 and result.tokens > 0
    assert all(np.isfinite(h["loss"]) for h in result.history)
    files = {p.name for p in result.adapter_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "training.json", "tokenizer.json"} <= files
    info = json.loads((result.adapter_dir / "training.json").read_text())
    assert info["key"] == result.key and info["settings"]["r"] == 4

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    trained = _logits(result.model.eval(), tok)
    merged, _ = load_finetuned(result)
    unmerged, _ = load_finetuned(result.adapter_dir, merge=False)
    base = AutoModelForCausalLM.from_pretrained(tiny).eval()
    assert torch.allclose(_logits(merged, tok), trained, atol=1e-4)      # same outputs after reload
    assert torch.allclose(_logits(unmerged, tok), trained, atol=1e-4)
    assert not torch.allclose(_logits(base, tok), trained, atol=1e-4)    # the steps changed the model

    again = finetune(str(tiny), [OPEN, MCQ, OPEN | {"id": "o2", "question": "What is a J point?"}], settings)
    assert again.cached and again.key == result.key and again.model is None and again.history == result.history
    other = finetune(str(tiny), [OPEN, MCQ], settings, progress=False)
    assert other.key != result.key                                         # keyed by the data

    llm = finetuned_llm(result, cache=False)
    assert llm.name.endswith(f"+lora-{result.key[:12]}") and "tiny-llama" in llm.name
    gen = llm.generate(["What is a delta wave?"], max_new_tokens=3)[0]
    assert gen.ok and gen.completion_tokens >= 1
    nll = reference_nll(llm, [OPEN, MCQ])
    assert list(nll["type"]) == ["open", "mcq"] and (nll["nll_per_token"] > 0).all()


def test_top_layers_restricts_the_adapter(tiny, tmp_cache):
    from safetensors.torch import load_file

    settings = LoraSettings(r=2, alpha=4, top_layers=1, max_steps=1, batch_size=2, quantize="none")
    result = finetune(str(tiny), [OPEN, MCQ], settings, progress=False)
    names = list(load_file(result.adapter_dir / "adapter_model.safetensors"))
    assert names and all(".layers.1." in n for n in names)
    assert {n.split(".layers.1.")[1].split(".")[1] for n in names} == {"q_proj", "k_proj", "v_proj", "o_proj",
                                                                      "gate_proj", "up_proj", "down_proj"}
    everything = finetune(str(tiny), [OPEN, MCQ], LoraSettings(r=2, alpha=4, top_layers=None, max_steps=1, batch_size=2,
                                                               quantize="none"), progress=False, cache=False)
    names = list(load_file(everything.adapter_dir / "adapter_model.safetensors"))
    assert any(".layers.0." in n for n in names) and any(".layers.1." in n for n in names)


def test_bad_settings_and_inputs_are_refused(tiny, tmp_cache):
    with pytest.raises(ValueError, match="no training items"):
        finetune(str(tiny), [], LoraSettings())
    with pytest.raises(ValueError, match="quantize"):
        finetune(str(tiny), [OPEN], LoraSettings(quantize="8bit"))
    with pytest.raises(ValueError, match="longer than max_length"):
        finetune(str(tiny), [OPEN], LoraSettings(max_length=8, quantize="none"), progress=False)
    with pytest.raises(FileNotFoundError, match="adapter"):
        load_finetuned(tiny)
    assert LoraSettings.for_profile("full").r == 16 and LoraSettings.for_profile("quick", r=2).r == 2


def test_command_line_trains_from_a_jsonl(tiny, tmp_cache, tmp_path, capsys):
    from ecgkit.ecgllm.dataset import write_jsonl
    from ecgkit.ecgllm.finetune import main

    data = write_jsonl([OPEN, MCQ, {**OPEN, "id": "e1", "split": "eval"}], tmp_path / "d.jsonl")
    with open(data, "a") as fh:
        fh.write("not json\n")
    assert main(["--base", str(tiny), "--data", str(data), "--max-steps", "1", "--quantize", "none"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["steps"] == 1 and report["examples"] == 2          # the evaluation item is not trained on
    assert "d.jsonl:4: skipped" in out.err


def test_held_out_curve_falls_on_the_trained_answers_and_the_adapter_loads_by_key(tiny, tmp_cache):
    from ecgkit.ecgllm.finetune import load_adapter

    items = [OPEN, MCQ]
    settings = LoraSettings(r=4, alpha=8, max_steps=6, batch_size=2, learning_rate=5e-2, warmup_ratio=0.0,
                            quantize="none", eval_every=3)
    result = finetune(str(tiny), items, settings, progress=False, eval_items=items)
    assert [c["step"] for c in result.curve] == [0, 3, 6] and result.eval_examples == 2
    assert result.curve[0]["train_loss"] is None and all(np.isfinite(c["train_loss"]) for c in result.curve[1:])
    # held-out = the training answers here: six steps at a high rate must lower their loss
    assert result.curve[-1]["heldout_loss"] < result.curve[0]["heldout_loss"]
    without = finetune(str(tiny), items, settings, progress=False)
    assert without.key != result.key and without.curve == []              # the held-out set is part of the key
    loaded = load_adapter(result.key)
    assert loaded.cached and loaded.key == result.key and loaded.curve == result.curve
    assert load_adapter(result.adapter_dir).key == result.key
    with pytest.raises(FileNotFoundError, match="run notebook 07"):
        load_adapter("no-such-key")


def test_heldout_verdict_reads_the_curve():
    from ecgkit.ecgllm.evaluate import heldout_verdict

    curve = [{"step": 0, "heldout_loss": 2.5}, {"step": 5, "heldout_loss": 2.0}, {"step": 10, "heldout_loss": 2.1}]
    v = heldout_verdict(curve)
    assert v["verdict"] == "falls clearly" and v["best_step"] == 5 and v["relative_change"] == pytest.approx(-0.16)
    assert heldout_verdict(curve[:1] + [{"step": 5, "heldout_loss": 2.45}])["verdict"] == "falls slightly"
    assert heldout_verdict(curve[:1] + [{"step": 5, "heldout_loss": 2.6}])["verdict"] == "does not fall"
    assert heldout_verdict([])["verdict"] == "no curve"
    import pandas as pd
    assert heldout_verdict(pd.DataFrame(curve).set_index("step"))["end"] == 2.1
