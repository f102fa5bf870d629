"""Cached encoder embeddings: keyed by the training run, the output and the signals' content."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ecgkit.esi import downstream as D
from ecgkit.esi import experiments as X


class Prompts:
    """A stand-in text tower: fixed unit vectors, one per prompt."""

    def embed(self, prompts, max_length=128):
        return torch.nn.functional.normalize(torch.arange(6 * len(prompts), dtype=torch.float32)
                                             .reshape(len(prompts), 6) + 1, dim=-1)


class Pooled(torch.nn.Module):
    """A tiny encoder: one convolution, mean over time; ``encode_ecg`` for the joint space."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv1d(12, 6, 5)
        self.text = Prompts()

    def forward(self, x):
        return self.conv(x).mean(-1)

    def encode_ecg(self, x):
        return torch.nn.functional.normalize(self.forward(x), dim=-1)


@pytest.fixture
def signals(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 64, 12)).astype(np.float32)
    np.save(tmp_path / "signals.npy", x)
    return np.load(tmp_path / "signals.npy", mmap_mode="r")     # read-only, as a dataset's signals


def lines(capsys):
    return [l for l in capsys.readouterr().out.splitlines() if l.startswith(("embeddings", "probes"))]


def test_round_trip_and_log(tmp_cache, capsys, signals):
    enc = Pooled()
    direct = D.embed(enc, signals)
    cold = D.cached_embed(enc, signals, "esi-abc")
    warm = D.cached_embed(enc, signals, "esi-abc")
    out = lines(capsys)
    assert out[0].startswith("embeddings of 40 records (esi-abc): computed and cached (key ")
    assert out[1].startswith("embeddings of 40 records (esi-abc): from cache (key ")
    assert out[0].split("key ")[1] == out[1].split("key ")[1]
    assert np.array_equal(direct, cold) and np.array_equal(direct, warm) and warm.dtype == direct.dtype
    joint = D.cached_embed(enc, signals, "esi-abc", joint=True)
    assert np.array_equal(joint, D.embed_joint(enc, signals)) and "computed" in lines(capsys)[0]


def test_changed_inputs_miss(tmp_cache, capsys, signals):
    enc = Pooled()
    D.cached_embed(enc, signals, "esi-abc")
    D.cached_embed(Pooled(seed=1), signals, "esi-other")                     # another run
    changed = np.array(signals)
    changed[3, 10, 2] += 1e-3
    D.cached_embed(enc, changed, "esi-abc")                                 # other signals
    D.cached_embed(enc, np.array(signals[:20]), "esi-abc")                  # a subset
    D.cached_embed(enc, np.array(signals), "esi-abc")                       # same content, a copy
    out = lines(capsys)
    assert ["from cache" in l for l in out] == [False, False, False, False, True]
    assert D.weights_key(enc) == D.weights_key(Pooled()) != D.weights_key(Pooled(seed=1))


def test_data_key_is_the_content(signals):
    k = D.data_key(signals)
    assert D.data_key(signals) == k == D.data_key(np.array(signals))
    assert D.data_key(np.array(signals[:, :, ::-1])) != k


def test_evaluate_frozen_and_zero_shot_cached(tmp_cache, capsys, signals):
    y = pd.DataFrame({"A": np.arange(40) % 2, "B": (np.arange(40) // 2) % 2})
    task = D.Task("toy", signals, y, np.arange(24), np.arange(24, 32), np.arange(32, 40))
    ids = X.IdentificationSet("toy", np.asarray(signals[:20]), np.repeat(np.arange(10), 2))
    enc = Pooled()
    plain = X.evaluate_frozen(enc, [task], [ids], {"seed": 0, "method": "ESI"})
    assert lines(capsys) == []
    kept_cold, kept_warm = {}, {}
    cold = X.evaluate_frozen(enc, [task], [ids], {"seed": 0, "method": "ESI"}, kept_cold, run="esi-abc")
    warm = X.evaluate_frozen(enc, [task], [ids], {"seed": 0, "method": "ESI"}, kept_warm, run="esi-abc")
    out = lines(capsys)
    assert len(out) == 3
    assert out[0].startswith("embeddings (ESI, 0, esi-abc): 60 records in 2 sets computed and cached (keys ")
    assert out[1].startswith("probes (ESI, 0, esi-abc): computed and cached (key ")
    assert out[2].startswith("probes (ESI, 0, esi-abc): from cache (key ")          # a rerun embeds and fits nothing
    assert plain == cold == warm
    np.testing.assert_array_equal(kept_cold["toy"], kept_warm["toy"])
    other = D.Task("toy", signals, y, np.arange(8, 32), np.arange(0, 8), np.arange(32, 40))   # another split
    X.evaluate_frozen(enc, [other], [ids], {"seed": 0, "method": "ESI"}, run="esi-abc")
    out = lines(capsys)
    assert any(l.startswith("probes (ESI, 0, esi-abc): computed and cached") for l in out)
    assert any("embeddings (ESI, 0, esi-abc): 60 records in 2 sets from cache" in l for l in out)
    prompts = D.class_prompts(["A", "B"])
    zs = [D.zero_shot_task(enc, task, prompts, run=run) for run in (None, "esi-abc", "esi-abc")]
    out = lines(capsys)
    assert zs[0] == zs[1] == zs[2]
    assert len(out) == 2 and "16 records in 2 sets computed and cached" in out[0] and "from cache" in out[1]
