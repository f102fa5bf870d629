"""Time to generate the synthetic cohort (500 Hz records plus their 100 Hz copies)."""
from __future__ import annotations

import os
import tempfile
import time


def run(n_records: int = 5000, seed: int = 0, workers: int | None = None) -> dict:
    """Generate ``n_records`` into a temporary folder and time it (the folder is removed)."""
    from ..data.synthetic import make_synthetic_ptbxl

    with tempfile.TemporaryDirectory(prefix="ecgkit-synth-bench-") as tmp:
        t = time.perf_counter()
        make_synthetic_ptbxl(tmp, n_records=n_records, seed=seed, rates=(100, 500),
                             progress=False, workers=workers)
        seconds = time.perf_counter() - t
    return {"benchmark": "synthetic cohort generation (500 Hz + 100 Hz)", "records": n_records,
            "seconds": seconds, "records_per_s": n_records / seconds, "cpus": os.cpu_count()}


if __name__ == "__main__":  # pragma: no cover
    print(run())
