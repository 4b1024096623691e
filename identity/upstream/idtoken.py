"""Complete validation of the upstream ID token (OpenID Connect Core §3.1.3.7) and the e-mail in it.

Authlib's ``parse_id_token`` checks the signature against the upstream JWKS (refetched once for an
unknown ``kid``: key rotation), ``exp``/``iat`` with a leeway, ``nonce`` and ``azp``. It does not
require ``aud`` to contain our client id, and checks ``iss`` only from the metadata, so both are
passed as claim options. On top: ``aud`` trusts nobody but us, and ``email_verified`` must be true.
"""

from __future__ import annotations

from typing import Any, Mapping

import requests
from joserfc.errors import JoseError

from .client import UpstreamApp
from .errors import LoginRefused, UpstreamUnavailable

LEEWAY_SECONDS = 60
MAX_EMAIL_LENGTH = 254


def claims_options(*, issuer: str, client_id: str) -> dict[str, dict[str, Any]]:
    """A fresh dict each call: Authlib pops ``validate`` hooks out of the options it is given."""
    return {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
    }


def verified_email(client: UpstreamApp, token: Mapping[str, Any], *, issuer: str, client_id: str,
                   nonce: str, refresh_keys: bool = False, authenticated_after: int | None = None) -> str:
    """The verified e-mail address the ID token in ``token`` asserts; raise ``LoginRefused`` otherwise.

    The JWKS is cached; ``refresh_keys`` fetches it first (Authlib also refetches for an unknown kid).
    ``authenticated_after`` (a fresh sign-in was asked for) requires an ``auth_time`` not before it.
    """
    if not isinstance(token.get("id_token"), str):
        raise LoginRefused("no_id_token")
    try:
        client.fetch_jwk_set(force=refresh_keys)
    except (requests.RequestException, ValueError) as exc:
        raise UpstreamUnavailable("jwks_unreachable") from exc
    try:
        claims = client.parse_id_token(dict(token), nonce=nonce, leeway=LEEWAY_SECONDS,
                                       claims_options=claims_options(issuer=issuer, client_id=client_id))
    except requests.RequestException as exc:
        raise UpstreamUnavailable("jwks_unreachable") from exc
    except JoseError as exc:
        raise LoginRefused(f"id_token_{exc.error}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LoginRefused(f"id_token_malformed_{type(exc).__name__}") from None
    if claims is None:
        raise LoginRefused("no_id_token")
    aud = claims.get("aud")
    if aud != client_id and aud != [client_id]:
        raise LoginRefused("id_token_untrusted_audience")
    email = claims.get("email")
    if not isinstance(email, str) or not email.strip() or len(email) > MAX_EMAIL_LENGTH:
        raise LoginRefused("no_email")
    if claims.get("email_verified") is not True:
        raise LoginRefused("email_not_verified")
    if authenticated_after is not None and not signed_in_since(claims.get("auth_time"), authenticated_after):
        raise LoginRefused("not_a_fresh_sign_in")
    return email


def signed_in_since(auth_time: object, moment: int) -> bool:
    """OpenID Connect Core §2 ``auth_time``: the person authenticated at ``moment`` or later (with leeway)."""
    if not isinstance(auth_time, (int, float)) or isinstance(auth_time, bool):
        return False
    return auth_time >= moment - LEEWAY_SECONDS
