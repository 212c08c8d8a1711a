"""Run one attempt of a ``cmd`` job as a child process group and describe how it ended.

The executor knows nothing about gRPC, spools or controllers: it takes a :class:`TaskSpec`,
returns a :class:`TaskResult`, and never raises for anything the job itself did wrong (missing
executable, bad cwd, non-zero exit), because every attempt must end in a result that can be
reported. The child is started as the leader of a new session, so "kill the attempt" means
"kill its whole process group": shells, pipelines and backgrounded grandchildren included.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from common.logging import ctx

log = logging.getLogger(__name__)

INHERITED_ENV = ("PATH", "HOME", "LANG")
"""The only variables a job inherits from the worker; the rest must come from the job's env,
so a job behaves the same on every worker and never sees the worker's secrets."""
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
KILL_GRACE_SECONDS = 2.0
"""Time between SIGTERM and SIGKILL of an attempt's process group."""
DRAIN_GRACE_SECONDS = 1.0
"""How long output is still read after the main process exited (a grandchild may hold the
pipe) before the leftovers of the group are terminated."""


class TaskState(enum.StrEnum):
    """Terminal states of an attempt; the strings are the wire values of ReportResult.state."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to run one attempt; frozen so a running attempt cannot drift."""

    run_id: int
    attempt: int
    command: str
    args: tuple[str, ...] = ()
    use_shell: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 0.0
    """0 (or less) means no timeout."""
    output_limit_bytes: int = 65_536
    """At most this many bytes of output are kept: the last ones."""
    cwd: str = ""
    """Empty means the worker's own working directory."""


@dataclass(frozen=True)
class StartedProcess:
    """The attempt's main process, as ``on_started`` hands it over right after the fork.

    ``start_ticks`` bounds the kernel's stamp of the process's start (field 22 of
    /proc/<pid>/stat: CLOCK_BOOTTIME in clock ticks) by that clock read just before and just
    after the fork, usually one tick. With the pid it names the process for good (a reused
    pid starts later), which a restarted worker needs (worker/orphans.py); reading the stamp
    from /proc instead cost 50-130 us per attempt on the event loop, 18 % of a busy worker's
    main thread. None where the clock is missing.
    """

    pid: int
    """Also the id of the process group the attempt owns."""
    start_ticks: tuple[int, int] | None


@dataclass(frozen=True)
class TaskResult:
    """How an attempt ended, in the shape ReportResult carries."""

    state: TaskState
    exit_code: int | None
    """The process's return code; negative N means killed by signal N; None if never started."""
    output: str
    output_truncated: bool
    error: str
    """Human reason for anything but success ("exit status 3", "timed out after 2s")."""
    started_at: float
    finished_at: float


class CancelToken:
    """Asks a running attempt to stop, with a reason.

    Cancelling the asyncio task instead would lose the result (a cancelled coroutine does not
    return one), and a cancelled attempt must still be reported as ``cancelled``.
    """

    def __init__(self) -> None:
        self.reason = ""
        self._cancelled = False
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self, reason: str = "cancelled") -> bool:
        """Request the stop; False if it was already requested (the first reason wins)."""
        if self._cancelled:
            return False
        self.reason = reason
        self._cancelled = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        return True

    def waiter(self) -> asyncio.Future[None]:
        """A future that is done once the stop is requested (at once if it already was).

        A future, not a coroutine: an executor waits for it next to the process's exit with
        ``asyncio.wait``, which would otherwise need a task per attempt just to wait.
        Cancelling it only stops that waiting.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._cancelled:
            waiter.set_result(None)
        else:
            self._waiters.append(waiter)
        return waiter


class OutputTail:
    """Keeps the last ``limit`` bytes of a stream: errors usually come at the end, and memory
    must stay bounded however much a job prints."""

    def __init__(self, limit: int) -> None:
        self._limit = max(0, limit)
        self._buf = bytearray()
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        excess = len(self._buf) - self._limit
        if excess > 0:
            del self._buf[:excess]
            self.truncated = True

    def text(self) -> str:
        data = bytes(self._buf)
        if self.truncated:
            # The cut may have landed inside a UTF-8 sequence; drop its orphaned continuation
            # bytes rather than start the output with a replacement character.
            skip = 0
            while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
                skip += 1
            data = data[skip:]
        return data.decode("utf-8", errors="replace")


def build_env(extra: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job's environment: PATH, HOME and LANG from the worker, the job's own env on top."""
    source = os.environ if base is None else base
    env = {name: source[name] for name in INHERITED_ENV if name in source}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(extra)
    return env


