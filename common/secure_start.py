"""Refuse to start a node that would run unprotected, unless development mode says so.

A controller needs API tokens (else anyone reaching its port could run commands on the
workers), a Raft password (else any process could vote) and the gRPC secret; a worker needs
the gRPC secret (else anyone could make it run anything). ``--insecure-dev``
(``CHRONORAFT_INSECURE_DEV=1``) starts without them for a laptop, loudly. Pure: the
``chronoraft controller`` and ``chronoraft worker`` commands call it before starting.
"""

from __future__ import annotations

from typing import Literal

from common.settings import Settings, SettingsError

Role = Literal["controller", "worker"]


def missing_protection(settings: Settings, role: Role) -> list[str]:
    """What this node would run without, one phrase per missing piece."""
    missing = []
    if role == "controller":
        if not settings.api_tokens and not settings.api_tokens_file:
            missing.append("no API token (CHRONORAFT_API_TOKENS or CHRONORAFT_API_TOKENS_FILE)")
        if not settings.raft_password:
            missing.append("no Raft password (CHRONORAFT_RAFT_PASSWORD)")
    if not settings.grpc_secret:
        missing.append("no gRPC secret (CHRONORAFT_GRPC_SECRET)")
    return missing


def check_start(settings: Settings, role: Role) -> list[str]:
    """Raise SettingsError when protection is missing outside insecure dev mode; in that mode
    return what is missing, for the caller to warn about."""
    missing = missing_protection(settings, role)
    if missing and not settings.insecure_dev:
        raise SettingsError(
            f"refusing to start the {role}: {'; '.join(missing)}. Configure them, or pass "
            "--insecure-dev (CHRONORAFT_INSECURE_DEV=1) on a development machine"
        )
    return missing
