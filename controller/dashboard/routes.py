"""``/`` and ``/static/{asset}``: the dashboard's page and files, shipped as package data.

The page is plain JavaScript that calls the REST API from the browser, so it needs no build
step, no network beyond the controller, and it shows whatever any controller serves. A strict
Content-Security-Policy keeps it to its own files: nothing inline, nothing from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).with_name("static")
INDEX = "index.html"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Files change with the installed version; revalidating is cheap on a LAN.
    "Cache-Control": "no-cache",
}

routes = web.RouteTableDef()


def _files() -> dict[str, Path]:
    """Only names listed in the package's folder: no path from the client reaches the disk."""
    return {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()}


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / INDEX, headers=HEADERS)


@routes.get("/static/{asset}")
async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["asset"]
    files = _files()
    if name not in files:
        raise web.HTTPNotFound(text=f"{name}: no such dashboard file")
    return web.FileResponse(files[name], headers=HEADERS)
