"""What an audit row says was changed, read from the route template alone."""

from __future__ import annotations

import pytest

from controller.api.audit import describe_target


@pytest.mark.parametrize(
    ("template", "method", "params", "expected"),
    [
        ("/api/v1/jobs", "POST", {}, ("job", None, "create")),
        ("/api/v1/jobs/{ref}", "PUT", {"ref": "backup"}, ("job", "backup", "replace")),
        ("/api/v1/jobs/{ref}", "PATCH", {"ref": "7"}, ("job", "7", "update")),
        ("/api/v1/jobs/{ref}", "DELETE", {"ref": "7"}, ("job", "7", "delete")),
        ("/api/v1/jobs/{ref}/pause", "POST", {"ref": "7"}, ("job", "7", "pause")),
        ("/api/v1/jobs/{ref}/trigger", "POST", {"ref": "b"}, ("job", "b", "trigger")),
        ("/api/v1/runs/{id}/cancel", "POST", {"id": "12"}, ("run", "12", "cancel")),
        (
            "/api/v1/dags/{id}/runs/{run}/nodes/{node}/retry",
            "POST",
            {"id": "1", "run": "2", "node": "extract"},
            ("node", "extract", "retry"),
        ),
        ("/api/v1/namespaces", "POST", {}, ("namespace", None, "create")),
    ],
)
def test_target_type_id_and_verb(
    template: str,
    method: str,
    params: dict[str, str],
    expected: tuple[str, str | None, str],
) -> None:
    assert describe_target(template, method, params) == expected
