"""``ecgkit diagnose`` speed: seconds per 12-lead ECG with the defaults (local LLM, Proposed,
quick prompt budget), models and index loaded once, generations not cached; the goal is < 10 s."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def run(n_records: int = 3, seed: int = 0) -> dict:
    from ..alfred.delineation import load_delineator
    from ..alfred.report import diagnose_record
    from ..knowledge import KnowledgeIndex
    from ..llm import get_llm
    from ..data.synthetic import simulate_ecg

    start = time.perf_counter()
    llm = get_llm(cache=False)
    index = KnowledgeIndex.build()
    delineator = load_delineator(progress=False)
    llm.generate(["Warm up."], max_new_tokens=1)
    setup = time.perf_counter() - start
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, cond in enumerate((("NORM",), ("CLBBB",), ("AMI",), ("LVH",))[:n_records]):
            sig, _ = simulate_ecg(cond, seed=seed + i)
            np.save(Path(tmp) / f"ecg{i}.npy", sig)
            t = time.perf_counter()
            diagnose_record(Path(tmp) / f"ecg{i}.npy", llm, index, "Proposed", Path(tmp) / "out",
                            fs=500, delineator=delineator)
            seconds.append(time.perf_counter() - t)
    return {"records": len(seconds), "setup_s": setup, "s_per_ecg": float(np.mean(seconds)),
            "max_s": float(np.max(seconds)), "goal_s": 10.0, "llm": llm.name}
