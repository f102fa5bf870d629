"""Record results from a notebook, read them back for the book and the tests.

A notebook makes one :class:`Recorder`, records named metrics and tables, and saves one JSON
file per notebook (with dataset, profile, seed, package versions and the git commit). The book's tables are
rendered from these files, beside the paper's numbers from ``resources/paper_numbers.csv``.
Imported in a notebook, the module shows every DataFrame in the book's table style
(:func:`book_style`).
"""
from __future__ import annotations

import html
import json
import math
import re
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import keys_used
from .config import project_root, results_dir

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
    figures: dict = field(default_factory=dict)
    folder: Path | None = None
    predictions_files: dict = field(default_factory=dict)

    def predictions(self, name: str) -> pd.DataFrame:
        """The per-record predictions ``name`` recorded beside the results file (CSV)."""
        if name not in self.predictions_files:
            raise KeyError(f"{self.notebook} recorded no predictions {name!r} "
                           f"(it has {sorted(self.predictions_files)})")
        entry = self.predictions_files[name]
        frame = pd.read_csv(Path(self.folder or results_dir()) / entry["file"])
        return frame.set_index(entry["index"]) if entry.get("index") else frame

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
        self._predictions: dict[str, tuple[pd.DataFrame, str]] = {}

    def metric(self, name: str, value, **info) -> None:
        self.results.metrics[name] = {"value": _plain(value), **_plain(info)}

    def table(self, name: str, frame: pd.DataFrame, caption: str = "") -> pd.DataFrame:
        self.results.tables[name] = frame
        self.results.captions[name] = caption
        return frame

    def predictions(self, name: str, frame: pd.DataFrame, caption: str = "") -> pd.DataFrame:
        """Per-record predictions (one row per record, or per record and configuration), written
        beside the results file as ``predictions/<notebook>/<name>.csv`` when the results are
        saved, so that an evaluation can be redone without rerunning the model."""
        self._predictions[name] = (frame, caption)
        return frame

    def artefact(self, name: str, key: str, **info) -> None:
        """The cache key of an artefact this notebook used (a trained model, a dataset, an index)."""
        self.results.info.setdefault("artefacts", {})[name] = {"key": str(key), **_plain(info)}

    def figure(self, name: str, fig, caption: str = "", directory: str | Path | None = None):
        """Save a figure that carries a result (``<results>/figures/<notebook>_<name>.png``) so that the
        chapter page can show it (:func:`show_figure`); returns the figure for display."""
        directory = Path(directory) if directory else results_dir()
        (directory / "figures").mkdir(parents=True, exist_ok=True)
        file = f"figures/{self.results.notebook}_{name}.png"
        fig.savefig(directory / file, dpi=110, bbox_inches="tight")
        self.results.figures[name] = {"file": file, "caption": caption}
        return fig

    def save(self, directory: str | Path | None = None) -> Path:
        directory = Path(directory) if directory else results_dir()
        directory.mkdir(parents=True, exist_ok=True)
        r = self.results
        doc = {
            "info": {**_plain(r.info), "versions": package_versions(), "commit": source_commit(),
                     "cache_keys": keys_used(),
                     "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            "metrics": r.metrics,
            "tables": {name: {"caption": r.captions.get(name, ""),
                              "index_names": list(frame.index.names),
                              "columns": [[str(x) for x in c] if isinstance(c, tuple) else str(c)
                                          for c in frame.columns],
                              "index": _plain(list(frame.index)),
                              "data": _plain(frame.to_numpy(dtype=object).tolist())}
                       for name, frame in r.tables.items()},
            "figures": r.figures,
            "predictions": self._save_predictions(directory),
        }
        path = directory / f"{r.notebook}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        tmp.replace(path)
        return path


    def _save_predictions(self, directory: Path) -> dict:
        entries = {}
        for name, (frame, caption) in self._predictions.items():
            file = f"predictions/{self.results.notebook}/{name}.csv"
            (directory / file).parent.mkdir(parents=True, exist_ok=True)
            index = [n for n in frame.index.names if n is not None]
            (frame.reset_index() if index else frame).to_csv(directory / file, index=False)
            entries[name] = {"file": file, "rows": len(frame), "index": index, "caption": caption}
        self.results.predictions_files = entries
        return entries


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
    return Results(notebook, doc["info"], doc["metrics"], tables, captions, doc.get("figures", {}), directory,
                   doc.get("predictions", {}))


PAPER_NUMBER_COLUMNS = ("paper", "table", "source", "configuration", "metric", "value")


def paper_numbers(paper: str | None = None, table: str | None = None) -> pd.DataFrame:
    """The papers' reported numbers, each with its source (paper, table or section): the one table
    ``resources/paper_numbers.csv``."""
    with files("ecgkit.resources").joinpath("paper_numbers.csv").open() as fh:
        frame = pd.read_csv(fh, comment="#")
    missing = [c for c in PAPER_NUMBER_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"paper_numbers.csv lacks the columns {missing}")
    if frame["source"].isna().any():
        raise ValueError("paper_numbers.csv: every number needs its source; none for "
                         f"{frame.loc[frame['source'].isna(), ['paper', 'configuration', 'metric']].values.tolist()}")
    if paper:
        frame = frame[frame["paper"] == paper]
    if table:
        frame = frame[frame["table"] == table]
    return frame.reset_index(drop=True)


def data_source(info: dict) -> str:
    """One line naming the data, profile and seed behind a results file."""
    return (f"Data: {info.get('dataset', '?')}; profile {info.get('profile', '?')}; "
            f"seed {info.get('seed', '?')}; ecgkit {info.get('versions', {}).get('ecgkit', '?')}")


INTEGER_COLUMNS = re.compile(r"(^|[\s_(])(n|seed|seeds|records?|patients?|count|counts|cards|hits|positives|"
                             r"negatives|steps|chunks|queries|tokens|files|statements|beats|rank|k|failed|errors|skipped|wordings|"
                             r"answers|unparseable|unparsed|ties|wins|losses|discordant|concordant|refusals|invalid|"
                             r"items|questions|prompts|pairs|cases|tp|fp|tn|fn|n_\w+)($|[\s_)])",
                             re.IGNORECASE)
#: a column's (or a row's) unit, from its label, and the decimals it is shown with: times in sensible
#: units (an error in ms to 0.1 ms, seconds to 0.1 s), hours with 1–2 decimals
UNIT_DECIMALS = ((re.compile(r"(^|[\s_(])(ms|msec|milliseconds?)($|[\s_)])", re.IGNORECASE), 1),
                 (re.compile(r"(^|[\s_(])(s|sec|secs|seconds?|minutes?|min)($|[\s_)])", re.IGNORECASE), 1),
                 (re.compile(r"(^|[\s_(])(h|hours?)($|[\s_)])", re.IGNORECASE), None))
LONG_TEXT = 90            # characters: longer text goes into an expandable block
CONTENT_WIDTH_PX = 780    # the theme's text column in a 1,400 px window


def _whole_numbers(column: pd.Series, name="") -> bool:
    """A numeric column of whole numbers (NaN aside) that are counts, not 0/1 rates: values above 1,
    or a column named like a count (``n``, ``seed``, ``records`` ...)."""
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    values = column.dropna().to_numpy(dtype=float)
    if not values.size or not np.all(values == np.round(values)):
        return False
    return bool(np.abs(values).max() > 1) or bool(INTEGER_COLUMNS.search(_label(name)))


def _label(column) -> str:
    return " · ".join(str(c) for c in column) if isinstance(column, tuple) else str(column)


PER_UNIT = re.compile(r"(/|\bper)\s*(s|sec|secs|seconds?|ms|min|minutes?|h|hours?)\b", re.IGNORECASE)


def unit_decimals(label, values=()) -> int | None:
    """Decimals for a quantity whose label names a time or rate unit ("error (ms)" → 1, "seconds" →
    1, "hours" → 2, 1 from 10 h up), None when the label names none."""
    text = _label(label)
    if re.search(r"beats/min|\bbpm\b", text, re.IGNORECASE):     # a heart rate: to 0.1 beats/min
        return 1
    if PER_UNIT.search(text):      # another rate per unit of time (steps / s) is no time
        return None
    for pattern, decimals in UNIT_DECIMALS:
        if pattern.search(text):
            if decimals is None:     # hours: 1–2 decimals
                finite = [abs(float(v)) for v in values if not _missing(v)]
                return 1 if finite and max(finite) >= 10 else 2
            return decimals
    return None


def value_decimals(value: float) -> int:
    """Decimals for one value in a column that mixes magnitudes (a median in ms beside one in mV):
    3 below 10, 2 below 100, 1 from 100."""
    size = abs(float(value))
    if 0 < size < 0.01:       # two significant digits (a learning rate of 0.0002 is not 0.000)
        return 1 - int(np.floor(np.log10(size)))
    return 3 if size < 10 else 2 if size < 100 else 1


def _mixed_magnitudes(values) -> bool:
    """A column whose one precision would print some value with too few significant digits
    (0.82 mV beside 397 ms: 1 decimal reads "0.8"; a rate beside a count of 500)."""
    finite = [abs(float(v)) for v in values if not _missing(v) and float(v) != 0]
    return bool(finite) and max(finite) >= 10 and min(finite) < 1


def _decimals_needed(value: float, most: int = 4) -> int | None:
    """Decimals that print ``value`` exactly, if it has at most ``most`` (a number as a paper printed
    it: 0.8296 needs 4); None for a computed value with a long expansion."""
    for d in range(most + 1):
        if abs(value - round(value, d)) < 1e-9 * max(1.0, abs(value)):
            return d
    return None


def column_decimals(values, keep_exact: bool = False) -> int:
    """One number of decimals for a column: measurements of 10 and more recorded at a short
    precision (71.1 ms) keep it; otherwise at least as many as any value printed with few decimals
    needs (so 0.8296 and 0.8297 stay apart and a paper's sd of 0.0003 does not read 0.000), and 3
    (2 where values reach 10, 1 where they reach 100), two significant digits where every value is
    under 0.01."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return 3
    exact = [_decimals_needed(v) for v in finite]
    nonzero = [abs(v) for v in finite if v != 0]
    if all(d is not None for d in exact) and nonzero and min(nonzero) >= 10:
        return max(exact)      # measurements recorded at a precision (71.1 ms): keep it
    if not keep_exact:         # a computed AUROC of 5/16 is not a paper's 0.3125
        exact = [None] * len(exact)
    largest = max(abs(v) for v in finite)
    base = 3 if largest < 10 else 2 if largest < 100 else 1
    small = [abs(v) for v, d in zip(finite, exact) if d is None and 0 < abs(v) < 0.01]
    if small and max(abs(v) for v in finite) < 0.01:      # only tiny values: two significant digits
        base = max(base, 1 - int(np.floor(np.log10(min(small)))))
    small = [abs(v) for v in finite if 0 < abs(v) < 0.01]
    if small and max(abs(v) for v in finite) < 0.01 and not keep_exact:
        base = max(base, 1 - int(np.floor(np.log10(min(small)))))
    return max([base] + [d for d in exact if d is not None])


def format_number(value, decimals: int = 3, whole: bool = False) -> str:
    """A number for a table cell: "–" for missing, integers as integers, a minus sign, no "nan"."""
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return "–"
    if whole:
        value = int(round(float(value)))
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return f"{float(value):.{decimals}f}".replace("-", "−")


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_text(value, long_text: int = LONG_TEXT) -> str:
    """Text for a table cell as HTML: escaped (a model's "<your reasoning>" shows literally), long
    text in an expandable block, lists and dicts as plain text."""
    if isinstance(value, dict):
        value = "; ".join(f"{k}: {v}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, (bool, np.bool_)):
        value = "yes" if value else "no"
    elif isinstance(value, (float, np.floating)):
        return format_number(value)
    text = str(value)
    if len(text) <= long_text:
        return breakable(text)
    head = text[:long_text].rsplit(" ", 1)[0] if " " in text[:long_text] else text[:long_text]
    return (f"<details><summary>{breakable(head)} …</summary>"
            f"<div class=\"ek-long\">{html.escape(text)}</div></details>")


LONG_TOKEN = re.compile(r"\S{16,}")


def breakable(text: str) -> str:
    """``text`` escaped, with a line-break opportunity (``<wbr>``) after each ``/``, ``_`` and ``.``
    inside a long unbroken token (a file path, a snake_case name), so that a table column can be
    narrower than the whole token without cutting it mid-word."""
    out, last = [], 0
    for match in LONG_TOKEN.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        out.append(re.sub(r"([/_.])", r"\1<wbr>", html.escape(match.group(0))).replace("<wbr></", "</"))
        last = match.end()
    out.append(html.escape(text[last:]))
    # an interval "[0.56, 1.00]" stays on one line (the line breaks before it, not inside it)
    return re.sub(r"\[([^\]<>\s]{1,12}), ([^\]<>\s]{1,12})\]", r"[\1,&nbsp;\2]", "".join(out))


INTERVAL_PAIRS = (("low", "high"), ("lo", "hi"), ("ci_low", "ci_high"), ("ci low", "ci high"))


def interval_columns(columns, numeric=None) -> list[tuple]:
    """(name, low column, high column) for each interval among the columns: ``X low`` beside
    ``X high`` (name ``X``), or plain ``low`` / ``high`` (name ""), following an estimate: where
    ``numeric`` (the numeric columns' labels) is given, the column before must be one of them (a
    reference range's low/high after a unit is not an interval)."""
    labels = [_label(c) for c in columns]
    found = []
    for i, label in enumerate(labels):
        for lo, hi in INTERVAL_PAIRS:
            if label == lo or label.endswith((f" {lo}", f"_{lo}")):
                stem = label[: len(label) - len(lo)]
                if stem + hi in labels and (numeric is None or (i > 0 and labels[i - 1] in numeric)):
                    found.append((stem.rstrip(" _"), columns[i], columns[labels.index(stem + hi)]))
                break
    return found


def format_interval(low, high, decimals: int) -> tuple[str, str | None]:
    """A compact interval and, where it cannot be estimated, the reason."""
    if _missing(low) or _missing(high):
        return "–", "not estimable (too few records or undefined)"
    if float(low) == float(high):
        return "–", "zero width: the same value on every resample (a constant answer, or the reference itself)"
    return (f"{format_number(low, decimals)}–{format_number(high, decimals)}"
            .replace("–−", "– −"), None)


_CH_PX = 7.6          # one character of a table cell (0.85em of the theme's 16 px body text)
_CELL_PAD_PX = 16     # a cell's horizontal padding and border


def _cell_chars(text: str) -> int:
    """Characters a cell needs on one line: short text stays whole, longer text wraps to ~22."""
    if len(text) <= 14:
        return len(text)
    longest = max((len(w) for w in re.split(r"[\s/_]+", text)), default=0)   # where breakable() lets it wrap
    return max(12, min(22, longest))


def _estimated_width_px(frame: pd.DataFrame) -> float:
    """About how wide :class:`Table` renders ``frame``: per column the longest header word or the
    widest cell (:func:`_cell_chars`), the index columns included."""
    def column(header, values) -> float:
        words = [w for x in (header if isinstance(header, tuple) else (header,))
                 for w in _header_words(str(x))] or [""]
        sample = [f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v) for v in values[:50]]
        return max([len(w) for w in words] + [_cell_chars(v) for v in sample]) * _CH_PX + _CELL_PAD_PX

    plain = frame.index.nlevels == 1 and frame.index.name is None and list(frame.index) == list(range(len(frame)))
    width = 0.0 if plain else sum(column(name or "", [i[k] if isinstance(i, tuple) else i for i in frame.index])
                                  for k, name in enumerate(frame.index.names))
    return width + sum(column(c, frame.iloc[:, j].tolist()) for j, c in enumerate(frame.columns))


LONG_HYPHENATED = 14   # a hyphenated header word longer than this may wrap at its hyphens


def _header_words(text: str) -> list[str]:
    """The pieces of a header that :func:`header_html` keeps on one line."""
    words = []
    for w in re.split(r"[\s_/]+", text):
        words.extend(w.split("-") if len(w) > LONG_HYPHENATED and "-" in w else [w])
    return words


def header_html(label) -> str:
    """A column header as HTML that wraps only between words: escaped, a line-break opportunity
    after each ``_`` and ``/`` (``std_<wbr>difference``), a hyphenated word kept whole
    (``ROUGE-1``), the levels of a (group, statistic) label on lines of their own."""
    parts = label if isinstance(label, tuple) else (label,)

    def level(text: str) -> str:
        text = html.escape(text).replace("_", "_<wbr>").replace("/", "/<wbr>")
        # a short hyphenated word (ROUGE-1, fine-tuned) never breaks at its hyphen; a long one
        # (a dataset name such as synthetic-5000-seed0) may, after each hyphen
        def word(m):
            w = m.group(1)
            if len(w) > LONG_HYPHENATED:
                return w.replace("-", "-<wbr>")
            return f'<span class="ek-word">{w}</span>'
        return re.sub(r"(?<![\w-])(\w+(?:-\w+)+)", word, text)

    return "<br>".join(level(str(x)) for x in parts)


def _estimate_column(columns, low):
    """The column just before an interval's low bound (its estimate), or None."""
    i = list(columns).index(low)
    return columns[i - 1] if i > 0 else None


class Table:
    """A table rendered in the book's one style (``_repr_html_`` for notebooks and the book).

    ``missing`` maps a column or row label to the reason its empty cells are empty; each such
    ``–`` gets a numbered note with it. ``wide`` marks a table that may use the theme's full width
    (the column and the right margin) instead of fitting the text column."""

    def __init__(self, frame: pd.DataFrame, caption: str = "", long_text: int = LONG_TEXT,
                 constants_to_caption: bool = True, collapsed: bool = False, missing: dict | None = None,
                 wide: bool = False):
        self.frame, self.caption, self.long_text = frame, caption or "", long_text
        self.constants_to_caption, self.collapsed = constants_to_caption, collapsed
        self.missing, self.wide = dict(missing or {}), wide

    def _cells(self):
        frame = self.frame
        plain = frame.index.name is None and frame.index.nlevels == 1 and list(frame.index) == list(range(len(frame)))
        show_index = not plain          # 0, 1, 2 … says nothing to a reader
        row_labels = [_label(i) for i in frame.index]
        if show_index:
            frame = frame.copy()
            frame.index = frame.index.set_names([" " * (i + 1) if n is None else n   # no "index" header
                                                 for i, n in enumerate(frame.index.names)])
            frame = frame.reset_index()
        columns = list(frame.columns)
        notes, constants = {}, []

        def note(reason: str) -> str:
            notes.setdefault(reason, len(notes) + 1)
            return f"– <sup>{notes[reason]}</sup>"

        if self.constants_to_caption and len(frame) >= 3:
            for c in columns:
                col = frame[c]
                if (not pd.api.types.is_numeric_dtype(col) and col.map(lambda v: isinstance(v, str)).all()
                        and col.nunique() == 1):
                    constants.append((c, col.iloc[0]))
            columns = [c for c in columns if c not in [k for k, _ in constants]]
        numeric = {_label(c) for c in columns if pd.api.types.is_numeric_dtype(frame[c])
                   and not pd.api.types.is_bool_dtype(frame[c])}
        intervals = interval_columns(columns, numeric)
        in_interval = {key: i for i, (_, lo, hi) in enumerate(intervals) for key in (_label(lo), _label(hi))}
        decimals, mixed = {}, set()
        for c in columns:
            label = _label(c)
            if label in numeric:
                values = frame[c].to_numpy(dtype=float)
                paper = "paper" in label.lower()
                unit = None if paper else unit_decimals(c, values)
                decimals[label] = unit if unit is not None else column_decimals(values, keep_exact=paper)
                if unit is None and not paper and _mixed_magnitudes(values):
                    mixed.add(label)
        out_cols = []
        for c in columns:
            label = _label(c)
            if label in in_interval:
                stem, lo, hi = intervals[in_interval[label]]
                if label == _label(lo):
                    out_cols.append(("interval", lo, hi, decimals.get(label, 3), _estimate_column(columns, lo)))
                continue
            out_cols.append(("value", c, None, decimals.get(label, 3), None))
        rows = []
        for r, (_, row) in enumerate(frame.iterrows()):
            row_label = row_labels[r] if r < len(row_labels) else ""
            named_unit = unit_decimals(row_label, [v for v in row.tolist()
                                                   if isinstance(v, (int, float, np.number))]) if show_index else None
            row_unit = named_unit if len(numeric) <= 1 else None     # a key/value table: the row names the unit
            cells = []
            for kind, c, hi, d, estimate in out_cols:
                if kind == "interval":
                    if estimate is not None and _missing(row[estimate]):   # an interval is never shown alone
                        cells.append(("ek-ci", "–"))
                        continue
                    text, reason = format_interval(row[c], row[hi], d)
                    cells.append(("ek-ci", note(reason) if reason else text))
                    continue
                value, label = row[c], _label(c)
                reason = self.missing.get(label) or self.missing.get(row_label)
                if _missing(value):
                    has_interval = any(e is not None and _label(e) == label for k, _, _, _, e in out_cols
                                       if k == "interval")
                    if reason is None and has_interval:
                        reason = "no estimate here (undefined on these records), so no interval either"
                    if reason is None and "paper" in label.lower():
                        reason = "the paper reports no number here"
                    cells.append(("ek-num" if label in numeric else "ek-text", note(reason) if reason else "–"))
                elif label in numeric:
                    counted_row = show_index and bool(INTEGER_COLUMNS.search(row_label))   # a row of counts
                    whole = _whole_numbers(frame[c], c) or pd.api.types.is_integer_dtype(frame[c]) or (
                        counted_row and float(value) == round(float(value))) or (
                        # a count in a column of rates (500, not 500.000)
                        "paper" not in label.lower() and row_unit is None and (label not in mixed or named_unit is None)
                        and float(value) == round(float(value)) and abs(float(value)) >= 2)
                    if row_unit is not None:
                        d = row_unit
                    elif label in mixed:     # each row at its own unit's precision, else 3 significant digits
                        d = named_unit if named_unit is not None else value_decimals(value)
                    cells.append(("ek-num", format_number(value, d, whole)))
                elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                    # a number in a column of mixed values (a key/value table): a count is an integer
                    whole = float(value) == round(float(value)) and (
                        isinstance(value, (int, np.integer)) or abs(float(value)) > 1
                        or bool(INTEGER_COLUMNS.search(row_label)))
                    if row_unit is None:     # at most the digits it was recorded with (4.6, not 4.600)
                        needed = _decimals_needed(float(value))
                        d = value_decimals(value) if needed is None else min(value_decimals(value), max(needed, 1))
                    else:
                        d = row_unit
                    cells.append(("ek-num", format_number(value, d, whole)))
                else:
                    text = format_text(value, self.long_text)
                    size = len(str(value))
                    cells.append(("ek-text ek-short" if size <= 14 else "ek-text ek-prose" if size > 60
                                  else "ek-text", text))
            rows.append(cells)
        headers = []
        for kind, c, hi, d, estimate in out_cols:
            if kind == "interval":
                stem = intervals[in_interval[_label(c)]][0]
                headers.append(("ek-ci", header_html(f"{stem} interval".strip())))
            else:
                headers.append(("ek-num" if _label(c) in decimals else "ek-text", header_html(c)))
        return headers, rows, constants, notes

    def _parts(self) -> list[tuple[str, list]] | None:
        """A table too wide for the text column whose columns are (group, statistic) pairs, e.g.
        (task, mean): its parts, each (label, columns) rendered as a table of its own beside the key
        columns (second level empty), or None. The paper's group(s) stay beside the first of ours;
        where that is still too wide it is split by statistic, ours and the paper's side by side."""
        cols = self.frame.columns
        if self.wide or _estimated_width_px(self.frame) <= CONTENT_WIDTH_PX:
            return None
        if not isinstance(cols, pd.MultiIndex):
            return self._plain_parts()
        if cols.nlevels != 2:
            return None
        groups = list(dict.fromkeys(g for g, stat in cols if str(stat) != ""))
        paper = [g for g in groups if "paper" in str(g).lower()]
        ours = [g for g in groups if g not in paper]
        if not ours or (len(ours) < 2 and not paper):
            return None
        keys = [c for c in cols if str(c[1]) == ""]
        parts = []
        for part in [[ours[0], *paper]] + [[g] for g in ours[1:]]:
            chosen = [c for c in cols if c[0] in part and str(c[1]) != ""]
            label = " / ".join(map(str, part))
            if len(part) == 1 or _estimated_width_px(self.frame[keys + chosen]) <= CONTENT_WIDTH_PX:
                parts.append((label, chosen))
                continue
            chunk = []
            for stat in dict.fromkeys(c[1] for c in chosen):      # by statistic: ours beside the paper's
                these = [c for c in chosen if c[1] == stat]
                if chunk and _estimated_width_px(self.frame[keys + chunk + these]) > CONTENT_WIDTH_PX:
                    parts.append((f"{label}: {', '.join(dict.fromkeys(str(c[1]) for c in chunk))}", chunk))
                    chunk = []
                chunk = chunk + these
            parts.append((f"{label}: {', '.join(dict.fromkeys(str(c[1]) for c in chunk))}", chunk))
        return parts if len(parts) > 1 else None

    def _key_columns(self) -> list:
        """The columns repeated in every part of a split table: (key, "") pairs, or a plain table's
        first text column when its rows are only numbered."""
        cols, frame = self.frame.columns, self.frame
        if isinstance(cols, pd.MultiIndex):
            return [c for c in cols if str(c[1]) == ""]
        numbered = frame.index.nlevels == 1 and frame.index.name is None and list(frame.index) == list(range(len(frame)))
        if numbered and len(cols) and not pd.api.types.is_numeric_dtype(frame[cols[0]]):
            return [cols[0]]
        return []

    def _plain_parts(self) -> list[tuple[str, list]] | None:
        """A plain table too wide for the text column in parts of whole columns (an estimate keeps
        its interval), each beside the row labels."""
        keys = self._key_columns()
        rest = [c for c in self.frame.columns if c not in keys]
        bounds = {_label(x) for _, lo, hi in interval_columns(rest) for x in (lo, hi)}
        units = []
        for c in rest:
            if _label(c) in bounds and units:
                units[-1].append(c)
            else:
                units.append([c])
        parts, chunk = [], []
        for unit in units:
            if chunk and _estimated_width_px(self.frame[keys + chunk + unit]) > CONTENT_WIDTH_PX:
                parts.append(("", chunk))
                chunk = []
            chunk = chunk + unit
        parts.append(("", chunk))
        return parts if len(parts) > 1 else None

    def to_html(self) -> str:
        parts = self._parts()
        if parts:      # too wide for the column: one table per part, the key columns repeated
            keys = self._key_columns()
            html_parts = []
            for i, (label, chosen) in enumerate(parts):
                sub = self.frame[keys + chosen]
                if isinstance(self.frame.columns, pd.MultiIndex) and len({c[0] for c in chosen}) == 1:
                    sub.columns = [c[0] if str(c[1]) == "" else c[1] for c in sub.columns]
                if label:
                    caption = (f"{self.caption} — {label}" if self.caption else label) if i == 0 else f"(continued) {label}"
                else:
                    caption = self.caption if i == 0 else "(continued)"
                html_parts.append(Table(sub, caption, self.long_text, self.constants_to_caption,
                                        self.collapsed, self.missing, self.wide).to_html())
            return "".join(html_parts)
        headers, rows, constants, notes = self._cells()
        caption = html.escape(self.caption)
        if constants:   # the caption's own sentence ends before the constants' one
            caption = caption.rstrip()
            caption += ((" " if caption.endswith((".", ":", ";")) else ". ") if caption else "") + "; ".join(
                f"{html.escape(_label(k))}: {format_text(v, 200) if str(v).strip() else 'none'}"
                for k, v in constants) + "."
        parts = ['<div class="ek-table ek-wide full-width">' if self.wide else '<div class="ek-table">']
        if caption:     # outside the table: it wraps in the column while a wide table scrolls
            parts.append(f'<div class="ek-caption">{caption}</div>')
        parts.append("<table>")
        parts.append("<thead><tr>" + "".join(f'<th class="{k}">{h}</th>' for k, h in headers) + "</tr></thead>")
        parts.append("<tbody>")
        for cells in rows:
            parts.append("<tr>" + "".join(f'<td class="{k}">{t}</td>' for k, t in cells) + "</tr>")
        parts.append("</tbody></table>")
        if notes:
            parts.append('<p class="ek-notes">' + " ".join(f"<sup>{i}</sup> –: {html.escape(r)}."
                                                         for r, i in notes.items()) + "</p>")
        parts.append("</div>")
        body = "".join(parts)
        if self.collapsed:     # a long reference table: one line until the reader opens it
            body = (f"<details class=\"ek-collapsed\"><summary>{html.escape(self.caption or 'Table')} "
                    f"({len(self.frame)} rows: click to show)</summary>{body}</details>")
        return TABLE_CSS + body

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return f"Table({self.caption!r}, {self.frame.shape[0]} rows × {self.frame.shape[1]} columns)"


TABLE_CSS = (
    "<style>"
    # the table's box never passes the text column (a table wider than it scrolls inside it); a
    # table marked wide uses the theme's full width (column + margin, the theme's .full-width)
    ".ek-table{max-width:100%;overflow-x:auto;margin:0.5em 0 1em 0}"
    ".ek-table table{border-collapse:collapse;font-size:0.85em;width:auto;margin:0}"
    ".ek-table .ek-caption{text-align:left;font-size:0.8em;color:#444;padding-bottom:0.3em;"
    "position:sticky;left:0}"
    ".ek-table th,.ek-table td{padding:0.2em 0.45em;border-bottom:1px solid #ddd;vertical-align:top}"
    # headers wrap only between words (and after "_" or "/", where header_html puts <wbr>), never
    # inside one ("ran k", "scor e")
    ".ek-table th{border-bottom:2px solid #999;font-weight:600;vertical-align:bottom;text-align:left;"
    "white-space:normal;word-break:normal;overflow-wrap:normal;hyphens:manual}"
    ".ek-table th.ek-num,.ek-table th.ek-ci{text-align:right;min-width:3.5em;max-width:12em}"
    ".ek-table .ek-num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
    ".ek-table .ek-ci{text-align:right;white-space:nowrap;font-size:0.85em;color:#555;"
    "font-variant-numeric:tabular-nums}"
    ".ek-table th.ek-num,.ek-table th.ek-ci{white-space:normal}"
    ".ek-table .ek-word{white-space:nowrap}"
    # a long text column keeps a readable width and wraps between words
    ".ek-table td.ek-text{text-align:left;min-width:8ch;max-width:44ch;overflow-wrap:break-word;"
    "word-break:normal}"
    ".ek-table td.ek-prose{min-width:16ch}"
    ".ek-table td.ek-short{min-width:0;white-space:nowrap}"
    ".ek-table details summary{cursor:pointer}"
    ".ek-table .ek-long{white-space:pre-wrap;max-height:20em;overflow-y:auto}"
    ".ek-notes{font-size:0.8em;color:#555;margin-top:0.2em}"
    "</style>")


def show_frame(frame: pd.DataFrame, caption: str = "", **options) -> Table:
    """Any table in the book's style (see :class:`Table`)."""
    return Table(frame, caption, **options)


def _book_html(frame) -> str | None:
    try:
        return show_frame(frame if isinstance(frame, pd.DataFrame) else frame.to_frame()).to_html()
    except Exception:      # an unusual frame: IPython falls back to pandas' own rendering
        return None


def book_style(shell=None) -> bool:
    """Render every DataFrame and Series an IPython kernel displays through :func:`show_frame` (no raw
    NaN, the book's precision, escaped text). Called when this module is imported; False outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(pd.DataFrame, _book_html)
    formatters["text/html"].for_type(pd.Series, _book_html)
    formatters["text/plain"].for_type(pd.Series, lambda s, p, cycle: p.text(repr(s.to_frame().fillna("–"))))
    formatters["text/plain"].for_type(pd.DataFrame, lambda f, p, cycle: p.text(repr(f.fillna("–"))))
    return True


# a notebook that imports this module shows every table in the book's style from its first cell
# (before its Recorder exists); outside an IPython kernel this does nothing
book_style()


def show_figure(results: Results, name: str):
    """A recorded figure for the chapter page (embedded, with its caption), or a line saying that
    the notebook has not recorded it."""
    from IPython.display import HTML

    figure = results.figures.get(name)
    path = (results.folder or results_dir()) / figure["file"] if figure else None
    if not path or not path.is_file():
        return HTML(f"<p><em>Figure {html.escape(name)} not recorded: run notebook "
                    f"{html.escape(results.notebook)} (make reproduce).</em></p>")
    import base64

    data = base64.b64encode(path.read_bytes()).decode()
    return HTML(f'<figure class="ek-figure" style="max-width:{CONTENT_WIDTH_PX}px;margin:0.5em 0">'
                f'<img src="data:image/png;base64,{data}" style="max-width:100%" alt="{html.escape(name)}">'
                f'<figcaption style="font-size:0.85em;color:#444">{html.escape(figure.get("caption", ""))}'
                f"</figcaption></figure>")


def show_table(results: Results, name: str, **options) -> Table:
    """A recorded table in the book's style, with its caption."""
    return Table(results.table(name), results.captions.get(name, ""), **options)


def recorded_at(saved: str | None) -> str | None:
    """A results file's ISO time stamp as a reader writes it ("2026-03-01 14:05 UTC"), so that a
    table column can wrap between date and time; an unreadable stamp as it is."""
    if not saved:
        return None
    try:
        when = datetime.fromisoformat(saved).astimezone(timezone.utc)
    except ValueError:
        return saved
    return when.strftime("%Y-%m-%d %H:%M UTC")


def results_overview(directory: str | Path | None = None):
    """One row per recorded notebook: dataset, profile, seed, when, with which ecgkit."""
    directory = Path(directory) if directory else results_dir()
    rows = []
    for path in sorted(directory.glob("[0-9][0-9]_*.json")):
        info = json.loads(path.read_text())["info"]
        rows.append({"notebook": info.get("notebook", path.stem), "data": info.get("dataset"),
                     "profile": info.get("profile"), "seed": info.get("seed"),
                     "ecgkit": info.get("versions", {}).get("ecgkit"), "recorded": recorded_at(info.get("saved"))})
    frame = pd.DataFrame(rows, columns=["notebook", "data", "profile", "seed", "ecgkit", "recorded"])
    return show_frame(frame, "The results files behind the tables", constants_to_caption=False)


def _chapter_title(md: Path) -> str:
    for line in md.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return md.stem


def chapter_map(root: str | Path | None = None, directory: str | Path | None = None) -> pd.DataFrame:
    """The book's chapters in ``_toc.yml`` order: part, title, the data its notebook ran on (and the
    record counts named there), its profile and its wall time in the last ``make reproduce`` (``–``
    where it has not run yet)."""
    import yaml

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
            title = _chapter_title(root / f"{chapter['file']}.md")
            if notebook is None:    # a page rendered from the notebooks' results: nothing of its own ran
                rows.append({"part": part.get("caption", ""), "chapter": title,
                             "data": "no notebook: rendered from the chapters' results",
                             "records": "", "profile": "", "wall time": ""})
                continue
            seconds = times.get(notebook, {}).get("seconds")
            dataset = info.get("dataset") or "– (not run yet)"
            records = re.findall(r"(\d[\d,]*) records", dataset)
            rows.append({"part": part.get("caption", ""), "chapter": title, "data": dataset,
                         "records": " + ".join(records) if records else "–",
                         "profile": info.get("profile") or "–",
                         "wall time": "– (not run yet)" if seconds is None else _duration(seconds)})
    return pd.DataFrame(rows, columns=["part", "chapter", "data", "records", "profile", "wall time"])


def _duration(seconds: float) -> str:
    """"45 s", "12.3 min": a wall time in the unit a reader takes in."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def quick_cost(directory: str | Path | None = None, root: str | Path | None = None) -> str:
    """What the last recorded run of the notebooks cost, from ``reproduce_times.json``: the total,
    the slowest chapters, the CPU count and any chapter with no recorded time."""
    directory = Path(directory) if directory else results_dir()
    path = directory / "reproduce_times.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    chapters = chapter_map(root, directory)
    if not times:
        return "No notebook run has been recorded yet (`make reproduce` records each notebook's wall time)."
    total = sum(t["seconds"] for t in times.values())
    slowest = sorted(times.items(), key=lambda kv: -kv[1]["seconds"])[:3]
    cpus = sorted({t.get("cpus") for t in times.values() if t.get("cpus")})
    profiles = sorted({t.get("profile") for t in times.values() if t.get("profile")})
    missing = chapters.loc[chapters["wall time"].str.startswith("–"), "chapter"].tolist()   # chapters whose notebook has no time
    text = (f"The last recorded runs of {len(times)} notebooks ({'/'.join(profiles) or '?'} profile) took "
            f"**{total / 60:.0f} minutes** of wall time in all"
            + (f" on {' or '.join(map(str, cpus))} CPU cores" if cpus else "")
            + "; the slowest: " + ", ".join(f"{name} {_duration(t['seconds'])}" for name, t in slowest) + ".")
    if missing:
        text += f" No time is recorded for: {', '.join(missing)}."
    return text + " Setting up, the tests and the book build come on top."


#: what a rerun on a warm cache should cost (issue 23): each notebook, and all of them
WARM_NOTEBOOK_S, WARM_TOTAL_S = 30.0, 180.0


#: recorded values that differ between identical runs: times and speeds, and whether a step came
#: from the cache (the run that fills it computes, the rerun reads)
TIMING = re.compile(r"second|per_s|speed|q/s|_at$|cached|from cache", re.IGNORECASE)


def rerun_differences(before: dict, after: dict) -> list[str]:
    """What a rerun recorded differently from the run before: metric values and table cells
    (``tables/<name>[row, column]``), timings and cache hits (:data:`TIMING`: by metric, column or
    row name) left out; figures, predictions files and ``info`` are not compared. Empty when the
    same command gave the same results."""
    out = []
    for name in sorted(set(before.get("metrics", {})) | set(after.get("metrics", {}))):
        if TIMING.search(name):
            continue
        a, b = before.get("metrics", {}).get(name), after.get("metrics", {}).get(name)
        if a is None or b is None or not _same(a.get("value"), b.get("value")):
            out.append(f"metrics/{name}")
    for name in sorted(set(before.get("tables", {})) | set(after.get("tables", {}))):
        a, b = before.get("tables", {}).get(name), after.get("tables", {}).get(name)
        if a is None or b is None or a.get("columns") != b.get("columns") or len(a["data"]) != len(b["data"]) \
                or a.get("index") != b.get("index"):
            out.append(f"tables/{name}")
            continue
        kept = [j for j, c in enumerate(a["columns"]) if not TIMING.search(str(c))]
        for i, (ra, rb) in enumerate(zip(a["data"], b["data"])):
            if TIMING.search(str(a["index"][i])):       # a row that says how long, or whether cached
                continue
            out += [f"tables/{name}[{i}, {a['columns'][j]}]" for j in kept if not _same(ra[j], rb[j])]
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(a))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a if not TIMING.search(str(k)))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def rerun_table(directory: str | Path | None = None) -> pd.DataFrame:
    """Each notebook's wall time in a run and in the rerun after it on the same cache
    (``reproduce_times.json``: ``make rerun``'s ``rerun`` entry, else the run before the last), with
    whether the rerun recorded the same results, and a total row. Empty before two runs."""
    directory = Path(directory) if directory else results_dir()
    path = directory / "reproduce_times.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    rows = []
    for name, t in sorted(times.items()):
        if t.get("rerun"):
            first, second, differences = t, t["rerun"], t["rerun"].get("differences")
        elif t.get("history"):
            first, second, differences = t["history"][-1], t, None
        else:
            continue
        rows.append({"notebook": name, "first run (s)": first.get("seconds"), "at": first.get("at", "–"),
                     "rerun (s)": second["seconds"], "rerun at": second.get("at", "–"),
                     "rerun within 30 s": "yes" if second["seconds"] <= WARM_NOTEBOOK_S else "no",
                     "same results": "–" if differences is None else ("yes" if differences == 0
                                                                       else f"no ({differences} values)")})
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows).set_index("notebook")
    same = out["same results"]
    total = {"first run (s)": out["first run (s)"].sum(), "at": "", "rerun (s)": out["rerun (s)"].sum(),
             "rerun at": "", "rerun within 30 s": "yes" if out["rerun (s)"].sum() <= WARM_TOTAL_S else "no",
             "same results": "yes" if same.eq("yes").all() else ("–" if same.eq("–").all() else "no")}
    out.loc["all (target: 180 s warm)"] = total
    return out


def total_minutes(directory: str | Path | None = None) -> float | None:
    """Minutes the last ``make reproduce`` spent in the notebooks (None before it ran)."""
    directory = Path(directory) if directory else results_dir()
    path = directory / "reproduce_times.json"
    if not path.is_file():
        return None
    return sum(t["seconds"] for t in json.loads(path.read_text()).values()) / 60


HTML_TAGS = set("""a abbr address area article aside audio b base bdi bdo blockquote body br button canvas caption
cite code col colgroup data datalist dd del details dfn dialog div dl dt em embed fieldset figcaption figure footer
form h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe img input ins kbd label legend li link main map mark math
menu meta meter nav noscript object ol optgroup option output p param picture pre progress q rp rt ruby s samp script
search section select slot small source span strong style sub summary sup svg table tbody td template textarea tfoot th
thead time title tr track u ul var video wbr circle clippath defs desc ellipse g line lineargradient marker mask path
pattern polygon polyline radialgradient rect stop symbol text tspan use foreignobject image filter title mi mn mo
mrow msub msup mfrac msqrt mtext mspace semantics annotation""".split())
PLACEHOLDER = re.compile(r"\((?:planned|next)\)|\bTODO\b|\bTBD\b|\bplanned\b", re.IGNORECASE)
RAW_MISSING = re.compile(r"(?<![\w.])(?:nan|NaN|<NA>|NaT)(?![\w(])")
#: where users' files live on any machine, besides the build machine's own folders (:func:`machine_paths`)
USER_FOLDERS = ("/home", "/root", "/Users")


def machine_paths(root: str | Path | None = None) -> re.Pattern:
    """An absolute path of the build machine in text: under the book's root (and the folder that
    holds it), the home folder, or a usual users' folder."""
    root = Path(root) if root is not None else project_root(Path(__file__).resolve().parent)
    prefixes = sorted({str(root), str(root.parent), str(Path.home()), *USER_FOLDERS} - {"/"}, key=len, reverse=True)
    alternatives = "|".join(re.escape(p.rstrip("/")) for p in prefixes)
    return re.compile(rf"(?<![\w.:/~-])(?:{alternatives})/[\w./-]*")


def scan_html(folder: str | Path) -> list[str]:
    """Reader-facing defects in a built book (``_build/html``): a placeholder ("planned", "TODO",
    "(next)"), a raw NaN in a table or an output, an unknown tag (model or prompt text such as
    "<your reasoning>" that reached the HTML unescaped) or an absolute path of the build machine.
    One line per defect, ``page: what (excerpt)``; an empty list for a clean book."""
    from bs4 import BeautifulSoup

    folder = Path(folder)
    absolute = machine_paths()
    problems = []
    pages = sorted(p for p in folder.rglob("*.html")
                   if not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts)
                   and p.name not in ("genindex.html", "search.html"))
    for page in pages:
        name = str(page.relative_to(folder))
        raw = page.read_text(errors="replace")
        soup = BeautifulSoup(raw, "html.parser")
        article = soup.find("article") or soup.find("main") or soup.body or soup
        for tag in article.find_all(True):
            if tag.name not in HTML_TAGS and "-" not in tag.name:
                problems.append(f"{name}: unescaped tag <{tag.name}> ({tag.get_text()[:60]!r})")
        for script in article.find_all(["script", "style"]):
            script.extract()
        inputs = article.select(".cell_input")
        for block in inputs:      # code shown to the reader may say np.nan; its output may not
            block.extract()
        text = article.get_text(" ")
        for match in PLACEHOLDER.finditer(text):
            problems.append(f"{name}: placeholder {match.group(0)!r} "
                            f"({text[max(0, match.start() - 40):match.end() + 40]!r})")
        cells = [t.get_text(" ") for t in article.find_all(["td", "th"])]
        outputs = [t.get_text(" ") for t in article.select(".cell_output")]
        for where, chunk in [("table", c) for c in cells] + [("output", o) for o in outputs]:
            for match in RAW_MISSING.finditer(chunk):
                problems.append(f"{name}: raw {match.group(0)!r} in an {where} "
                                f"({chunk[max(0, match.start() - 40):match.end() + 40]!r})")
        for match in absolute.finditer(article.get_text(" ")):
            problems.append(f"{name}: absolute path {match.group(0)!r}")
    return list(dict.fromkeys(problems))
