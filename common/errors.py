"""Domain exceptions with stable codes; the API maps codes to HTTP statuses in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a client may see; ``code`` is stable, ``message`` is for people."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(DomainError):
    """A request field is missing, malformed or out of range."""

    code = "invalid_field"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The request is valid but collides with current state (duplicate name, wrong state)."""

    code = "conflict"


class Fenced(Exception):
    """This node's epoch is no longer the current one: a newer leader exists. Stop writing."""

    code = "fenced"

    def __init__(self, mine: int, current: int) -> None:
        super().__init__(f"epoch {mine} fenced off by epoch {current}")
        self.mine = mine
        self.current = current
