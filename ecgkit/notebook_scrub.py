"""Clean an executed notebook before the book publishes it (:func:`scrub`).

``make reproduce`` executes the notebooks into ``book/executed``; a reader downloads those files.
:func:`scrub` removes what belongs to the build machine and its run, not to the results: progress
bar frames, warnings, the machine's absolute paths, widget outputs; and hides the parameters cell
papermill injects (it stays in the file). Figures, tables and printed results are left as they are.
"""
from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

__all__ = ["WIDGET", "PARAMETERS_TAG", "placeholders", "replace_paths", "scrub", "scrub_file", "machine_paths_in"]

WIDGET = "application/vnd.jupyter.widget-view+json"
#: the tag that hides the injected parameters on the page. ``hide-input`` and not ``remove-cell``:
#: the page keeps a folded "show code cell source" line, so a reader of the page can still see the
#: parameters the run used (the smoke run's toy sizes, the profile), and the downloaded notebook
#: has the cell as papermill wrote it, runnable (a tag only changes how the book renders the cell)
PARAMETERS_TAG = "hide-input"
#: a line ``file:line: SomeWarning: message`` as :func:`warnings.showwarning` writes it
_WARNING = re.compile(r"^\S.*?:\d+: [A-Za-z_][\w.]*Warning: ")
#: binary outputs (base64), never searched for paths: a figure stays byte for byte what it was
_BINARY = re.compile(r"^image/(?!svg)")


def placeholders(parameters: dict | None = None, root: str | Path | None = None) -> dict[str, str]:
    """Absolute paths of this machine -> a neutral name: the venv (``<venv>``), the ecgkit cache
    (``<cache>``), the results folder (``<results>``), the PTB-XL folder (``<ptbxl>``), every
    parameter whose value is an existing absolute folder or file (``cpsc_dir`` -> ``<cpsc>``), the
    project root (``<project>``) and the home folder (``<home>``). Symlinked paths are given in both
    forms. :func:`scrub` replaces the longest first, so a folder inside another keeps its own name."""
    from .config import project_root, settings

    s = settings()
    named: list[tuple[str, str | Path | None]] = []
    for name, value in (parameters or {}).items():
        if isinstance(value, str) and os.path.isabs(value) and os.path.exists(value):
            named.append((f"<{name.removesuffix('_dir')}>", value))
    named += [("<ptbxl>", s.ptbxl), ("<results>", s.results), ("<cache>", s.cache),
              ("<venv>", sys.prefix if sys.prefix != sys.base_prefix else None),
              ("<project>", Path(root) if root else project_root(Path(__file__).resolve().parent)),
              ("<home>", Path.home())]
    out: dict[str, str] = {}
    for name, path in named:
        if not path:
            continue
        for form in (str(Path(path).expanduser()), os.path.realpath(Path(path).expanduser())):
            form = form.rstrip("/")
            if form and form != "/" and form not in out:
                out[form] = name
    return out


def replace_paths(text: str, names: dict[str, str] | None = None) -> str:
    """``text`` with every path of ``names`` (default: :func:`placeholders`) replaced by its name."""
    names = placeholders() if names is None else names
    pattern = _path_pattern(names)
    return text if pattern is None else pattern.sub(lambda m: names[m.group(1)], text)


def _path_pattern(names: dict[str, str]) -> re.Pattern | None:
    """A path at the start of a path (not inside a longer name), ending at a separator or the end."""
    if not names:
        return None
    alternatives = "|".join(re.escape(p) for p in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w.~-])({alternatives})(?![\w.-])")


def _walk(value, fix):
    """Every string in a JSON-like value through ``fix`` (binary image data left alone)."""
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, list):
        return [_walk(v, fix) for v in value]
    if isinstance(value, dict):
        return type(value)((k, v if _BINARY.match(str(k)) else _walk(v, fix)) for k, v in value.items())
    return value


def _final_frames(text: str) -> str:
    """Each line as a terminal shows it once the ``\\r`` frames have overwritten each other: its
    last frame; a line that was only frames and ends cleared (blank) is dropped."""
    lines, pieces = [], text.split("\n")
    for i, line in enumerate(pieces):
        if "\r" in line:
            frames = [f for f in line.split("\r") if f]
            line = frames[-1] if frames else ""
            if not line.strip():
                if i == len(pieces) - 1 and lines:
                    lines.append("")    # keep the newline before the cleared last line
                continue
        lines.append(line)
    return "\n".join(lines)


