"""Portal sign-in through the organisation's OIDC provider: the settings that enable it, the
public route that tells the page how to sign in, and the page's CSP that lets it reach the
token endpoint (and nothing else)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from pydantic import ValidationError

from api.app import create_app
from api.routes.portal import PORTAL_DIR
from api.security.headers import SECURITY_HEADERS, content_security_policy, origin_of
from core.db import Database
from core.settings import OIDCSettings, Settings
from tests.fakes import TestKeys, build_services

ISSUER = "https://login.corp.example/realms/staff"
PORTAL: dict[str, Any] = {
    "enabled": True,
    "issuer": ISSUER,
    "audience": "enclave",
    "jwks_url": "https://login.corp.example/realms/staff/certs",
    "portal_client_id": "enclave-portal",
    "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
    "token_endpoint": "https://token.corp.example:8443/realms/staff/token",
}


def test_the_portal_offers_oidc_only_when_configured() -> None:
    assert not OIDCSettings().portal_sign_in
    oidc = OIDCSettings(**PORTAL)
    assert oidc.portal_sign_in
    assert oidc.scopes == ["openid"]
    # Enabling OIDC for API clients alone does not put a button on the portal.
    api_only = {k: v for k, v in PORTAL.items() if k not in {"portal_client_id"}}
    api_only.pop("authorization_endpoint")
    api_only.pop("token_endpoint")
    assert not OIDCSettings(**api_only).portal_sign_in


@pytest.mark.parametrize(
    "missing", ["portal_client_id", "authorization_endpoint", "token_endpoint"]
)
def test_portal_fields_are_all_or_nothing(missing: str) -> None:
    partial = {k: v for k, v in PORTAL.items() if k != missing}
    with pytest.raises(ValidationError, match=re.escape(f"missing: auth.oidc.{missing}")):
        OIDCSettings(**partial)


def test_portal_sign_in_needs_oidc_enabled() -> None:
    with pytest.raises(ValidationError, match=re.escape("auth.oidc.enabled is false")):
        OIDCSettings(**{**PORTAL, "enabled": False})


@pytest.mark.parametrize(
    "url",
    [
        "http://login.corp.example/token",  # plain http to a real host
        "ftp://login.corp.example/token",
        "login.corp.example/token",
        "https://user:secret@login.corp.example/token",
        "https:///token",
    ],
)
def test_endpoints_must_be_https(url: str) -> None:
    with pytest.raises(ValidationError, match="token_endpoint"):
        OIDCSettings(**{**PORTAL, "token_endpoint": url})
    with pytest.raises(ValidationError, match="authorization_endpoint"):
        OIDCSettings(**{**PORTAL, "authorization_endpoint": url})


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_plain_http_is_accepted_for_a_local_provider(host: str) -> None:
    oidc = OIDCSettings(
        **{
            **PORTAL,
            "authorization_endpoint": f"http://{host}:8080/authorize",
            "token_endpoint": f"http://{host}:8080/token",
        }
    )
    assert oidc.token_endpoint == f"http://{host}:8080/token"


@pytest.mark.parametrize(
    ("scopes", "message"),
    [(["profile"], "must include openid"), (["openid", 'x"y'], "not valid scope tokens")],
)
def test_scopes_are_checked(scopes: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OIDCSettings(**{**PORTAL, "scopes": scopes})


def test_existing_oidc_validation_still_applies() -> None:
    with pytest.raises(ValidationError, match=re.escape("auth.oidc.issuer is required")):
        OIDCSettings(**{**PORTAL, "issuer": None})


def test_the_settings_tree_reads_the_portal_fields_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in PORTAL.items():
        monkeypatch.setenv(f"ENCLAVE_AUTH__OIDC__{name.upper()}", str(value).lower())
    monkeypatch.setenv("ENCLAVE_AUTH__OIDC__ISSUER", ISSUER)
    monkeypatch.setenv("ENCLAVE_AUTH__OIDC__SCOPES", '["openid", "email"]')
    settings = Settings(paths={"data_dir": tmp_path})
    assert settings.auth.oidc.portal_sign_in
    assert settings.auth.oidc.scopes == ["openid", "email"]


# ---------------------------------------------------------------- the app


def _client(settings: Settings, keys: TestKeys, database: Database) -> TestClient:
    return TestClient(app=create_app(build_services(settings, keys, database)))


@pytest.fixture
def plain(settings: Settings, keys: TestKeys, database: Database) -> Iterator[TestClient]:
    with _client(settings, keys, database) as client:
        yield client


@pytest.fixture
def with_oidc(settings: Settings, keys: TestKeys, database: Database) -> Iterator[TestClient]:
    oidc = settings.auth.oidc.model_validate({**PORTAL, "scopes": ["openid", "email"]})
    configured = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"oidc": oidc})}
    )
    with _client(configured, keys, database) as client:
        yield client


def test_config_without_oidc_offers_api_keys_only(plain: TestClient) -> None:
    response = plain.get("/portal/config.json")
    assert response.status_code == 200
    assert response.json() == {"oidc": None, "api_keys": True}
    assert response.headers["cache-control"] == "no-cache"


def test_config_with_oidc_tells_the_portal_where_to_sign_in(with_oidc: TestClient) -> None:
    response = with_oidc.get("/portal/config.json")  # no credentials: the page is not signed in
    assert response.status_code == 200
    assert response.json() == {
        "oidc": {
            "issuer": ISSUER,
            "authorization_endpoint": PORTAL["authorization_endpoint"],
            "token_endpoint": PORTAL["token_endpoint"],
            "client_id": "enclave-portal",
            "scopes": ["openid", "email"],
        },
        "api_keys": True,
    }


def test_page_csp_without_oidc_is_self_only(plain: TestClient) -> None:
    csp = plain.get("/").headers["content-security-policy"]
    assert csp == SECURITY_HEADERS["Content-Security-Policy"]
    assert "connect-src 'self';" in csp


def test_page_csp_adds_only_the_token_endpoint_origin(with_oidc: TestClient) -> None:
    csp = with_oidc.get("/").headers["content-security-policy"]
    assert "connect-src 'self' https://token.corp.example:8443;" in csp
    # Nothing else loosened: the rest is the strict policy, word for word.
    strict = SECURITY_HEADERS["Content-Security-Policy"]
    assert csp.replace(" https://token.corp.example:8443", "") == strict
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "login.corp.example" not in csp  # the authorization page is navigated to, not fetched


@pytest.mark.parametrize("path", ["/portal/portal.js", "/portal/config.json", "/healthz"])
def test_other_responses_keep_the_strict_csp(with_oidc: TestClient, path: str) -> None:
    response = with_oidc.get(path)
    assert (
        response.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    )


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://idp.example/oauth2/token?x=1", "https://idp.example"),
        ("http://127.0.0.1:9000/token", "http://127.0.0.1:9000"),
        ("https://IdP.Example:8443/t", "https://idp.example:8443"),
    ],
)
def test_origin_of_a_token_endpoint(url: str, origin: str) -> None:
    assert origin_of(url) == origin
    assert f"connect-src 'self' {origin};" in content_security_policy(origin)


def test_the_page_serves_the_sign_in_module_and_keeps_tokens_out_of_cookies() -> None:
    code = (PORTAL_DIR / "oidc.js").read_text()
    portal = (PORTAL_DIR / "portal.js").read_text()
    assert 'code_challenge_method: "S256"' in code
    assert "crypto.subtle.digest" in code
    assert "sessionStorage.removeItem(PENDING_SLOT)" in code
    assert "history.replaceState" in code
    assert "innerHTML" not in code  # the provider's error text is shown as text only
    for text in (code, portal):
        assert "document.cookie" not in text
        assert "localStorage" not in text
