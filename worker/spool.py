"""Durable on-disk spool of finished results, and the worker's highest-seen epoch.

A result lives here from the moment its attempt ends until a controller acknowledges it, so a
controller failover, a network cut or a worker crash loses nothing: after a restart the
reporter finds the files and delivers them. Every write is atomic (temp file, fsync, rename,
fsync of the directory), so a crash leaves either the old file or the new one, never half.

The methods are synchronous and do blocking file I/O; async callers run them in a worker
thread so an fsync never stalls the event loop. The reporter removes an acknowledged batch
with one directory fsync (``remove_many``), and the attempts that end together are stored
with one (``put_many`` behind a GroupCommit, see worker/service.py).

Which results are stored is also kept in memory (the spool has one owner, see the lock), so
the duplicate check every RunTask makes costs no file system call on the event loop; so are
the results this process stored (up to ``_KEPT_MAX`` small ones), so the reporter does not
read back and parse each file it has just written.
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
from pathlib import Path

from google.protobuf import json_format

from common.logging import ctx
from proto import chronoraft_pb2 as pb

log = logging.getLogger(__name__)

_FORMAT = 1
_RESULT_NAME = re.compile(r"^(-?\d+)-(-?\d+)\.json$")
_TMP_SUFFIX = ".tmp"
_EPOCH_FILE = "epoch"
_LOCK_FILE = "lock"
_KEPT_MAX = 1024
_KEPT_OUTPUT_MAX = 16_384
"""Results kept in memory: at most this many stored, outputs this long (16 MiB at worst).
Beyond that (e.g. the controllers are down and the spool grows) they are read from disk."""

Key = tuple[int, int]
_Kept = tuple[float, pb.ReportResultRequest] | None
"""(spooled_at, result) of a result this process stored, or None: only on disk. The message
is handed out as is by get() and pending(): callers copy it (into a request), never change it."""


class SpoolLockedError(RuntimeError):
    """Another live process owns this spool (two workers configured with the same id)."""


def _safe_component(name: str) -> str:
    """A worker id usable as one directory name (hostnames may hold odd characters)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "worker"


