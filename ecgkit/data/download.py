"""Download PTB-XL from PhysioNet (or a mirror): checksums, resume, retries, parallel files.

PhysioNet publishes PTB-XL under :data:`PTBXL_URL` together with ``SHA256SUMS.txt``, which lists
``<sha256>  <relative path>`` for every file of the project. That file is the manifest:
:func:`download_ptbxl` fetches it first, then every file it names (or the subset asked for),
and checks each file against its checksum.

- A file already present with the right checksum is skipped, so running the command again
  only fetches what is missing or wrong.
- A file is written to ``<name>.part`` and renamed to its final name only once complete and
  verified, so a file under its final name is always a good one. An interrupted transfer
  leaves the ``.part`` behind and the next attempt (or the next run) resumes it with an HTTP
  ``Range: bytes=N-`` request; a server that ignores ranges (answers 200) restarts the file.
- Connection errors, timeouts, incomplete bodies, 5xx/429 answers and checksum mismatches are
  retried with exponential backoff; 4xx answers (404, 403...) are not.
- The failure of some files does not stop the others: once everything else is done,
  :class:`DownloadError` lists the files that failed and why (or, with ``strict=False``, they
  are returned in the summary).

The base URL is, in order: the ``base_url`` argument, the ``ECGKIT_PTBXL_URL`` environment
variable, :data:`PTBXL_URL`. Any HTTP server that serves the same layout works (a mirror, or
``python -m http.server`` over a local copy).

Command line: ``ecgkit download-ptbxl DEST [--rates 100] [--records 50] [--workers 8]``.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence
from urllib.parse import quote

import requests

from ..config import settings

log = logging.getLogger(__name__)

PTBXL_URL = "https://physionet.org/files/ptb-xl/1.0.3/"
"""Where PhysioNet serves PTB-XL 1.0.3 (overridden by ``ECGKIT_PTBXL_URL`` or ``base_url``)."""

URL_ENV = "ECGKIT_PTBXL_URL"
MANIFEST = "SHA256SUMS.txt"
RATES = (100, 500)
CHUNK_SIZE = 1 << 16
USER_AGENT = "ecgkit-download/0.1 (+https://physionet.org/content/ptb-xl/)"

_RECORD_RE = re.compile(r"^records(100|500)/\d+/(\d+)_(lr|hr)\.[A-Za-z0-9]+$")
_SHA_LINE_RE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(.+?)\s*$")
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_RETRY_STATUS = {408, 425, 429}


class DownloadError(RuntimeError):
    """Some files could not be downloaded; ``failed`` maps each one to the reason."""

    def __init__(self, message: str, failed: dict[str, str] | None = None, summary: dict | None = None):
        super().__init__(message)
        self.failed = dict(failed or {})
        self.summary = summary


class DownloadCancelled(DownloadError):
    """The download was stopped (Ctrl-C); partial files are kept and resume next time."""


@dataclass
class FetchResult:
    """What :func:`fetch_file` did: ``status`` is ``"skipped"``, ``"downloaded"`` or ``"resumed"``."""

    path: Path
    status: str
    bytes: int = 0  # bytes transferred by this call
    resumed_from: int = 0  # size of the partial file the (last) transfer continued from
    attempts: int = 0  # HTTP requests made


class _Retryable(Exception):
    """A transient failure: try again (the ``.part`` file is kept)."""


class _Permanent(Exception):
    """A failure that retrying will not fix (404, bad URL, disk error)."""


class _Mismatch(Exception):
    def __init__(self, expected: str, got: str, resumed_from: int):
        self.expected, self.got, self.resumed_from = expected, got, resumed_from
        super().__init__(f"checksum mismatch: expected sha256 {expected}, got {got}")


# --------------------------------------------------------------------------- helpers


def _sha256_file(path: Path, hasher=None):
    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            hasher.update(block)
    return hasher


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def _backoff_delay(backoff: float, failures: int, max_backoff: float) -> float:
    return min(max_backoff, backoff * (2 ** max(failures - 1, 0)))


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _content_range(value: str | None):
    m = _CONTENT_RANGE_RE.match(value or "")
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


# --------------------------------------------------------------------------- one file


def _attempt(
    session: requests.Session,
    url: str,
    dest: Path,
    part: Path,
    expected: str | None,
    timeout: float,
    chunk_size: int,
    cancel: threading.Event | None,
    on_bytes: Callable[[int], None] | None,
) -> tuple[str, int, int]:
    """One HTTP request; returns (status, bytes received, resumed_from) or raises."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # byte ranges must refer to the stored bytes
    if offset:
        headers["Range"] = f"bytes={offset}-"
    received = 0
    try:
        with session.get(url, headers=headers, stream=True, timeout=timeout) as r:
            code = r.status_code
            if code == 416 and offset:
                # The partial file may already hold the whole file (stopped before the rename).
                cr = r.headers.get("Content-Range", "")
                m = re.match(r"^\s*bytes\s+\*/(\d+)\s*$", cr, re.IGNORECASE)
                complete = m is not None and int(m.group(1)) == offset
                if complete and (expected is None or _sha256_file(part).hexdigest() == expected):
                    os.replace(part, dest)
                    return "resumed", 0, offset
                _unlink(part)
                raise _Retryable(f"partial file ({offset} bytes) does not fit the remote file (HTTP 416); restarting")
            if code >= 500 or code in _RETRY_STATUS:
                raise _Retryable(f"HTTP {code} {r.reason or ''}".rstrip())
            if code >= 400:
                raise _Permanent(f"HTTP {code} {r.reason or ''} for {url}".replace("  ", " "))
            if code == 206 and offset:
                cr = _content_range(r.headers.get("Content-Range"))
                if cr is None or cr[0] != offset:
                    _unlink(part)
                    raise _Retryable(
                        f"server answered range {r.headers.get('Content-Range')!r} to 'bytes={offset}-'; restarting"
                    )
                total = cr[2]
                if total is None and r.headers.get("Content-Length"):
                    total = offset + int(r.headers["Content-Length"])
                mode, hasher, resumed_from = "ab", _sha256_file(part), offset
            elif code == 200:
                if offset:
                    log.debug("%s: server ignored the range request; restarting the file", url)
                length = r.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                mode, hasher, resumed_from = "wb", hashlib.sha256(), 0
            else:
                raise _Permanent(f"unexpected HTTP {code} {r.reason or ''} for {url}")

            try:
                with open(part, mode) as f:
                    for chunk in r.iter_content(chunk_size):
                        if cancel is not None and cancel.is_set():
                            raise DownloadCancelled(f"cancelled: {url}")
                        if not chunk:
                            continue
                        f.write(chunk)
                        hasher.update(chunk)
                        received += len(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
            except OSError as e:
                if isinstance(e, requests.RequestException):
                    raise
                raise _Permanent(f"cannot write {part}: {e}") from e
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError) as e:
        raise _Retryable(f"{type(e).__name__}: {e}") from e
    except requests.RequestException as e:  # invalid URL, too many redirects...
        raise _Permanent(f"{type(e).__name__}: {e}") from e

    size = resumed_from + received
    if total is not None and size != total:
        raise _Retryable(f"incomplete transfer: got {size} of {total} bytes")
    digest = hasher.hexdigest()
    if expected is not None and digest != expected:
        _unlink(part)
        raise _Mismatch(expected, digest, resumed_from)
    os.replace(part, dest)
    return ("resumed" if resumed_from else "downloaded"), received, resumed_from


