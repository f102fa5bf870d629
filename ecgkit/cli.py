"""The ``ecgkit`` command: ``ecgkit <command> ...``."""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "reproduce": ("ecgkit.reproduce", "execute the notebooks with papermill"),
    "download-ptbxl": ("ecgkit.data.download", "fetch PTB-XL from PhysioNet (checksums, resume)"),
    "synth": ("ecgkit.data.synthetic", "write the synthetic cohort in PTB-XL layout"),
    "models": ("ecgkit.models", "prepare or locate the local models"),
    "bench": ("ecgkit.benchmarks", "run the benchmarks"),
    "diagnose": ("ecgkit.alfred.report", "ALFRED report for ECG records (delineation, features, rules, LLM)"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: ecgkit <command> [options]\n\ncommands:")
        for name, (_, doc) in COMMANDS.items():
            print(f"  {name:16s}{doc}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
