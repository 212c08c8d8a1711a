"""Schemathesis against a live controller's own OpenAPI document: no 5xx, no traceback.

The fuzzer reads /api/v1/openapi.json and sends valid and invalid requests to every
operation (the examples, boundary values, then random data) with the admin token, for a
bounded time. Every request and answer is kept in a HAR file under test-artifacts/, which
this test then reads: any 5xx, or any answer that shows a Python traceback, fails it.

The cluster has one controller and no worker: the fuzzer creates jobs with random commands,
and with no worker nothing it invents is ever executed.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from controller.local_cluster import LocalCluster

pytestmark = pytest.mark.cluster

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FUZZ_SECONDS = 75
SEED = 20261123
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')


def _body_text(response: dict[str, Any]) -> str:
    content = response.get("content") or {}
    text = content.get("text") or ""
    if content.get("encoding") == "base64":
        text = base64.b64decode(text).decode(errors="replace")
    return text


def test_fuzzing_the_openapi_document_finds_no_5xx_and_no_traceback(
    make_cluster: Any,
) -> None:
    cluster: LocalCluster = make_cluster(controllers=1, workers=0)
    base = cluster.url("c1")
    har = ARTIFACTS / "fuzz" / "schemathesis.har"
    har.parent.mkdir(parents=True, exist_ok=True)
    har.unlink(missing_ok=True)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base}/api/v1/openapi.json",
        "--url",
        base,
        "--header",
        f"Authorization: Bearer {cluster.admin_token}",
        "--checks",
        "not_a_server_error",
        "--max-time",
        str(FUZZ_SECONDS),
        "--workers",
        "1",
        "--seed",
        str(SEED),
        "--phases",
        "examples,coverage,fuzzing",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "10",
        "--report",
        "har",
        "--report-har-path",
        str(har),
    ]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=FUZZ_SECONDS + 120, cwd=har.parent
    )
    try:
        entries = json.loads(har.read_text())["log"]["entries"]
    except (OSError, ValueError) as exc:
        output = proc.stdout[-3000:] + proc.stderr[-3000:]
        raise AssertionError(f"no readable HAR ({exc}): {output}") from None
    statuses = Counter(e["response"]["status"] for e in entries)
    server_errors = [
        f"{e['request']['method']} {e['request']['url']} -> {e['response']['status']}"
        for e in entries
        if e["response"]["status"] >= 500
    ]
    tracebacks = [
        f"{e['request']['method']} {e['request']['url']}"
        for e in entries
        if any(marker in _body_text(e["response"]) for marker in TRACEBACK_MARKERS)
    ]
    operations = {(e["request"]["method"], e["request"]["url"].split("?")[0]) for e in entries}
    print(
        f"\nschemathesis: {len(entries)} requests in about {FUZZ_SECONDS}s over "
        f"{len(operations)} method+URL pairs; statuses {dict(sorted(statuses.items()))}"
    )
    # Every message carries the fuzzer's own summary: CI shows only the assertion.
    tail = f"\nschemathesis exit {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-1500:]}"
    assert len(entries) > 500, tail
    assert server_errors == [], f"{server_errors[:20]}{tail}"
    assert tracebacks == [], f"{tracebacks[:20]}{tail}"
    # Schemathesis also probes each operation without credentials: those, and only those, 401.
    refused_with_token = [
        e["request"]["url"]
        for e in entries
        if e["response"]["status"] == 401
        and any(h["name"].lower() == "authorization" for h in e["request"]["headers"])
    ]
    assert refused_with_token == [], f"{refused_with_token[:20]}{tail}"
    assert proc.returncode == 0, tail