def fetch_file(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    session: requests.Session | None = None,
    retries: int = 5,
    timeout: float = 60,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    chunk_size: int = CHUNK_SIZE,
    overwrite: bool = False,
    cancel: threading.Event | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> FetchResult:
    """Download ``url`` to ``dest`` atomically, resuming ``dest.part`` and checking ``sha256``.

    - ``dest`` already present: skipped if it matches ``sha256`` (or, without a checksum,
      unless ``overwrite``); a file with the wrong checksum is deleted and downloaded again.
    - ``<dest>.part`` present: resumed with ``Range: bytes=N-``; a 200 answer restarts the
      file, a 416 answer finishes or restarts it.
    - Up to ``retries`` retries (``retries + 1`` requests) with exponential backoff
      (``backoff``, ``2*backoff``... capped at ``max_backoff`` seconds) on connection errors,
      timeouts, incomplete bodies, HTTP 5xx/408/429 and checksum mismatches. A mismatch after
      resuming a partial file restarts from scratch once without using a retry (the prefix may
      have come from another version of the file).
    - HTTP 4xx (404, 403...) and local write errors fail at once.

    Raises :class:`DownloadError` (with ``failed={str(dest): reason}``) when the file could not
    be fetched; the final name then never holds a bad file. ``cancel`` (an Event) stops the
    transfer between chunks with :class:`DownloadCancelled`, keeping the ``.part`` file.
    """
    dest = Path(dest)
    part = _part_path(dest)
    expected = sha256.strip().lower() if sha256 else None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    if retries < 0:
        raise ValueError("retries must be >= 0")

    if dest.is_file():
        if expected is None and not overwrite:
            return FetchResult(dest, "skipped")
        if expected is not None:
            if _sha256_file(dest).hexdigest() == expected:
                return FetchResult(dest, "skipped")
            log.warning("%s has the wrong checksum; downloading it again", dest)
            _unlink(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    own_session = session is None
    session = session or _new_session()
    failures = 0  # attempts that count against `retries`
    requests_made = 0
    free_restart = True
    errors: list[str] = []
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"cancelled: {url}", {str(dest): "cancelled"})
            requests_made += 1
            try:
                status, nbytes, resumed_from = _attempt(
                    session, url, dest, part, expected, timeout, chunk_size, cancel, on_bytes
                )
                return FetchResult(dest, status, nbytes, resumed_from, requests_made)
            except DownloadCancelled as e:
                e.failed = {str(dest): "cancelled"}
                raise
            except _Permanent as e:
                raise DownloadError(f"{dest.name}: {e}", {str(dest): str(e)}) from None
            except _Mismatch as e:
                msg = str(e)
                if e.resumed_from and free_restart:
                    free_restart = False
                    log.debug("%s: %s after resuming at byte %d; restarting from scratch", url, msg, e.resumed_from)
                    continue
            except _Retryable as e:
                msg = str(e)
            failures += 1
            errors.append(msg)
            if failures > retries:
                reason = f"{msg} (gave up after {requests_made} request(s) to {url})"
                if part.exists():
                    reason += f"; partial file kept for resuming: {part}"
                raise DownloadError(f"{dest.name}: {reason}", {str(dest): reason})
            delay = _backoff_delay(backoff, failures, max_backoff)
            log.debug("%s: %s; retry %d/%d in %.2fs", url, msg, failures, retries, delay)
            if delay > 0:
                if cancel is not None:
                    if cancel.wait(delay):
                        raise DownloadCancelled(f"cancelled: {url}", {str(dest): "cancelled"})
                else:
                    time.sleep(delay)
    finally:
        if own_session:
            session.close()


# --------------------------------------------------------------------------- PTB-XL


def resolve_url(base_url: str | None = None) -> str:
    """The PTB-XL base URL: argument, then ``$ECGKIT_PTBXL_URL``, then :data:`PTBXL_URL`."""
    url = base_url or settings().ptbxl_url or PTBXL_URL
    return url if url.endswith("/") else url + "/"


def parse_manifest(text: str) -> dict[str, str]:
    """``SHA256SUMS.txt`` text -> {relative path: sha256}; rejects paths that leave the folder."""
    entries: dict[str, str] = {}
    bad: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _SHA_LINE_RE.match(line.strip())
        if not m:
            bad.append(f"line {lineno}: {line[:80]!r}")
            continue
        digest, rel = m.group(1).lower(), m.group(2)
        if rel.startswith("./"):
            rel = rel[2:]
        p = PurePosixPath(rel)
        if "\\" in rel or p.is_absolute() or ".." in p.parts or not p.parts or rel.endswith("/"):
            raise ValueError(f"{MANIFEST} line {lineno}: unsafe path {rel!r}")
        entries[str(p)] = digest
    if bad:
        raise ValueError(
            f"{MANIFEST} is not a list of '<sha256>  <path>' lines ({len(bad)} bad line(s), first: {bad[0]})"
        )
    if not entries:
        raise ValueError(f"{MANIFEST} lists no files")
    return entries


def _record_id(rel: str) -> tuple[int, int] | None:
    """(rate, ecg_id) for a record file path such as ``records100/00000/00001_lr.hea``."""
    m = _RECORD_RE.match(rel)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _normalise_rates(rates: Iterable[int | str]) -> tuple[int, ...]:
    if isinstance(rates, (int, str)):
        rates = [rates]
    out = []
    for r in rates:
        try:
            r = int(r)
        except (TypeError, ValueError):
            raise ValueError(f"unknown sampling rate {r!r}; choose from {RATES}") from None
        if r not in RATES:
            raise ValueError(f"unknown sampling rate {r!r}; choose from {RATES}")
        if r not in out:
            out.append(r)
    return tuple(out)


def select_files(
    manifest: dict[str, str],
    rates: Iterable[int | str] = RATES,
    records: int | Sequence[int | str] | None = None,
) -> dict[str, str]:
    """The manifest entries to fetch: every file outside ``records100/``/``records500/``, plus
    the record files of the chosen ``rates`` for ``records`` (None: all; an int n: the n lowest
    ecg_ids; a list: those ecg_ids, which must all exist)."""
    rates = _normalise_rates(rates)
    folders = tuple(f"records{r}/" for r in RATES)
    metadata = {k: v for k, v in manifest.items() if not k.startswith(folders)}
    record_files = {k: v for k, v in manifest.items() if k.startswith(tuple(f"records{r}/" for r in rates))}
    if records is None:
        chosen = record_files
    else:
        ids_available = sorted({rid[1] for k in manifest if (rid := _record_id(k))})
        if isinstance(records, bool):
            raise TypeError("records must be an int or a list of ecg_ids")
        if isinstance(records, int):
            if records < 0:
                raise ValueError("records must be >= 0")
            wanted = set(ids_available[:records])
        else:
            if isinstance(records, str):
                records = [x for x in re.split(r"[,\s]+", records) if x]
            try:
                wanted = {int(x) for x in records}
            except (TypeError, ValueError):
                raise ValueError(f"records must be ecg_ids (integers), got {records!r}") from None
            unknown = sorted(wanted - set(ids_available))
            if unknown:
                shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
                raise ValueError(f"{len(unknown)} ecg_id(s) not in {MANIFEST}: {shown}")
        chosen = {k: v for k, v in record_files.items() if (rid := _record_id(k)) and rid[1] in wanted}
    selected = dict(metadata)
    selected.update(sorted(chosen.items()))
    return selected


class _Sessions:
    """One requests.Session per worker thread (a Session is not meant to be shared)."""

    def __init__(self):
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = _new_session()
            with self._lock:
                self._all.append(s)
        return s

    def close(self) -> None:
        with self._lock:
            for s in self._all:
                s.close()
            self._all.clear()


def download_ptbxl(
    dest: str | os.PathLike,
    base_url: str | None = None,
    rates: Iterable[int | str] = RATES,
    records: int | Sequence[int | str] | None = None,
    workers: int = 4,
    retries: int = 5,
    timeout: float = 60,
    progress: bool = True,
    *,
    strict: bool = True,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    refresh_manifest: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> dict:
    """Download PTB-XL (or part of it) into ``dest``; returns a summary.

    ``rates``: which record folders (100 -> ``records100/``, 500 -> ``records500/``).
    ``records``: None (all), an int n (the n lowest ecg_ids) or a list of ecg_ids; the metadata
    files (everything outside the record folders) are always fetched. ``SHA256SUMS.txt`` is
    downloaded once and reused from ``dest`` afterwards (``refresh_manifest=True`` fetches it again).

    Summary keys: ``dest``, ``base_url``, ``manifest`` ("downloaded" or "cached"), ``total`` (files
    selected), ``downloaded`` (files transferred by this run, resumed ones included), ``resumed``
    (those that continued a partial file), ``skipped_ok`` (already present and verified),
    ``bytes`` (transferred), ``failed`` (relative paths, sorted) and ``errors`` ({path: reason}).

    With ``strict=True`` (default), failures raise :class:`DownloadError` after all other files
    are done; the summary is attached as ``error.summary``.
    """
    dest = Path(dest).expanduser()
    url = resolve_url(base_url)
    rates = _normalise_rates(rates)
    if workers < 1:
        raise ValueError("workers must be >= 1")
    dest.mkdir(parents=True, exist_ok=True)
    common = dict(retries=retries, timeout=timeout, backoff=backoff, max_backoff=max_backoff, chunk_size=chunk_size)

    sessions = _Sessions()
    cancel = threading.Event()
    try:
        # 1. The manifest.
        manifest_path = dest / MANIFEST
        manifest_status = "cached"
        manifest = None
        if manifest_path.is_file() and not refresh_manifest:
            try:
                manifest = parse_manifest(manifest_path.read_text(encoding="utf-8", errors="replace"))
            except ValueError as e:
                log.warning("ignoring the local %s (%s); downloading it again", manifest_path, e)
        if manifest is None:
            fetch_file(url + MANIFEST, manifest_path, session=sessions.get(), overwrite=True, **common)
            manifest_status = "downloaded"
            try:
                manifest = parse_manifest(manifest_path.read_text(encoding="utf-8", errors="replace"))
            except ValueError as e:
                _unlink(manifest_path)
                raise DownloadError(f"{url + MANIFEST} is not a valid checksum list: {e}") from None
        manifest.pop(MANIFEST, None)
        selected = select_files(manifest, rates, records)

        # 2. The files, in parallel.
        summary = {
            "dest": str(dest),
            "base_url": url,
            "manifest": manifest_status,
            "total": len(selected),
            "downloaded": 0,
            "resumed": 0,
            "skipped_ok": 0,
            "bytes": 0,
            "failed": [],
            "errors": {},
        }
        lock = threading.Lock()

        def on_bytes(n: int) -> None:
            with lock:
                summary["bytes"] += n

        def task(rel: str, digest: str) -> FetchResult:
            return fetch_file(
                url + quote(rel, safe="/"), dest.joinpath(*rel.split("/")), digest,
                session=sessions.get(), cancel=cancel, on_bytes=on_bytes, **common,
            )

        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(selected), unit="file", desc="PTB-XL", dynamic_ncols=True)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ptbxl-dl")
        try:
            # Keep a bounded number of files in flight (PTB-XL has ~87k files): cheap waits,
            # little memory, and Ctrl-C has little to cancel.
            todo = iter(selected.items())
            futures: dict = {}
            max_in_flight = workers * 4

            def refill() -> None:
                while len(futures) < max_in_flight:
                    item = next(todo, None)
                    if item is None:
                        return
                    futures[pool.submit(task, *item)] = item[0]

            refill()
            while futures:
                done, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    rel = futures.pop(fut)
                    try:
                        res = fut.result()
                    except DownloadError as e:
                        reason = next(iter(e.failed.values()), str(e))
                        summary["failed"].append(rel)
                        summary["errors"][rel] = reason
                        log.debug("failed: %s: %s", rel, reason)
                    except Exception as e:  # a bug or an OS error: report it, keep the others going
                        summary["failed"].append(rel)
                        summary["errors"][rel] = f"{type(e).__name__}: {e}"
                    else:
                        if res.status == "skipped":
                            summary["skipped_ok"] += 1
                        else:
                            summary["downloaded"] += 1
                            summary["resumed"] += res.status == "resumed"
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(
                            new=summary["downloaded"], ok=summary["skipped_ok"], failed=len(summary["failed"]),
                            MB=f"{summary['bytes'] / 1e6:.1f}", refresh=False,
                        )
                refill()
        except BaseException:  # Ctrl-C: stop the transfers, keep the .part files
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
            if bar is not None:
                bar.close()
    finally:
        sessions.close()

    summary["failed"].sort()
    summary["errors"] = {k: summary["errors"][k] for k in summary["failed"]}
    if summary["failed"] and strict:
        raise DownloadError(_failure_message(summary), summary["errors"], summary)
    return summary


def _failure_message(summary: dict, limit: int = 20) -> str:
    failed = summary["failed"]
    lines = [f"{len(failed)} of {summary['total']} file(s) could not be downloaded into {summary['dest']}:"]
    lines += [f"  {rel}: {summary['errors'][rel]}" for rel in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"  ... and {len(failed) - limit} more")
    lines.append("Run the same command again to retry: good files are kept and partial ones resume.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def _parse_rates(values: list[str]) -> tuple[int, ...]:
    items = [x for v in values for x in re.split(r"[,\s]+", v) if x]
    return _normalise_rates(items)


def _parse_records(value: str | None):
    if value is None:
        return None
    value = value.strip()
    if "," in value:
        return [int(x) for x in value.split(",") if x.strip()]
    return int(value)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the ``download-ptbxl`` arguments to ``parser`` (a new one when None)."""
    parser = parser or argparse.ArgumentParser(
        prog="ecgkit download-ptbxl",
        description="Download PTB-XL from PhysioNet (or a mirror), verify SHA-256 checksums, resume partial files.",
    )
    parser.add_argument("dest", help="folder to download into (then set ECGKIT_PTBXL to it)")
    parser.add_argument("--url", default=None,
                        help=f"base URL (default: ${URL_ENV} or {PTBXL_URL})")
    parser.add_argument("--rates", nargs="+", default=["100", "500"], metavar="RATE",
                        help="record folders to fetch: 100 and/or 500 (default: both)")
    parser.add_argument("--records", default=None, metavar="N|ID,ID,...",
                        help="a number N (the N lowest ecg_ids) or a comma-separated list of ecg_ids "
                             "(write a single id as '17,'); default: all records")
    parser.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    parser.add_argument("--retries", type=int, default=5, help="retries per file (default 5)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per request (default 60)")
    parser.add_argument("--refresh-manifest", action="store_true", help=f"fetch {MANIFEST} again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``ecgkit download-ptbxl``: 0 when every file is there, 1 when some failed, 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rates = _parse_rates(args.rates)
        records = _parse_records(args.records)
    except ValueError as e:
        parser.error(str(e))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        summary = download_ptbxl(
            args.dest, base_url=args.url, rates=rates, records=records, workers=args.workers,
            retries=args.retries, timeout=args.timeout, progress=not args.no_progress,
            strict=False, refresh_manifest=args.refresh_manifest,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    print(
        f"{summary['total']} file(s) in {summary['dest']}: {summary['downloaded']} downloaded "
        f"({summary['resumed']} resumed, {summary['bytes'] / 1e6:.1f} MB), {summary['skipped_ok']} already there, "
        f"{len(summary['failed'])} failed"
    )
    if summary["failed"]:
        print(_failure_message(summary), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
