"""``python -m ecgkit.benchmarks [names...]``: run the benchmarks, print one line each and record
them in ``<results>/bench.json`` (:mod:`ecgkit.results`), rendered by the book's performance page.

The ``ratios`` table puts each piece of our code beside the library a user would otherwise pick
(:data:`RATIOS`); ``figures`` holds the absolute figures of every benchmark. A benchmark that fails
is recorded with its error and the others go on.
"""
from __future__ import annotations

import importlib
import json
import sys
import time

import pandas as pd

BENCHMARKS = ["cache", "synthetic", "llm", "retrieval", "delineation", "diagnose", "esi", "ecgllm"]

#: benchmark -> [(result key of the ratio, ours, the alternative, what is compared)]; a ratio > 1
#: means ours is that many times faster
RATIOS = {
    "cache": [("speedup_warm@100Hz", "memory-mapped signal cache (warm)", "wfdb.rdsamp loop",
               "reading every record at 100 Hz"),
              ("speedup_warm@500Hz", "memory-mapped signal cache (warm)", "wfdb.rdsamp loop",
               "reading every record at 500 Hz")],
    "llm": [("speedup", "batched greedy generation", "one prompt at a time (transformers generate)",
             "tokens per second, local LLM")],
    "retrieval": [("random_speedup_single", "FAISS HNSW (M=10) at recall@10 ≥ 0.99", "exact FAISS IndexFlatIP",
                   "queries per second, 100,000 vectors, one query per call")],
    "delineation": [("speedup", "U-Net delineator (batched)", "NeuroKit2 dwt, lead by lead",
                     "12-lead ECGs per second")],
}


def _scalars(result: dict) -> dict:
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool)) or v is None}


def ratio_table(results: dict) -> pd.DataFrame:
    """One row per comparison of :data:`RATIOS` among ``results`` (benchmark -> its result)."""
    rows = []
    for name, specs in RATIOS.items():
        for key, ours, other, what in specs:
            value = results.get(name, {}).get(key)
            if isinstance(value, (int, float)):
                rows.append({"benchmark": name, "what": what, "ours": ours, "instead of": other,
                             "times faster": float(value)})
    return pd.DataFrame(rows, columns=["benchmark", "what", "ours", "instead of", "times faster"])


def figure_table(results: dict) -> pd.DataFrame:
    """Every scalar figure of every benchmark (long format)."""
    rows = [{"benchmark": name, "figure": k, "value": str(round(v, 4) if isinstance(v, float) else v)}
            for name, result in results.items() for k, v in _scalars(result).items()]
    return pd.DataFrame(rows, columns=["benchmark", "figure", "value"])


def record(results: dict, seconds: dict, directory=None):
    """Write ``bench.json`` (metrics: every scalar, per benchmark; tables: ratios, figures)."""
    from ..config import profile
    from ..results import Recorder

    rec = Recorder("bench", dataset="benchmarks", profile=profile(), seed=0)
    for name, result in results.items():
        rec.metric(name, _scalars(result), seconds=round(seconds.get(name, float("nan")), 1))
    rec.table("ratios", ratio_table(results).set_index("benchmark"),
              caption="Our code against the library a user would otherwise pick (ratio > 1: ours is faster)")
    rec.table("figures", figure_table(results).set_index(["benchmark", "figure"]),
              caption="Every figure of every benchmark on this machine")
    return rec.save(directory)


def main(argv=None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or BENCHMARKS
    results, seconds = {}, {}
    for name in names:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"ecgkit.benchmarks.{name}")
            result = module.run()
        except Exception as exc:  # one failing benchmark must not lose the others
            result = {"error": f"{type(exc).__name__}: {exc}"}
        seconds[name] = time.perf_counter() - start
        results[name] = result
        print(f"[bench] {name}: " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                                 for k, v in _scalars(result).items()}), flush=True)
    path = record(results, seconds)
    print(f"[bench] recorded {path}", flush=True)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
