"""What one process start costs inside a real worker, with no PostgreSQL and no controller.

The cluster's run rate is capped by the worker's CPU per started run, and the bare spawn
rate (:mod:`bench.spawn_probe`) only says what Python could do without the worker's
bookkeeping (running marks, fsynced spool, gRPC, reporting). This measures the difference
directly: one worker process, started exactly as deployed (``worker.main.main``), receives
``true`` runs through its real ``RunTasks`` RPC in batches, and this process stands in for
the controllers (heartbeat, ``ReportResults``). A run counts as done when its result
reached the stand-in, so spooling and delivery are in the price.

``python -m bench.worker_spawn [--tasks 2000] [--batch 64] [--inflight 128] [--rounds 3]
[--rate 0] [--bare-seconds 3] [--py-spy /tmp/worker.svg]`` prints one line per round (runs/s,
the worker's user and system CPU ms per run, each run's start delay after its batch was
sent, the RunTasks reply time) and, for reference, the bare spawner's CPU per spawn counted
the same way. With ``--py-spy`` the last round is profiled (``--py-spy-gil``: only the thread
holding the GIL, i.e. Python's own CPU; ``--py-spy-format raw`` for collapsed stacks).

Reading the figures: as fast as it goes (``--rate 0``) the batches grow with the backlog and
CPU per run falls with them, so compare CPU per run at a fixed ``--rate``; a burst is
``--batch 100 --inflight 100 --rate 100`` (100 runs due in the same second). The data dir's
file system weighs a lot (on ext4 without a journal, creating and fsyncing a file per result
is much of the cost); ``--data-dir /dev/shm/...`` leaves only the CPU of the code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench import spawn_probe
from bench.procstat import CLK_TCK, read_stat
from bench.stats import percentile
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc

ROOT = spawn_probe.ROOT
WORKER_ID = "bench-spawn"


class StandInController(pb_grpc.ControllerServiceServicer):
    """Acknowledges every heartbeat and result; wakes the driver when results arrive."""

    def __init__(self) -> None:
        self.worker_address = ""
        self.registered = asyncio.Event()
        self.reported: set[tuple[int, int]] = set()
        self.failed = 0
        self.arrived = asyncio.Event()

    async def Heartbeat(  # noqa: N802 - gRPC method name
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatReply:
        self.worker_address = request.address
        self.registered.set()
        return pb.HeartbeatReply(ok=True, epoch=0)

    async def ReportResults(  # noqa: N802 - gRPC method name
        self, request: pb.ReportResultsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportResultsReply:
        for result in request.results:
            self._record(result)
        ack = pb.ReportResultReply(acknowledged=True)
        return pb.ReportResultsReply(replies=[ack] * len(request.results))

    async def ReportResult(  # noqa: N802 - gRPC method name
        self, request: pb.ReportResultRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportResultReply:
        self._record(request)
        return pb.ReportResultReply(acknowledged=True)

    def _record(self, result: pb.ReportResultRequest) -> None:
        self.reported.add((result.run_id, result.attempt))
        if result.state != "succeeded":
            self.failed += 1
        self.arrived.set()


@dataclass(frozen=True)
class Round:
    runs: int
    seconds: float
    worker_user: float
    worker_system: float
    refused: int
    failed: int
    start_delays: list[float]
    """Per run: the process's start time (as the worker reports it) minus when its batch
    was sent."""
    reply_delays: list[float]
    """Per batch: when the RunTasks reply arrived minus when it was sent (every run of the
    batch started and marked)."""

    @property
    def worker_cpu(self) -> float:
        return self.worker_user + self.worker_system

    def line(self) -> str:
        ms = [d * 1000 for d in self.start_delays]
        reply_ms = [d * 1000 for d in self.reply_delays]
        return (
            f"runs={self.runs} seconds={self.seconds:.2f} runs/s={self.runs / self.seconds:.0f} "
            f"worker_cpu_ms_per_run={self.worker_cpu * 1000 / self.runs:.3f} "
            f"(user {self.worker_user * 1000 / self.runs:.3f} "
            f"sys {self.worker_system * 1000 / self.runs:.3f}) "
            f"worker_cpu%={self.worker_cpu / self.seconds * 100:.0f} "
            f"start_delay_ms p50={percentile(ms, 50):.1f} p99={percentile(ms, 99):.1f} "
            f"reply_ms p50={percentile(reply_ms, 50):.1f} max={max(reply_ms):.1f} "
            f"refused={self.refused} failed={self.failed}"
        )


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU of the process itself (all its threads), not of the children it
    reaped: the kernel side (fork, fsync, renames) is a large share of a start's cost."""
    stat = read_stat(pid)
    if stat is None:
        raise RuntimeError(f"process {pid} is gone")
    return stat.utime / CLK_TCK, stat.stime / CLK_TCK


