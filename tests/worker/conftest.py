"""Fixtures for the worker tests. Helpers live in ``worker_testkit`` (importable by tests)."""

from __future__ import annotations

import faulthandler
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the project is used from its checkout, not installed
    sys.path.insert(0, str(ROOT))

from worker_testkit import FakeController  # noqa: E402

TEST_HARD_LIMIT = 40.0


@pytest.fixture(autouse=True)
def _bounded_test():
    """Every test is bounded: a hang dumps all stacks and exits instead of blocking CI."""
    faulthandler.dump_traceback_later(TEST_HARD_LIMIT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
async def controller():
    """A running stand-in ControllerService on a free port."""
    fake = FakeController()
    await fake.start()
    yield fake
    await fake.stop()
