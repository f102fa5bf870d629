"""make bench records its figures (bench.json) as ratios against the usual library."""
from __future__ import annotations

import math

from ecgkit.benchmarks.__main__ import RATIOS, figure_table, ratio_table, record
from ecgkit.results import load_results


def test_bench_results_are_recorded_and_read_back(tmp_path):
    results = {"cache": {"benchmark": "x", "speedup_warm@100Hz": 80.0, "speedup_warm@500Hz": 55.5, "records": 500},
               "llm": {"speedup": 6.25, "sweep": [1, 2]},
               "diagnose": {"error": "RuntimeError: boom"}}
    path = record(results, {"cache": 3.0, "llm": 2.0, "diagnose": 0.1}, tmp_path)
    assert path.name == "bench.json"
    r = load_results("bench", tmp_path)
    ratios = r.table("ratios")
    assert list(ratios.index) == ["cache", "cache", "llm"]
    assert ratios["times faster"].tolist() == [80.0, 55.5, 6.25]
    assert set(ratios["instead of"]) == {"wfdb.rdsamp loop", "one prompt at a time (transformers generate)"}
    assert r.metrics["diagnose"]["value"] == {"error": "RuntimeError: boom"}
    assert r.metrics["cache"]["seconds"] == 3.0
    figures = r.table("figures")
    assert ("llm", "sweep") not in figures.index and figures.loc[("cache", "records"), "value"] == "500"


def test_every_ratio_names_both_sides():
    for name, specs in RATIOS.items():
        for key, ours, other, what in specs:
            assert key and ours and other and what and ours != other, name
    assert ratio_table({}).empty and figure_table({}).empty
    assert math.isclose(ratio_table({"delineation": {"speedup": 12.0}})["times faster"].iloc[0], 12.0)
