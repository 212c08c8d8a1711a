import math

import pytest

from common.backoff import retry_delay


@pytest.mark.parametrize(
    ("attempt", "expected_full_delay"),
    [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0), (10, 5120.0)],
)
def test_delay_doubles_per_attempt_before_jitter(attempt: int, expected_full_delay: float) -> None:
    d = min(3600.0, expected_full_delay)
    assert retry_delay(attempt, base=10, rand=0.0) == d / 2
    assert retry_delay(attempt, base=10, rand=0.5) == d * 0.75


def test_first_retry_waits_between_half_and_all_of_base() -> None:
    assert retry_delay(1, base=30, rand=0.0) == 15.0
    assert retry_delay(1, base=30, rand=0.5) == 22.5
    assert 15.0 <= retry_delay(1, base=30, rand=0.999999) < 30.0


def test_cap_bounds_the_delay_before_jitter() -> None:
    assert retry_delay(8, base=60, cap=300, rand=0.0) == 150.0
    assert retry_delay(8, base=60, cap=300, rand=0.5) == 225.0


def test_default_cap_is_one_hour() -> None:
    assert retry_delay(30, base=1, rand=0.0) == 1800.0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert retry_delay(10**6, base=1, cap=100, rand=0.0) == 50.0
    assert retry_delay(1025, base=1e300, cap=100, rand=0.5) == 75.0


def test_zero_base_means_retry_immediately() -> None:
    assert retry_delay(5, base=0, rand=0.9) == 0.0


def test_same_inputs_give_the_same_delay() -> None:
    assert retry_delay(3, 7.5, 1000, 0.123) == retry_delay(3, 7.5, 1000, 0.123)


@pytest.mark.parametrize("attempt", [0, -1, True, 1.0, "1", None])
def test_attempt_must_be_a_positive_integer(attempt: object) -> None:
    with pytest.raises(ValueError, match="^attempt: "):
        retry_delay(attempt, base=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("base", [-1, math.nan, math.inf, True, "1", None])
def test_base_must_be_a_finite_non_negative_number(base: object) -> None:
    with pytest.raises(ValueError, match="^base: "):
        retry_delay(1, base=base)  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", [-1, math.nan, math.inf])
def test_cap_must_be_a_finite_non_negative_number(cap: float) -> None:
    with pytest.raises(ValueError, match="^cap: "):
        retry_delay(1, base=1, cap=cap)


@pytest.mark.parametrize("rand", [-0.1, 1.0, 1.5, math.nan])
def test_rand_must_lie_in_the_unit_interval(rand: float) -> None:
    with pytest.raises(ValueError, match="^rand: "):
        retry_delay(1, base=1, rand=rand)
