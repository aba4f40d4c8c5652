"""Ed25519 signing of audit records, and verification with one or more public keys.

The private key comes from ``audit.signing_key_file`` (PEM PKCS#8, or the 32 raw bytes of
the seed); with no file configured it lives at ``<data_dir>/secrets/audit-signing-key``,
created (mode 600, PEM) on first use when ``audit.generate_signing_key`` allows it. A key
is named by its *key id*: the first 16 hex digits of the sha256 of the raw public key.

Trust comes from configuration, never from the database: an attacker who can write the
audit tables could otherwise register a key of their own and re-sign a forged chain. The
verifier knows the signer's own public key and the retired ones listed in
``audit.trusted_public_keys`` (key rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from core.errors import ConfigurationError
from core.settings import Settings

__all__ = ["AuditSigner", "AuditVerifier", "key_id_of"]

_RAW_KEY_BYTES = 32


def key_id_of(public_key: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"audit signing key {path} cannot be read: {exc.strerror}."
        raise ConfigurationError(msg) from exc
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            msg = f"audit signing key {path} is not an unencrypted PEM private key: {exc}"
            raise ConfigurationError(msg) from exc
        if not isinstance(key, Ed25519PrivateKey):
            msg = f"audit signing key {path} is a {type(key).__name__}, not an Ed25519 key."
            raise ConfigurationError(msg)
        return key
    if len(data) == _RAW_KEY_BYTES:
        return Ed25519PrivateKey.from_private_bytes(data)
    msg = (
        f"audit signing key {path} is neither a PEM Ed25519 private key nor 32 raw bytes "
        f"({len(data)} bytes)."
    )
    raise ConfigurationError(msg)


def _create_private(path: Path) -> None:
    """Write a new key to ``path`` atomically, unless another process got there first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails when the name exists: two replicas starting at once keep one key.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)


class AuditSigner:
    """Signs audit record hashes and bundle manifests with one Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = _raw_public(private_key.public_key())
        self.key_id = key_id_of(self.public_key)

    @property
    def public_key_b64(self) -> str:
        """The raw public key, base64."""
        return base64.b64encode(self.public_key).decode("ascii")

    @classmethod
    def generate(cls) -> AuditSigner:
        """A signer with a fresh key (tests, tools)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: Path, *, create: bool = False) -> AuditSigner:
        """Load the key at ``path``; with ``create``, make it first when it does not exist."""
        if create and not path.exists():
            try:
                _create_private(path)
            except OSError as exc:
                msg = f"audit signing key {path} cannot be created: {exc.strerror}."
                raise ConfigurationError(msg) from exc
        elif not path.exists():
            msg = (
                f"audit signing key {path} does not exist: mount the secret there, or set "
                "audit.generate_signing_key to create one (embedded mode)."
            )
            raise ConfigurationError(msg)
        return cls(_load_private(path))

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditSigner:
        """The signer the settings name (creating the default key when allowed)."""
        audit = settings.audit
        return cls.from_file(
            audit.signing_key_path(settings.paths.data_dir),
            create=audit.generate_signing_key,
        )

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)


class AuditVerifier:
    """Checks signatures against trusted public keys, looked up by key id."""

    def __init__(self, public_keys: Iterable[bytes] = ()) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._raw: dict[str, bytes] = {}
        for key in public_keys:
            self.add(key)

    def add(self, public_key: bytes) -> str:
        """Trust ``public_key`` (32 raw bytes); returns its key id."""
        if len(public_key) != _RAW_KEY_BYTES:
            msg = f"an Ed25519 public key has 32 bytes, not {len(public_key)}"
            raise ValueError(msg)
        key_id = key_id_of(public_key)
        self._keys[key_id] = Ed25519PublicKey.from_public_bytes(public_key)
        self._raw[key_id] = public_key
        return key_id

    @classmethod
    def from_settings(cls, settings: Settings, signer: AuditSigner) -> AuditVerifier:
        """The signer's own key plus ``audit.trusted_public_keys``."""
        verifier = cls([signer.public_key])
        for index, encoded in enumerate(settings.audit.trusted_public_keys):
            try:
                verifier.add(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError) as exc:
                msg = f"audit.trusted_public_keys[{index}] is not a base64 Ed25519 key: {exc}"
                raise ConfigurationError(msg) from exc
        return verifier

    @property
    def key_ids(self) -> list[str]:
        """The ids of every trusted key."""
        return sorted(self._keys)

    def public_key(self, key_id: str) -> bytes | None:
        """The raw public key with ``key_id``, if trusted."""
        return self._raw.get(key_id)

    def knows(self, key_id: str) -> bool:
        """Whether a key with ``key_id`` is trusted."""
        return key_id in self._keys

    def verify(self, key_id: str, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is ``key_id``'s signature of ``message`` (False if unknown)."""
        key = self._keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True
