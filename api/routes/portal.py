"""``/`` and ``/portal/{file}``: the staff chat portal, a static page served from ``api/portal/``.

The page and its assets are public; every API call the page makes carries the user's key
or OIDC access token. The files are read once when the app is built (a missing file stops
the start), served with an ``ETag`` and ``Cache-Control: no-cache`` so that an upgrade
reaches browsers at once. ``/portal/config.json`` tells the page how users sign in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Controller, Request, Response, get

from api.security.headers import allow_connect_to
from api.services import Services
from core.errors import NotFound
from core.settings import Settings

__all__ = ["PORTAL_DIR", "PORTAL_FILES", "PortalController", "portal_config"]

PORTAL_DIR = Path(__file__).resolve().parent.parent / "portal"
PORTAL_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "portal.js": "text/javascript; charset=utf-8",
    "markdown.js": "text/javascript; charset=utf-8",
    "oidc.js": "text/javascript; charset=utf-8",
    "portal.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


def _load() -> dict[str, _Asset]:
    assets = {}
    for name, media_type in PORTAL_FILES.items():
        body = (PORTAL_DIR / name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[name] = _Asset(body, media_type, etag)
    return assets


def _serve(request: Request[Any, Any, Any], asset: _Asset) -> Response[bytes]:
    headers = {"Cache-Control": "no-cache", "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def portal_config(settings: Settings) -> dict[str, Any]:
    """How the portal signs users in: the OIDC provider's public client data, and API keys.

    Only what a browser needs for the authorization-code flow with PKCE (no secret exists:
    the portal is a public client).
    """
    oidc = settings.auth.oidc
    offer: dict[str, Any] | None = None
    if oidc.portal_sign_in:
        offer = {
            "issuer": oidc.issuer,
            "authorization_endpoint": oidc.authorization_endpoint,
            "token_endpoint": oidc.token_endpoint,
            "client_id": oidc.portal_client_id,
            "scopes": list(oidc.scopes),
        }
    return {"oidc": offer, "api_keys": settings.auth.api_keys.enabled}


class PortalController(Controller):
    """The chat portal's page and its scripts and styles."""

    include_in_schema = False

    def __init__(self, owner: Any) -> None:
        super().__init__(owner)
        self._assets = _load()

    @get("/", sync_to_thread=False)
    def page(self, request: Request[Any, Any, Any], services: Services) -> Response[bytes]:
        """The portal page; it may also reach the OIDC token endpoint when one is set."""
        oidc = services.settings.auth.oidc
        if oidc.portal_sign_in and oidc.token_endpoint is not None:
            allow_connect_to(request.scope, oidc.token_endpoint)
        return _serve(request, self._assets["index.html"])

    @get("/portal/config.json", sync_to_thread=False)
    def config(self, services: Services) -> Response[dict[str, Any]]:
        """How to sign in: ``{"oidc": null | {...}, "api_keys": bool}``."""
        return Response(portal_config(services.settings), headers={"Cache-Control": "no-cache"})

    @get("/portal/{file:str}", sync_to_thread=False)
    def asset(self, request: Request[Any, Any, Any], file: str) -> Response[bytes]:
        """One of the page's scripts or styles; anything else is not found."""
        asset = self._assets.get(file)
        if asset is None or file == "index.html":
            raise NotFound(f"No portal file named {file!r}.")
        return _serve(request, asset)
