"""Execute the numbered notebooks in order with papermill, never rewriting ``notebooks/``.

``python -m ecgkit.reproduce --profile quick`` runs ``notebooks/NN_*.ipynb`` into
``book/executed/`` with the profile passed as a papermill parameter. A failing notebook stops
the run with a message naming the notebook and the cell. Each executed copy is cleaned for
publishing (:func:`ecgkit.notebook_scrub.scrub`: progress frames, warnings, this machine's
paths, widget outputs; the injected parameters folded on the page).

``--rerun --out _build/rerun/executed`` runs them again on the same cache to measure the warm
rerun: it records its results apart (``_build/rerun/results``, the sibling of ``--out``), so the
book keeps the run that filled the cache; its times are recorded beside that run's
(``reproduce_times.json``, key ``rerun``) and each notebook's recorded metrics and tables are
compared with what that run recorded (timings and cache hits left out,
:func:`ecgkit.results.rerun_differences`): the same command must give the same tables.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .config import profile as check_profile


class NotebookFailed(RuntimeError):
    def __init__(self, notebook: str, cell: int | None, error: str, output: Path, first_line: str = ""):
        self.notebook, self.cell, self.error = notebook, cell, error
        where = f"code cell {cell}" if cell is not None else "an unknown cell"
        if first_line:
            where += f" (`{first_line}`)"
        super().__init__(f"notebook {notebook} failed in {where}: {error}\n"
                         f"(the partly executed copy is {output})")


def notebooks(source: str | Path = "notebooks", only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in order, optionally only those named."""
    found = sorted(p for p in Path(source).glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.stem.startswith(o) or p.name == o for o in only)]
        if not found:
            raise FileNotFoundError(f"no notebook in {source} matches {only}")
    return found


def _failed_cell(nb_path: Path) -> tuple[int | None, str]:
    """(1-based number among the source notebook's code cells, first line) of the failed cell.

    The cell papermill injects with the parameters is not counted, so the number matches
    the notebook in ``notebooks/``.
    """
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"
            and "injected-parameters" not in c.metadata.get("tags", [])]
    for i, cell in enumerate(code, start=1):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i, cell.source.strip().splitlines()[0][:80] if cell.source.strip() else ""
    return None, ""


#: run in each papermill kernel before the first cell: ``tqdm.auto`` gives text bars, so an
#: executed copy keeps one line per bar (with ipywidgets installed for JupyterLab, ``tqdm.auto``
#: would otherwise store a widget whose text stays at 0 % and widget state in the metadata)
TEXT_BARS = ("import tqdm.auto, tqdm.autonotebook, tqdm.std; "
             "tqdm.auto.tqdm = tqdm.autonotebook.tqdm = tqdm.std.tqdm; "
             "tqdm.auto.trange = tqdm.autonotebook.trange = tqdm.std.trange")


def run_notebook(path: Path | str, out_dir: Path | str, parameters: dict, timeout: int | None = None) -> Path:
    """Execute one notebook into ``out_dir`` and scrub the executed copy for publishing (a failed
    copy is left as it is, for debugging)."""
    import papermill as pm

    from .notebook_scrub import scrub_file
    from papermill.exceptions import PapermillExecutionError

    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    try:
        pm.execute_notebook(str(path), str(out), parameters=parameters, kernel_name="python3",
                            cwd=str(out_dir), progress_bar=False, log_output=False,
                            execution_timeout=timeout,
                            extra_arguments=[f"--InteractiveShellApp.exec_lines={TEXT_BARS}"])
    except PapermillExecutionError as exc:
        cell, first_line = _failed_cell(out) if out.exists() else (None, "")
        raise NotebookFailed(path.name, cell, f"{exc.ename}: {exc.evalue}", out, first_line) from None
    return scrub_file(out, parameters)


