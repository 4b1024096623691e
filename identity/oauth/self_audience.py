"""The service's own audience, ``{issuer}/me``: the resource the self-service endpoints serve.

Its encryption key lives in the key material (``self_encryption.pem``); the audience record is kept
in step with it at start-up, so an app registered with ``--audience {issuer}/me`` and scope
``identity:self`` can call ``/me``.
"""

from __future__ import annotations

import logging

from joserfc.jwk import RSAKey

from ..keys import Keyring
from ..store import StoreUnavailable
from ..tokens import EncryptionKey
from ..pairwise.sectors import PUBLIC
from .audiences import AudienceError, AudienceRegistry

log = logging.getLogger(__name__)
SELF_SCOPE = "identity:self"


def self_audience_uri(issuer: str) -> str:
    return f"{issuer}/me"


def self_encryption_key(keyring: Keyring) -> EncryptionKey:
    public = RSAKey.import_key(keyring.self_encryption_key.public_key())
    kid = public.thumbprint()
    return EncryptionKey(kid=kid, key=RSAKey.import_key(public.as_dict(private=False), parameters={"kid": kid}))


def ensure_self_audience(audiences: AudienceRegistry, keyring: Keyring, *, issuer: str) -> None:
    """Register (or re-key) the self audience. A store outage is logged, not fatal: /readyz reports it."""
    uri = self_audience_uri(issuer)
    key = self_encryption_key(keyring)
    try:
        record = audiences.get(uri)
        if record is None:
            # public: its tokens are read by this service alone, which holds the pseudonym anyway
            audiences.add(uri, key=key, jwks_uri=None, subject_type=PUBLIC)
        elif record.kid != key.kid:
            audiences.update_key(uri, key=key, jwks_uri=None)
    except AudienceError:
        pass  # another worker registered it at the same moment
    except StoreUnavailable:
        log.warning("could not register the self-service audience: the store is unavailable")
