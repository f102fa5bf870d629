"""Record results from a notebook, read them back for the book and the tests.

A notebook makes one :class:`Recorder`, records named metrics and tables, and saves one JSON
file per notebook (with dataset, profile, seed, package versions and the git commit). The book's tables are
rendered from these files, beside the paper's numbers from ``resources/paper_numbers.csv``.
"""
from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from .config import results_dir

VERSIONED = ("ecgkit", "numpy", "pandas", "scipy", "torch", "wfdb", "neurokit2", "transformers",
             "scikit-learn")


def package_versions(names=VERSIONED) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def source_commit() -> str | None:
    """The git commit of the code that ran (``+dirty`` when the work tree had changes), or None
    outside a git checkout."""
    import subprocess

    from .config import project_root

    root = project_root(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def _plain(value):
    """JSON-safe plain Python values (NaN becomes None)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) else value
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass
class Results:
    """What one notebook recorded."""

    notebook: str
    info: dict
    metrics: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    captions: dict = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            raise KeyError(f"{self.notebook} recorded no table {name!r} (it has {sorted(self.tables)})")
        return self.tables[name]

    def metric(self, name: str):
        if name not in self.metrics:
            raise KeyError(f"{self.notebook} recorded no metric {name!r} (it has {sorted(self.metrics)})")
        return self.metrics[name]["value"]


class Recorder:
    """Collects a notebook's metrics and tables and writes them to ``<results>/<notebook>.json``."""

    def __init__(self, notebook: str, dataset: str, profile: str, seed: int, **info):
        self.results = Results(notebook, {"notebook": notebook, "dataset": dataset,
                                          "profile": profile, "seed": seed, **info})

    def metric(self, name: str, value, **info) -> None:
        self.results.metrics[name] = {"value": _plain(value), **_plain(info)}

    def table(self, name: str, frame: pd.DataFrame, caption: str = "") -> pd.DataFrame:
        self.results.tables[name] = frame
        self.results.captions[name] = caption
        return frame

    def save(self, directory: str | Path | None = None) -> Path:
        directory = Path(directory) if directory else results_dir()
        directory.mkdir(parents=True, exist_ok=True)
        r = self.results
        doc = {
            "info": {**_plain(r.info), "versions": package_versions(), "commit": source_commit(),
                     "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            "metrics": r.metrics,
            "tables": {name: {"caption": r.captions.get(name, ""),
                              "index_names": list(frame.index.names),
                              "columns": [[str(x) for x in c] if isinstance(c, tuple) else str(c)
                                          for c in frame.columns],
                              "index": _plain(list(frame.index)),
                              "data": _plain(frame.to_numpy(dtype=object).tolist())}
                       for name, frame in r.tables.items()},
        }
        path = directory / f"{r.notebook}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        tmp.replace(path)
        return path


def load_results(notebook: str, directory: str | Path | None = None) -> Results:
    """Read what ``notebook`` recorded; a clear error when it has not been run yet."""
    directory = Path(directory) if directory else results_dir()
    path = directory / f"{notebook}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results for {notebook} in {directory}: run `make reproduce` "
                                f"(or the notebook) first")
    doc = json.loads(path.read_text())
    tables, captions = {}, {}
    for name, t in doc["tables"].items():
        names = t.get("index_names") or [None]
        index = (pd.MultiIndex.from_tuples([tuple(i) for i in t["index"]], names=names)
                 if len(names) > 1 else pd.Index(t["index"], name=names[0]))
        columns = t["columns"]
        if columns and all(isinstance(c, list) for c in columns):
            columns = pd.MultiIndex.from_tuples([tuple(c) for c in columns])
        frame = pd.DataFrame(t["data"], index=index, columns=columns)
        tables[name] = frame.infer_objects()
        captions[name] = t.get("caption", "")
    return Results(notebook, doc["info"], doc["metrics"], tables, captions)


def paper_numbers(paper: str | None = None, table: str | None = None) -> pd.DataFrame:
    """The papers' reported numbers, each with its source (paper, table)."""
    folder = files("ecgkit.resources")
    parts = []
    for item in sorted(folder.iterdir(), key=lambda f: f.name):   # paper_numbers.csv, paper_numbers_esi.csv, ...
        if item.name.startswith("paper_numbers") and item.name.endswith(".csv"):
            with item.open() as fh:
                parts.append(pd.read_csv(fh, comment="#"))
    frame = pd.concat(parts, ignore_index=True)
    if paper:
        frame = frame[frame["paper"] == paper]
    if table:
        frame = frame[frame["table"] == table]
    return frame.reset_index(drop=True)


def data_source(info: dict) -> str:
    """One line naming the data, profile and seed behind a results file."""
    return (f"Data: {info.get('dataset', '?')}; profile {info.get('profile', '?')}; "
            f"seed {info.get('seed', '?')}; ecgkit {info.get('versions', {}).get('ecgkit', '?')}")


def _whole_numbers(column: pd.Series) -> bool:
    """A numeric column whose values are all whole numbers (NaN aside) and not all 0/1 rates."""
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    values = column.dropna().to_numpy(dtype=float)
    return bool(values.size) and bool(np.all(values == np.round(values))) and bool(np.abs(values).max() > 1)


def show_table(results: Results, name: str):
    """A recorded table styled for the book, with its caption."""
    frame = results.table(name)
    styler = frame.style.format(precision=3, na_rep="–")
    whole = [c for c in frame.columns if _whole_numbers(frame[c])]
    if whole:   # counts, seeds, records: integers as integers (500, not 500.000)
        styler = styler.format("{:.0f}", subset=whole, na_rep="–")
    caption = results.captions.get(name)
    return styler.set_caption(caption) if caption else styler


def results_overview(directory: str | Path | None = None):
    """One row per recorded notebook: dataset, profile, seed, when, with which ecgkit."""
    directory = Path(directory) if directory else results_dir()
    rows = []
    for path in sorted(directory.glob("[0-9][0-9]_*.json")):
        info = json.loads(path.read_text())["info"]
        rows.append({"notebook": info.get("notebook", path.stem), "data": info.get("dataset"),
                     "profile": info.get("profile"), "seed": info.get("seed"),
                     "ecgkit": info.get("versions", {}).get("ecgkit"), "recorded": info.get("saved")})
    frame = pd.DataFrame(rows, columns=["notebook", "data", "profile", "seed", "ecgkit", "recorded"])
    return frame.style.hide(axis="index")


def _chapter_title(md: Path) -> str:
    for line in md.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return md.stem


def chapter_map(root: str | Path | None = None, directory: str | Path | None = None) -> pd.DataFrame:
    """The book's chapters in ``_toc.yml`` order: part, title, the data its notebook ran on and
    its wall time in the last ``make reproduce`` (``–`` where it has not run yet)."""
    import yaml

    from .config import project_root

    root = Path(root) if root else project_root()
    directory = Path(directory) if directory else results_dir()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    times_path = directory / "reproduce_times.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    rows = []
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            executed = [s["file"] for s in chapter.get("sections", []) if "executed/" in s["file"]]
            notebook = Path(executed[0]).name if executed else None
            result = directory / f"{notebook}.json" if notebook else None
            info = json.loads(result.read_text())["info"] if result and result.is_file() else {}
            seconds = times.get(notebook, {}).get("seconds") if notebook else None
            rows.append({"part": part.get("caption", ""),
                         "chapter": _chapter_title(root / f"{chapter['file']}.md"),
                         "data": info.get("dataset") or "–",
                         "minutes": "–" if seconds is None else f"{seconds / 60:.1f}"})
    return pd.DataFrame(rows, columns=["part", "chapter", "data", "minutes"])


def total_minutes(directory: str | Path | None = None) -> float | None:
    """Minutes the last ``make reproduce`` spent in the notebooks (None before it ran)."""
    directory = Path(directory) if directory else results_dir()
    path = directory / "reproduce_times.json"
    if not path.is_file():
        return None
    return sum(t["seconds"] for t in json.loads(path.read_text()).values()) / 60
