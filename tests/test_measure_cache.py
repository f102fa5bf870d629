"""Cached ALFRED measurements: a rerun loads exactly what was computed; a changed input misses."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgkit.alfred.delineation import read_delineator, shipped_delineator_dir
from ecgkit.alfred.pipeline import measure_ecgs
from ecgkit.data.synthetic import simulate_ecg


@pytest.fixture(scope="module")
def model():
    return read_delineator(shipped_delineator_dir("synthetic"))


@pytest.fixture(scope="module")
def signals():
    sigs = [simulate_ecg(c, seed=i)[0] for i, c in enumerate((("NORM",), ("CLBBB",)))]
    flat = np.full_like(sigs[0], np.nan)           # no usable lead: an empty delineation with a note
    return np.stack(sigs + [flat]).astype(np.float32)


def assert_same(a, b):
    assert list(a.ids) == list(b.ids) and a.ids.dtype == b.ids.dtype and a.fs == b.fs
    assert a.failed == b.failed
    pd.testing.assert_frame_equal(a.features, b.features, check_exact=True)
    assert len(a.fiducials) == len(b.fiducials) and len(a.rules) == len(b.rules)
    for x, y in zip(a.fiducials + a.rules, b.fiducials + b.rules):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
        assert x.attrs == y.attrs


def run(capsys, signals, model, **kw):
    args = dict(ages=[50, 60, None], sexes=[0, 1, 0], ids=["a", "b", "c"], model=model, progress=False)
    measured = measure_ecgs(signals, 500, **{**args, **kw})
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("measurements")]
    return measured, lines


def test_round_trip_equal_and_logged(tmp_cache, capsys, signals, model):
    plain, lines = run(capsys, signals, model, cache=False)
    assert lines == [] and not (tmp_cache / "alfred_measured").exists()
    assert plain.fiducials[2].attrs.get("note")         # the empty record keeps its note
    cold, lines = run(capsys, signals, model)
    assert len(lines) == 1 and "3 records computed and cached" in lines[0]
    key = lines[0].split("key ")[1].rstrip(")")
    assert (tmp_cache / "alfred_measured" / key / "complete").is_file()
    warm, lines = run(capsys, signals, model)
    assert lines == [f"measurements (U-Net {model.meta['key']}): 3 records from cache (key {key})"]
    assert_same(plain, cold)
    assert_same(plain, warm)
    # other ids: the same artefact, the rows named by the ids given
    renamed, lines = run(capsys, signals, model, ids=[7, 8, 9])
    assert "from cache" in lines[0] and list(renamed.features.index) == [7, 8, 9]
    assert list(renamed.ids) == [7, 8, 9]


def test_a_changed_input_misses(tmp_cache, capsys, signals, model):
    run(capsys, signals, model)
    _, lines = run(capsys, signals, model, ages=[51, 60, None])
    assert "computed and cached" in lines[0]
    changed = signals.copy()
    changed[0, 100, 0] += 0.01
    _, lines = run(capsys, changed, model)
    assert "computed and cached" in lines[0]
    _, lines = run(capsys, signals[:, :, :2], model, leads=["I", "II"])
    assert "computed and cached" in lines[0]
    # other weights under the same meta key (a fold model, say) never share an artefact
    import copy
    import torch

    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    _, lines = run(capsys, signals, other)
    assert "computed and cached" in lines[0]
    _, lines = run(capsys, signals, model)
    assert "from cache" in lines[0]


def test_model_without_meta_is_not_cached(tmp_cache, capsys, signals, model):
    import copy

    bare = copy.deepcopy(model)
    del bare.meta
    _, lines = run(capsys, signals, bare)
    assert lines == [] and not (tmp_cache / "alfred_measured").exists()


def test_neurokit_baseline_cached(tmp_cache, capsys, signals):
    from ecgkit.alfred.validation import measure_with_neurokit

    one = signals[:1].astype(float)
    kw = dict(ages=[55], sexes=[0], ids=["x"], progress=False)
    plain = measure_with_neurokit(one, 500, cache=False, **kw)
    cold = measure_with_neurokit(one, 500, **kw)
    warm = measure_with_neurokit(one, 500, **kw)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("measurements")]
    assert len(lines) == 2 and "computed and cached" in lines[0] and "from cache" in lines[1]
    assert lines[0].startswith("measurements (neurokit2 dwt): 1 records")
    assert_same(plain, cold)
    assert_same(plain, warm)
    median = measure_with_neurokit(one, 500, consensus="median", **kw)
    line = capsys.readouterr().out
    assert "computed and cached" in line
    assert_same(measure_with_neurokit(one, 500, consensus="median", cache=False, **kw), median)
    # precomputed fiducials skip NeuroKit2 and the cache
    again = measure_with_neurokit(one, 500, fiducials=plain.fiducials, **kw)
    assert "measurements" not in capsys.readouterr().out
    assert_same(plain, again)
