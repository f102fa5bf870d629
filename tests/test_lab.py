"""A chapter run by hand (JupyterLab's way: a fresh kernel, the project's, default parameters,
through nbclient) records what `make reproduce` (papermill) records; executed copies keep text bars."""
import json
import sys
from pathlib import Path

import nbformat
import pytest

from ecgkit.reproduce import run_all, run_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: differ between two runs of the same code: when it was saved, the commit (``+dirty`` or not)
RUN_SPECIFIC = ("saved", "commit")


def _recorded(path: Path) -> dict:
    doc = json.loads(path.read_text())
    for field in RUN_SPECIFIC:
        doc["info"].pop(field, None)
    return doc


def test_every_notebook_names_the_project_kernel():
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        spec = json.loads(path.read_text())["metadata"]["kernelspec"]
        assert (spec["name"], spec["language"]) == ("ecgkit", "python"), f"{path.name}: kernel {spec['name']}"


def test_a_chapter_run_in_a_fresh_kernel_records_what_make_reproduce_records(tmp_path, tmp_cache, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient

    source = NOTEBOOKS / "06_ecgllm_dataset.ipynb"
    nb = nbformat.read(source, as_version=4)
    try:
        spec = KernelSpecManager().get_kernel_spec(nb.metadata.kernelspec.name)
    except NoSuchKernel:
        pytest.fail(f"no Jupyter kernel {nb.metadata.kernelspec.name!r}: `make setup` installs it "
                    f"(python -m ipykernel install --sys-prefix --name ecgkit)")
    assert Path(spec.resource_dir).is_relative_to(sys.prefix), f"the kernel is not this environment's: {spec.resource_dir}"
    for name in ("ECGKIT_LLM_BASE_URL", "ECGKIT_PTBXL"):   # templates only, offline; the same for both runs
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECGKIT_PROFILE", "quick")           # run_all sets these: restored after the test
    monkeypatch.setenv("TQDM_MININTERVAL", "15")

    by_hand = tmp_path / "by_hand"
    monkeypatch.setenv("ECGKIT_RESULTS", str(by_hand))
    work = tmp_path / "work"
    work.mkdir()
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(work)}}).execute()
    assert nb.metadata.kernelspec.name == "ecgkit"

    reproduced = tmp_path / "reproduced"
    run_all(NOTEBOOKS, tmp_path / "executed", "quick", only=["06"], results=reproduced)

    mine, theirs = _recorded(by_hand / "06_ecgllm_dataset.json"), _recorded(reproduced / "06_ecgllm_dataset.json")
    assert mine["info"]["profile"] == "quick" and mine["metrics"]["items"]["value"] > 0
    assert mine == theirs


def test_executed_copies_keep_text_progress_bars(tmp_path):
    """With ipywidgets installed (widget bars in JupyterLab), `tqdm.auto` in a notebook executed by
    `make reproduce` still writes text lines: no widget outputs, no widget state."""
    import ipywidgets  # noqa: F401  (a dependency: without it the test would prove nothing)

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("from tqdm.auto import tqdm, trange\n"
                                          "for i in tqdm(range(3), desc='auto bar'):\n    pass\n"
                                          "for i in trange(2, desc='auto range'):\n    pass")]
    nbformat.write(nb, tmp_path / "00_bars.ipynb")
    executed = nbformat.read(run_notebook(tmp_path / "00_bars.ipynb", tmp_path / "out", {}), as_version=4)
    outputs = executed.cells[-1].outputs
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert "widgets" not in executed.metadata
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "auto bar: 100%" in text and "auto range: 100%" in text
