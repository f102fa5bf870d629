"""``python -m ecgkit.benchmarks [--ci] [names...]``: run the benchmarks, print one line each and
record them in ``<results>/bench.json`` (:mod:`ecgkit.results`), rendered by the book's performance
page, with the machine they ran on (:func:`machine`).

The ``ratios`` table puts each piece of our code beside the library a user would otherwise pick
(:data:`RATIOS`); ``figures`` holds the absolute figures of every benchmark. A benchmark that fails
is recorded with its error and the others go on. ``--ci`` (``make bench-ci``) runs every benchmark
at the smaller sizes of :data:`CI` (fewer records, repeats and steps; the same comparisons), so
that CI records the performance page in a few minutes.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

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
                   "queries per second, {random_vectors:,} vectors, one query per call")],
    "delineation": [("speedup", "U-Net delineator (batched)", "NeuroKit2 dwt, lead by lead",
                     "12-lead ECGs per second")],
}


#: ``make bench-ci``: each benchmark's ``run(...)`` arguments in CI's short mode (the defaults are
#: ``make bench``'s); every comparison of :data:`RATIOS` is still measured
CI = {
    "cache": dict(repeats=1),
    "synthetic": dict(n_records=200),
    "llm": dict(n_prompts=8, max_new_tokens=16, batch_size=8),
    "retrieval": dict(n=20_000, isotropic=False),
    "delineation": dict(n_records=4),
    "diagnose": dict(n_records=1),
    "esi": dict(variants=("small", "tiny")),
    "ecgllm": dict(steps=2, batch_size=4, n_questions=8, n_answers=4, max_new_tokens=8),
}


def machine() -> dict:
    """The machine the figures belong to: CPU model and cores (``/proc/cpuinfo``, else
    :mod:`platform`), the cores this process may use, memory, the GPU if torch sees one."""
    cpu, memory_gb = "", None
    info = Path("/proc/cpuinfo")
    if info.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in info.read_text(errors="replace").splitlines()
                    if line.lower().startswith(("model name", "hardware", "cpu model"))), "")
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total = re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text())
        memory_gb = round(int(total.group(1)) / 2**20, 1) if total else None
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # no torch: no GPU figure
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "usable_cores": usable, "memory_gb": memory_gb, "gpu": gpu,
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def describe_machine(m: dict) -> str:
    """``machine()`` in words, for the performance page."""
    cores = f"{m.get('cores')} cores" + (f" ({m['usable_cores']} usable)" if m.get("usable_cores") not in
                                         (None, m.get("cores")) else "")
    parts = [m.get("cpu") or "unknown CPU", cores]
    if m.get("memory_gb"):
        parts.append(f"{m['memory_gb']:g} GB memory")
    parts.append(f"GPU {m['gpu']}" if m.get("gpu") else "no GPU")
    return ", ".join(parts)


def describe_record(info: dict) -> str:
    """The performance page's opening line from ``bench.json``'s info: when, by which mode (CI's
    short mode with its sizes, or ``make bench``), which code, on which machine."""
    versions = info.get("versions", {})
    if info.get("mode") == "ci":
        shown = lambda v: (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool)
                           else "+".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
        sizes = "; ".join(f"{name} {', '.join(f'{k}={shown(v)}' for k, v in kwargs.items())}"
                          for name, kwargs in info.get("sizes", {}).items() if kwargs)
        mode = f"CI's short mode (`make bench-ci`: {sizes})"
    else:
        mode = "`make bench`"
    machine = describe_machine(info["machine"]) if info.get("machine") else "a machine not recorded"
    return (f"Recorded {info.get('saved', '')} by {mode} with ecgkit {versions.get('ecgkit', '?')} "
            f"(commit {info.get('commit') or 'unknown'}), profile {info.get('profile')}, on {machine}.")


def _neutral(value):
    """A recorded string without this machine's folders (a source folder, an error message)."""
    from ..notebook_scrub import replace_paths

    return replace_paths(value) if isinstance(value, str) else value


def _scalars(result: dict) -> dict:
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool)) or v is None}


def ratio_table(results: dict) -> pd.DataFrame:
    """One row per comparison of :data:`RATIOS` among ``results`` (benchmark -> its result)."""
    rows = []
    for name, specs in RATIOS.items():
        for key, ours, other, what in specs:
            value = results.get(name, {}).get(key)
            if isinstance(value, (int, float)):
                try:
                    what = what.format(**results[name])
                except (KeyError, ValueError):      # a figure the text names was not recorded
                    what = re.sub(r"\{[^}]*\}\s*", "", what)
                rows.append({"benchmark": name, "what": what, "ours": ours, "instead of": other,
                             "times faster": float(value)})
    return pd.DataFrame(rows, columns=["benchmark", "what", "ours", "instead of", "times faster"])


def figure_table(results: dict) -> pd.DataFrame:
    """Every scalar figure of every benchmark (long format)."""
    rows = [{"benchmark": name, "figure": k, "value": str(round(v, 4) if isinstance(v, float) else v)}
            for name, result in results.items() for k, v in _scalars(result).items()]
    return pd.DataFrame(rows, columns=["benchmark", "figure", "value"])


def record(results: dict, seconds: dict, directory=None, mode: str = "full", host: dict | None = None):
    """Write ``bench.json`` (metrics: every scalar, per benchmark; tables: ratios, figures; info:
    ``mode`` (``full`` or ``ci``), the sizes of the CI mode, the machine). Strings that name a
    folder of this machine are recorded with placeholders (``<ptbxl>``, ``<cache>``)."""
    from ..config import profile
    from ..results import Recorder

    results = {name: {k: _neutral(v) for k, v in result.items()} for name, result in results.items()}
    rec = Recorder("bench", dataset="benchmarks", profile=profile(), seed=0, mode=mode,
                   machine=host if host is not None else machine(),
                   sizes={name: CI.get(name, {}) for name in results} if mode == "ci" else {})
    for name, result in results.items():
        rec.metric(name, _scalars(result), seconds=round(seconds.get(name, float("nan")), 1))
    rec.table("ratios", ratio_table(results).set_index("benchmark"),
              caption="Our code against the library a user would otherwise pick (ratio > 1: ours is faster)")
    rec.table("figures", figure_table(results).set_index(["benchmark", "figure"]),
              caption="Every figure of every benchmark on this machine")
    return rec.save(directory)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ecgkit.benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ci", action="store_true", help="CI's short mode: the smaller sizes of CI")
    ap.add_argument("names", nargs="*", metavar="name",
                    help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    names = args.names or BENCHMARKS
    host = machine()
    print(f"[bench] {'CI short mode' if args.ci else 'full mode'} on {describe_machine(host)}", flush=True)
    results, seconds = {}, {}
    total = time.perf_counter()
    for name in names:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"ecgkit.benchmarks.{name}")
            result = module.run(**(CI.get(name, {}) if args.ci else {}))
        except Exception as exc:  # one failing benchmark must not lose the others
            result = {"error": f"{type(exc).__name__}: {exc}"}
        seconds[name] = time.perf_counter() - start
        results[name] = result
        print(f"[bench] {name}: " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                                 for k, v in _scalars(result).items()}), flush=True)
    path = record(results, seconds, mode="ci" if args.ci else "full", host=host)
    print(f"[bench] recorded {path} ({time.perf_counter() - total:.0f} s)", flush=True)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
