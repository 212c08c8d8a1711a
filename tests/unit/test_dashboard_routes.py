"""The dashboard's page and files are served from package data, locked to their own folder."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from controller.dashboard import routes as dashboard


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    app.add_routes(dashboard.routes)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def test_index_links_only_its_own_files_and_each_is_served(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    page = await resp.text()
    assets = re.findall(r'(?:src|href)="static/([^"]+)"', page)
    assert {"app.js", "style.css"} <= set(assets)
    assert "//" not in page.replace("<!doctype", ""), "nothing may load from elsewhere"
    for name in assets:
        resp = await client.get(f"/static/{name}")
        assert resp.status == 200, name
        assert len(await resp.read()) > 0, name
    resp = await client.get("/static/app.js")
    assert resp.content_type in ("application/javascript", "text/javascript")


def test_package_data_globs_ship_every_static_file() -> None:
    pyproject = (dashboard.STATIC_DIR.parents[2] / "pyproject.toml").read_text()
    assert 'controller = ["dashboard/static/*"]' in pyproject
    assert all(p.is_file() for p in dashboard.STATIC_DIR.iterdir())  # the glob is not recursive


def test_app_js_sends_the_token_as_a_bearer_header_and_explains_401_403_503() -> None:
    source = (dashboard.STATIC_DIR / "app.js").read_text()
    assert "headers.Authorization = `Bearer ${token()}`" in source
    assert "localStorage.getItem(TOKEN_KEY)" in source
    for status in ("case 401:", "case 403:", "case 503:"):
        assert status in source


@pytest.mark.parametrize(
    "name", ["nope.js", "..%2Froutes.py", "%2e%2e%2froutes.py", "%2Fetc%2Fpasswd"]
)
async def test_unknown_names_are_404(
    client: TestClient[web.Request, web.Application], name: str
) -> None:
    resp = await client.get(f"/static/{name}")
    assert resp.status == 404
