"""One entry point for credentials: ``Authorization: Bearer <API key | OIDC token>``.

A bearer value that starts with the API-key prefix (``enc_``) is an API key; anything
else is an OIDC token. Both kinds travel in the same header so that every OpenAI client
(which only knows ``api_key``) can use either.
"""

from __future__ import annotations

from api.security.api_keys import ApiKeyStore, verify_api_key
from api.security.errors import Unauthenticated
from api.security.jwt_auth import OIDCVerifier
from api.security.principal import Principal
from core.errors import ConfigurationError
from core.settings import AuthSettings

__all__ = ["Authenticator"]


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`."""

    def __init__(
        self,
        *,
        oidc: OIDCVerifier | None,
        api_keys: ApiKeyStore | None,
        api_key_prefix: str = "enc_",
        pepper: bytes | None = None,
    ) -> None:
        if oidc is None and api_keys is None:
            msg = "enable auth.oidc or auth.api_keys: otherwise nobody can sign in"
            raise ConfigurationError(msg)
        self._oidc = oidc
        self._api_keys = api_keys
        self._prefix = api_key_prefix
        self._pepper = pepper

    @classmethod
    def from_settings(cls, auth: AuthSettings, api_keys: ApiKeyStore | None) -> Authenticator:
        """Built from ``auth`` settings; ``api_keys`` is the key store (SQL in production)."""
        pepper = None
        if auth.api_keys.pepper_file is not None:
            try:
                pepper = auth.api_keys.pepper_file.read_bytes().strip()
            except OSError as exc:
                msg = f"auth.api_keys.pepper_file cannot be read: {exc}"
                raise ConfigurationError(msg) from exc
            if len(pepper) < 16:
                msg = "auth.api_keys.pepper_file must hold at least 16 bytes"
                raise ConfigurationError(msg)
        return cls(
            oidc=OIDCVerifier(auth.oidc) if auth.oidc.enabled else None,
            api_keys=api_keys if auth.api_keys.enabled else None,
            api_key_prefix=auth.api_keys.prefix,
            pepper=pepper,
        )

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller of a request with this ``Authorization`` header value."""
        if not authorization:
            msg = "This API needs credentials: send 'Authorization: Bearer <token or API key>'."
            raise Unauthenticated(msg)
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            msg = "Send credentials as 'Authorization: Bearer <token or API key>'."
            raise Unauthenticated(msg)
        if credential.startswith(self._prefix):
            if self._api_keys is None:
                msg = "API keys are not accepted by this deployment; use an OIDC token."
                raise Unauthenticated(msg)
            return await verify_api_key(
                credential, self._api_keys, prefix=self._prefix, pepper=self._pepper
            )
        if self._oidc is None:
            msg = f"Only API keys ({self._prefix}...) are accepted by this deployment."
            raise Unauthenticated(msg)
        return await self._oidc.authenticate(credential)