def start_worker(data_dir: Path, controller: str, inflight: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CHRONORAFT_DATA_DIR": str(data_dir),
        "CHRONORAFT_WORKER_ID": WORKER_ID,
        "CHRONORAFT_WORKER_PORT": "0",
        "CHRONORAFT_WORKER_CONCURRENCY": str(inflight),
        "CHRONORAFT_CONTROLLERS": controller,
        "CHRONORAFT_HEARTBEAT_INTERVAL": "1.0",
        "CHRONORAFT_LOG_LEVEL": "WARNING",
    }
    code = "import sys; from common.settings import Settings; from worker.main import main; "
    code += "sys.exit(main(Settings.from_env()))"
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)


async def drive(
    stub: pb_grpc.WorkerServiceStub,
    controller: StandInController,
    first_run_id: int,
    tasks: int,
    batch: int,
    inflight: int,
    rate: float = 0.0,
) -> tuple[int, list[float], list[float]]:
    """Offer ``tasks`` runs of ``true``, ``batch`` per RunTasks call and at most ``inflight``
    not yet reported, as a leader's dispatcher would; with ``rate`` > 0, also no faster
    than that many runs per second. Returns (refusals, start delays, reply delays)."""
    queue = list(range(first_run_id, first_run_id + tasks))
    reported_before = len(controller.reported)
    accepted = 0
    refused = 0
    batches_sent = 0
    delays: list[float] = []
    replies: list[float] = []
    started = time.monotonic()
    while True:
        done = len(controller.reported) - reported_before
        if done >= tasks:
            return refused, delays, replies
        room = inflight - (accepted - done)
        if queue and room >= min(batch, len(queue)):
            wait = started + batches_sent * batch / rate - time.monotonic() if rate > 0 else 0.0
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            ids, queue = queue[:batch], queue[batch:]
            sent_at = time.time()
            request = pb.RunTasksRequest(
                tasks=[pb.RunTaskRequest(run_id=i, attempt=1, epoch=1, command="true") for i in ids]
            )
            reply = await stub.RunTasks(request, timeout=30)
            replies.append(time.time() - sent_at)
            batches_sent += 1
            for run_id, answer in zip(ids, reply.replies, strict=True):
                if answer.accepted:
                    accepted += 1
                    delays.append(answer.started_at - sent_at)
                else:
                    refused += 1
                    queue.append(run_id)
            continue
        controller.arrived.clear()
        await asyncio.wait_for(controller.arrived.wait(), 30)


