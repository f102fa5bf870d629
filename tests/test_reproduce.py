import nbformat
import pytest

from ecgkit.reproduce import NotebookFailed, notebooks, run_all


def _write(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "quick"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def test_runs_in_order_with_profile_and_keeps_sources_clean(tmp_path):
    src = tmp_path / "nb"
    src.mkdir()
    _write(src / "01_b.ipynb", ["print('b', profile)"])
    _write(src / "00_a.ipynb", ["print('a', profile)"])
    (src / "scratch.ipynb").write_text("not a numbered notebook")
    before = (src / "00_a.ipynb").read_text()
    out = run_all(src, tmp_path / "out", profile="full")
    assert [p.name for p in out] == ["00_a.ipynb", "01_b.ipynb"]
    executed = nbformat.read(out[0], as_version=4)
    assert "a full" in "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert (src / "00_a.ipynb").read_text() == before


def test_failure_names_notebook_and_cell(tmp_path):
    src = tmp_path / "nb"
    src.mkdir()
    _write(src / "00_ok.ipynb", ["x = 1"])
    _write(src / "01_bad.ipynb", ["x = 1", "y = 2", "raise ValueError('record 17 is broken')", "z = 3"])
    _write(src / "02_never.ipynb", ["x = 1"])
    with pytest.raises(NotebookFailed) as info:
        run_all(src, tmp_path / "out", profile="quick")
    err = info.value
    assert err.notebook == "01_bad.ipynb"
    assert err.cell == 4  # counted in the source notebook: parameters, x, y, raise
    assert "code cell 4 (`raise ValueError" in str(err)
    assert "record 17 is broken" in str(err) and "01_bad.ipynb" in str(err)
    assert not (tmp_path / "out" / "02_never.ipynb").exists()


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        run_all(tmp_path, tmp_path / "out", profile="huge")


def test_only_selects(tmp_path):
    _write(tmp_path / "00_a.ipynb", ["1"])
    _write(tmp_path / "01_b.ipynb", ["1"])
    assert [p.name for p in notebooks(tmp_path, only=["01"])] == ["01_b.ipynb"]
    with pytest.raises(FileNotFoundError):
        notebooks(tmp_path, only=["07"])


def test_notebooks_are_committed_clean():
    """Every numbered notebook has a parameters cell and no outputs (they are executed by
    `make reproduce`; `make check` asserts what they record)."""
    found = notebooks("notebooks")
    assert len(found) >= 10
    for path in found:
        nb = nbformat.read(path, as_version=4)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path} has outputs"


def test_parameters_per_notebook_and_from_the_command_line(tmp_path, monkeypatch):
    from ecgkit.reproduce import _parse_value, main

    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "res"))   # run_all sets both: restored after
    monkeypatch.setenv("ECGKIT_PROFILE", "quick")

    src = tmp_path / "nb"
    src.mkdir()
    _write(src / "00_a.ipynb", ["print('n', n if 'n' in dir() else None)"])
    _write(src / "01_b.ipynb", ["print('n', n if 'n' in dir() else None)"])
    out = run_all(src, tmp_path / "out", profile="full", results=tmp_path / "res",
                  parameters=lambda nb: {"n": 3} if nb.name.startswith("01") else {})
    texts = ["".join(o.get("text", "") for c in nbformat.read(p, as_version=4).cells for o in c.get("outputs", []))
             for p in out]
    assert "n None" in texts[0] and "n 3" in texts[1]
    assert (tmp_path / "res" / "reproduce_times.json").is_file()
    assert _parse_value("3") == 3 and _parse_value("[1, 2]") == [1, 2] and _parse_value("/data/x") == "/data/x"
    assert main(["--source", str(src), "--out", str(tmp_path / "cli"), "--results", str(tmp_path / "res"),
                 "--only", "00", "-p", "n", "7"]) == 0
    cli = nbformat.read(tmp_path / "cli" / "00_a.ipynb", as_version=4)
    assert "n 7" in "".join(o.get("text", "") for c in cli.cells for o in c.get("outputs", []))


