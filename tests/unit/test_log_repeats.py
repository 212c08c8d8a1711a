"""A library line repeated every tick is written once per interval (common/logging.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from common import logging as chronoraft_logging


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """What the configured handler writes (instead of stderr)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("pysyncobj").level)
    chronoraft_logging.configure("INFO", "text", node="c1")
    out = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    yield out
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("pysyncobj").setLevel(saved[2])


def test_a_library_line_repeated_every_tick_is_written_once_with_its_count(
    written: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(chronoraft_logging.time, "monotonic", lambda: clock[0])
    noisy = logging.getLogger("pysyncobj.serializer")
    for _ in range(500):  # 10 s of a 20 ms tick
        noisy.error("Failed to open file for transmission")
        clock[0] += 0.02
    clock[0] = 1010.0  # the interval is over
    noisy.error("Failed to open file for transmission")
    lines = written.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "[499 more like this in the last 10 s]" in lines[1]


def test_our_own_lines_and_other_library_lines_are_never_held_back(
    written: io.StringIO,
) -> None:
    for _ in range(3):
        logging.getLogger("controller.leader.loop").warning("run skipped")
        logging.getLogger("pysyncobj.tcp_connection").warning("connection lost")
    logging.getLogger("pysyncobj.serializer").warning("connection lost")
    err = written.getvalue()
    assert err.count("controller.leader.loop: run skipped") == 3
    assert err.count("pysyncobj.tcp_connection: connection lost") == 1
    assert err.count("pysyncobj.serializer: connection lost") == 1  # another logger, own line
