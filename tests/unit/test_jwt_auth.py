"""OIDC bearer tokens: real keys, a JWKS file and a JWKS served over loopback HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from api.security import OIDCVerifier, Principal, Unauthenticated, oidc_subject
from core.errors import ConfigurationError, ServiceUnavailable
from core.settings import OIDCSettings

ISSUER = "https://idp.corp.internal/realms/staff"
AUDIENCE = "enclave"


class Signer:
    """A private key with its kid, able to mint tokens and publish its public JWK."""

    def __init__(self, kind: str, kid: str) -> None:
        self.kid = kid
        if kind == "rsa":
            self.key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS256"
            self.jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            self.alg = "ES256"
            self.jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwk.update(kid=kid, use="sig")

    def public_pem(self) -> bytes:
        return bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def token(self, alg: str | None = None, kid: str | None = "own", **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "a1b2c3-idp-user",
            "email": "jane.doe@corp.example",
            "tenant": "northwind",
            "groups": ["enclave-admins", "unrelated-group"],
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        headers = {} if kid is None else {"kid": self.kid if kid == "own" else kid}
        return jwt.encode(claims, self.key, algorithm=alg or self.alg, headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    return head + "." + b64url(signature)


def valid_claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 600}


@pytest.fixture(scope="module")
def rsa_signer() -> Signer:
    return Signer("rsa", "rsa-2026-01")


@pytest.fixture(scope="module")
def ec_signer() -> Signer:
    return Signer("ec", "ec-2026-01")


def write_jwks(path: Path, *signers: Signer) -> None:
    path.write_text(json.dumps({"keys": [s.jwk for s in signers]}), encoding="utf-8")


def touch_with(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))


def oidc(**overrides: Any) -> OIDCSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "role_mapping": {"enclave-admins": "tenant_admin", "enclave-audit": "auditor"},
    }
    values.update(overrides)
    return OIDCSettings(**values)


@pytest.fixture
def jwks_file(tmp_path: Path, rsa_signer: Signer, ec_signer: Signer) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, rsa_signer, ec_signer)
    return path


@pytest.fixture
def verifier(jwks_file: Path) -> OIDCVerifier:
    return OIDCVerifier(oidc(jwks_file=jwks_file))


async def refused(verifier: OIDCVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.authenticate(token)
    message = str(caught.value)
    assert token not in message
    signature = token.rsplit(".", maxsplit=1)[-1]
    assert not signature or signature not in message
    assert caught.value.status_code == 401
    return message


# -- accepted ---------------------------------------------------------------------------


async def test_valid_rsa_token_maps_to_principal(
    verifier: OIDCVerifier, rsa_signer: Signer
) -> None:
    principal = await verifier.authenticate(rsa_signer.token())
    assert principal == Principal(
        subject=oidc_subject(ISSUER, "a1b2c3-idp-user"),
        tenant="northwind",
        roles=frozenset({"staff", "tenant_admin"}),
        auth_method="oidc",
    )
    # Pseudonymous: neither the IdP's id nor the email appears in it.
    assert "a1b2c3" not in principal.subject
    assert "jane" not in principal.subject
    assert principal.subject == oidc_subject(ISSUER, "a1b2c3-idp-user")
    assert principal.subject != oidc_subject("https://other-idp", "a1b2c3-idp-user")


async def test_valid_ec_token(verifier: OIDCVerifier, ec_signer: Signer) -> None:
    principal = await verifier.authenticate(ec_signer.token(groups=["enclave-audit"]))
    assert principal.roles == frozenset({"staff", "auditor"})


async def test_claim_names_and_nested_roles_come_from_settings(
    jwks_file: Path, rsa_signer: Signer
) -> None:
    verifier = OIDCVerifier(
        oidc(
            jwks_file=jwks_file,
            user_id_claim="oid",
            tenant_claim="org.id",
            roles_claim="realm_access.roles",
            default_roles=[],
            role_mapping={"ops": "platform_admin"},
        )
    )
    token = rsa_signer.token(oid="u-42", org={"id": "contoso"}, realm_access={"roles": ["ops"]})
    principal = await verifier.authenticate(token)
    assert principal.tenant == "contoso"
    assert principal.roles == frozenset({"platform_admin"})
    assert principal.subject == oidc_subject(ISSUER, "u-42")


async def test_missing_tenant_uses_default_or_is_refused(
    jwks_file: Path, rsa_signer: Signer
) -> None:
    token = rsa_signer.token(tenant=None)
    assert (await OIDCVerifier(oidc(jwks_file=jwks_file)).authenticate(token)).tenant == "default"
    strict = OIDCVerifier(oidc(jwks_file=jwks_file, default_tenant=None))
    assert "tenant claim 'tenant'" in await refused(strict, token)
    assert "not a tenant id" in await refused(strict, rsa_signer.token(tenant="a:b/c"))


async def test_leeway_tolerates_small_clock_skew(
    verifier: OIDCVerifier, rsa_signer: Signer
) -> None:
    now = int(time.time())
    token = rsa_signer.token(exp=now - 10, iat=now - 600, nbf=now + 10)
    assert (await verifier.authenticate(token)).tenant == "northwind"


# -- refused ----------------------------------------------------------------------------


async def test_expired_token(verifier: OIDCVerifier, rsa_signer: Signer) -> None:
    now = int(time.time())
    token = rsa_signer.token(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    assert "expired" in await refused(verifier, token)


async def test_not_yet_valid_token(verifier: OIDCVerifier, rsa_signer: Signer) -> None:
    now = int(time.time())
    assert "not valid yet" in await refused(verifier, rsa_signer.token(nbf=now + 3600))
    assert "not valid yet" in await refused(verifier, rsa_signer.token(iat=now + 3600))


async def test_wrong_audience(verifier: OIDCVerifier, rsa_signer: Signer) -> None:
    message = await refused(verifier, rsa_signer.token(aud="another-app"))
    assert "audience" in message
    assert AUDIENCE in message


async def test_wrong_issuer(verifier: OIDCVerifier, rsa_signer: Signer) -> None:
    assert "issuer" in await refused(verifier, rsa_signer.token(iss="https://evil.example"))


async def test_alg_none_is_refused(verifier: OIDCVerifier, rsa_signer: Signer) -> None:
    token = hand_made({"alg": "none", "typ": "JWT", "kid": rsa_signer.kid}, valid_claims(), b"")
    message = await refused(verifier, token)
    assert "'none'" in message
    assert "RS256, ES256" in message


async def test_hs256_signed_with_the_public_key_is_refused(
    verifier: OIDCVerifier, rsa_signer: Signer
) -> None:
    # Algorithm confusion: an HMAC "signature" keyed with the public PEM everyone can fetch.
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_signer.kid}
    unsigned = hand_made(header, valid_claims(), b"").rsplit(".", 1)[0]
    mac = hmac.new(rsa_signer.public_pem(), unsigned.encode(), hashlib.sha256).digest()
    assert "'HS256'" in await refused(verifier, unsigned + "." + b64url(mac))


async def test_alg_outside_the_allow_list(verifier: OIDCVerifier, rsa_signer: Signer) -> None:
    assert "'RS384'" in await refused(verifier, rsa_signer.token(alg="RS384"))


async def test_alg_must_fit_the_key_type(
    verifier: OIDCVerifier, rsa_signer: Signer, ec_signer: Signer
) -> None:
    # An EC signature that names the RSA key.
    token = ec_signer.token(kid=rsa_signer.kid)
    assert "does not match" in await refused(verifier, token)


async def test_tampered_signature_and_payload(verifier: OIDCVerifier, rsa_signer: Signer) -> None:
    token = rsa_signer.token()
    head, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert "signature" in await refused(verifier, f"{head}.{payload}.{flipped}")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tenant"] = "someone-else"
    forged = b64url(json.dumps(claims).encode())
    assert "signature" in await refused(verifier, f"{head}.{forged}.{signature}")


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
async def test_missing_required_claims(
    verifier: OIDCVerifier, rsa_signer: Signer, claim: str
) -> None:
    message = await refused(verifier, rsa_signer.token(**{claim: None}))
    assert f"'{claim}'" in message


async def test_garbage_and_oversized_tokens(verifier: OIDCVerifier) -> None:
    assert "well-formed" in await refused(verifier, "not-a-jwt")
    assert "longer than" in await refused(verifier, "a" * 20_000)


async def test_unknown_kid_in_file(verifier: OIDCVerifier) -> None:
    stranger = Signer("rsa", "stranger")
    assert "does not know" in await refused(verifier, stranger.token())


async def test_missing_kid_is_refused_when_several_keys(
    verifier: OIDCVerifier, jwks_file: Path, rsa_signer: Signer
) -> None:
    assert "does not know" in await refused(verifier, rsa_signer.token(kid=None))
    write_jwks(jwks_file, rsa_signer)
    os.utime(jwks_file, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    assert (await verifier.authenticate(rsa_signer.token(kid=None))).tenant == "northwind"


# -- rotation ---------------------------------------------------------------------------


async def test_file_rotation_is_picked_up(
    verifier: OIDCVerifier, jwks_file: Path, rsa_signer: Signer
) -> None:
    new = Signer("rsa", "rsa-2026-02")
    assert "does not know" in await refused(verifier, new.token())
    write_jwks(jwks_file, rsa_signer, new)
    os.utime(jwks_file, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    assert (await verifier.authenticate(new.token())).tenant == "northwind"
    # Dropping the old key retires it.
    write_jwks(jwks_file, new)
    os.utime(jwks_file, ns=(time.time_ns(), time.time_ns() + 2_000_000_000))
    assert "does not know" in await refused(verifier, rsa_signer.token())


async def test_broken_file_keeps_the_last_good_keys(
    verifier: OIDCVerifier, jwks_file: Path, rsa_signer: Signer
) -> None:
    touch_with(jwks_file, "{half a docu")
    assert (await verifier.authenticate(rsa_signer.token())).tenant == "northwind"


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts its fetches."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetches = 0
        self.fail = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                if server.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                body = json.dumps(server.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_url_keys_are_cached(jwks_server: JwksServer, rsa_signer: Signer) -> None:
    jwks_server.document = {"keys": [rsa_signer.jwk]}
    clock = FakeClock()
    verifier = OIDCVerifier(oidc(jwks_url=jwks_server.url, jwks_cache_s=300), clock=clock)
    for _ in range(5):
        await verifier.authenticate(rsa_signer.token())
    assert jwks_server.fetches == 1
    clock.now += 301
    await verifier.authenticate(rsa_signer.token())
    assert jwks_server.fetches == 2


async def test_url_unknown_kid_refetches_once_then_throttles(
    jwks_server: JwksServer, rsa_signer: Signer
) -> None:
    jwks_server.document = {"keys": [rsa_signer.jwk]}
    clock = FakeClock()
    verifier = OIDCVerifier(
        oidc(jwks_url=jwks_server.url, jwks_min_refetch_s=30, jwks_cache_s=3600), clock=clock
    )
    await verifier.authenticate(rsa_signer.token())
    assert jwks_server.fetches == 1
    stranger = Signer("ec", "forged-kid")
    assert "does not know" in await refused(verifier, stranger.token())
    assert jwks_server.fetches == 2  # exactly one refetch for the unknown kid
    for _ in range(5):
        await refused(verifier, stranger.token(kid=f"forged-{_}"))
    assert jwks_server.fetches == 2  # throttled: forged kids cannot hammer the IdP
    clock.now += 31
    await refused(verifier, stranger.token())
    assert jwks_server.fetches == 3


async def test_url_rotation_new_kid_is_picked_up(
    jwks_server: JwksServer, rsa_signer: Signer
) -> None:
    jwks_server.document = {"keys": [rsa_signer.jwk]}
    clock = FakeClock()
    verifier = OIDCVerifier(oidc(jwks_url=jwks_server.url, jwks_cache_s=3600), clock=clock)
    await verifier.authenticate(rsa_signer.token())
    rotated = Signer("ec", "ec-2026-02")
    jwks_server.document = {"keys": [rsa_signer.jwk, rotated.jwk]}
    clock.now += 60  # past the refetch throttle, well inside the cache lifetime
    principal = await verifier.authenticate(rotated.token())
    assert principal.tenant == "northwind"
    assert jwks_server.fetches == 2


async def test_url_outage(jwks_server: JwksServer, rsa_signer: Signer) -> None:
    jwks_server.fail = True
    clock = FakeClock()
    verifier = OIDCVerifier(oidc(jwks_url=jwks_server.url, jwks_cache_s=10), clock=clock)
    with pytest.raises(ServiceUnavailable):
        await verifier.authenticate(rsa_signer.token())
    # Right after a failure requests are answered at once, without another fetch.
    with pytest.raises(ServiceUnavailable) as caught:
        await verifier.authenticate(rsa_signer.token())
    assert caught.value.retry_after >= 1
    assert jwks_server.fetches == 1
    jwks_server.fail = False
    jwks_server.document = {"keys": [rsa_signer.jwk]}
    clock.now += 60
    await verifier.authenticate(rsa_signer.token())
    # Later outages keep the last good keys.
    jwks_server.fail = True
    clock.now += 60
    assert (await verifier.authenticate(rsa_signer.token())).tenant == "northwind"


async def test_symmetric_keys_in_the_jwks_are_ignored(jwks_server: JwksServer) -> None:
    secret = b64url(b"s" * 32)
    jwks_server.document = {"keys": [{"kty": "oct", "kid": "hmac", "k": secret}]}
    verifier = OIDCVerifier(oidc(jwks_url=jwks_server.url))
    header = {"alg": "HS256", "kid": "hmac"}
    unsigned = hand_made(header, valid_claims(), b"").rsplit(".", 1)[0]
    mac = hmac.new(b"s" * 32, unsigned.encode(), hashlib.sha256).digest()
    await refused(verifier, unsigned + "." + b64url(mac))


# -- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("algs", [["none"], ["HS256"], ["RS256", "HS512"], []])
def test_unsafe_algorithms_are_refused_by_settings(algs: list[str]) -> None:
    with pytest.raises(ValidationError):
        OIDCSettings(algorithms=algs)


def test_settings_need_exactly_one_jwks_source(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        oidc()
    with pytest.raises(ValidationError, match="exactly one"):
        oidc(jwks_file=tmp_path / "j.json", jwks_url="http://idp.svc/jwks")
    with pytest.raises(ValidationError, match="issuer"):
        OIDCSettings(enabled=True, audience="a", jwks_url="http://idp.svc/jwks")


def test_unreadable_jwks_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="jwks_file"):
        OIDCVerifier(oidc(jwks_file=tmp_path / "missing.json"))
    empty = tmp_path / "empty.json"
    empty.write_text('{"keys": []}', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="no usable"):
        OIDCVerifier(oidc(jwks_file=empty))
