"""API keys: issued once, stored as a hash, refused when unknown, revoked or expired."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from api.security import (
    Authenticator,
    MemoryApiKeyStore,
    Principal,
    Unauthenticated,
    hash_api_key,
    issue_api_key,
    verify_api_key,
)
from api.security import api_keys as api_keys_module
from core.errors import ConfigurationError
from core.settings import AuthSettings, OIDCSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PEPPER = b"server-side-pepper-from-a-secret"


@pytest.fixture
def store() -> MemoryApiKeyStore:
    return MemoryApiKeyStore()


async def issued(store: MemoryApiKeyStore, **kwargs: object) -> str:
    key = issue_api_key(
        tenant="northwind",
        roles=["staff"],
        name="canary",
        pepper=PEPPER,
        now=NOW,
        **kwargs,  # type: ignore[arg-type]
    )
    await store.add(key.record)
    return key.plaintext


async def test_issue_then_verify(store: MemoryApiKeyStore) -> None:
    key = issue_api_key(
        tenant="northwind", roles=["staff", "auditor"], name="svc", pepper=PEPPER, now=NOW
    )
    await store.add(key.record)
    assert key.plaintext.startswith(f"enc_{key.record.key_id}.")
    principal = await verify_api_key(key.plaintext, store, pepper=PEPPER, now=NOW)
    assert principal == Principal(
        subject=f"svc_{key.record.key_id}",
        tenant="northwind",
        roles=frozenset({"staff", "auditor"}),
        auth_method="api_key",
        key_id=key.record.key_id,
    )


def test_secret_has_at_least_32_random_bytes_and_keys_differ() -> None:
    keys = {issue_api_key(tenant="t", roles=[], name="n").plaintext for _ in range(50)}
    assert len(keys) == 50
    secret = next(iter(keys)).split(".", 1)[1]
    assert len(secret) >= 43  # 32 bytes, url-safe base64


async def test_stored_form_holds_no_secret(store: MemoryApiKeyStore) -> None:
    key = issue_api_key(tenant="northwind", roles=["staff"], name="svc", pepper=PEPPER)
    secret = key.plaintext.split(".", 1)[1]
    stored = repr(key.record)
    assert secret not in stored
    assert key.plaintext not in stored
    assert key.record.hash.startswith("hmac-sha256:")
    assert key.record.hash == hash_api_key(key.plaintext, PEPPER)
    assert hash_api_key(key.plaintext).startswith("sha256:")
    assert hash_api_key(key.plaintext) != key.record.hash


async def test_wrong_pepper_is_refused(store: MemoryApiKeyStore) -> None:
    plaintext = await issued(store)
    with pytest.raises(Unauthenticated, match="not valid"):
        await verify_api_key(plaintext, store, pepper=b"another pepper", now=NOW)


async def test_revoked_key_is_refused(store: MemoryApiKeyStore) -> None:
    plaintext = await issued(store)
    key_id = plaintext[4:20]
    assert await store.revoke(key_id, NOW + timedelta(minutes=5))
    # Valid until the revocation takes effect, refused from then on.
    await verify_api_key(plaintext, store, pepper=PEPPER, now=NOW)
    with pytest.raises(Unauthenticated, match="revoked") as caught:
        await verify_api_key(plaintext, store, pepper=PEPPER, now=NOW + timedelta(minutes=5))
    assert plaintext.split(".", 1)[1] not in str(caught.value)
    assert not await store.revoke("0" * 16, NOW)


async def test_expired_key_is_refused(store: MemoryApiKeyStore) -> None:
    plaintext = await issued(store, expires_at=NOW + timedelta(days=30))
    await verify_api_key(plaintext, store, pepper=PEPPER, now=NOW + timedelta(days=29))
    with pytest.raises(Unauthenticated, match="expired at 2026-12-27 12:00 UTC"):
        await verify_api_key(plaintext, store, pepper=PEPPER, now=NOW + timedelta(days=30))


def test_expiry_in_the_past_is_refused_at_issue() -> None:
    with pytest.raises(ValueError, match="future"):
        issue_api_key(tenant="t", roles=[], name="n", now=NOW, expires_at=NOW)


async def test_unknown_key_is_refused(store: MemoryApiKeyStore) -> None:
    await issued(store)
    other = issue_api_key(tenant="northwind", roles=["staff"], name="never stored")
    with pytest.raises(Unauthenticated, match="not valid"):
        await verify_api_key(other.plaintext, store, pepper=PEPPER, now=NOW)


async def test_altered_secret_is_refused(store: MemoryApiKeyStore) -> None:
    plaintext = await issued(store)
    last = plaintext[-1]
    altered = plaintext[:-1] + ("A" if last != "A" else "B")
    with pytest.raises(Unauthenticated, match="not valid") as caught:
        await verify_api_key(altered, store, pepper=PEPPER, now=NOW)
    assert altered not in str(caught.value)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "enc_",
        "sk-abcdef",
        "enc_0123456789abcdef",
        "enc_0123456789abcdef.short",
        "enc_0123456789ABCDEF." + "a" * 43,
        "xyz_0123456789abcdef." + "a" * 43,
        "enc_0123456789abcdef." + "a" * 43 + "\n",
        "enc_0123456789abcdef." + "a" * 42 + "!",
    ],
)
async def test_malformed_keys_are_refused(store: MemoryApiKeyStore, presented: str) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        await verify_api_key(presented, store, pepper=PEPPER, now=NOW)


async def test_custom_prefix(store: MemoryApiKeyStore) -> None:
    key = issue_api_key(tenant="t", roles=["staff"], name="n", prefix="acme_")
    await store.add(key.record)
    assert (await verify_api_key(key.plaintext, store, prefix="acme_")).tenant == "t"
    with pytest.raises(Unauthenticated, match="malformed"):
        await verify_api_key(key.plaintext, store, prefix="enc_")


async def test_comparison_is_constant_time(
    store: MemoryApiKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    plaintext = await issued(store)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys_module.hmac, "compare_digest", spy)
    await verify_api_key(plaintext, store, pepper=PEPPER, now=NOW)
    assert len(calls) == 1
    # Unknown ids are compared too, so timing does not reveal which ids exist.
    other = issue_api_key(tenant="t", roles=[], name="n")
    with pytest.raises(Unauthenticated):
        await verify_api_key(other.plaintext, store, pepper=PEPPER, now=NOW)
    assert len(calls) == 2


async def test_duplicate_key_id_is_an_error(store: MemoryApiKeyStore) -> None:
    key = issue_api_key(tenant="t", roles=[], name="n")
    await store.add(key.record)
    with pytest.raises(ValueError, match="already exists"):
        await store.add(key.record)


# -- the Authorization header ------------------------------------------------------------


async def test_authenticator_dispatches_api_keys(store: MemoryApiKeyStore) -> None:
    key = issue_api_key(tenant="northwind", roles=["staff"], name="svc", pepper=PEPPER)
    await store.add(key.record)
    auth = Authenticator(oidc=None, api_keys=store, pepper=PEPPER)
    principal = await auth.authenticate(f"Bearer {key.plaintext}")
    assert principal.auth_method == "api_key"
    assert (await auth.authenticate(f"bearer   {key.plaintext} ")).key_id == key.record.key_id


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "needs credentials"),
        ("", "needs credentials"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer ", "Bearer"),
        ("Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig", "Only API keys"),
    ],
)
async def test_authenticator_refusals(
    store: MemoryApiKeyStore, header: str | None, message: str
) -> None:
    auth = Authenticator(oidc=None, api_keys=store)
    with pytest.raises(Unauthenticated, match=message):
        await auth.authenticate(header)


async def test_authenticator_from_settings(tmp_path: Path) -> None:
    pepper = tmp_path / "pepper"
    pepper.write_bytes(PEPPER + b"\n")
    auth_settings = AuthSettings(api_keys={"pepper_file": pepper})
    store = MemoryApiKeyStore()
    key = issue_api_key(tenant="t", roles=["auditor"], name="n", pepper=PEPPER)
    await store.add(key.record)
    auth = Authenticator.from_settings(auth_settings, store)
    assert (await auth.authenticate(f"Bearer {key.plaintext}")).roles == {"auditor"}
    with pytest.raises(Unauthenticated, match="OIDC"):
        await Authenticator.from_settings(
            AuthSettings(api_keys={"enabled": False}, oidc=_file_oidc(tmp_path)), store
        ).authenticate(f"Bearer {key.plaintext}")
    with pytest.raises(ConfigurationError, match="nobody can sign in"):
        Authenticator.from_settings(AuthSettings(api_keys={"enabled": False}), store)
    short = tmp_path / "short"
    short.write_bytes(b"x")
    with pytest.raises(ConfigurationError, match="16 bytes"):
        Authenticator.from_settings(AuthSettings(api_keys={"pepper_file": short}), store)


def _file_oidc(tmp_path: Path) -> OIDCSettings:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    return OIDCSettings(enabled=True, issuer="https://idp", audience="enclave", jwks_file=path)
