"""A small OIDC provider for the browser tests: authorization code + PKCE (S256), RS256 JWTs.

``/authorize`` approves a fixed test user at once and redirects back with ``code`` and
``state``; ``/token`` checks the code's client id, redirect URI and PKCE verifier against
what ``/authorize`` stored and returns an RS256 access token (and id token) carrying the
``nonce``, the tenant and the groups the API maps to roles. The signing key is generated
when the provider starts; its JWKS is written to a file the stack reads (``jwks_file``).
Local only (127.0.0.1), one thread per request, stopped with :meth:`OIDCProvider.stop`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = ["CLIENT_ID", "TEST_USER", "OIDCProvider", "start_provider"]

CLIENT_ID = "enclave-portal"
TEST_USER = "alice.example"
_KID = "e2e-key-1"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    issued: float


@dataclass
class OIDCProvider:
    """A running provider: its URLs, its JWKS file, and the token requests it answered."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    jwks_file: Path
    private_key: rsa.RSAPrivateKey
    audience: str = CLIENT_ID
    tenant: str = "default"
    groups: list[str] = field(default_factory=lambda: ["staff"])
    token_lifetime_s: int = 300
    tamper_next_state: bool = False  # the next /authorize redirect carries a forged state
    grants: dict[str, _Grant] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    def stack_env(self) -> dict[str, str]:
        """``ENCLAVE_AUTH__OIDC__*`` settings that make the stack trust this provider."""
        prefix = "ENCLAVE_AUTH__OIDC__"
        return {
            f"{prefix}ENABLED": "true",
            f"{prefix}ISSUER": self.issuer,
            f"{prefix}AUDIENCE": self.audience,
            f"{prefix}JWKS_FILE": str(self.jwks_file),
            f"{prefix}PORTAL_CLIENT_ID": CLIENT_ID,
            f"{prefix}AUTHORIZATION_ENDPOINT": self.authorization_endpoint,
            f"{prefix}TOKEN_ENDPOINT": self.token_endpoint,
        }

    def mint(self, *, audience: str | None = None, nonce: str | None = None) -> str:
        """An RS256 access token for the test user, signed with the provider's key."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience or self.audience,
            "sub": TEST_USER,
            "iat": now,
            "exp": now + self.token_lifetime_s,
            "tenant": self.tenant,
            "groups": list(self.groups),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": _KID})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _Handler(BaseHTTPRequestHandler):
    provider: OIDCProvider  # set on the subclass made per provider

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test output is for the tests."""

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        # The portal (another origin) reads the token response: CORS, without credentials.
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
        self.send_header("Access-Control-Allow-Methods", "POST")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")
        self.end_headers()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/authorize":
            self._json(404, {"error": "not_found"})
            return
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        redirect_uri = query.get("redirect_uri", "")
        problems = []
        if query.get("client_id") != CLIENT_ID:
            problems.append("unknown client_id")
        if query.get("response_type") != "code":
            problems.append("response_type must be code")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problems.append("PKCE with S256 is required")
        if "openid" not in query.get("scope", "").split():
            problems.append("scope must include openid")
        if not redirect_uri.startswith("http://127.0.0.1:"):
            problems.append("redirect_uri is not registered")
        if problems:
            self._json(400, {"error": "invalid_request", "error_description": "; ".join(problems)})
            return
        code = secrets.token_urlsafe(24)
        provider = self.provider
        with provider.lock:
            provider.grants[code] = _Grant(
                CLIENT_ID, redirect_uri, query["code_challenge"], query.get("nonce"), time.time()
            )
            state = query.get("state", "")
            if provider.tamper_next_state:
                provider.tamper_next_state = False
                state = "forged-" + secrets.token_urlsafe(8)
        self.send_response(302)
        self.send_header("Location", f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/token":
            self._json(404, {"error": "not_found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        provider = self.provider
        with provider.lock:
            provider.token_requests.append(form)
            grant = provider.grants.pop(form.get("code", ""), None)  # a code is used once
        if form.get("grant_type") != "authorization_code":
            self._json(400, {"error": "unsupported_grant_type"})
            return
        if grant is None or time.time() - grant.issued > 60:
            self._json(400, {"error": "invalid_grant", "error_description": "unknown code"})
            return
        if form.get("client_id") != grant.client_id:
            self._json(400, {"error": "invalid_client", "error_description": "client mismatch"})
            return
        if form.get("redirect_uri") != grant.redirect_uri:
            self._json(400, {"error": "invalid_grant", "error_description": "redirect mismatch"})
            return
        if _s256(form.get("code_verifier", "")) != grant.challenge:
            self._json(400, {"error": "invalid_grant", "error_description": "PKCE check failed"})
            return
        token = provider.mint(nonce=grant.nonce)
        self._json(
            200,
            {
                "access_token": token,
                "id_token": provider.mint(audience=CLIENT_ID, nonce=grant.nonce),
                "token_type": "Bearer",
                "expires_in": provider.token_lifetime_s,
            },
        )


def start_provider(workdir: Path) -> OIDCProvider:
    """Start a provider on a free local port; its JWKS lands in ``workdir/jwks.json``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": _KID, "use": "sig", "alg": "RS256"})
    jwks_file = workdir / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}))

    class _Bound(_Handler):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Bound)
    thread = threading.Thread(target=server.serve_forever, name="oidc-provider", daemon=True)
    provider = OIDCProvider(server, thread, jwks_file, key)
    _Bound.provider = provider
    thread.start()
    return provider
