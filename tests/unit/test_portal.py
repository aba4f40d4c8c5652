"""The chat portal is served by the app: right types, caching, security headers, and assets
that load nothing from outside and write no unescaped text as HTML."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.routes.portal import PORTAL_DIR, PORTAL_FILES
from api.security.headers import SECURITY_HEADERS
from core.db import Database
from core.settings import Settings
from tests.fakes import TestKeys, build_services

ASSETS = {
    "/": "text/html",
    "/portal/portal.js": "text/javascript",
    "/portal/markdown.js": "text/javascript",
    "/portal/portal.css": "text/css",
}


@pytest.fixture
def client(settings: Settings, keys: TestKeys, database: Database) -> Iterator[TestClient]:
    services = build_services(settings, keys, database)
    with TestClient(app=create_app(services)) as test_client:
        yield test_client


@pytest.mark.parametrize(("path", "media_type"), sorted(ASSETS.items()))
def test_page_and_assets_are_served_without_credentials(
    client: TestClient, path: str, media_type: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media_type)
    assert "charset=utf-8" in response.headers["content-type"]
    assert response.headers["cache-control"] == "no-cache"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "script-src 'self'" in response.headers["content-security-policy"]
    etag = response.headers["etag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(
    "path", ["/portal/index.html", "/portal/nothing.js", "/portal/..%2Fapp.py", "/portal/"]
)
def test_only_the_portal_files_are_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_the_page_loads_only_its_own_assets() -> None:
    html = (PORTAL_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts, "the page has no script"
    for attributes, body in scripts:
        assert body.strip() == "", "inline script: the CSP refuses it"
        assert 'src="/portal/' in attributes
    assert "<style" not in html, "inline style: the CSP refuses it"
    assert not re.search(r"\sstyle=", html), "style attribute: the CSP refuses it"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler: the CSP refuses it"
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert src.startswith(("/portal/", "#")) or src == "data:,", src


@pytest.mark.parametrize("name", sorted(PORTAL_FILES))
def test_no_asset_names_an_outside_address(name: str) -> None:
    text = (PORTAL_DIR / name).read_text()
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
    assert "@import" not in text


def test_scripts_write_no_unescaped_text_as_html() -> None:
    for name in ("portal.js", "markdown.js"):
        code = (PORTAL_DIR / name).read_text()
        assert "outerHTML" not in code
        assert "insertAdjacentHTML" not in code
        assert "document.write" not in code
        assert "eval(" not in code
        for line in code.splitlines():
            if "innerHTML" in line:
                # The one place: the answer, through the escaping Markdown renderer.
                assert re.fullmatch(
                    r"\s*view\.answer\.innerHTML = renderMarkdown\(view\.text\);", line
                )
    markdown = (PORTAL_DIR / "markdown.js").read_text()
    render = markdown[markdown.index("export function renderMarkdown") :]
    assert "escapeHtml(text)" in render.split("\n")[1], "renderMarkdown must escape first"


def test_the_key_is_kept_in_session_storage_only() -> None:
    code = (PORTAL_DIR / "portal.js").read_text()
    assert "localStorage" not in code
    assert "document.cookie" not in code
    assert 'credentials: "omit"' in code
    assert "sessionStorage.setItem(KEY_SLOT" in code
    assert "sessionStorage.removeItem(KEY_SLOT)" in code
