"""The executor runs real processes: exit codes, env, argv, timeouts, output cap, kill groups."""

from __future__ import annotations

import asyncio
import errno
import os
import time

from worker_testkit import eventually, process_gone

from worker.executor import (
    CancelToken,
    OutputTail,
    TaskSpec,
    TaskState,
    build_env,
    execute,
    processes,
)
from worker.orphans import process_start_ticks


def shell(command: str, **fields) -> TaskSpec:
    return TaskSpec(run_id=1, attempt=1, command=command, use_shell=True, **fields)


async def test_successful_command_reports_output_and_exit_zero():
    result = await execute(shell("echo hello"))
    assert result.state == TaskState.SUCCEEDED == "succeeded"
    assert result.exit_code == 0
    assert result.output == "hello\n"
    assert result.error == ""
    assert not result.output_truncated
    assert 0 < result.started_at <= result.finished_at <= time.time()


async def test_nonzero_exit_is_failed_with_the_exit_status():
    result = await execute(shell("echo about to fail; exit 3"))
    assert result.state == "failed"
    assert result.exit_code == 3
    assert result.error == "exit status 3"
    assert result.output == "about to fail\n"


async def test_stderr_is_merged_with_stdout_in_order():
    result = await execute(shell("echo out; echo err >&2; echo out2"))
    assert result.output == "out\nerr\nout2\n"


async def test_death_by_signal_gives_a_negative_exit_code():
    result = await execute(shell("kill -9 $$"))
    assert result.state == "failed"
    assert result.exit_code == -9
    assert result.error == "killed by signal 9 (SIGKILL)"


async def test_env_is_minimal_and_the_job_env_wins(monkeypatch):
    monkeypatch.setenv("CHRONORAFT_TEST_SECRET", "do-not-leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    spec = shell(
        'echo "secret=${CHRONORAFT_TEST_SECRET:-unset} lang=$LANG greeting=$GREETING"; env',
        env={"GREETING": "hi", "LANG": "fr_FR.UTF-8"},
    )
    result = await execute(spec)
    first, *env_lines = result.output.splitlines()
    assert first == "secret=unset lang=fr_FR.UTF-8 greeting=hi"
    names = {line.split("=", 1)[0] for line in env_lines}
    assert {"PATH", "GREETING", "LANG"} <= names
    assert "CHRONORAFT_TEST_SECRET" not in names


def test_build_env_inherits_only_path_home_lang():
    env = build_env({"A": "1"}, base={"PATH": "/p", "HOME": "/h", "LANG": "C", "USER": "x"})
    assert env == {"PATH": "/p", "HOME": "/h", "LANG": "C", "A": "1"}
    assert build_env({}, base={})["PATH"]  # a sane default PATH when the worker has none


async def test_args_go_to_the_executable_untouched_without_a_shell():
    spec = TaskSpec(
        run_id=1, attempt=1, command="printf", args=("%s|", "$HOME", "a b", "; echo injected")
    )
    result = await execute(spec)
    assert result.state == "succeeded"
    assert result.output == "$HOME|a b|; echo injected|"


async def test_use_shell_runs_the_command_through_sh():
    result = await execute(shell("x=4; echo $((x * 2)) | tr 8 E"))
    assert result.output == "E\n"


async def test_cwd_is_the_working_directory(tmp_path):
    result = await execute(shell("pwd", cwd=str(tmp_path)))
    assert result.output.strip() == str(tmp_path)


async def test_missing_executable_fails_with_a_clear_error():
    spec = TaskSpec(run_id=1, attempt=1, command="/no/such")
    result = await execute(spec)
    assert result.state == "failed"
    assert result.exit_code is None
    assert result.error == "executable not found: /no/such"