def test_executed_copies_are_scrubbed_for_publishing(tmp_path, monkeypatch):
    """reproduce scrubs each executed copy (ecgkit.notebook_scrub): a data folder given as a
    parameter becomes a placeholder, warnings and progress frames go, the parameters are folded."""
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "res"))
    monkeypatch.setenv("ECGKIT_PROFILE", "quick")
    data = tmp_path / "icbeb"
    data.mkdir()
    src = tmp_path / "nb"
    src.mkdir()
    _write(src / "00_a.ipynb", ["import warnings\nwarnings.warn('old api', FutureWarning)\nprint('ok')",
                                "import sys\nfor i in range(3):\n    sys.stderr.write(f'\\rstep {i}/3')\n"
                                "_ = sys.stderr.write('\\n')",
                                "print('reading', cpsc_dir)"])
    out = run_all(src, tmp_path / "out", profile="quick", results=tmp_path / "res",
                  parameters={"cpsc_dir": str(data)})
    nb = nbformat.read(out[0], as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "hide-input" in injected.metadata["tags"] and 'cpsc_dir = "<cpsc>"' in injected.source
    streams = [(o.get("name"), o.get("text")) for c in nb.cells for o in c.get("outputs", [])]
    assert streams == [("stdout", "ok\n"), ("stderr", "step 2/3\n"), ("stdout", "reading <cpsc>\n")]
    assert str(data) not in out[0].read_text()


def test_record_time_keeps_the_run_before_and_the_rerun_table(tmp_path, monkeypatch):
    from ecgkit.reproduce import record_time
    from ecgkit.results import rerun_table

    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path))
    record_time("02_x", 300.0, "quick")
    assert rerun_table(tmp_path).empty                       # one run: nothing to compare
    record_time("02_x", 12.5, "quick")
    record_time("03_y", 40.0, "quick")
    table = rerun_table(tmp_path)
    assert list(table.index) == ["02_x", "all (target: 180 s warm)"]
    assert table.loc["02_x", "first run (s)"] == 300.0 and table.loc["02_x", "rerun (s)"] == 12.5
    assert table.loc["02_x", "rerun within 30 s"] == "yes" and table.loc["02_x", "same results"] == "–"
    for _ in range(6):
        record_time("02_x", 10.0, "quick")
    import json
    assert len(json.loads((tmp_path / "reproduce_times.json").read_text())["02_x"]["history"]) == 4
    # `make rerun`: kept beside the run, with its comparison; the run's own time is not replaced
    record_time("03_y", 45.0, "quick", rerun=True, differences=2)
    record_time("02_x", 8.0, "quick", rerun=True, differences=0)
    table = rerun_table(tmp_path)
    assert table.loc["03_y", "first run (s)"] == 40.0 and table.loc["03_y", "rerun (s)"] == 45.0
    assert table.loc["03_y", "rerun within 30 s"] == "no" and table.loc["03_y", "same results"] == "no (2 values)"
    assert table.loc["02_x", "first run (s)"] == 10.0 and table.loc["02_x", "same results"] == "yes"
    assert table.loc["all (target: 180 s warm)", "rerun (s)"] == 53.0
    assert table.loc["all (target: 180 s warm)", "same results"] == "no"
    record_time("04_z", 5.0, "quick", rerun=True, differences=0)    # no run to stand beside: not kept
    assert "04_z" not in json.loads((tmp_path / "reproduce_times.json").read_text())
    record_time("03_y", 41.0, "quick")                       # a new run: its rerun is still to come
    assert rerun_table(tmp_path).loc["03_y", "same results"] == "–"


def test_rerun_differences_leave_timings_out():
    from ecgkit.results import rerun_differences

    def results(auc, seconds, qps, rows):
        return {"metrics": {"auroc": {"value": auc}, "train_seconds": {"value": seconds}},
                "tables": {"t": {"columns": ["recall", "q/s"], "index": [[0], [1]],
                                 "data": rows(qps)}}}
    before = results(0.75, 10.0, 100.0, lambda q: [[0.9, q], [0.8, q]])
    assert rerun_differences(before, results(0.75, 3.0, 900.0, lambda q: [[0.9, q], [0.8, q]])) == []
    changed = results(0.76, 3.0, 900.0, lambda q: [[0.9, q], [0.7, q]])
    assert rerun_differences(before, changed) == ["metrics/auroc", "tables/t[1, recall]"]
    assert rerun_differences(before, {"metrics": {}, "tables": {}}) == ["metrics/auroc", "tables/t"]
    # whether a step came from the cache differs between the run that fills it and the rerun
    hits = {"metrics": {"descriptions_cached": {"value": 0}},
            "tables": {"training": {"columns": ["value"], "index": ["steps", "loaded from cache"], "data": [[45], [False]]}}}
    again = {"metrics": {"descriptions_cached": {"value": 57}},
             "tables": {"training": {"columns": ["value"], "index": ["steps", "loaded from cache"], "data": [[45], [True]]}}}
    assert rerun_differences(hits, again) == []


def test_a_rerun_records_apart_and_is_compared_with_the_run(tmp_path, monkeypatch):
    """`make rerun`: the rerun's results go beside its executed copies, the run's stay as they were;
    the rerun's times and its comparison land in the run's reproduce_times.json."""
    import json

    from ecgkit.reproduce import main

    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "res"))
    monkeypatch.setenv("ECGKIT_PROFILE", "quick")
    src = tmp_path / "nb"
    src.mkdir()
    record = ("from ecgkit.results import Recorder\n"
              "import os\n"
              "rec = Recorder('00_a', dataset='toy', profile=profile, seed=0)\n"
              "rec.metric('auroc', float(os.environ.get('TOY_AUROC', '0.75')))\n"
              "rec.metric('train_seconds', 1.0)\n"
              "rec.save()")
    _write(src / "00_a.ipynb", [record])
    run_all(src, tmp_path / "out", profile="quick", results=tmp_path / "res")
    first = (tmp_path / "res" / "00_a.json").read_text()
    assert main(["--source", str(src), "--out", str(tmp_path / "rerun" / "executed"),
                 "--results", str(tmp_path / "res"), "--rerun"]) == 0
    assert (tmp_path / "res" / "00_a.json").read_text() == first              # the run's results kept
    assert (tmp_path / "rerun" / "results" / "00_a.json").is_file()
    times = json.loads((tmp_path / "res" / "reproduce_times.json").read_text())["00_a"]
    assert times["rerun"]["differences"] == 0 and times["seconds"] > 0
    monkeypatch.setenv("TOY_AUROC", "0.70")                                    # a rerun that disagrees
    run_all(src, tmp_path / "rerun" / "executed", profile="quick", results=tmp_path / "res", rerun=True)
    times = json.loads((tmp_path / "res" / "reproduce_times.json").read_text())["00_a"]
    assert times["rerun"]["differences"] == 1
    with pytest.raises(ValueError, match="records apart"):
        run_all(src, tmp_path / "executed", profile="quick", results=tmp_path / "results", rerun=True)
