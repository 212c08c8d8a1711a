"""Migrations, fencing and the per-slot uniqueness, straight against PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from common import db, jobspec
from common.errors import Fenced
from common.repo import jobs as jobs_repo
from common.repo import leadership
from common.repo import runs as runs_repo


def test_three_controllers_migrating_at_once_do_not_race(pg_admin_url: str) -> None:
    name = "migrate_race"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(db.migrate(url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(len(r) for r in results)[-1] >= 1 and sum(len(r) for r in results) == len(
        max(results, key=len)
    )
    assert db.migrate(url) == []


async def _conn(url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True)


async def test_an_old_epoch_cannot_write_after_a_newer_claim(database_url: str) -> None:
    old, new = await _conn(database_url), await _conn(database_url)
    assert await leadership.claim(old, 5, "c1")
    async with old.transaction():
        await leadership.fence(old, 5)
    assert await leadership.claim(new, 6, "c2")
    assert not await leadership.claim(old, 5, "c1"), "a stale leader must not reclaim"
    with pytest.raises(Fenced):
        async with old.transaction():
            await leadership.fence(old, 5)
    assert not await leadership.claim(old, 4, "c3")
    await old.close()
    await new.close()


async def test_a_newer_claim_waits_for_the_old_leaders_open_write(database_url: str) -> None:
    old, new = await _conn(database_url), await _conn(database_url)
    assert await leadership.claim(old, 1, "c1")
    order: list[str] = []
    async with old.transaction():
        await leadership.fence(old, 1)
        claim = asyncio.create_task(leadership.claim(new, 2, "c2"))
        await asyncio.sleep(0.3)
        assert not claim.done(), "claim must block behind the fenced transaction"
        order.append("old write committed")
    assert await claim
    order.append("new leader claimed")
    assert order == ["old write committed", "new leader claimed"]
    await old.close()
    await new.close()


async def test_a_slot_can_only_have_one_run_whoever_inserts_it(database_url: str) -> None:
    conn = await _conn(database_url)
    cols = jobspec.validate_job({"name": "j", "schedule": "* * * * *", "command": "true"})
    job = await jobs_repo.create(conn, {**cols, "next_fire_at": None})
    slot = datetime(2026, 1, 1, tzinfo=UTC)
    row = runs_repo.SlotRow(job_id=job["id"], slot=slot, trigger="schedule", state="pending")
    first = await runs_repo.insert_slots(conn, [row])
    again = await runs_repo.insert_slots(conn, [row, row])
    assert first == 1 and again == 0
    with pytest.raises(psycopg.errors.UniqueViolation):
        await conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, state)"
            " VALUES (%s, %s, 'manual', 'pending')",
            (job["id"], slot),
        )
    await conn.close()
