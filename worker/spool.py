"""Durable on-disk spool of finished results, and the worker's highest-seen epoch.

A result lives here from the moment its attempt ends until a controller acknowledges it, so a
controller failover, a network cut or a worker crash loses nothing: after a restart the
reporter finds the files and delivers them. Every write is atomic (temp file, fsync, rename,
fsync of the directory), so a crash leaves either the old file or the new one, never half.

The results that end together are stored as ONE segment file (``put_many``, behind a
GroupCommit, see worker/service.py): one file to create, fsync and rename for the batch. One
file per result cost an fsync each, 115 ms for a batch of 46 on ext4 while the attempts held
their worker slots, which made the slots, not the CPU, the limit of a worker. A segment is
deleted once every result in it is acknowledged (or stored again in a newer one). Files of
the older one-result-per-file format (``<run_id>-<attempt>.json``) are still read.

The methods are synchronous and do blocking file I/O; async callers run them in a worker
thread so an fsync never stalls the event loop. Which results are stored, and in which file,
is kept in memory (the spool has one owner, see the lock), so the duplicate check every
RunTask makes costs no file system call on the event loop; so are the results themselves (up
to ``_KEPT_MAX`` small ones), so the reporter does not read back what was just written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format

from common.logging import ctx
from proto import chronoraft_pb2 as pb

log = logging.getLogger(__name__)

_FORMAT = 2
"""Format of a segment; 1 was one result per file."""
_RESULT_NAME = re.compile(r"^(-?\d+)-(-?\d+)\.json$")
_SEGMENT_NAME = re.compile(r"^seg-\d{20}-[0-9a-f]{8}\.json$")
_TMP_SUFFIX = ".tmp"
_EPOCH_FILE = "epoch"
_LOCK_FILE = "lock"
_KEPT_MAX = 1024
_KEPT_OUTPUT_MAX = 16_384
"""Results kept in memory: at most this many stored, outputs this long (16 MiB at worst).
Beyond that (e.g. the controllers are down and the spool grows) they are read from disk."""

Key = tuple[int, int]


@dataclass(slots=True)
class _Entry:
    """Where one stored result is: its file and place in it, and the message if kept.

    A kept message is handed out as is by get() and pending(): callers copy it (into a
    request), never change it."""

    spooled_at: float
    file: str
    index: int
    result: pb.ReportResultRequest | None


class SpoolLockedError(RuntimeError):
    """Another live process owns this spool (two workers configured with the same id)."""


def _safe_component(name: str) -> str:
    """A worker id usable as one directory name (hostnames may hold odd characters)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "worker"


def spooled_keys(directory: str | os.PathLike[str]) -> set[Key]:
    """The (run_id, attempt) of every result in the files of a spool directory, read from
    disk (for tests and inspection; no lock needed). A segment keeps its acknowledged
    results until all of them are acknowledged, so this may include some of those."""
    keys: set[Key] = set()
    for entry in os.scandir(directory):
        if _is_result_file(entry.name):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                keys.update(key for key, _, _ in _read_results(Path(entry.path)))
    return keys


