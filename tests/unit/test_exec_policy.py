"""Command allowlists: what counts as the executable, and which patterns match it."""

from __future__ import annotations

import pytest

from common import jobspec
from common.errors import ValidationError
from common.exec_policy import PolicyError, check_command, parse_policy, refusal

POLICY = parse_policy('{"default": ["/usr/bin/*", "echo", "true"], "ops": ["*"], "*": ["date"]}')


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("echo hello $CHRONORAFT_RUN_ID", None),
        ("echo", ["hello"]),
        ("true", None),
        ("/usr/bin/env", ["python3", "-V"]),
        ("'ec''ho' quoted words", None),  # the shell runs echo; so does the check
        ("echo to a file > /tmp/out", None),
    ],
)
def test_allowed_commands(command: str, args: list[str] | None) -> None:
    check_command(POLICY, "default", command, args)


@pytest.mark.parametrize(
    ("command", "args", "why"),
    [
        ("rm -rf /tmp/x", None, "'rm' is not allowed"),
        ("/bin/echo", ["x"], "'/bin/echo' is not allowed"),
        ("/tmp/evil/echo", [], "'/tmp/evil/echo'"),  # a bare-name pattern needs a bare name
        ("/usr/bin/../../tmp/x", [], "not allowed"),  # normalised before matching
        ("/usr/bin/sub/x", [], "not allowed"),  # * stays inside one path segment
        ("echo hi; rm -rf /tmp/x", None, "may not chain"),
        ("echo hi && curl x", None, "may not chain"),
        ("echo $(cat /etc/shadow)", None, "may not chain"),
        ("echo `id`", None, "may not chain"),
        ("echo a\nrm b", None, "may not chain"),
        ("A=1 echo", None, "'A=1' is not allowed"),
        ("echo 'unbalanced", None, "cannot tell the executable"),
        ("   ", None, "no executable"),
    ],
)
def test_refused_commands_name_the_reason(command: str, args: list[str] | None, why: str) -> None:
    with pytest.raises(ValidationError, match=why) as caught:
        check_command(POLICY, "default", command, args)
    assert caught.value.field == "command"
    assert "namespace 'default'" in caught.value.message


def test_namespaces_have_their_own_lists_and_star_covers_the_rest() -> None:
    check_command(POLICY, "ops", "anything at all; really", None)
    check_command(POLICY, "reports", "date", ["-u"])
    with pytest.raises(ValidationError):
        check_command(POLICY, "reports", "echo", ["x"])
    only_default = parse_policy('{"default": ["true"]}')
    with pytest.raises(ValidationError, match=r"allowed: none"):
        check_command(only_default, "other", "true", None)


def test_no_policy_allows_everything() -> None:
    assert parse_policy("") is None and parse_policy("  ") is None
    check_command(None, "default", "rm -rf /tmp/x; curl y", None)
    assert refusal(["*"], "anything; at all", None) is None


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("{not json", "malformed JSON"),
        ('["echo"]', "JSON object"),
        ('{"default": "echo"}', "list of glob patterns"),
        ('{"default": [""]}', "non-empty"),
        ('{"default": ["bin/*"]}', "absolute"),
    ],
)
def test_malformed_policies_are_startup_errors(raw: str, complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint):
        parse_policy(raw)


def test_job_validation_checks_new_and_changed_commands_only() -> None:
    base_body = {"name": "j", "schedule": "@every 5s", "command": "rm", "args": ["x"]}
    with pytest.raises(ValidationError, match="'rm' is not allowed"):
        jobspec.validate_job(base_body, policy=POLICY)
    stored = jobspec.to_api({**jobspec.validate_job(base_body), "secret_env": {}})
    # Pausing a job whose command the (tightened) allowlist no longer has still works...
    assert jobspec.validate_job({"paused": True}, base=stored, policy=POLICY)["paused"]
    # ...changing its command to another refused one does not.
    with pytest.raises(ValidationError, match="'rm' is not allowed"):
        jobspec.validate_job({"args": ["y"]}, base=stored, policy=POLICY)
