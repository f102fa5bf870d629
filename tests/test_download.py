"""ecgkit.data.download against a real HTTP server on 127.0.0.1 serving a fake PTB-XL copy.

The handler supports Range requests and can be told to fail the first N requests for a file
(HTTP 500), cut a response short, ignore Range (answer 200) or serve wrong content.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import random
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from ecgkit.data import download as dl
from ecgkit.data.download import DownloadError, download_ptbxl, fetch_file

FAST = dict(progress=False, backoff=0, timeout=10)


# --------------------------------------------------------------------------- fake PhysioNet


def _make_fake_ptbxl(root: Path) -> dict[str, bytes]:
    rng = random.Random(1234)
    files = {
        "ptbxl_database.csv": b"ecg_id,patient_id,filename_lr,filename_hr\n"
        b"1,15709.0,records100/00000/00001_lr,records500/00000/00001_hr\n"
        b"2,13243.0,records100/00000/00002_lr,records500/00000/00002_hr\n"
        b"1001,1.0,records100/01000/01001_lr,records500/01000/01001_hr\n",
        "scp_statements.csv": b",description,diagnostic\nNORM,normal ECG,1.0\n",
        "LICENSE.txt": b"Creative Commons Attribution 4.0\n",
        "RECORDS": b"records100/00000/00001_lr\nrecords100/00000/00002_lr\nrecords100/01000/01001_lr\n",
    }
    for ecg_id in (1, 2, 1001):
        folder = f"{(ecg_id // 1000) * 1000:05d}"
        for rate, suffix, size in ((100, "lr", 24_000), (500, "hr", 150_000)):
            stem = f"records{rate}/{folder}/{ecg_id:05d}_{suffix}"
            files[f"{stem}.hea"] = f"{ecg_id:05d}_{suffix} 12 {rate} 1000\n".encode()
            files[f"{stem}.dat"] = rng.randbytes(size)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {rel}\n" for rel, data in sorted(files.items()))
    (root / "SHA256SUMS.txt").write_text(sums)
    return files


class FakeServerState:
    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []  # (relative path, Range header)
        self.fail_first: dict[str, int] = {}  # path -> number of 500 answers still to give
        self.cut_short: dict[str, int] = {}  # path -> number of responses still to cut
        self.ignore_range: set[str] = set()
        self.corrupt: set[str] = set()

    def seen(self, rel: str) -> list[str | None]:
        with self.lock:
            return [rng for path, rng in self.requests if path == rel]

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FakeServerState  # set on a subclass per server

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        st = self.state
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        rng = self.headers.get("Range")
        with st.lock:
            st.requests.append((rel, rng))
            fail = st.fail_first.get(rel, 0) > 0
            if fail:
                st.fail_first[rel] -= 1
            cut = st.cut_short.get(rel, 0) > 0
            if cut:
                st.cut_short[rel] -= 1
        path = st.root / rel
        if ".." in Path(rel).parts or not path.is_file():
            return self._send(404, b"not found")
        if fail:
            return self._send(500, b"server error")
        data = path.read_bytes()
        if rel in st.corrupt:
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        start, code, headers = 0, 200, {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if rng and rel not in st.ignore_range:
            assert rng.startswith("bytes=") and rng.endswith("-"), rng
            start = int(rng[len("bytes="):-1])
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            code = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if cut:  # announce the whole body, send half of it, drop the connection
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(code, body, headers)


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    # A test that forgets base_url must hit a dead loopback port, never PhysioNet.
    monkeypatch.setenv(dl.URL_ENV, "http://127.0.0.1:9/")


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "remote"
    files = _make_fake_ptbxl(root)
    state = FakeServerState(root)
    handler = type("BoundHandler", (Handler,), {"state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    state.files = files
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _assert_same(dest: Path, files: dict[str, bytes], rels) -> None:
    for rel in rels:
        assert (dest / rel).read_bytes() == files[rel], rel


def _part_files(dest: Path) -> list[Path]:
    return list(dest.rglob("*.part"))


# --------------------------------------------------------------------------- tests


def test_full_download_matches_checksums_then_rerun_fetches_nothing(server, tmp_path):
    dest = tmp_path / "ptbxl"
    summary = download_ptbxl(dest, base_url=server.url, workers=3, **FAST)
    n = len(server.files)
    assert summary["total"] == n and summary["downloaded"] == n
    assert summary["failed"] == [] and summary["skipped_ok"] == 0 and summary["manifest"] == "downloaded"
    _assert_same(dest, server.files, server.files)
    assert (dest / "SHA256SUMS.txt").read_bytes() == (server.root / "SHA256SUMS.txt").read_bytes()
    assert not _part_files(dest)

    before = len(server.paths())
    again = download_ptbxl(dest, base_url=server.url, **FAST)
    assert again["downloaded"] == 0 and again["skipped_ok"] == n and again["manifest"] == "cached"
    assert len(server.paths()) == before  # not a single request


def test_partial_file_is_resumed_with_range(server, tmp_path):
    dest = tmp_path / "ptbxl"
    rel = "records500/00000/00001_hr.dat"
    part = dest / (rel + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(server.files[rel][:10_000])
    summary = download_ptbxl(dest, base_url=server.url, **FAST)
    assert server.seen(rel) == ["bytes=10000-"]
    assert summary["resumed"] == 1 and summary["failed"] == []
    _assert_same(dest, server.files, server.files)
    assert not part.exists()


def test_interrupted_transfer_resumes_on_retry(server, tmp_path):
    rel = "records500/01000/01001_hr.dat"
    server.cut_short[rel] = 1
    dest = tmp_path / "ptbxl"
    summary = download_ptbxl(dest, base_url=server.url, **FAST)
    seen = server.seen(rel)
    assert len(seen) == 2 and seen[0] is None
    assert seen[1].startswith("bytes=") and int(seen[1][6:-1]) > 0  # continued where the cut left it
    assert summary["resumed"] == 1 and summary["failed"] == []
    _assert_same(dest, server.files, [rel])


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    rel = "records100/00000/00002_lr.dat"
    server.ignore_range.add(rel)
    dest = tmp_path / "f.dat"
    Path(str(dest) + ".part").write_bytes(b"garbage-prefix-not-from-the-file")
    digest = hashlib.sha256(server.files[rel]).hexdigest()
    res = fetch_file(server.url + rel, dest, digest, retries=0, backoff=0)
    assert server.seen(rel) == ["bytes=32-"]  # asked to resume, got 200: the file restarted
    assert res.status == "downloaded" and dest.read_bytes() == server.files[rel]
    assert not Path(str(dest) + ".part").exists()


def test_transient_500s_are_retried(server, tmp_path):
    rel = "ptbxl_database.csv"
    server.fail_first[rel] = 3
    server.fail_first["SHA256SUMS.txt"] = 1
    summary = download_ptbxl(tmp_path / "ptbxl", base_url=server.url, retries=3, **FAST)
    assert len(server.seen(rel)) == 4 and len(server.seen("SHA256SUMS.txt")) == 2
    assert summary["failed"] == []
    _assert_same(tmp_path / "ptbxl", server.files, server.files)


def test_too_many_500s_fail_that_file_only(server, tmp_path):
    rel = "scp_statements.csv"
    server.fail_first[rel] = 10
    dest = tmp_path / "ptbxl"
    summary = download_ptbxl(dest, base_url=server.url, retries=2, strict=False, **FAST)
    assert summary["failed"] == [rel] and "HTTP 500" in summary["errors"][rel]
    assert len(server.seen(rel)) == 3
    assert not (dest / rel).exists()
    _assert_same(dest, server.files, [r for r in server.files if r != rel])


def test_corrupt_content_is_never_written_and_reported(server, tmp_path):
    bad = "records100/00000/00001_lr.dat"
    server.corrupt.add(bad)
    dest = tmp_path / "ptbxl"
    with pytest.raises(DownloadError) as info:
        download_ptbxl(dest, base_url=server.url, retries=2, **FAST)
    err = info.value
    assert list(err.failed) == [bad] and "checksum mismatch" in err.failed[bad]
    assert bad in str(err) and "checksum mismatch" in str(err)
    assert len(server.seen(bad)) == 3  # retried, then given up
    assert not (dest / bad).exists() and not _part_files(dest)
    _assert_same(dest, server.files, [r for r in server.files if r != bad])  # the others are all there
    assert err.summary["downloaded"] == len(server.files) - 1


def test_wrong_existing_file_is_replaced(server, tmp_path):
    dest = tmp_path / "ptbxl"
    rel = "records100/00000/00002_lr.hea"
    (dest / rel).parent.mkdir(parents=True)
    (dest / rel).write_bytes(b"not the header")
    summary = download_ptbxl(dest, base_url=server.url, rates=(100,), records=[2], **FAST)
    assert (dest / rel).read_bytes() == server.files[rel] and summary["failed"] == []


def test_complete_part_file_is_finished_without_transfer(server, tmp_path):
    rel = "records100/00000/00001_lr.dat"
    dest = tmp_path / "x.dat"
    Path(str(dest) + ".part").write_bytes(server.files[rel])
    res = fetch_file(server.url + rel, dest, hashlib.sha256(server.files[rel]).hexdigest(), backoff=0)
    assert res.status == "resumed" and res.bytes == 0 and dest.read_bytes() == server.files[rel]
    assert server.seen(rel) == [f"bytes={len(server.files[rel])}-"]


def test_stale_part_prefix_restarts_from_scratch(server, tmp_path):
    rel = "records100/00000/00001_lr.dat"
    dest = tmp_path / "x.dat"
    Path(str(dest) + ".part").write_bytes(b"\x00" * 100)  # not a prefix of the file
    res = fetch_file(server.url + rel, dest, hashlib.sha256(server.files[rel]).hexdigest(), retries=0, backoff=0)
    assert server.seen(rel) == ["bytes=100-", None]  # the mismatch after resuming does not use a retry
    assert res.status == "downloaded" and dest.read_bytes() == server.files[rel]


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_file(server.url + "nope.txt", tmp_path / "nope.txt", retries=5, backoff=0)
    assert server.seen("nope.txt") == [None]
    assert not (tmp_path / "nope.txt").exists()


def test_rates_100_skips_records500(server, tmp_path):
    dest = tmp_path / "ptbxl"
    summary = download_ptbxl(dest, base_url=server.url, rates=(100,), **FAST)
    assert not (dest / "records500").exists()
    assert not any(p.startswith("records500/") for p in server.paths())
    want = [r for r in server.files if not r.startswith("records500/")]
    assert summary["total"] == len(want) == summary["downloaded"]
    _assert_same(dest, server.files, want)


def test_records_restricts_to_ecg_ids(server, tmp_path):
    dest = tmp_path / "ptbxl"
    summary = download_ptbxl(dest, base_url=server.url, records=[1], **FAST)
    got = sorted(str(p.relative_to(dest)).replace(os.sep, "/") for p in dest.rglob("*") if p.is_file())
    meta = ["LICENSE.txt", "RECORDS", "SHA256SUMS.txt", "ptbxl_database.csv", "scp_statements.csv"]
    records = [f"records{r}/00000/00001_{s}.{e}" for r, s in ((100, "lr"), (500, "hr")) for e in ("dat", "hea")]
    assert got == sorted(meta + records)
    assert summary["total"] == len(meta) - 1 + len(records)

    # an int n: the n lowest ecg_ids, here with one rate
    dest2 = tmp_path / "ptbxl2"
    download_ptbxl(dest2, base_url=server.url, records=2, rates=[500], **FAST)
    assert sorted(p.name for p in (dest2 / "records500").rglob("*.dat")) == ["00001_hr.dat", "00002_hr.dat"]
    assert not (dest2 / "records100").exists()

    with pytest.raises(ValueError, match="4242"):
        download_ptbxl(tmp_path / "ptbxl3", base_url=server.url, records=[1, 4242], **FAST)


def test_url_from_environment_and_cli(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(dl.URL_ENV, server.url.rstrip("/"))
    assert dl.resolve_url() == server.url
    assert dl.resolve_url("http://127.0.0.1:1/x") == "http://127.0.0.1:1/x/"
    monkeypatch.delenv(dl.URL_ENV)
    assert dl.resolve_url() == dl.PTBXL_URL == "https://physionet.org/files/ptb-xl/1.0.3/"

    monkeypatch.setenv(dl.URL_ENV, server.url)
    dest = tmp_path / "ptbxl"
    rc = dl.main([str(dest), "--rates", "100", "--records", "1,1001", "--workers", "2", "--no-progress"])
    assert rc == 0
    assert "0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in dest.rglob("*.dat")) == ["00001_lr.dat", "01001_lr.dat"]

    server.corrupt.add("records100/00000/00002_lr.hea")
    rc = dl.main([str(dest), "--url", server.url, "--rates", "100", "--records", "2", "--retries", "0",
                  "--no-progress"])
    assert rc == 1 and "00002_lr.hea" in capsys.readouterr().err


def test_manifest_parsing_rejects_unsafe_or_garbage():
    digest = "a" * 64
    assert dl.parse_manifest(f"{digest}  ./x/y.csv\n{digest.upper()} *z.txt\n") == {"x/y.csv": digest, "z.txt": digest}
    with pytest.raises(ValueError, match="unsafe"):
        dl.parse_manifest(f"{digest}  ../evil.txt\n")
    with pytest.raises(ValueError, match="unsafe"):
        dl.parse_manifest(f"{digest}  /etc/passwd\n")
    with pytest.raises(ValueError, match="not a list"):
        dl.parse_manifest("<html>404</html>\n")


def test_html_manifest_is_a_clear_error(server, tmp_path):
    (server.root / "SHA256SUMS.txt").write_text("<html><body>Not here</body></html>\n")
    with pytest.raises(DownloadError, match="not a valid checksum list"):
        download_ptbxl(tmp_path / "ptbxl", base_url=server.url, **FAST)
    assert not (tmp_path / "ptbxl" / "SHA256SUMS.txt").exists()