def _without_warnings(text: str, lookahead: int = 4) -> str:
    """stderr without warnings as :func:`warnings.formatwarning` writes them: the line
    ``file:line: XWarning: message``, the message's further lines and the source line, indented
    by two spaces, that ends the warning (looked for in the next ``lookahead`` lines; without one,
    the warning's first line alone goes)."""
    kept, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        if _WARNING.match(lines[i]):
            end = i
            for j in range(i + 1, min(i + 1 + lookahead, len(lines))):
                if _WARNING.match(lines[j]):
                    break
                if lines[j].startswith("  ") and lines[j].strip():
                    end = j
                    break
            i = end + 1
            continue
        kept.append(lines[i])
        i += 1
    return "\n".join(kept)


def _merged_streams(outputs: list) -> list:
    """Consecutive stream outputs of the same name as one (what Jupyter shows; papermill writes
    each progress-bar frame as its own output)."""
    merged = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")):
            prev["text"] = prev["text"] + out["text"]
        else:
            merged.append(out)
    return merged


def _clean_outputs(outputs: list) -> list:
    cleaned = []
    for out in _merged_streams(outputs):
        kind = out.get("output_type")
        if kind == "stream":
            text = _final_frames(out["text"])
            if out.get("name") == "stderr":
                text = _without_warnings(text)
            if not text.strip():
                continue
            out["text"] = text
        elif kind in ("display_data", "execute_result") and WIDGET in out.get("data", {}):
            plain = out["data"].get("text/plain")
            if not plain:
                continue
            out["data"] = type(out["data"])({"text/plain": plain})
        cleaned.append(out)
    return cleaned


def scrub(nb, names: dict[str, str] | None = None):
    """A copy of the executed notebook ``nb`` (nbformat v4, or its dict) ready to publish:

    * stream outputs: consecutive ones of a stream merged, ``\\r`` progress frames reduced to each
      line's final frame; on stderr, warnings (``file:line: XWarning: ...``, up to the source line
      after it) removed; an output left empty is dropped;
    * widget outputs (``application/vnd.jupyter.widget-view+json``) replaced by their ``text/plain``
      (dropped without one), and the notebook's widget state removed;
    * every absolute path of ``names`` (:func:`placeholders`) replaced by its placeholder, in
      outputs, sources and metadata (papermill's ``output_path``), never inside image data;
    * the cell papermill injected (tag ``injected-parameters``) tagged :data:`PARAMETERS_TAG`.

    Everything else (figures, tables, other outputs, execution counts) is left as it was."""
    nb = copy.deepcopy(nb)
    names = names or {}
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            cell["outputs"] = _clean_outputs(cell.get("outputs", []))
        tags = cell.setdefault("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and PARAMETERS_TAG not in tags:
            cell["metadata"]["tags"] = [*tags, PARAMETERS_TAG]
    nb["metadata"].pop("widgets", None)
    if names:
        pattern = _path_pattern(names)
        fix = lambda text: pattern.sub(lambda m: names[m.group(1)], text)
        nb["cells"] = _walk(nb["cells"], fix)
        nb["metadata"] = _walk(nb["metadata"], fix)
    return nb


def scrub_file(path: str | Path, parameters: dict | None = None) -> Path:
    """Scrub an executed notebook in place (:func:`scrub` with :func:`placeholders` of this run)."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    nbformat.write(nbformat.from_dict(scrub(nb, placeholders(parameters))), path)
    return path


def machine_paths_in(nb, pattern: re.Pattern) -> list[str]:
    """The matches of ``pattern`` (:func:`ecgkit.results.machine_paths`) in a notebook's text:
    sources, outputs and metadata, image data left out."""
    found: list[str] = []
    _walk({"cells": nb["cells"], "metadata": nb["metadata"]},
          lambda text: found.extend(m.group(0) for m in pattern.finditer(text)) or text)
    return list(dict.fromkeys(found))
