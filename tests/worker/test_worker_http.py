"""Tasks of kind http: the real WorkerService over gRPC calling a real aiohttp server."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from worker_testkit import (
    eventually,
    free_port,
    http_request,
    registered,
    run_request,
    running_worker,
    worker_settings,
)

from proto import chronoraft_pb2 as pb
from worker.http_executor import ResponseHead


class TargetServer:
    """The service an http task calls: an aiohttp app on 127.0.0.1, on a port picked at bind.

    Handlers are cancelled when their client goes away (``handler_cancellation``), which is
    how a test sees that the worker really aborted a request.
    """

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.received_at: dict[str, float] = {}
        self.entered = asyncio.Event()
        self.disconnected = asyncio.Event()
        app = web.Application()
        app.router.add_get("/hello", self._hello)
        app.router.add_post("/echo", self._echo)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/moved", self._moved)
        app.router.add_get("/big", self._big)
        app.router.add_get("/hang", self._hang)
        app.router.add_get("/trickle", self._trickle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> TargetServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()

    def _hit(self, request: web.Request) -> None:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.received_at.setdefault(request.path, time.time())

    async def _hello(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(text="hello from the target")

    async def _echo(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.json_response(
            {
                "method": request.method,
                "token": request.headers.get("X-Token"),
                "content_type": request.headers.get("Content-Type"),
                "user_agent": request.headers.get("User-Agent"),
                "body": await request.text(),
            },
            status=201,
        )

    async def _status(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(status=int(request.match_info["code"]), text="status body")

    async def _moved(self, request: web.Request) -> web.Response:
        self._hit(request)
        raise web.HTTPFound("/status/203")

    async def _big(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(body=b"x" * 200_000)

    async def _hang(self, request: web.Request) -> web.Response:
        """Never answers; ends only when the client goes away."""
        self._hit(request)
        self.entered.set()
        try:
            await asyncio.sleep(60)
        finally:
            self.disconnected.set()
        return web.Response(text="too late")

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        """Sends headers and a first line at once, then a line every 50 ms for a minute."""
        self._hit(request)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first line\n")
        self.entered.set()
        try:
            for _ in range(1200):
                await asyncio.sleep(0.05)
                await response.write(b"more\n")
        except (ConnectionError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return response


@pytest.fixture
async def target():
    server = await TargetServer().start()
    yield server
    await server.stop()


async def test_a_get_that_succeeds_reports_the_status_line_and_body(worker, target):
    reply = await worker.stub.RunTask(http_request(1, target.url("/hello")), timeout=5)
    assert reply.accepted and reply.reason == ""
    report = await worker.result(1)
    assert (report.state, report.error, report.has_exit_code) == ("succeeded", "", False)
    assert report.output == "HTTP 200 OK\nhello from the target"
    assert not report.output_truncated
    # started_at is when the request was sent: before the server received it.
    assert report.started_at == pytest.approx(reply.started_at)
    assert reply.started_at <= target.received_at["/hello"] <= report.finished_at


async def test_a_post_sends_its_headers_and_body(worker, target):
    request = http_request(
        1,
        target.url("/echo"),
        method="post",
        headers={"X-Token": "s3cret", "Content-Type": "application/json"},
        body='{"n": 1}',
        expected_status=201,
    )
    await worker.stub.RunTask(request, timeout=5)
    report = await worker.result(1)
    assert report.state == "succeeded", report.error
    status_line, body = report.output.split("\n", 1)
    assert status_line == "HTTP 201 Created"
    echoed = json.loads(body)
    assert echoed["method"] == "POST" and echoed["token"] == "s3cret"
    assert echoed["content_type"] == "application/json" and echoed["body"] == '{"n": 1}'
    assert echoed["user_agent"].startswith("chronoraft-worker/")


@pytest.mark.parametrize(
    ("code", "expected", "error"),
    [
        (500, 0, "HTTP status 500, expected 2xx"),
        (204, 200, "HTTP status 204, expected 200"),
        (200, 404, "HTTP status 200, expected 404"),
    ],
)
async def test_an_unexpected_status_fails_naming_both_statuses(
    worker, target, code, expected, error
):
    url = target.url(f"/status/{code}")
    await worker.stub.RunTask(http_request(1, url, expected_status=expected), timeout=5)
    report = await worker.result(1)
    assert (report.state, report.error) == ("failed", error)
    assert report.output.startswith(f"HTTP {code} ")


async def test_an_expected_non_2xx_status_succeeds(worker, target):
    url = target.url("/status/404")
    await worker.stub.RunTask(http_request(1, url, expected_status=404), timeout=5)
    report = await worker.result(1)
    assert (report.state, report.error) == ("succeeded", "")
    assert report.output == "HTTP 404 Not Found\nstatus body"


async def test_redirects_are_followed_and_the_final_status_decides(worker, target):
    await worker.stub.RunTask(http_request(1, target.url("/moved")), timeout=5)
    report = await worker.result(1)
    assert report.state == "succeeded"
    assert report.output == "HTTP 203 Non-Authoritative Information\nstatus body"
    assert target.hits == {"/moved": 1, "/status/203": 1}


async def test_a_slow_endpoint_times_out_and_the_request_is_aborted(worker, target):
    request = http_request(1, target.url("/hang"), timeout_seconds=0.5)
    await worker.stub.RunTask(request, timeout=5)
    report = await worker.result(1)
    assert (report.state, report.error, report.output) == ("timed_out", "timed out after 0.5s", "")
    assert report.finished_at - report.started_at == pytest.approx(0.5, abs=0.4)
    await asyncio.wait_for(target.disconnected.wait(), 5.0)


async def test_a_body_still_arriving_at_the_timeout_is_reported_as_far_as_it_came(worker, target):
    request = http_request(1, target.url("/trickle"), timeout_seconds=1.0)
    await worker.stub.RunTask(request, timeout=5)
    report = await worker.result(1)
    assert report.state == "timed_out"
    assert report.output.startswith("HTTP 200 OK\nfirst line\n")
    await asyncio.wait_for(target.disconnected.wait(), 5.0)


async def test_cancel_task_aborts_the_request_and_it_is_reported_cancelled(worker, target):
    await worker.stub.RunTask(http_request(1, target.url("/hang")), timeout=5)
    await asyncio.wait_for(target.entered.wait(), 5.0)
    cancel = pb.CancelTaskRequest(run_id=1, attempt=1, epoch=1)
    assert (await worker.stub.CancelTask(cancel, timeout=5)).found
    report = await worker.result(1)
    assert (report.state, report.error) == ("cancelled", "cancelled by controller")
    await asyncio.wait_for(target.disconnected.wait(), 5.0)


async def test_an_unreachable_port_fails_with_the_connection_error(worker):
    port = free_port()  # nothing listens there any more
    await worker.stub.RunTask(http_request(1, f"http://127.0.0.1:{port}/x"), timeout=5)
    report = await worker.result(1)
    assert report.state == "failed"
    assert report.error.startswith("request failed: ") and f"127.0.0.1:{port}" in report.error
    assert report.output == ""


async def test_a_bad_url_fails_without_a_request(worker):
    await worker.stub.RunTask(http_request(1, "not a url"), timeout=5)
    await worker.stub.RunTask(http_request(2, ""), timeout=5)
    bad, empty = await worker.result(1), await worker.result(2)
    assert bad.state == "failed" and bad.error.startswith("invalid url: ")
    assert (empty.state, empty.error) == ("failed", "empty url")


async def test_a_large_body_is_cut_at_the_output_limit(worker, target):
    await worker.stub.RunTask(
        http_request(1, target.url("/big"), output_limit_bytes=1000), timeout=5
    )
    await worker.stub.RunTask(http_request(2, target.url("/big")), timeout=5)
    explicit, default = await worker.result(1), await worker.result(2)
    assert explicit.state == "succeeded" and explicit.output_truncated
    assert explicit.output == "HTTP 200 OK\n" + "x" * (1000 - len("HTTP 200 OK\n"))
    assert default.output_truncated and len(default.output) == 4096  # the worker's default


async def test_a_duplicate_runtask_does_not_send_the_request_again(worker, target):
    first = await worker.stub.RunTask(http_request(1, target.url("/hello")), timeout=5)
    await worker.result(1)
    again = await worker.stub.RunTask(http_request(1, target.url("/hello")), timeout=5)
    assert again.accepted and again.reason == "duplicate"
    assert again.started_at == first.started_at
    assert target.hits == {"/hello": 1}


async def test_an_unknown_kind_is_refused_and_cmd_is_the_default(worker):
    unknown = pb.RunTaskRequest(run_id=1, attempt=1, epoch=1, kind="ftp", command="true")
    reply = await worker.stub.RunTask(unknown, timeout=5)
    assert (reply.accepted, reply.reason) == (False, "unsupported_kind")
    assert worker.spool.get(1, 1) is None
    assert 'tasks_rejected_total{reason="unsupported_kind"} 1.0' in worker.metrics.render().decode()
    explicit = await worker.stub.RunTask(run_request(2, "echo cmd", kind="cmd"), timeout=5)
    assert explicit.accepted
    assert (await worker.result(2)).output == "cmd\n"


async def test_a_whole_worker_delivers_an_http_result_to_the_controller(
    tmp_path, controller, target
):
    settings = worker_settings(tmp_path, (controller.address,))
    async with running_worker(settings) as worker:
        await registered(worker, controller)
        await worker.stub.RunTask(http_request(5, target.url("/hello"), epoch=2), timeout=5)
        await eventually(lambda: controller.report_for(5), 5.0, "http result delivered")
    report = controller.report_for(5)
    assert (report.state, report.worker_id) == ("succeeded", "w-test")
    assert report.output == "HTTP 200 OK\nhello from the target"


def test_a_cut_never_splits_a_character_and_the_charset_is_honoured():
    cut = ResponseHead(limit=len("HTTP 200 OK\n") + 3)
    cut.status_line(200, "OK", "utf-8")
    assert cut.feed("éé".encode()) is False  # 4 bytes, 3 fit: the second é is split
    assert (cut.text(), cut.truncated) == ("HTTP 200 OK\né", True)
    latin = ResponseHead(limit=100)
    latin.status_line(200, "OK", "iso-8859-1")
    assert latin.feed("café".encode("latin-1")) is True
    assert (latin.text(), latin.truncated) == ("HTTP 200 OK\ncafé", False)