async def test_file_without_execute_permission_fails_with_a_clear_error(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = await execute(TaskSpec(run_id=1, attempt=1, command=str(script)))
    assert result.state == "failed"
    assert result.exit_code is None
    assert "permission denied" in result.error and str(script) in result.error


async def test_missing_working_directory_fails_naming_it():
    result = await execute(shell("true", cwd="/no/such/dir"))
    assert result.state == "failed"
    assert result.error == "working directory not found: /no/such/dir"


async def test_empty_command_fails_without_starting_anything():
    result = await execute(TaskSpec(run_id=1, attempt=1, command=""))
    assert result.state == "failed" and result.error == "empty command"


async def test_timeout_kills_the_whole_group_including_grandchildren():
    # The background sleep is a grandchild of the worker; its pid is printed first.
    spec = shell("sleep 100 & echo $!; sleep 100", timeout_seconds=0.5)
    started = time.monotonic()
    result = await execute(spec)
    assert time.monotonic() - started < 3.0
    assert result.state == "timed_out"
    assert result.error == "timed out after 0.5s"
    assert result.exit_code == -15  # SIGTERM was enough
    grandchild = int(result.output.split()[0])
    await eventually(lambda: process_gone(grandchild), 2.0, "grandchild to die")


async def test_a_group_that_ignores_sigterm_gets_sigkill_after_the_grace():
    spec = shell("trap '' TERM; sleep 100 & echo $!; sleep 100", timeout_seconds=0.3)
    started = time.monotonic()
    result = await execute(spec, kill_grace=0.5)
    elapsed = time.monotonic() - started
    assert result.state == "timed_out"
    assert result.exit_code == -9
    assert 0.7 <= elapsed < 3.0
    grandchild = int(result.output.split()[0])
    await eventually(lambda: process_gone(grandchild), 2.0, "grandchild to die")


async def test_cancel_token_stops_the_attempt_and_reports_cancelled():
    token = CancelToken()
    started_at: list[float] = []
    task = asyncio.create_task(
        execute(
            shell("echo started; sleep 100"),
            token,
            on_started=lambda at, _process: started_at.append(at),
        )
    )
    await eventually(lambda: bool(started_at), 2.0, "process start")
    token.cancel("cancelled by controller")
    result = await asyncio.wait_for(task, 5.0)
    assert result.state == "cancelled"
    assert result.error == "cancelled by controller"
    assert result.exit_code == -15
    assert result.started_at == started_at[0]


async def test_cancelling_the_asyncio_task_kills_the_group_and_propagates():
    started: list[int] = []
    task = asyncio.create_task(
        execute(
            shell("sleep 100 & echo $!; sleep 100"),
            on_started=lambda _at, process: started.append(process.pid),
        )
    )
    await eventually(lambda: bool(started), 5.0, "process start")
    # The shell and its two sleeps, found through /proc once they exist. Only this task's
    # tree counts: other tests' clusters are descendants of the test process too.
    shell_pid = started[0]
    await eventually(lambda: len(_descendants(shell_pid)) >= 2, 5.0, "shell to fork")
    children = [shell_pid, *_descendants(shell_pid)]
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("CancelledError was swallowed")
    assert children
    for pid in children:
        await eventually(lambda pid=pid: process_gone(pid), 5.0, f"pid {pid} to die")


async def test_processes_left_behind_by_a_finished_job_are_terminated():
    result = await execute(shell("sleep 100 & echo $!"), drain_grace=0.2)
    assert result.state == "succeeded"
    leftover = int(result.output.split()[0])
    await eventually(lambda: process_gone(leftover), 2.0, "leftover to die")


async def test_attempts_close_their_descriptors_and_reap_their_processes():
    """Each attempt opens a pipe and a pidfd and must close both and reap its process: a
    worker runs millions of attempts."""
    await execute(shell("true"))  # what the first attempt sets up once (the shared stdin)
    before = sorted(os.listdir("/proc/self/fd"))
    results = await asyncio.gather(*(execute(shell(f"echo {i}")) for i in range(50)))
    assert [r.output for r in results] == [f"{i}\n" for i in range(50)]
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert _zombie_children() == []


async def test_the_start_bracket_holds_the_kernels_start_stamp_of_the_process():
    """The clock readings around the fork must bound what /proc says, for every process
    (running marks rely on it, worker/orphans.py); /proc is read while ``on_started`` runs,
    when the process cannot have been reaped yet."""
    seen: list[tuple[tuple[int, int] | None, int | None]] = []

    def started(_at, process) -> None:
        seen.append((process.start_ticks, process_start_ticks(process.pid)))

    for _ in range(3):
        await asyncio.gather(*(execute(shell("true"), on_started=started) for _ in range(40)))
    assert len(seen) == 120
    for bracket, stamp in seen:
        assert bracket is not None and stamp is not None
        assert bracket[0] <= stamp <= bracket[1], (bracket, stamp)


async def test_without_pidfds_a_thread_waits_for_each_exit(monkeypatch):
    """Linux before 5.3 has no pidfd_open: the exit is still seen, with its status."""

    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    ok, failed, killed = await asyncio.gather(
        execute(shell("echo hi")), execute(shell("exit 3")), execute(shell("kill -9 $$"))
    )
    assert (ok.state, ok.exit_code, ok.output) == ("succeeded", 0, "hi\n")
    assert (failed.exit_code, killed.exit_code) == (3, -9)
    assert _zombie_children() == []


def _zombie_children() -> list[int]:
    """This process's children that exited and were never reaped."""
    return [pid for pid, state, ppid, _ in processes() if state == b"Z" and ppid == os.getpid()]


async def test_output_keeps_only_the_last_bytes_and_says_so():
    spec = shell(
        "i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done", output_limit_bytes=64
    )
    result = await execute(spec)
    assert result.state == "succeeded"
    assert result.output_truncated
    assert len(result.output.encode()) <= 64
    assert result.output.endswith("line1999\n")


async def test_large_output_is_streamed_not_buffered():
    # 20 MB through a 1 KB tail: finishes quickly and keeps exactly the end.
    spec = shell("head -c 20000000 /dev/zero | tr '\\0' x; echo END", output_limit_bytes=1024)
    result = await execute(spec)
    assert result.state == "succeeded"
    assert result.output_truncated
    assert len(result.output) == 1024
    assert result.output.endswith("xxxxEND\n")


def test_output_tail_is_bounded_and_does_not_start_mid_character():
    tail = OutputTail(5)
    for _ in range(1000):
        tail.feed(b"abc")
    assert len(tail._buf) <= 5
    tail = OutputTail(4)
    tail.feed("aé€".encode())  # 1 + 2 + 3 bytes; the last 4 cut é in half
    assert tail.truncated
    assert tail.text() == "€"


def test_undecodable_bytes_are_replaced_not_raised():
    tail = OutputTail(100)
    tail.feed(b"ok \xff\xfe end")
    assert tail.text() == "ok \ufffd\ufffd end"


def _descendants(root: int) -> list[int]:
    """Pids whose ancestry leads to ``root`` (read from /proc)."""
    parents = {pid: ppid for pid, state, ppid, _ in processes() if state not in (b"Z", b"X")}
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent:
                found.append(pid)
                frontier.append(pid)
    return found
