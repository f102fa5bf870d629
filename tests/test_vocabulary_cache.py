"""ecgkit.vocabulary (one definition of each shared constant) and ecgkit.cache (one key function)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgkit import cache, vocabulary
from ecgkit.vocabulary import LAB_RANGES, sex_code

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, code", [("Male", 0.0), ("female", 1.0), (" M ", 0.0), ("F", 1.0), (0, 0.0),
                                         (1, 1.0), (1.0, 1.0), (np.int64(0), 0.0), ("0", 0.0), ("1", 1.0)])
def test_sex_code(value, code):
    assert sex_code(value) == code


@pytest.mark.parametrize("value", [None, float("nan"), "", "Unknown", pd.NA])
def test_sex_code_unknown(value):
    assert math.isnan(sex_code(value))


@pytest.mark.parametrize("value", ["X", 2, "other", 0.5])
def test_sex_code_refuses_what_it_does_not_understand(value):
    with pytest.raises(ValueError, match=re.escape(f"sex {value!r} not understood")):
        sex_code(value)
    assert math.isnan(sex_code(value, errors="nan"))


def test_ecgdataset_codes_sex_once():
    from ecgkit.data.dataset import ECGDataset

    meta = pd.DataFrame({"sex": ["Male", "Female", None, "F", "robot"]}, index=list("abcde"))
    with pytest.warns(UserWarning, match=r"sex not understood.*'robot' in \['e'\]"):
        ds = ECGDataset("t", np.zeros((5, 10, 12), np.float32), 100.0, meta)
    assert ds.meta["sex"].tolist()[:2] == [0.0, 1.0] and ds.meta["sex"].iloc[3] == 1.0
    assert ds.meta["sex"].isna().tolist() == [False, False, True, False, True]
    assert meta["sex"].iloc[0] == "Male"                       # the caller's table is left alone


def test_lab_ranges_have_limits_that_can_be_crossed():
    for lab, (unit, low, high, source) in LAB_RANGES.items():
        assert unit and len(source) > 10, lab
        assert not (math.isnan(low) and math.isnan(high)), lab
        if not (math.isnan(low) or math.isnan(high)):
            assert low < high, lab
    assert math.isnan(LAB_RANGES["troponin"][1]) and math.isnan(LAB_RANGES["spo2"][2])


def test_one_definition_of_each_shared_constant():
    pattern = re.compile(r"^(LEADS|SUPERCLASSES|LAB_REFERENCE|LAB_UNITS|REFERENCE_RANGES)\s*=", re.M)
    found = {}
    for path in (ROOT / "ecgkit").rglob("*.py"):
        for name in pattern.findall(path.read_text()):
            found.setdefault(name, []).append(path.relative_to(ROOT).as_posix())
    assert found.get("LEADS") == ["ecgkit/vocabulary.py"]
    assert found.get("LAB_REFERENCE") == ["ecgkit/vocabulary.py"]
    assert found.get("LAB_UNITS") == ["ecgkit/vocabulary.py"]
    assert len(found.get("SUPERCLASSES", [])) == 1
    from ecgkit.alfred import answer, prompt, rules
    from ecgkit.data import ptbxl

    assert answer.SUPERCLASSES is prompt.SUPERCLASSES is rules.SUPERCLASSES is ptbxl.SUPERCLASSES \
        is vocabulary.SUPERCLASSES


def test_key_is_canonical_and_versioned():
    k = cache.key("signal_cache", {"b": 1, "a": [1, 2]})
    assert re.fullmatch(r"[0-9a-f]{%d}" % cache.DIGEST_CHARS, k)
    assert k == cache.key("signal_cache", {"a": [1, 2], "b": 1})           # key order does not matter
    assert k != cache.key("signal_cache", {"a": [1, 2], "b": 2})
    assert k != cache.key("signal_cache", {"b": 1, "a": [1, 2]}, version="999")
    assert k != cache.key("knowledge_index", {"b": 1, "a": [1, 2]})
    with pytest.raises(KeyError, match="no version for cache namespace 'nowhere'"):
        cache.key("nowhere", {})
    assert cache.key("nowhere", {}, version=1)


def test_build_or_load(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "x.txt").write_text("built")

    def load(folder):
        return (folder / "x.txt").read_text()

    first = cache.build_or_load("demo", {"n": 1}, build, load, version=1, root=tmp_path)
    again = cache.build_or_load("demo", {"n": 1}, build, load, version=1, root=tmp_path)
    assert first[0] == again[0] == "built" and first[2] and not again[2] and len(calls) == 1
    assert first[1] == again[1] == cache.key("demo", {"n": 1}, 1)
    assert (tmp_path / "demo" / first[1] / "spec.json").is_file()

    def broken(folder):
        (folder / "half").write_text("")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.build_or_load("demo", {"n": 2}, broken, load, version=1, root=tmp_path)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [first[1]]   # nothing half-written


def test_no_module_hashes_its_own_source():
    for path in (ROOT / "ecgkit").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("ecgkit/ecgllm/", "ecgkit/esi/")):
            continue                                   # converted by the integrator (see issue 15)
        text = path.read_text()
        assert "read_bytes()).hexdigest" not in text and "file_sha256(here" not in text, rel
