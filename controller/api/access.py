"""Who may call what: the one access rule, shared by the auth middleware and the OpenAPI doc.

Route-agnostic on purpose: GET, HEAD and OPTIONS need the ``read`` role (``admin`` implies
read), every other method needs ``admin``, and reads of history only operators should see
(the audit trail) need ``admin`` too. Public routes are named by their route *template*
(``/static/{asset}``), never by a raw path, so no spelling of a URL can borrow their
openness. Endpoints added later are protected without being listed anywhere.
"""

from __future__ import annotations

READ, ADMIN = "read", "admin"
ROLES = (READ, ADMIN)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

OPENAPI_ROUTE = "/api/v1/openapi.json"
DOCS_ROUTE = "/api/docs"
PUBLIC_ROUTES = frozenset(
    {
        "/",  # the dashboard page: it asks the user for a token and sends it itself
        "/static/{asset}",
        OPENAPI_ROUTE,
        DOCS_ROUTE,
        DOCS_ROUTE + "/",
        DOCS_ROUTE + "/{asset}",
    }
)
OPS_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Open for probes and Prometheus unless CHRONORAFT_PROTECT_OPS_ENDPOINTS is set."""
ADMIN_READ_PREFIXES = ("/api/v1/audit",)


def needed_role(method: str, route: str | None, *, protect_ops: bool) -> str | None:
    """The role a request needs, or None for a public route. ``route`` is the matched route's
    template; None (nothing matched) still needs a token, so probing for routes needs one."""
    if route in PUBLIC_ROUTES or (route in OPS_ROUTES and not protect_ops):
        return None
    if route is not None and route.startswith(ADMIN_READ_PREFIXES):
        return ADMIN
    return READ if method.upper() in SAFE_METHODS else ADMIN
