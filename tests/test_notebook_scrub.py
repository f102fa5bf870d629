"""The executed notebooks the book publishes carry no run residue (ecgkit.notebook_scrub)."""
from __future__ import annotations

import copy
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ecgkit.notebook_scrub import PARAMETERS_TAG, WIDGET, machine_paths_in, placeholders, scrub, scrub_file
from ecgkit.results import machine_paths

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+P+/HgAFhAJ/wlseKgAAAABJRU5ErkJggg=="


def _stream(text, name="stdout"):
    return new_output("stream", name=name, text=text)


def _notebook(*cells, **metadata):
    nb = new_notebook(cells=list(cells))
    nb.metadata.update(metadata)
    return nb


def _figure_and_table():
    """A cell with a figure, a table and a printed result: what scrub must leave alone."""
    return new_code_cell("show()", execution_count=7, outputs=[
        new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"}),
        new_output("execute_result", execution_count=7,
                   data={"text/html": "<table><tr><td>0.87</td></tr></table>", "text/plain": "   auc\n0  0.87"}),
        _stream("AUC 0.870 on 50 records\n")])


def test_progress_frames_reduce_to_their_final_line():
    cell = new_code_cell("load()", outputs=[
        _stream("\rreading 100 Hz:   0%|          | 0/50", "stderr"),
        _stream("\rreading 100 Hz: 100%|##########| 50/50", "stderr"),
        _stream("\n", "stderr"),
        _stream("50 records\n"),
        _stream("\rsummary:  40%|####      | 2/5\rsummary: 100%|##########| 5/5\n", "stderr"),
        _stream("\rcleared bar  50%|\r                 \r", "stderr")])
    out = scrub(_notebook(cell))["cells"][0]["outputs"]
    assert [(o["name"], o["text"]) for o in out] == [
        ("stderr", "reading 100 Hz: 100%|##########| 50/50\n"),
        ("stdout", "50 records\n"),
        ("stderr", "summary: 100%|##########| 5/5\n")]   # the cleared bar leaves nothing behind


def test_warnings_are_removed_from_stderr_with_their_source_line():
    text = ("/venv/lib/python3.11/site-packages/sklearn/base.py:12: FutureWarning: `x` is deprecated\n"
            "  warnings.warn(msg, FutureWarning)\n"
            "training: 3 epochs\n"
            "/opt/lib/torch/nn.py:88: UserWarning: no GPU\n"
            "  return f(x)\n"
            "/v/wfdb/annotation.py:30: Pandas4Warning: inplace is deprecated\n"
            "See https://pandas.pydata.org for more details.\n"
            "  table.set_index(\n"
            "epoch 1 done\n")
    only_warning = "/x/y.py:3: DeprecationWarning: old\n  call()\n"
    cell = new_code_cell("fit()", outputs=[_stream(text, "stderr"), _stream("ok\n"),
                                          _stream(only_warning, "stderr"),
                                          _stream("x.py:1: FutureWarning: printed, not warned\n")])
    out = scrub(_notebook(cell))["cells"][0]["outputs"]
    assert [o["text"] for o in out] == ["training: 3 epochs\nepoch 1 done\n", "ok\n",
                                       "x.py:1: FutureWarning: printed, not warned\n"]   # stdout kept


