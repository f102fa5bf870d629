"""``python -m ecgkit.benchmarks [names...]``: run the benchmarks and print one line each."""
from __future__ import annotations

import importlib
import json
import sys

BENCHMARKS = ["cache", "synthetic", "llm", "retrieval", "delineation", "diagnose", "esi", "ecgllm"]


def main(argv=None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or BENCHMARKS
    for name in names:
        module = importlib.import_module(f"ecgkit.benchmarks.{name}")
        result = module.run()
        print(f"[bench] {name}: " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                                 for k, v in result.items()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
