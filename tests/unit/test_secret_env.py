"""secret_env: validated like env, never shown, and `***` written back keeps the stored value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from common import jobspec
from common.errors import ValidationError
from controller.api.serialize import job_json

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BODY = {"name": "backup", "schedule": "@every 1h", "command": "backup.sh"}


def stored_row(**cols: Any) -> dict[str, Any]:
    return {
        **jobspec.validate_job({**BODY, **cols}),
        "id": 7,
        "next_fire_at": T0,
        "version": 1,
        "missed_count": 0,
        "skipped_overlap_count": 0,
        "buffer_dropped_count": 0,
        "created_at": T0,
        "updated_at": T0,
    }


def test_secret_values_are_stored_but_never_serialized() -> None:
    row = stored_row(env={"MODE": "full"}, secret_env={"DB_PASSWORD": "hunter2-very-secret"})
    assert row["secret_env"] == {"DB_PASSWORD": "hunter2-very-secret"}
    doc = job_json(row)
    assert doc["secret_env"] == {"DB_PASSWORD": "***"} and doc["env"] == {"MODE": "full"}
    assert "hunter2" not in repr(doc)


def test_a_patch_keeps_secrets_and_a_mask_written_back_keeps_the_value() -> None:
    base = jobspec.to_api(stored_row(secret_env={"A": "alpha-secret", "B": "beta-secret"}))
    assert jobspec.validate_job({"paused": True}, base=base)["secret_env"] == base["secret_env"]
    cols = jobspec.validate_job({"secret_env": {"A": "***", "C": "new"}}, base=base)
    assert cols["secret_env"] == {"A": "alpha-secret", "C": "new"}  # B removed, A kept
    now_stored = {**stored_row(), **cols}
    echoed = {k: v for k, v in job_json(now_stored).items() if k in jobspec.FIELDS}
    assert echoed["secret_env"] == {"A": "***", "C": "***"}
    again = jobspec.validate_job(echoed, base=jobspec.to_api(now_stored))
    assert again["secret_env"] == {"A": "alpha-secret", "C": "new"}


@pytest.mark.parametrize(
    ("extra", "field", "complaint"),
    [
        ({"secret_env": {"X": "***"}}, "secret_env.X", "stands for a stored value"),
        ({"env": {"X": "1"}, "secret_env": {"X": "2"}}, "secret_env.X", "also set in env"),
        ({"secret_env": {"1X": "v"}}, "secret_env.1X", "not allowed"),
        ({"secret_env": {"X": 1}}, "secret_env.X", "must be a string"),
        ({"secret_env": ["X"]}, "secret_env", "object of strings"),
        ({"secret_env": {"X": "a\x00b"}}, "secret_env.X", "no NUL"),
        (
            {
                "env": {f"E{i}": "v" for i in range(100)},
                "secret_env": {f"S{i}": "v" for i in range(29)},
            },
            "secret_env",
            "together must have at most 128",
        ),
    ],
)
def test_bad_secret_env_is_a_400_naming_the_field(
    extra: dict[str, Any], field: str, complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint) as caught:
        jobspec.validate_job({**BODY, **extra})
    assert caught.value.field == field


@pytest.mark.parametrize("name", ["backup\n", "a b", "../x", "x" * 201, "ü"])
def test_names_are_matched_whole(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        jobspec.validate_job({**BODY, "name": name})
    assert caught.value.field == "name"


def test_env_names_are_matched_whole() -> None:
    with pytest.raises(ValidationError) as caught:
        jobspec.validate_job({**BODY, "env": {"PATH\n": "x"}})
    assert caught.value.field == "env.PATH\n"


def test_a_definition_keeps_stars_for_the_upsert_and_a_workflow_node_refuses_them() -> None:
    from common import defspec

    cols = defspec.validate_definition(
        {"name": "d", "command": "true", "secret_env": {"A": "***", "B": "new"}}
    )
    assert cols["secret_env"] == {"A": "***", "B": "new"}  # resolved against the live version
    assert jobspec.keep_stored_secrets(cols["secret_env"], {"A": "old"}) == {"A": "old", "B": "new"}
    with pytest.raises(ValidationError) as caught:
        jobspec.keep_stored_secrets(cols["secret_env"], {})
    assert caught.value.field == "secret_env.A"
    with pytest.raises(ValidationError) as caught:
        defspec.validate_workflow(
            {"nodes": [{"id": "n", "command": "true", "secret_env": {"K": "***"}}]}
        )
    assert caught.value.field == "nodes[0].secret_env.K"
    with pytest.raises(ValidationError) as caught:
        defspec.validate_definition(
            {"name": "d", "command": "true", "env": {"K": "1"}, "secret_env": {"K": "2"}}
        )
    assert caught.value.field == "secret_env.K"