def build_argv(spec: TaskSpec) -> list[str]:
    """``/bin/sh -c command`` with use_shell, otherwise the command and its args, unparsed."""
    if spec.use_shell:
        return ["/bin/sh", "-c", spec.command]
    return [spec.command, *spec.args]


async def execute(
    spec: TaskSpec,
    cancel: CancelToken | None = None,
    *,
    on_started: Callable[[float, StartedProcess | None], None] | None = None,
    kill_grace: float = KILL_GRACE_SECONDS,
    drain_grace: float = DRAIN_GRACE_SECONDS,
) -> TaskResult:
    """Run ``spec`` to its end and return the result; only asyncio cancellation escapes.

    ``on_started(started_at, process)`` is called once as soon as the process exists (process
    None if it could not start), so RunTask can answer without waiting for the whole run; the
    process is not reaped before the call returns, so /proc/<pid> is still it.
    When the main process exits, anything left in its process group is terminated too: an
    attempt owns its group, and a leftover daemon would escape capacity accounting.
    If the awaiting task itself is cancelled (worker torn down), the group gets SIGKILL at
    once, since there may be no time left for a grace period.
    """
    cancel = cancel or CancelToken()
    log_ctx = ctx(run_id=spec.run_id, attempt=spec.attempt)
    started_at = time.time()
    if not spec.command:
        _notify(on_started, started_at)
        return _not_started(TaskState.FAILED, "empty command", started_at)
    if cancel.cancelled:
        _notify(on_started, started_at)
        return _not_started(TaskState.CANCELLED, cancel.reason, started_at)
    argv = build_argv(spec)
    tail = OutputTail(spec.output_limit_bytes)
    env = build_env(spec.env)
    started_at = time.time()  # just before the fork: when the process started, to the ms
    ticks_before = boot_ticks()
    try:
        child = _Child.spawn(argv, env, spec.cwd or None, tail)
    except (OSError, ValueError) as exc:
        error = _start_error(exc, argv[0], spec.cwd)
        log.info("attempt could not start: %s", error, extra=log_ctx)
        _notify(on_started, started_at)
        return _not_started(TaskState.FAILED, error, started_at)

    ticks_after = boot_ticks()
    bounds = None if ticks_before is None or ticks_after is None else (ticks_before, ticks_after)
    _notify(on_started, started_at, StartedProcess(child.pid, bounds))
    cancelled = cancel.waiter()
    timeout = spec.timeout_seconds if spec.timeout_seconds > 0 else None
    try:
        done, _ = await asyncio.wait(
            {child.exited, cancelled}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if child.exited in done:
            state, error = None, ""
            await _reap_leftovers(child, kill_grace, drain_grace)
        elif cancelled in done:
            state, error = TaskState.CANCELLED, cancel.reason or "cancelled"
            await _terminate_group(child.pid, child, kill_grace)
        else:
            state, error = TaskState.TIMED_OUT, f"timed out after {spec.timeout_seconds:g}s"
            await _terminate_group(child.pid, child, kill_grace)
        # The group is dead by now, so the output normally ends at once; a process that left
        # the group (setsid) may still hold the pipe: stop waiting then, close() stops reading.
        await _wait_done(child.output_closed, 1.0)
    except asyncio.CancelledError:
        _signal_group(child.pid, signal.SIGKILL)
        raise
    finally:
        cancelled.cancel()
        child.close()

    code = child.returncode
    if state is None:
        state, error = _exit_outcome(code)
    result = TaskResult(
        state=state,
        exit_code=code,
        output=tail.text(),
        output_truncated=tail.truncated,
        error=error,
        started_at=started_at,
        finished_at=time.time(),
    )
    log.debug("attempt ended: %s %s", state, error, extra=log_ctx)
    return result


def _notify(
    callback: Callable[[float, StartedProcess | None], None] | None,
    started_at: float,
    process: StartedProcess | None = None,
) -> None:
    if callback is not None:
        callback(started_at, process)


_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)
_NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def boot_ticks() -> int | None:
    """Now, in the unit and clock of a process's start stamp in /proc/<pid>/stat (clock
    ticks since boot, suspend included: the kernel divides CLOCK_BOOTTIME's nanoseconds
    down); None where there is no CLOCK_BOOTTIME."""
    if _BOOTTIME is None:
        return None
    return time.clock_gettime_ns(_BOOTTIME) // _NS_PER_TICK