def run_all(source="notebooks", out_dir="book/executed", profile=None, only=None,
            parameters=None, results: str | Path | None = None, rerun: bool = False) -> list[Path]:
    """Execute the notebooks; ``parameters``: a dict for every notebook, or a function of the
    notebook's path giving its own (``ecgkit.smoke.notebook_parameters``); ``rerun``: a warm
    rerun, timed and compared with the run before (see the module's text)."""
    import json
    import shutil

    from .config import results_dir
    from .results import rerun_differences

    profile = check_profile(profile)
    out_dir = Path(out_dir).resolve()
    os.environ["ECGKIT_PROFILE"] = profile
    os.environ.setdefault("TQDM_MININTERVAL", "15")  # keep progress bars short in executed notebooks
    if results:
        os.environ["ECGKIT_RESULTS"] = str(Path(results).resolve())
    main = recorded = results_dir()
    if rerun:
        # the rerun records apart (the book keeps the run that filled the cache, its logs and costs);
        # it starts from the run's results, which later notebooks read (08 reads 07's adapter)
        rerun_results = out_dir.parent / "results"
        if rerun_results.resolve() == main.resolve():
            raise ValueError(f"a rerun records apart from the run it is compared with ({main}): "
                             f"give it another --out than that folder's sibling")
        shutil.rmtree(rerun_results, ignore_errors=True)
        shutil.copytree(main, rerun_results)
        os.environ["ECGKIT_RESULTS"] = str(rerun_results)
        recorded = rerun_results
    done = []
    for nb in notebooks(source, only):
        start = time.time()
        print(f"[reproduce] {nb.name} (profile {profile}) ...", flush=True)
        extra = parameters(nb) if callable(parameters) else (parameters or {})
        done.append(run_notebook(nb, out_dir, {"profile": profile, **extra}))
        seconds = time.time() - start
        print(f"[reproduce] {nb.name} done in {seconds:.0f} s", flush=True)
        if not rerun:
            record_time(nb.stem, seconds, profile)
            continue
        before, after = main / f"{nb.stem}.json", recorded / f"{nb.stem}.json"
        differences = (rerun_differences(json.loads(before.read_text()), json.loads(after.read_text()))
                       if before.is_file() and after.is_file() else None)
        if differences:
            print(f"[reproduce] {nb.name}: {len(differences)} recorded values differ from the run before: "
                  + "; ".join(differences[:5]), flush=True)
        record_time(nb.stem, seconds, profile, rerun=True,
                    differences=None if differences is None else len(differences), directory=main)
    return done


def record_time(notebook: str, seconds: float, profile: str, rerun: bool = False,
                differences: int | None = None, directory: Path | None = None) -> None:
    """Add a notebook's wall time to ``<results>/reproduce_times.json`` (read by the book's map and
    the performance page), keeping the notebook's four runs before it (``history``): a rerun on
    the same cache is then shown beside the run that filled it. ``rerun``: the time of a warm
    rerun (``--rerun``), kept under ``rerun`` beside that run's, with ``differences``: how many
    recorded values differ from the run's (None: nothing to compare). ``directory``: the folder
    of ``reproduce_times.json`` (default the results folder)."""
    import json

    from .config import results_dir

    import time

    path = (directory or results_dir()) / "reproduce_times.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if rerun:
        if notebook not in times:    # nothing to stand beside: a rerun is not a first run
            print(f"[reproduce] {notebook}: no earlier run recorded in {path.parent}, the rerun's time is not kept",
                  flush=True)
            return
        times[notebook]["rerun"] = {"seconds": round(float(seconds), 1), "at": now, "differences": differences}
        path.write_text(json.dumps(times, indent=1))
        return
    before = times.get(notebook)
    history = (before.get("history", []) + [{k: before[k] for k in ("seconds", "at") if k in before}]
               if before else [])[-4:]
    times[notebook] = {"seconds": round(float(seconds), 1), "profile": profile,
                       "cpus": os.cpu_count(), "at": now, "history": history}
    path.write_text(json.dumps(times, indent=1))


def _parse_value(text: str):
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ecgkit reproduce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="quick (default) or full")
    ap.add_argument("--source", default="notebooks")
    ap.add_argument("--out", default="book/executed")
    ap.add_argument("--results", default=None, help="results folder (default $ECGKIT_RESULTS or _build/results)")
    ap.add_argument("--only", nargs="*", help="run only these notebooks (prefix, e.g. 00)")
    ap.add_argument("--rerun", action="store_true",
                    help="a warm rerun: results recorded apart (the sibling of --out), times beside the "
                         "run before, results compared with it")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a notebook parameter (VALUE read as JSON when it parses, else a string), "
                         "e.g. -p cpsc_dir /data/icbeb -p n_seeds 3")
    args = ap.parse_args(argv)
    try:
        run_all(args.source, args.out, args.profile, args.only, results=args.results, rerun=args.rerun,
                parameters={name: _parse_value(value) for name, value in args.param})
    except NotebookFailed as exc:
        print(f"[reproduce] FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