def test_machine_paths_become_placeholders(tmp_path):
    home, data = tmp_path / "home" / "ann", tmp_path / "data" / "ptbxl"   # folders of a made-up machine
    H, P, D = str(home), str(home / "proj"), str(data)
    names = {P: "<project>", f"{P}/.venv": "<venv>", f"{H}/.cache/ecgkit": "<cache>", D: "<ptbxl>", H: "<home>"}
    params = new_code_cell(f'profile = "quick"\ncpsc_dir = "{D}"', metadata={"tags": ["injected-parameters"]})
    cell = new_code_cell("run()", outputs=[
        _stream(f"{P}/.venv/lib/python3.11/site-packages/x.py:3: note\n"
                f"cached in {H}/.cache/ecgkit/signals/abc.npy, records in {D}/records100\n"
                f"notes in {H}/notes.txt; {H}/project2 and {D}-big are other folders\n"),
        new_output("error", ename="OSError", evalue=f"no {P}/x", traceback=[f"File {P}/a.py"]),
        new_output("display_data", data={"text/html": f"<p>{D}</p>", "image/png": PNG + f"{H}/x"})])
    nb = _notebook(params, cell, papermill={"output_path": f"{P}/book/executed/00.ipynb"})
    out = scrub(nb, names)
    assert out["cells"][0]["source"] == 'profile = "quick"\ncpsc_dir = "<ptbxl>"'
    outputs = out["cells"][1]["outputs"]
    assert outputs[0]["text"] == ("<venv>/lib/python3.11/site-packages/x.py:3: note\n"
                                  "cached in <cache>/signals/abc.npy, records in <ptbxl>/records100\n"
                                  f"notes in <home>/notes.txt; <home>/project2 and {D}-big are other folders\n")
    assert outputs[1]["evalue"] == "no <project>/x" and outputs[1]["traceback"] == ["File <project>/a.py"]
    assert outputs[2]["data"]["text/html"] == "<p><ptbxl></p>"
    assert outputs[2]["data"]["image/png"] == PNG + f"{H}/x"     # image data is never rewritten
    assert out["metadata"]["papermill"]["output_path"] == "<project>/book/executed/00.ipynb"
    assert machine_paths_in(out, machine_paths(P)) == []
    assert machine_paths_in(nb, machine_paths(P)) != []


def test_placeholders_of_this_run(tmp_path, monkeypatch):
    data = tmp_path / "icbeb"
    data.mkdir()
    link = tmp_path / "ptbxl-link"
    link.symlink_to(data, target_is_directory=True)
    monkeypatch.setenv("ECGKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ECGKIT_PTBXL", str(link))
    names = placeholders({"cpsc_dir": str(data), "n_seeds": 3, "label": "not/a/path"}, root=tmp_path / "root")
    assert names[str(data)] == "<cpsc>" and names[str(link)] == "<ptbxl>"
    assert names[str(tmp_path / "cache")] == "<cache>" and names[str(tmp_path / "root")] == "<project>"
    assert "not/a/path" not in names.values() and "<home>" in names.values()
    if sys.prefix != sys.base_prefix:
        assert names[sys.prefix.rstrip("/")] == "<venv>"


def test_widgets_become_text_and_the_widget_state_goes():
    widget = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    cell = new_code_cell("for _ in tqdm(x): pass", outputs=[
        new_output("display_data", data={WIDGET: widget, "text/plain": "100%|##########| 5/5"}),
        new_output("display_data", data={WIDGET: widget})])
    nb = _notebook(cell, widgets={"application/vnd.jupyter.widget-state+json": {"state": {}}})
    out = scrub(nb)
    assert [o["data"] for o in out["cells"][0]["outputs"]] == [{"text/plain": "100%|##########| 5/5"}]
    assert "widgets" not in out["metadata"]


def test_injected_parameters_are_hidden_not_removed():
    params = new_code_cell('profile = "quick"', metadata={"tags": ["parameters"]})
    injected = new_code_cell('# Parameters\nprofile = "full"\n', metadata={"tags": ["injected-parameters"]})
    out = scrub(_notebook(params, injected))
    assert out["cells"][0]["metadata"]["tags"] == ["parameters"]
    assert out["cells"][1]["metadata"]["tags"] == ["injected-parameters", PARAMETERS_TAG]
    assert out["cells"][1]["source"] == injected["source"]
    assert scrub(out)["cells"][1]["metadata"]["tags"] == ["injected-parameters", PARAMETERS_TAG]  # idempotent


def test_nothing_else_changes(tmp_path):
    nb = _notebook(new_markdown_cell("# Results\nAUC is recorded below."), _figure_and_table(),
                   papermill={"parameters": {"profile": "quick"}}, kernelspec={"name": "python3"})
    before = copy.deepcopy(nb)
    assert scrub(nb, {str(tmp_path / "proj"): "<project>"}) == before
    assert nb == before                     # the input is not modified in place
    path = tmp_path / "00_x.ipynb"
    nbformat.write(nb, path)
    scrub_file(path)
    assert nbformat.read(path, as_version=4) == before
