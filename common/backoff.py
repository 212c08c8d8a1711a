"""Retry delays: exponential back-off with "equal jitter".

Why equal jitter: when a dependency fails, every job that uses it fails at about the same
moment; identical delays would make them all retry in the same instant and knock it over
again. Equal jitter keeps at least half of the exponential delay (so retries still back off
predictably) and spreads the other half at random. The random draw is a parameter so the
caller owns the randomness and tests are deterministic; this module reads no clock and no
random source.
"""

from __future__ import annotations

import math

__all__ = ["retry_delay"]

# 2.0 ** 1024 overflows; anything at or beyond this exponent is capped anyway.
_MAX_EXPONENT = 1023


def _finite(name: str, value: float, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name}: must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)


def retry_delay(attempt: int, base: float, cap: float = 3600.0, rand: float = 0.5) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first try failed).

    ``d = min(cap, base * 2 ** (attempt - 1))`` and the result is ``d/2 + rand * d/2``, so it
    always lies in ``[d/2, d)``. ``rand`` must be drawn by the caller from ``[0, 1)``.
    Huge attempt numbers are fine: the exponent is clamped before it can overflow a float.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt: must be an integer >= 1, got {attempt!r}")
    base = _finite("base", base)
    cap = _finite("cap", cap)
    rand = _finite("rand", rand)
    if rand >= 1.0:
        raise ValueError(f"rand: must be in [0, 1), got {rand!r}")
    exponent = min(attempt - 1, _MAX_EXPONENT)
    delay = min(cap, base * 2.0**exponent)
    return delay / 2 + rand * delay / 2