def _not_started(state: TaskState, error: str, started_at: float) -> TaskResult:
    return TaskResult(
        state=state,
        exit_code=None,
        output="",
        output_truncated=False,
        error=error,
        started_at=started_at,
        finished_at=time.time(),
    )


def _start_error(exc: BaseException, executable: str, cwd: str) -> str:
    """A reason an operator can act on, instead of a bare errno."""
    if isinstance(exc, FileNotFoundError):
        if cwd and exc.filename == cwd:
            return f"working directory not found: {cwd}"
        return f"executable not found: {executable}"
    if isinstance(exc, PermissionError):
        if cwd and exc.filename == cwd:
            return f"working directory not accessible: {cwd}"
        return f"not executable (permission denied): {executable}"
    if isinstance(exc, NotADirectoryError) and cwd:
        return f"working directory is not a directory: {cwd}"
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"cannot start {executable}: {detail}"


def _exit_outcome(code: int | None) -> tuple[TaskState, str]:
    if code == 0:
        return TaskState.SUCCEEDED, ""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return TaskState.FAILED, f"killed by signal {-code} ({name})"
    return TaskState.FAILED, f"exit status {code}"


async def _wait_done(future: asyncio.Future[None], timeout: float) -> bool:
    """Wait up to ``timeout`` for ``future`` without cancelling it; True if it is done.

    Checks first: ``asyncio.wait`` on a done future still costs a timer and a loop turn."""
    if not future.done():
        await asyncio.wait({future}, timeout=timeout)
    return future.done()


async def _reap_leftovers(child: _Child, kill_grace: float, drain_grace: float) -> None:
    """After a normal exit, let remaining output drain, then end what is left of the group.

    The usual case costs one ``killpg(pgid, 0)``: the leader is reaped by the time its exit
    is reported, so an empty group answers ProcessLookupError and /proc is never scanned.
    """
    if not _group_alive(child.pid):
        return
    await _wait_done(child.output_closed, drain_grace)
    if _group_alive(child.pid):
        log.info(
            "terminating processes left in the group of a finished attempt (pgid %d)", child.pid
        )
        await _terminate_group(child.pid, None, kill_grace)