class Spool:
    """Files under ``<data_dir>/spool/<worker_id>/``: ``<run_id>-<attempt>.json`` and ``epoch``."""

    def __init__(self, data_dir: str | os.PathLike[str], worker_id: str) -> None:
        self.directory = Path(data_dir) / "spool" / _safe_component(worker_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = self._take_lock()
        self._epoch_lock = threading.Lock()
        self._epoch_written = self._read_epoch()
        self._remove_stale_temp_files()
        self._stored: dict[Key, _Kept] = {}
        """Every result file in the directory; updated by put and remove, which run in
        worker threads (a dict's single operations are atomic)."""
        for entry in os.scandir(self.directory):
            key = _key_of(entry.name)
            if key is not None:
                self._stored[key] = None

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

    def path_for(self, run_id: int, attempt: int) -> Path:
        return self.directory / f"{run_id}-{attempt}.json"

    def put(self, result: pb.ReportResultRequest) -> None:
        """Store a finished result durably; overwriting the same (run_id, attempt) is allowed."""
        self.put_many([result])

    def put_many(self, results: Sequence[pb.ReportResultRequest]) -> None:
        """Store several results durably with ONE directory fsync for all of them.

        Each file is still written to a temp name, fsynced and renamed over its target, so
        a crash leaves every target either absent (or its previous version) or complete;
        only when this returns are the renames themselves durable. On an error some of
        the results may be stored and others not: the caller retries all of them (a put
        of the same (run_id, attempt) overwrites).

        All the temp files are written before the first rename: a result is visible to the
        reporter from its rename on, while its attempt still holds a worker slot until this
        returns, and a controller told of the result may already send the next run.
        """
        if not results:
            return
        temps: list[Path] = []
        times: list[float] = []
        try:
            for result in results:
                target = self.path_for(result.run_id, result.attempt)
                times.append(time.time())  # one each: pending() keeps the order of the list
                temps.append(self._write_temp(target, _encode(result, times[-1])))
            for index, result in enumerate(results):
                os.replace(temps[index], self.path_for(result.run_id, result.attempt))
                keep = len(result.output) <= _KEPT_OUTPUT_MAX and len(self._stored) < _KEPT_MAX
                self._stored[(result.run_id, result.attempt)] = (
                    (times[index], result) if keep else None
                )
        except BaseException:
            for tmp in temps:  # those renamed are gone already
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            raise
        self._fsync_dir()

    def contains(self, run_id: int, attempt: int) -> bool:
        return (run_id, attempt) in self._stored

    def get(self, run_id: int, attempt: int) -> pb.ReportResultRequest | None:
        """The stored result of one attempt, or None if there is none (or it is unreadable)."""
        try:
            kept = self._stored[(run_id, attempt)]
        except KeyError:
            return None
        if kept is not None:
            return kept[1]
        try:
            with open(self.path_for(run_id, attempt), "rb") as fh:
                doc = json.loads(fh.read())
            return json_format.ParseDict(doc["result"], pb.ReportResultRequest())
        except (OSError, ValueError, KeyError, TypeError, json_format.ParseError):
            return None

    def remove(self, run_id: int, attempt: int) -> None:
        """Forget an acknowledged result; a result already gone is not an error."""
        self.remove_many([(run_id, attempt)])

    def remove_many(self, keys: Iterable[tuple[int, int]]) -> None:
        """Forget acknowledged results with ONE directory fsync for the lot.

        An unlink that is lost in a crash only means a result is sent again, which the
        controller answers as a duplicate; the fsync keeps such repeats rare.
        """
        removed = False
        for run_id, attempt in keys:
            with contextlib.suppress(FileNotFoundError):
                self.path_for(run_id, attempt).unlink()
            self._stored.pop((run_id, attempt), None)
            removed = True
        if removed:
            self._fsync_dir()

    def pending(self) -> list[pb.ReportResultRequest]:
        """Every stored result, oldest first, so results reach the controller in order."""
        loaded: list[tuple[float, str, pb.ReportResultRequest]] = []
        for entry in os.scandir(self.directory):
            key = _key_of(entry.name)
            if key is None:
                continue
            kept = self._stored.get(key)
            if kept is not None:
                loaded.append((kept[0], entry.name, kept[1]))
                continue
            try:
                with open(entry.path, "rb") as fh:
                    doc = json.loads(fh.read())
                result = json_format.ParseDict(doc["result"], pb.ReportResultRequest())
                spooled_at = float(doc.get("spooled_at", 0.0))
            except FileNotFoundError:
                continue  # removed by a concurrent acknowledgement
            except (OSError, ValueError, KeyError, TypeError, json_format.ParseError) as exc:
                self._quarantine(Path(entry.path), exc)
                continue
            loaded.append((spooled_at, entry.name, result))
        loaded.sort(key=lambda item: (item[0], item[1]))
        return [result for _, _, result in loaded]

    def count(self) -> int:
        return sum(1 for e in os.scandir(self.directory) if _RESULT_NAME.match(e.name))

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
        key = _key_of(path.name)
        if key is not None:
            self._stored.pop(key, None)
        log.error(
            "unreadable spool file moved aside: %s (%s)", target, exc, extra=ctx(path=str(path))
        )
        with contextlib.suppress(OSError):
            os.replace(path, target)


def _key_of(name: str) -> Key | None:
    """(run_id, attempt) of a result file's name; None for any other file."""
    match = _RESULT_NAME.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _encode(result: pb.ReportResultRequest, spooled_at: float) -> bytes:
    doc = {
        "format": _FORMAT,
        "spooled_at": spooled_at,
        "result": json_format.MessageToDict(result, preserving_proto_field_name=True),
    }
    return json.dumps(doc, separators=(",", ":")).encode()
