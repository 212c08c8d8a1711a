import math

import pytest

from common.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("1.5", 1.5),
        (" 45 ", 45.0),
        (".5", 0.5),
        ("90s", 90.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1h2m3s", 3723.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("1m0.1s", 60.1),
        ("1s500ms", 1.5),
    ],
)
def test_numbers_and_go_style_strings_are_seconds(value: object, seconds: float) -> None:
    assert parse_duration(value, "timeout") == seconds


def test_result_is_always_a_float() -> None:
    assert type(parse_duration(30, "timeout")) is float
    assert type(parse_duration("5m", "timeout")) is float


@pytest.mark.parametrize(
    "value",
    ["abc", "", "   ", "1h 30m", "5M", "1e3", "5x", "m", "h1", "1hh", "30 s", "1,5s", "0x10"],
)
def test_unreadable_strings_name_the_field_and_show_examples(value: str) -> None:
    with pytest.raises(DurationError) as err:
        parse_duration(value, "timeout")
    assert str(err.value) == (
        f"timeout: must be a duration such as 30, '90s', '5m' or '1h30m', got {value!r}"
    )


def test_the_documented_error_message_for_abc() -> None:
    with pytest.raises(
        DurationError,
        match=r"^timeout: must be a duration such as 30, "
        r"'90s', '5m' or '1h30m', got 'abc'$",
    ):
        parse_duration("abc", "timeout")


@pytest.mark.parametrize("value", [True, False, None, [1], {"s": 1}, (1,), b"30"])
def test_booleans_none_and_containers_are_refused(value: object) -> None:
    with pytest.raises(DurationError, match=r"^retry_backoff: must be a duration"):
        parse_duration(value, "retry_backoff")


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, "nan", "inf", "Infinity", 10**400, "1" * 400]
)
def test_nan_infinity_and_overflow_are_refused(value: object) -> None:
    with pytest.raises(DurationError, match=r"^timeout: must be a duration"):
        parse_duration(value, "timeout")


@pytest.mark.parametrize("value", [-1, -0.5, "-1", "-5m"])
def test_negative_durations_are_below_the_default_minimum(value: object) -> None:
    with pytest.raises(DurationError) as err:
        parse_duration(value, "timeout")
    assert str(err.value) == "timeout: must be >= 0"


def test_maximum_is_inclusive_and_named_in_the_message() -> None:
    assert parse_duration("1d", "timeout", maximum=86400) == 86400
    with pytest.raises(DurationError) as err:
        parse_duration("1d1s", "timeout", maximum=86400)
    assert str(err.value) == "timeout: must be <= 86400"


def test_minimum_is_inclusive_and_fractional_bounds_read_naturally() -> None:
    assert parse_duration("1s", "interval", minimum=1) == 1
    with pytest.raises(DurationError) as err:
        parse_duration("999ms", "interval", minimum=1)
    assert str(err.value) == "interval: must be >= 1"
    with pytest.raises(DurationError) as err:
        parse_duration(0.1, "interval", minimum=0.25)
    assert str(err.value) == "interval: must be >= 0.25"


def test_duration_error_is_a_value_error_that_remembers_the_field() -> None:
    with pytest.raises(ValueError) as err:
        parse_duration("x", "catchup_window")
    assert isinstance(err.value, DurationError)
    assert err.value.field == "catchup_window"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (5400, "1h30m"),
        (90, "1m30s"),
        (0.25, "250ms"),
        (0.0005, "0.5ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m"),
        (3600, "1h"),
        (86400, "1d"),
        (93784, "1d2h3m4s"),
        (61.5, "1m1.5s"),
        (59.9999999, "1m"),
        (-90, "-1m30s"),
    ],
)
def test_format_duration_uses_the_shortest_go_style_spelling(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "seconds", [0, 0.001, 0.25, 1, 1.5, 59, 60, 61, 90, 3599, 3600, 5400, 86399, 86400, 93784.5]
)
def test_format_duration_round_trips_through_parse_duration(seconds: float) -> None:
    assert parse_duration(format_duration(seconds), "x") == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_format_duration_refuses_non_finite_values(value: float) -> None:
    with pytest.raises(ValueError):
        format_duration(value)


def test_format_duration_refuses_non_numbers() -> None:
    with pytest.raises(TypeError):
        format_duration("5m")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_duration(True)