async def measure_worker(args: argparse.Namespace, data_dir: Path) -> list[Round]:
    controller = StandInController()
    server = grpc.aio.server()
    pb_grpc.add_ControllerServiceServicer_to_server(controller, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    worker = start_worker(data_dir, f"127.0.0.1:{port}", args.inflight)
    profiler: subprocess.Popen[bytes] | None = None
    rounds: list[Round] = []
    try:
        await asyncio.wait_for(controller.registered.wait(), 30)
        async with grpc.aio.insecure_channel(controller.worker_address) as channel:
            stub = pb_grpc.WorkerServiceStub(channel)
            run_id = 1
            # Warm-up: imports, thread pool, gRPC connections, page cache of the spool dir.
            await drive(stub, controller, run_id, args.batch, args.batch, args.inflight)
            run_id += args.batch
            for number in range(args.rounds):
                if args.py_spy and number == args.rounds - 1:
                    profiler = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "--pid",
                            str(worker.pid),
                            "--rate",
                            "200",
                            "--nonblocking",
                            "--format",
                            args.py_spy_format,
                            "-o",
                            args.py_spy,
                            *(["--gil"] if args.py_spy_gil else []),
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                    await asyncio.sleep(1.0)  # py-spy attaches
                failed_before = controller.failed
                user_before, system_before = cpu_seconds(worker.pid)
                started = time.monotonic()
                refused, delays, reply_delays = await drive(
                    stub, controller, run_id, args.tasks, args.batch, args.inflight, args.rate
                )
                seconds = time.monotonic() - started
                user, system = cpu_seconds(worker.pid)
                run_id += args.tasks
                rounds.append(
                    Round(
                        args.tasks,
                        seconds,
                        user - user_before,
                        system - system_before,
                        refused,
                        controller.failed - failed_before,
                        delays,
                        reply_delays,
                    )
                )
                print(f"worker round {number + 1}: {rounds[-1].line()}", flush=True)
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            await asyncio.to_thread(profiler.wait, 30)
        # Waited for off the loop: the stopping worker still heartbeats and reports to us.
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(worker.wait, 30)
        except subprocess.TimeoutExpired:
            worker.kill()
            await asyncio.to_thread(worker.wait)
        await server.stop(None)
    return rounds


def measure_bare(seconds: float, inflight: int) -> tuple[float, float]:
    """(spawns/s, CPU ms per spawn) of :mod:`bench.spawn_probe`, counted like the worker's:
    the spawner's own CPU, read from its zombie so the whole run is in it."""
    probe = subprocess.Popen(
        spawn_probe.command(seconds, inflight),
        cwd=spawn_probe.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert probe.stdout is not None
    output = probe.stdout.read()
    while (stat := read_stat(probe.pid)) is not None and stat.state != "Z":
        time.sleep(0.01)
    probe.wait()
    if stat is None:
        raise RuntimeError("spawn probe vanished before its CPU time was read")
    doc = json.loads(output)
    return doc["spawned"] / doc["elapsed"], stat.own_ticks / CLK_TCK * 1000 / doc["spawned"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="runs per round (2000)")
    parser.add_argument("--batch", type=int, default=64, help="runs per RunTasks call (64)")
    parser.add_argument(
        "--inflight", type=int, default=128, help="worker concurrency and runs in flight (128)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (3)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered runs/s; 0: as fast as it goes (0)"
    )
    parser.add_argument("--bare-seconds", type=float, default=3.0, help="bare probe; 0 skips")
    parser.add_argument("--py-spy", metavar="PATH", help="profile the last round into PATH")
    parser.add_argument("--py-spy-format", default="flamegraph", help="py-spy record --format")
    parser.add_argument(
        "--py-spy-gil", action="store_true", help="sample only the thread holding the GIL"
    )
    parser.add_argument("--data-dir", type=Path, help="worker data dir (default: a temp dir)")
    args = parser.parse_args(argv)

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="chronoraft-spawn-"))
    try:
        rounds = asyncio.run(measure_worker(args, data_dir))
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    runs = sum(r.runs for r in rounds)
    seconds = sum(r.seconds for r in rounds)
    cpu_ms = sum(r.worker_cpu for r in rounds) * 1000 / runs
    print(f"worker total: runs/s={runs / seconds:.0f} worker_cpu_ms_per_run={cpu_ms:.3f}")
    if args.bare_seconds > 0:
        rate, bare_ms = measure_bare(args.bare_seconds, 8)
        print(
            f"bare spawner: spawns/s={rate:.0f} cpu_ms_per_spawn={bare_ms:.3f} "
            f"(worker runs/s = {runs / seconds / rate:.0%} of bare)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
