"""Which executables a job may run: glob allowlists per namespace (controller) and per worker.

Pure: no I/O. The controller checks a job's command when it is created or changed (a 400
naming ``command``); a worker checks every RunTask again with its own list, so a worker for
sensitive work can be stricter than the cluster (defence in depth: a controller bug or a
stolen gRPC secret still cannot make that worker run anything else).

What is matched is the executable: ``command`` itself when the job has ``args`` (no shell),
else the first word of the shell command. A shell command could chain a second program after
an allowed first word (``echo hi; curl …``), so under an allowlist a shell command may not
contain command separators or substitutions (``;``, ``&``, ``|``, newlines, backquotes,
``$(``, ``<(``, ``>(``); ``$VAR`` expansion and redirections stay allowed.

Patterns: ``*`` allows everything; a pattern with a ``/`` must be absolute and matches the
normalised absolute path segment by segment (``/usr/bin/*`` does not match
``/usr/bin/../../tmp/x`` nor ``/usr/bin/sub/x``); a pattern without ``/`` matches only a bare
name looked up in PATH (``echo`` does not match ``/tmp/evil/echo``).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from common.errors import ValidationError

ANY = "*"
"""As a pattern: every command. As a namespace key: every namespace not listed by name."""
_CHAINING = re.compile(r"[;&|\n\r`]|\$\(|<\(|>\(")
MAX_PATTERNS = 1000


class PolicyError(ValueError):
    """The allowlist configuration itself is malformed (a startup error, not a 400)."""


@dataclass(frozen=True)
class ExecPolicy:
    """Allowed patterns per namespace; a namespace with no entry (and no ``*``) allows none."""

    namespaces: Mapping[str, tuple[str, ...]]

    def patterns_for(self, namespace: str) -> tuple[str, ...]:
        if namespace in self.namespaces:
            return self.namespaces[namespace]
        return self.namespaces.get(ANY, ())


def check_patterns(patterns: Sequence[str], where: str) -> tuple[str, ...]:
    """Validate a list of patterns (raises PolicyError naming ``where``)."""
    if isinstance(patterns, str) or not isinstance(patterns, Sequence):
        raise PolicyError(f"{where}: must be a list of glob patterns")
    if len(patterns) > MAX_PATTERNS:
        raise PolicyError(f"{where}: at most {MAX_PATTERNS} patterns")
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise PolicyError(f"{where}: every pattern must be a non-empty string")
        if "/" in pattern and not pattern.startswith("/"):
            raise PolicyError(f"{where}: pattern {pattern!r} must be absolute or contain no '/'")
    return tuple(patterns)


def parse_policy(raw: str) -> ExecPolicy | None:
    """``CHRONORAFT_ALLOWED_COMMANDS``: a JSON object namespace -> patterns; empty means None
    (no allowlist: everything is allowed)."""
    if not raw.strip():
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"CHRONORAFT_ALLOWED_COMMANDS: malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PolicyError("CHRONORAFT_ALLOWED_COMMANDS: must be a JSON object namespace -> list")
    return ExecPolicy(
        {
            str(ns): check_patterns(patterns, f"CHRONORAFT_ALLOWED_COMMANDS[{ns!r}]")
            for ns, patterns in doc.items()
        }
    )


def executable_of(command: str, args: Sequence[str] | None) -> str:
    """argv[0]: the command itself with args, else the shell command's first word.

    Raises ValueError for a shell command whose words cannot be parsed (unbalanced quotes).
    """
    if args is not None:
        return command
    words = shlex.split(command)
    return words[0] if words else ""


def _matches(executable: str, pattern: str) -> bool:
    if pattern == ANY:
        return True
    if "/" not in pattern:
        return "/" not in executable and fnmatchcase(executable, pattern)
    if not executable.startswith("/"):
        return False
    path = PurePosixPath(posixpath.normpath(executable))
    return len(path.parts) == len(PurePosixPath(pattern).parts) and path.match(pattern)


def refusal(patterns: Sequence[str], command: str, args: Sequence[str] | None) -> str | None:
    """Why ``patterns`` do not allow this command, or None when they do."""
    if ANY in patterns:
        return None
    if args is None and _CHAINING.search(command):
        return (
            "a shell command may not chain or substitute commands (; & | newline ` $( <( >() "
            "under an allowlist; use command + args"
        )
    try:
        executable = executable_of(command, args)
    except ValueError as exc:
        return f"cannot tell the executable of the shell command: {exc}"
    if not executable:
        return "no executable"
    if any(_matches(executable, p) for p in patterns):
        return None
    shown = ", ".join(patterns) if patterns else "none"
    return f"executable {executable!r} is not allowed (allowed: {shown})"


def check_command(
    policy: ExecPolicy | None, namespace: str, command: str, args: Sequence[str] | None
) -> None:
    """Raise a ValidationError naming ``command`` when the namespace's allowlist refuses it.

    ``policy`` None (no allowlist configured) allows everything.
    """
    if policy is None:
        return
    reason = refusal(policy.patterns_for(namespace), command, args)
    if reason is not None:
        raise ValidationError(
            f"command: not allowed in namespace {namespace!r}: {reason}", field="command"
        )
