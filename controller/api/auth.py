"""Bearer-token authentication and the read/admin roles, as one route-agnostic middleware.

Which role a request needs is decided by controller/api/access.py from the method and the
matched route's template alone, so every new endpoint is protected the day it is added.

Tokens are kept only as SHA-256 digests and a presented token is compared against every one
of them with ``hmac.compare_digest``, so neither the stored secrets nor timing tell a client
how close a guess was. 401 (with ``WWW-Authenticate: Bearer``) means "who are you?": no
token, a malformed header or an unknown token. 403 means "known, but not allowed".
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from common.logging import ctx
from common.settings import Settings, SettingsError
from controller.api.access import ADMIN, READ, ROLES, needed_role
from controller.api.errors import Handler, error_response

log = logging.getLogger(__name__)

TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
HASH_RE = re.compile(r"sha256:([0-9a-fA-F]{64})")
MIN_SECRET_LENGTH = 16
ANONYMOUS = "anonymous"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="chronoraft"'}


class AuthConfigError(SettingsError):
    """The token configuration is unusable; the controller refuses to start."""


@dataclass(frozen=True)
class Identity:
    """Who made a request: the token's name and role."""

    name: str
    role: str

    def may(self, needed: str) -> bool:
        return self.role == ADMIN or needed == READ


@dataclass(frozen=True)
class Token:
    name: str
    role: str
    digest: bytes


IDENTITY = web.RequestKey("identity", Identity)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _checked(name: str, role: str, where: str) -> None:
    if not TOKEN_NAME_RE.fullmatch(name):
        raise AuthConfigError(
            f"{where}: token name {name!r} must be 1-64 letters, digits, '.', '_', '@' or '-'"
        )
    if role not in ROLES:
        raise AuthConfigError(f"{where}: role {role!r} must be read or admin")


def parse_env_tokens(items: Iterable[str]) -> list[Token]:
    """``CHRONORAFT_API_TOKENS`` entries ``name:role:secret`` (the secret may contain ':')."""
    tokens = []
    for item in items:
        name, _, rest = item.partition(":")
        role, _, secret = rest.partition(":")
        where = f"CHRONORAFT_API_TOKENS entry {name or item[:8]!r}"
        if not secret:
            raise AuthConfigError(f"{where}: must look like name:role:secret")
        _checked(name, role, where)
        if len(secret) < MIN_SECRET_LENGTH:
            raise AuthConfigError(f"{where}: secret must be at least {MIN_SECRET_LENGTH} chars")
        tokens.append(Token(name, role, digest(secret)))
    return tokens


def parse_token_file(text: str, path: str) -> list[Token]:
    """Lines ``name role sha256:<hex>``; blank lines and ``#`` comments are skipped."""
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        parts = line.split()
        if len(parts) != 3:
            raise AuthConfigError(f"{where}: expected 'name role sha256:<64 hex digits>'")
        name, role, hashed = parts
        _checked(name, role, where)
        match = HASH_RE.fullmatch(hashed)
        if not match:
            raise AuthConfigError(f"{where}: the hash must be sha256:<64 hex digits>")
        tokens.append(Token(name, role, bytes.fromhex(match.group(1))))
    return tokens


class ApiAuth:
    """The configured tokens and the access rule. Built once at start from Settings."""

    def __init__(self, tokens: list[Token], *, open_api: bool, protect_ops: bool) -> None:
        names = [t.name for t in tokens]
        duplicate = sorted({n for n in names if names.count(n) > 1})
        if duplicate:
            raise AuthConfigError(f"API token name {duplicate[0]!r} is configured twice")
        self.tokens = tokens
        self.open_api = open_api
        self.protect_ops = protect_ops

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiAuth:
        tokens = parse_env_tokens(settings.api_tokens)
        if settings.api_tokens_file:
            path = Path(settings.api_tokens_file)
            try:
                text = path.read_text()
            except OSError as exc:
                raise AuthConfigError(f"CHRONORAFT_API_TOKENS_FILE: {exc}") from None
            tokens += parse_token_file(text, str(path))
        if not tokens and not settings.insecure_dev:
            raise AuthConfigError(
                "no API token configured: set CHRONORAFT_API_TOKENS (name:role:secret,...) or "
                "CHRONORAFT_API_TOKENS_FILE, or run with --insecure-dev (CHRONORAFT_INSECURE_DEV=1)"
                " to leave the API open on a development machine"
            )
        if not tokens:
            log.warning("INSECURE DEV MODE: no API token configured, the REST API is open to all")
        return cls(tokens, open_api=not tokens, protect_ops=settings.protect_ops_endpoints)

    def identify(self, secret: str) -> Identity | None:
        """The token this secret belongs to. Every digest is compared, match or not."""
        presented = digest(secret)
        found: Token | None = None
        for token in self.tokens:
            if hmac.compare_digest(presented, token.digest):
                found = token
        return Identity(found.name, found.role) if found else None


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _route_template(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def _denied(request: web.Request, status: int, reason: str, **fields: str) -> None:
    log.warning(
        "API request refused: %s",
        reason,
        extra=ctx(
            status=status,
            method=request.method,
            path=request.path[:200],
            peer=request.remote,
            **fields,
        ),
    )


def auth_middleware(auth: ApiAuth) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        needed = needed_role(request.method, _route_template(request), protect_ops=auth.protect_ops)
        if needed is None:
            return await handler(request)
        if auth.open_api:
            request[IDENTITY] = Identity(ANONYMOUS, ADMIN)
            return await handler(request)
        secret = bearer(request.headers.get("Authorization"))
        identity = auth.identify(secret) if secret else None
        if identity is None:
            reason = "unknown token" if secret else "no bearer token"
            _denied(request, 401, reason)
            response = error_response(
                401,
                "unauthorized",
                f"authorization: {reason}; send 'Authorization: Bearer <token>'",
                field="authorization",
            )
            response.headers.update(CHALLENGE)
            return response
        if not identity.may(needed):
            _denied(request, 403, "role too low", token=identity.name, role=identity.role)
            return error_response(
                403,
                "forbidden",
                f"authorization: token {identity.name!r} has role {identity.role}; "
                f"this request needs {needed}",
                field="authorization",
            )
        request[IDENTITY] = identity
        return await handler(request)

    return middleware
