"""Durations as people write them in job specs: ``30``, ``"1.5"``, ``"90s"``, ``"1h30m"``.

Why a module of its own: timeouts, retry back-off, catch-up windows and ``@every`` intervals
all accept the same spellings, and an operator who mistypes one must be told which field
is wrong and what would have been accepted. Keeping one parser means one set of rules and
one set of error messages for the REST API, the CLI and the schedule parser.

The string form follows Go's ``time.ParseDuration`` (which operators know from Nomad,
Kubernetes and Prometheus): a sequence of ``<number><unit>`` pairs with units ``d``, ``h``,
``m``, ``s`` and ``ms``, no spaces, units in lowercase. A plain number means seconds.
Arithmetic is exact (fractions) until the final conversion, so ``"1m0.1s"`` is 60.1 and not
60.099999.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = ["DurationError", "format_duration", "parse_duration"]

_UNITS: dict[str, Fraction] = {
    "d": Fraction(86400),
    "h": Fraction(3600),
    "m": Fraction(60),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_RE = re.compile(rf"[+-]?{_NUMBER}", re.ASCII)
# "ms" must be tried before "m" so that "250ms" is not read as "250m" followed by garbage.
_PART_RE = re.compile(rf"({_NUMBER})(ms|d|h|m|s)", re.ASCII)
_GO_RE = re.compile(rf"([+-]?)((?:{_NUMBER}(?:ms|d|h|m|s))+)", re.ASCII)


class DurationError(ValueError):
    """A duration that cannot be used; the message starts with the offending field's name."""

    code = "invalid_duration"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _number(value: float) -> str:
    """Render a bound without a pointless ``.0`` so messages read ``must be <= 86400``."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _invalid(field: str, value: object) -> DurationError:
    return DurationError(
        field, f"must be a duration such as 30, '90s', '5m' or '1h30m', got {value!r}"
    )


def _parse_text(text: str) -> Fraction | None:
    """Exact seconds for a string, or None when it is not a duration at all."""
    if _PLAIN_RE.fullmatch(text):
        return Fraction(text)
    match = _GO_RE.fullmatch(text)
    if match is None:
        return None
    total = sum(
        (Fraction(number) * _UNITS[unit] for number, unit in _PART_RE.findall(match.group(2))),
        Fraction(0),
    )
    return -total if match.group(1) == "-" else total


def parse_duration(
    value: object,
    field: str,
    *,
    minimum: float = 0,
    maximum: float | None = None,
) -> float:
    """Seconds for ``value``, validated against ``[minimum, maximum]``.

    ``field`` only names the input in error messages, so the API can point at the exact key
    the user got wrong. ``bool`` is refused even though it is an ``int``: ``timeout: true`` is
    a mistake, not one second. NaN and infinities are refused because every consumer does
    arithmetic with the result (deadlines, heaps) where they poison comparisons.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _invalid(field, value)
    parsed = _parse_text(value.strip()) if isinstance(value, str) else value
    if parsed is None:
        raise _invalid(field, value)
    try:
        seconds = float(parsed)
    except OverflowError:  # an int or a digit string too long for a float
        raise _invalid(field, value) from None
    if not math.isfinite(seconds):
        raise _invalid(field, value)
    if seconds < minimum:
        raise DurationError(field, f"must be >= {_number(minimum)}")
    if maximum is not None and seconds > maximum:
        raise DurationError(field, f"must be <= {_number(maximum)}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Go-style spelling of ``seconds`` that ``parse_duration`` reads back.

    Used in messages and the UI so that a value the user typed as ``"1h30m"`` is shown the
    same way rather than as ``5400.0``.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"seconds: must be a number, got {type(seconds).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"seconds: must be finite, got {seconds!r}")
    if seconds < 0:
        return "-" + format_duration(-seconds)
    micros = round(seconds * 1_000_000)
    if micros == 0:
        return "0s"
    if micros < 1_000_000:
        return f"{_number(micros / 1000)}ms"
    whole, fraction = divmod(micros, 1_000_000)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if secs or fraction:
        parts.append(f"{_number(secs + fraction / 1_000_000)}s")
    return "".join(parts)
