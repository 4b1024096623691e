"""The development IdP's token endpoint (RFC 6749 §4.1.3, RFC 7636, OpenID Connect Core §3.1.3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any, Callable, Mapping
from urllib.parse import unquote

from joserfc import jwt

from ..errors import ServiceError
from ..oauth.pkce import verifier_matches
from .codes import CodeBook, Grant
from .config import DevIdPConfig
from .keys import ALGORITHM, SigningKeys


class TokenError(ServiceError):
    """An RFC 6749 §5.2 error answer (``invalid_client`` asks for Basic authentication with this IdP's realm)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description, status_code=status)
        self.error = error

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="devidp"'} if self.status_code == 401 else super().headers()


def subject_for(config: DevIdPConfig, email: str) -> str:
    """A stable ``sub`` per address at this IdP (as a real provider has its own user ids)."""
    digest = hmac.new(config.derive("subject"), email.strip().lower().encode("utf-8"), hashlib.sha256)
    return "dev|" + digest.hexdigest()[:32]


class TokenIssuer:
    """Redeems a code for an ID token signed with the active key."""

    def __init__(self, config: DevIdPConfig, *, keys: SigningKeys, codes: CodeBook,
                 clock: Callable[[], float]) -> None:
        self._config = config
        self._keys = keys
        self._codes = codes
        self._clock = clock

    def exchange(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        client_id = self._authenticate(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise TokenError("unsupported_grant_type", "only authorization_code is supported")
        grant = self._codes.redeem(form.get("code", ""))
        if grant is None or grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
            raise TokenError("invalid_grant", "the code is invalid, expired, used, or not for this redirect URI")
        verifier = form.get("code_verifier", "")
        if not verifier_matches(verifier, grant.code_challenge):
            raise TokenError("invalid_grant", "the code_verifier does not match the code_challenge")
        return {
            "access_token": secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": self._config.id_token_ttl,
            "scope": "openid email",
            "id_token": self.id_token(grant),
        }

    def id_token(self, grant: Grant) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self._config.issuer,
            "sub": subject_for(self._config, grant.email),
            "aud": grant.client_id,
            "azp": grant.client_id,
            "iat": now,
            "exp": now + self._config.id_token_ttl,
            "auth_time": grant.auth_time,
            "email": grant.email,
            "email_verified": True,  # the development IdP takes the typed address at its word
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        key = self._keys.active
        return jwt.encode({"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}, claims, key)

    def _authenticate(self, form: Mapping[str, str], authorization: str | None) -> str:
        """client_secret_basic (RFC 6749 §2.3.1, form-encoded id and secret) or client_secret_post."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization:
            scheme, _, encoded = authorization.partition(" ")
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            if scheme.lower() != "basic" or ":" not in decoded or secret is not None:
                raise self._invalid_client()
            raw_id, _, raw_secret = decoded.partition(":")
            client_id, secret = unquote(raw_id), unquote(raw_secret)
        if client_id is None or secret is None:
            raise self._invalid_client()
        id_ok = hmac.compare_digest(client_id.encode(), self._config.client_id.encode())
        secret_ok = hmac.compare_digest(secret.encode(), self._config.client_secret.encode())
        if not (id_ok and secret_ok):
            raise self._invalid_client()
        return client_id

    @staticmethod
    def _invalid_client() -> TokenError:
        return TokenError("invalid_client", "client authentication failed", status=401)
