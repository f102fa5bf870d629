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


def test_ci_mode_sizes_reach_each_benchmark_run():
    """Every CI size is an argument of that benchmark's run(...), smaller than make bench's default."""
    import importlib
    import inspect

    from ecgkit.benchmarks.__main__ import BENCHMARKS, CI

    assert set(CI) == set(BENCHMARKS)
    for name, sizes in CI.items():
        params = inspect.signature(importlib.import_module(f"ecgkit.benchmarks.{name}").run).parameters
        for key, value in sizes.items():
            assert key in params, f"{name}.run has no argument {key!r}"
            default = params[key].default
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert value < default, (name, key)
            elif isinstance(value, tuple):
                assert set(value) < set(default), (name, key)


def test_the_record_names_the_machine_the_mode_and_no_machine_path(tmp_path, monkeypatch):
    from ecgkit.benchmarks.__main__ import describe_machine, describe_record, machine

    monkeypatch.setenv("ECGKIT_CACHE", str(tmp_path / "cache"))
    host = machine()
    assert host["cores"] >= 1 and host["cpu"]
    results = {"retrieval": {"random_vectors": 20000, "random_speedup_single": 8.0},
               "cache": {"source": "ptbxl-500", "error": f"OSError: {tmp_path / 'cache' / 'x.npy'} is corrupt"}}
    record(results, {}, tmp_path, mode="ci", host={**host, "cpu": "Test CPU 9000", "cores": 16,
                                                   "usable_cores": 2, "memory_gb": 64.0, "gpu": None})
    r = load_results("bench", tmp_path)
    assert r.metrics["cache"]["value"]["error"] == "OSError: <cache>/x.npy is corrupt"
    assert r.table("ratios")["what"].tolist() == ["queries per second, 20,000 vectors, one query per call"]
    assert r.info["mode"] == "ci" and r.info["sizes"]["retrieval"]["n"] == 20000
    line = describe_record(r.info)
    assert "CI's short mode" in line and "retrieval n=20,000" in line and "esi" not in line
    assert "Test CPU 9000, 16 cores (2 usable), 64 GB memory, no GPU" in line
    assert describe_machine({"cpu": "X", "cores": 4, "usable_cores": 4, "gpu": "H100"}) == "X, 4 cores, GPU H100"
    # an older record without the vector count: the text drops the figure it cannot name
    assert ratio_table({"retrieval": {"random_speedup_single": 8.0}})["what"].iloc[0] == \
        "queries per second, vectors, one query per call"


def test_main_ci_mode_runs_the_short_sizes(tmp_path, monkeypatch, capsys):
    import pytest

    from ecgkit.benchmarks import __main__ as bench

    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path))
    monkeypatch.setitem(bench.CI, "synthetic", {"n_records": 3})
    assert bench.main(["--ci", "synthetic"]) == 0
    r = load_results("bench", tmp_path)
    assert r.info["mode"] == "ci" and r.metrics["synthetic"]["value"]["records"] == 3
    assert "CI short mode on" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["synthetc"])