class Spool:
    """Files under ``<data_dir>/spool/<worker_id>/``: ``seg-<time>-<id>.json`` segments of
    results, ``epoch``, and ``lock``."""

    def __init__(self, data_dir: str | os.PathLike[str], worker_id: str) -> None:
        self.directory = Path(data_dir) / "spool" / _safe_component(worker_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = self._take_lock()
        self._epoch_lock = threading.Lock()
        self._epoch_written = self._read_epoch()
        self._remove_stale_temp_files()
        self._index_lock = threading.Lock()
        """put_many (several flusher threads), remove_many and pending run concurrently."""
        self._stored: dict[Key, _Entry] = {}
        self._members: dict[str, set[Key]] = {}
        """The results each file still holds; a file with none left is deleted."""
        self._last_segment_ns = 0
        self._load()

    def close(self) -> None:
        """Release the ownership lock (the files stay for the next run)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _take_lock(self) -> int:
        """Two processes sharing one spool would deliver each result twice and race on the
        epoch file; an advisory lock turns that misconfiguration into a clear start error."""
        fd = os.open(self.directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLockedError(
                f"spool {self.directory} is in use by another process: is a second worker "
                "running with the same worker id and data dir?"
            ) from None
        return fd

    # --- results -----------------------------------------------------------------------

    def put(self, result: pb.ReportResultRequest) -> None:
        """Store a finished result durably; overwriting the same (run_id, attempt) is allowed."""
        self.put_many([result])

    def put_many(self, results: Sequence[pb.ReportResultRequest]) -> None:
        """Store several results durably as ONE segment file (one fsync, one rename, one
        directory fsync for all of them).

        All or nothing: the segment is written under a temp name, fsynced and renamed, so a
        crash leaves it absent or complete, and the results become visible (to pending()
        and contains()) only once the rename is durable. On an error the caller retries
        the batch. A result stored again replaces its older copy, whose file is deleted
        once it holds nothing else.
        """
        results = list({(r.run_id, r.attempt): r for r in results}.values())  # last wins
        if not results:
            return
        spooled_at = time.time()
        name = self._segment_name()
        self._write_atomic(self.directory / name, _encode_segment(results, spooled_at))
        with self._index_lock:
            emptied = self._index(name, [((r.run_id, r.attempt), spooled_at, r) for r in results])
        self._unlink(emptied)

    def contains(self, run_id: int, attempt: int) -> bool:
        return (run_id, attempt) in self._stored

    def get(self, run_id: int, attempt: int) -> pb.ReportResultRequest | None:
        """The stored result of one attempt, or None if there is none (or it is unreadable)."""
        entry = self._stored.get((run_id, attempt))
        if entry is None:
            return None
        if entry.result is not None:
            return entry.result
        try:
            found = _read_results(self.directory / entry.file)
        except (OSError, ValueError, KeyError, TypeError, json_format.ParseError):
            return None
        return next((r for key, _, r in found if key == (run_id, attempt)), None)

    def remove(self, run_id: int, attempt: int) -> None:
        """Forget an acknowledged result; a result already gone is not an error."""
        self.remove_many([(run_id, attempt)])

    def remove_many(self, keys: Iterable[tuple[int, int]]) -> None:
        """Forget acknowledged results, deleting the files that hold nothing else.

        Without a directory fsync: it held up the next delivery, and an unlink lost in a
        crash only means a result is sent again, which the controller answers as a
        duplicate (the next put's directory fsync makes earlier unlinks durable anyway).
        """
        emptied: list[str] = []
        with self._index_lock:
            for key in keys:
                emptied += self._drop(key)
        self._unlink(emptied)

    def pending(self) -> list[pb.ReportResultRequest]:
        """Every stored result, oldest first, so results reach the controller in order."""
        with self._index_lock:
            entries = sorted(
                self._stored.items(), key=lambda kv: (kv[1].spooled_at, kv[1].file, kv[1].index)
            )
        from_disk: dict[str, dict[Key, pb.ReportResultRequest]] = {}
        results: list[pb.ReportResultRequest] = []
        for key, entry in entries:
            if entry.result is not None:
                results.append(entry.result)
                continue
            if entry.file not in from_disk:
                path = self.directory / entry.file
                try:
                    from_disk[entry.file] = {k: r for k, _, r in _read_results(path)}
                except FileNotFoundError:  # emptied by a concurrent acknowledgement
                    from_disk[entry.file] = {}
                except (OSError, ValueError, KeyError, TypeError, json_format.ParseError) as exc:
                    self._quarantine(path, exc)
                    from_disk[entry.file] = {}
            result = from_disk[entry.file].get(key)
            if result is not None:
                results.append(result)
        return results

    def count(self) -> int:
        return len(self._stored)

    def _segment_name(self) -> str:
        """Names sort by creation (the newer copy of a result stored twice wins on load)."""
        with self._index_lock:
            self._last_segment_ns = max(self._last_segment_ns + 1, time.time_ns())
            stamp = self._last_segment_ns
        return f"seg-{stamp:020d}-{uuid.uuid4().hex[:8]}.json"

    def _drop(self, key: Key) -> list[str]:
        """Forget ``key`` (index lock held); the file it leaves empty, to delete."""
        entry = self._stored.pop(key, None)
        if entry is None:
            return []
        members = self._members.get(entry.file)
        if members is None:
            return []
        members.discard(key)
        if members:
            return []
        del self._members[entry.file]
        return [entry.file]

    def _unlink(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()

    def _load(self) -> None:
        """Index every result file: older format first, then segments oldest first, so a
        result stored twice is taken from its newest file; files left with nothing to
        deliver are deleted, unreadable ones moved aside."""
        names = sorted(
            (e.name for e in os.scandir(self.directory) if _is_result_file(e.name)),
            key=lambda n: (n.startswith("seg-"), n),
        )
        emptied: list[str] = []
        for name in names:
            try:
                found = _read_results(self.directory / name)
            except (OSError, ValueError, KeyError, TypeError, json_format.ParseError) as exc:
                self._quarantine(self.directory / name, exc)
                continue
            with self._index_lock:
                emptied += self._index(name, found)
        self._unlink(emptied)

    def _index(
        self, name: str, found: Sequence[tuple[Key, float, pb.ReportResultRequest]]
    ) -> list[str]:
        """Record that file ``name`` holds ``found`` (index lock held), replacing older
        copies of those results; returns the files that leaves with nothing, to delete
        (``name`` itself if it holds no result)."""
        emptied: list[str] = []
        members: set[Key] = set()
        self._members[name] = members
        for index, (key, spooled_at, result) in enumerate(found):
            keep = len(result.output) <= _KEPT_OUTPUT_MAX and len(self._stored) < _KEPT_MAX
            if key not in members:  # (a file holds each key once; not its own older copy)
                emptied += self._drop(key)
            self._stored[key] = _Entry(spooled_at, name, index, result if keep else None)
            members.add(key)
        if not members:
            del self._members[name]
            emptied.append(name)
        return emptied

    # --- epoch -------------------------------------------------------------------------

    def load_epoch(self) -> int:
        """The highest leader epoch this worker has ever accepted (0 if none)."""
        with self._epoch_lock:
            return self._epoch_written

    def save_epoch(self, epoch: int) -> None:
        """Persist ``epoch`` if it is higher than what is stored; never lowers it, even when
        two calls race (the lock orders them, and the lower one becomes a no-op)."""
        with self._epoch_lock:
            if epoch <= self._epoch_written:
                return
            self._write_atomic(self.directory / _EPOCH_FILE, f"{epoch}\n".encode())
            self._epoch_written = epoch

    def _read_epoch(self) -> int:
        try:
            return int((self.directory / _EPOCH_FILE).read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            # Unreadable fencing state must not silently reset to 0 (that would let a deposed
            # leader back in); refuse to start and let the operator look.
            raise RuntimeError(
                f"corrupt epoch file {self.directory / _EPOCH_FILE}; remove it only if no "
                "deposed controller can still reach this worker"
            ) from None

    # --- file mechanics ----------------------------------------------------------------

    def _write_atomic(self, target: Path, data: bytes) -> None:
        """Temp file, fsync, rename over ``target``, fsync of the directory."""
        tmp = self._write_temp(target, data)
        try:
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        self._fsync_dir()

    def _write_temp(self, target: Path, data: bytes) -> Path:
        """``data`` on disk (fsynced) under a temp name next to ``target``, to be renamed."""
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return tmp

    def _fsync_dir(self) -> None:
        """Make the rename/unlink itself durable, not only the file's bytes."""
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _remove_stale_temp_files(self) -> None:
        """Temp files are leftovers of a crash mid-write; their target was never replaced."""
        for entry in os.scandir(self.directory):
            if entry.name.endswith(_TMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def _quarantine(self, path: Path, exc: BaseException) -> None:
        """Move an unreadable file aside so it cannot block delivery of the others forever."""
        target = path.with_name(path.name + ".corrupt")
        with self._index_lock:
            for key in self._members.pop(path.name, set()):
                self._stored.pop(key, None)
        log.error(
            "unreadable spool file moved aside: %s (%s)", target, exc, extra=ctx(path=str(path))
        )
        with contextlib.suppress(OSError):
            os.replace(path, target)


def _is_result_file(name: str) -> bool:
    return bool(_SEGMENT_NAME.match(name) or _RESULT_NAME.match(name))


def _read_results(path: Path) -> list[tuple[Key, float, pb.ReportResultRequest]]:
    """The results in one file, in order: a segment, or a file of the one-result format."""
    with open(path, "rb") as fh:
        doc = json.loads(fh.read())
    items = doc["results"] if "results" in doc else [doc]
    found: list[tuple[Key, float, pb.ReportResultRequest]] = []
    for item in items:
        result = json_format.ParseDict(item["result"], pb.ReportResultRequest())
        found.append(((result.run_id, result.attempt), float(item.get("spooled_at", 0.0)), result))
    return found


def _encode_segment(results: Sequence[pb.ReportResultRequest], spooled_at: float) -> bytes:
    # The set fields by name, as json_format.MessageToDict gives them but for int64 (a JSON
    # number here, a string there: ParseDict reads both) at 9 us a result instead of 23 (the
    # spool thread holds the GIL the event loop needs). Only valid while every field of
    # ReportResultRequest is a scalar: a message field would need MessageToDict.
    doc = {
        "format": _FORMAT,
        "results": [
            {"spooled_at": spooled_at, "result": {f.name: v for f, v in result.ListFields()}}
            for result in results
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()
