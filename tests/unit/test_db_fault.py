"""How the leader's tasks read a database error: a rolled-back transaction is retried at
once; only an outage reloads the heap and holds the reaper back."""

from __future__ import annotations

import psycopg
import pytest

from controller.leader.loop import db_fault


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
    ],
)
def test_a_rolled_back_transaction_is_a_conflict_not_an_outage(exc: Exception) -> None:
    assert isinstance(exc, psycopg.OperationalError)  # why the order in db_fault matters
    assert db_fault(exc) == "conflict"


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("connection refused"),
        psycopg.errors.AdminShutdown("terminating connection"),
        ConnectionResetError(),
    ],
)
def test_an_unreachable_database_is_an_outage(exc: Exception) -> None:
    assert db_fault(exc) == "outage"


def test_other_errors_are_not_the_databases() -> None:
    assert db_fault(ValueError("bug")) is None