async def kill_process_group(pgid: int, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL after ``grace``: for groups this process did not start itself
    (the orphans of a previous worker process)."""
    await _terminate_group(pgid, None, grace)


def process_group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) member of process group ``pgid`` exists."""
    return _group_alive(pgid)


async def _terminate_group(pgid: int, leader: _Child | None, grace: float) -> None:
    """SIGTERM the group, give it ``grace`` seconds to go, then SIGKILL whatever remains."""
    _signal_group(pgid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        leader_gone = leader is None or leader.returncode is not None
        if leader_gone and not _group_alive(pgid):
            break
        await asyncio.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)
    if leader is not None:
        await _wait_done(leader.exited, 5.0)


class _Child:
    """The attempt's main process: its exit, the end of its output, and its pipe.

    The event loop watches two descriptors itself: a pidfd, readable once the process has
    exited (it is reaped at once), and the read end of the output pipe. asyncio's subprocess
    transport did the same through a connecting task, a transport per pipe, a protocol and
    the child watcher for every process: a single process spawned ``true`` 15-20 % slower
    that way. Exit and end of output stay two futures: a backgrounded grandchild may hold
    the pipe long after the main process is gone.
    """

    def __init__(self, popen: subprocess.Popen[bytes], output_fd: int, tail: OutputTail) -> None:
        self._loop = asyncio.get_running_loop()
        self._popen = popen
        self._tail = tail
        self._output_fd = output_fd
        self.pid: int = popen.pid
        self.exited: asyncio.Future[None] = self._loop.create_future()
        self.output_closed: asyncio.Future[None] = self._loop.create_future()
        self._loop.add_reader(output_fd, self._read_output)
        self._watch_exit()

    @classmethod
    def spawn(
        cls, argv: list[str], env: dict[str, str], cwd: str | None, tail: OutputTail
    ) -> _Child:
        """Start the process (stdout and stderr into one pipe); OSError if it cannot start."""
        read_fd, write_fd = os.pipe()
        try:
            popen = subprocess.Popen(
                argv,
                stdin=_devnull(),
                stdout=write_fd,
                stderr=write_fd,
                env=env,
                cwd=cwd,
                start_new_session=True,  # the child leads its own process group: kill = killpg
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child holds its copy: EOF comes when the last holder exits
        return cls(popen, read_fd, tail)

    @property
    def returncode(self) -> int | None:
        """As asyncio gives it: the exit status, or minus the signal that ended the process."""
        return self._popen.returncode

    def close(self) -> None:
        """Stop reading output even if a process that escaped the group still holds the pipe.

        The exit stays watched: the process is reaped whenever it ends."""
        self._close_output()

    def _read_output(self) -> None:
        try:
            data = os.read(self._output_fd, 65536)
        except OSError:
            data = b""
        if data:
            self._tail.feed(data)
        else:
            self._close_output()

    def _close_output(self) -> None:
        if self._output_fd >= 0:
            self._loop.remove_reader(self._output_fd)
            os.close(self._output_fd)
            self._output_fd = -1
        if not self.output_closed.done():
            self.output_closed.set_result(None)

    def _watch_exit(self) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: a thread waits, as asyncio's did
            threading.Thread(target=self._wait_in_thread, daemon=True).start()
            return

        def exited() -> None:
            self._loop.remove_reader(pidfd)
            os.close(pidfd)
            self._reaped(_wait_status(self.pid))

        self._loop.add_reader(pidfd, exited)

    def _wait_in_thread(self) -> None:
        code = _wait_status(self.pid)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            self._loop.call_soon_threadsafe(self._reaped, code)

    def _reaped(self, code: int) -> None:
        # Setting it also keeps Popen from waiting for this pid again (its __del__ would
        # queue a still "running" child for a later waitpid, and the pid may be reused).
        self._popen.returncode = code
        if not self.exited.done():
            self.exited.set_result(None)


def _wait_status(pid: int) -> int:
    """Reap ``pid`` (blocking until it exits) and return its status as asyncio gives it."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped by someone else: the status is lost (asyncio says 255)
        log.warning("child %d was reaped elsewhere; its exit status is unknown", pid)
        return 255
    return os.waitstatus_to_exitcode(status)


@functools.cache
def _devnull() -> int:
    """One /dev/null descriptor for every child's stdin, not an open and a close per spawn."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in the group.

    ``killpg(pgid, 0)`` alone also counts zombies, and orphaned grandchildren stay zombies
    wherever PID 1 does not reap (containers without an init): that would turn every kill
    into a full grace-period wait. So a positive answer is confirmed in /proc when possible.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return any(
            group == pgid and state not in (b"Z", b"X") for _, state, _, group in processes()
        )
    except OSError:  # no /proc to read: trust killpg
        return True


def processes() -> Iterator[tuple[int, bytes, int, int]]:
    """(pid, state, parent pid, process group) of every process, read from /proc; OSError
    when /proc cannot be listed. Processes that end while being read are left out."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(int(entry))
        if fields is not None and len(fields) >= 3:
            yield int(entry), fields[0], int(fields[1]), int(fields[2])


def stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3 onwards of /proc/<pid>/stat (state, parent pid, process group, ...; see
    proc(5)), or None when the process is gone or /proc cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    return stat[stat.rfind(b")") + 2 :].split()
