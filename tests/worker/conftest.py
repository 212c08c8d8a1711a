"""Fixtures for the worker tests. Helpers live in ``worker_testkit`` (importable by tests)."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the project is used from its checkout, not installed
    sys.path.insert(0, str(ROOT))

from worker_testkit import FakeController, Harness  # noqa: E402

TEST_LIMIT = 30.0
"""No worker test may take longer; the whole folder is meant to run in well under a minute."""


@pytest.fixture(autouse=True)
def _bounded_test():
    """Bound every test. SIGINT makes asyncio cancel the running test (so the failure shows
    where it hung) or interrupts pytest; faulthandler is the backstop if even that hangs."""
    timer = threading.Timer(TEST_LIMIT, os.kill, (os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(TEST_LIMIT + 30, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    timer.cancel()


@pytest.fixture
async def controller():
    """A running stand-in ControllerService on a free port."""
    fake = FakeController()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def worker(tmp_path):
    """A WorkerService alone behind a real gRPC server (no controller: results stay spooled)."""
    harness = await Harness(tmp_path).start()
    yield harness
    await harness.stop()
