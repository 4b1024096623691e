"""Downstream services (audiences) and their encryption keys: every access token is encrypted to one."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from ..pairwise.sectors import DEFAULT_SUBJECT_TYPE, LEGACY_SUBJECT_TYPE, sector_problem, subject_type_problem
from ..store import Collection, DuplicateKeyError, Order, Store
from ..tokens import EncryptionKey
from .audience_jwks import AudienceKeyUnavailable, JwksFetcher, RemoteKeys, fetch_jwks_with_requests

MIN_RSA_BITS = 2048
CACHE_SECONDS = 2.0

AUDIENCES = Collection(
    name="audiences",
    key="audience",
    fields={"audience": str, "kid": str, "public_jwk": dict, "jwks_uri": str, "created_at": int, "updated_at": int,
            # absent in audiences registered before pairwise subjects: public, sector = the audience URI
            "sector": str, "subject_type": str,
            # the key replaced by the last update: listed during the overlap (tokens in flight are encrypted to it)
            "previous_kid": str, "previous_jwk": dict, "replaced_at": int},
)

class AudienceError(ValueError):
    """An audience or key that cannot be registered or used; the message says why."""


@dataclass(frozen=True)
class Audience:
    audience: str
    kid: str | None
    public_jwk: dict[str, Any] | None
    jwks_uri: str | None
    created_at: int
    updated_at: int
    sector: str = ""  # the sector whose subjects its tokens carry (see ``identity.pairwise``)
    subject_type: str = LEGACY_SUBJECT_TYPE
    previous_kid: str | None = None
    replaced_at: int | None = None

    @property
    def kids(self) -> list[str]:
        """The keys this audience holds now: the one tokens are encrypted to, then the one it replaced
        (tokens issued before the update are encrypted to it until they expire)."""
        return [k for k in (self.kid, self.previous_kid) if k]

    def view(self) -> dict[str, Any]:
        return {"audience": self.audience, "kid": self.kid, "jwks_uri": self.jwks_uri, "kids": self.kids,
                "previous_kid": self.previous_kid, "replaced_at": self.replaced_at,
                "sector": self.sector, "subject_type": self.subject_type,
                "created_at": self.created_at, "updated_at": self.updated_at}


def _audience(doc: dict[str, Any]) -> Audience:
    return Audience(doc["audience"], doc.get("kid"), doc.get("public_jwk"), doc.get("jwks_uri"),
                    doc["created_at"], doc.get("updated_at") or doc["created_at"],
                    doc.get("sector") or doc["audience"], doc.get("subject_type") or LEGACY_SUBJECT_TYPE,
                    doc.get("previous_kid"), doc.get("replaced_at"))


def _checked_subjects(audience: str, sector: str | None, subject_type: str) -> str:
    """The sector to store (the audience URI by default), after checking it and the subject type."""
    problem = subject_type_problem(subject_type)
    if problem:
        raise AudienceError(problem)
    chosen = audience if sector is None else sector
    problem = sector_problem(chosen)
    if problem:
        raise AudienceError(f"{problem}" + ("; give --sector NAME" if sector is None else ""))
    return chosen


def audience_problem(uri: str) -> str | None:
    """RFC 8707 §2: a resource is an absolute URI without a fragment."""
    parts = urlsplit(uri)
    if not parts.scheme or "#" in uri or not (parts.netloc or parts.scheme == "urn"):
        return "an audience must be an absolute URI without a fragment"
    return None


def parse_encryption_key(data: bytes) -> EncryptionKey:
    """An RSA public key from PEM or JWK text; ``kid`` from the JWK or its RFC 7638 thumbprint."""
    text = data.decode("utf-8", "replace").strip()
    if "PRIVATE KEY" in text or '"d"' in text:
        raise AudienceError("that is a private key: register the downstream service's PUBLIC key")
    try:
        if text.startswith("{"):
            jwk = json.loads(text)
            if "keys" in jwk:
                raise AudienceError("give one key, not a JWKS (or use --jwks-uri)")
            key = RSAKey.import_key(jwk)
            kid = jwk.get("kid") or key.thumbprint()
        else:
            key = RSAKey.import_key(text.encode())
            kid = key.thumbprint()
    except (ValueError, JoseError, TypeError) as exc:
        raise AudienceError("not an RSA public key in PEM or JWK form") from exc
    return _checked(key, kid)


def _checked(key: RSAKey, kid: str) -> EncryptionKey:
    if key.is_private:
        raise AudienceError("that is a private key: register the downstream service's PUBLIC key")
    if key.public_key.key_size < MIN_RSA_BITS:
        raise AudienceError(f"the encryption key must be RSA with at least {MIN_RSA_BITS} bits")
    public = RSAKey.import_key(key.as_dict(private=False), parameters={"kid": kid})
    return EncryptionKey(kid=kid, key=public)


def select_from_jwks(jwks: dict[str, Any]) -> EncryptionKey:
    """The first RSA key meant for encryption (``use: enc`` or ``alg: RSA-OAEP-256``) in a JWKS."""
    for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        if jwk.get("use", "enc") != "enc" or jwk.get("alg", "RSA-OAEP-256") != "RSA-OAEP-256":
            continue
        try:
            key = RSAKey.import_key({k: v for k, v in jwk.items() if k in ("kty", "n", "e")})
            return _checked(key, jwk.get("kid") or key.thumbprint())
        except (ValueError, JoseError, TypeError, AudienceError):
            continue
    raise AudienceKeyUnavailable("the audience's JWKS has no usable RSA encryption key")


class AudienceRegistry:
    """Audiences in the store, with their parsed keys cached in-process."""

    def __init__(
        self, store: Store, *, clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic, fetch_jwks: JwksFetcher = fetch_jwks_with_requests,
    ) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._fetch = fetch_jwks
        self._records: dict[str, tuple[float, Audience | None]] = {}
        self._keys: dict[tuple[str, int], EncryptionKey] = {}  # registered keys, parsed
        self._remote = RemoteKeys(monotonic=monotonic)
        self._lock = threading.Lock()

    def get(self, audience: str) -> Audience | None:
        now = self._monotonic()
        cached = self._records.get(audience)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        doc = self._store.get(AUDIENCES, audience)
        record = None if doc is None else _audience(doc)
        with self._lock:
            if len(self._records) > 10_000:
                self._records.clear()
            self._records[audience] = (now, record)
        return record

    def encryption_key(self, audience: Audience) -> EncryptionKey:
        """The key to encrypt to; raises ``AudienceKeyUnavailable`` if a remote JWKS fails (``audience_jwks``)."""
        cache_key = (audience.audience, audience.updated_at)
        if audience.public_jwk is None:
            uri = audience.jwks_uri or ""
            return self._remote.get(cache_key, lambda: select_from_jwks(self._fetch(uri)))
        cached = self._keys.get(cache_key)
        if cached is not None:
            return cached
        key = RSAKey.import_key(audience.public_jwk)
        parsed = EncryptionKey(kid=audience.kid or key.thumbprint(), key=key)
        with self._lock:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[cache_key] = parsed
        return parsed

    def add(self, audience: str, *, key: EncryptionKey | None, jwks_uri: str | None, sector: str | None = None,
            subject_type: str = DEFAULT_SUBJECT_TYPE) -> Audience:
        """Register an audience; its tokens carry pairwise subjects of ``sector`` (default: the audience
        URI) unless ``subject_type`` is ``public``."""
        problem = audience_problem(audience)
        if problem:
            raise AudienceError(problem)
        sector = _checked_subjects(audience, sector, subject_type)
        if (key is None) == (jwks_uri is None):
            raise AudienceError("give exactly one of --encryption-key or --jwks-uri")
        if jwks_uri is not None and urlsplit(jwks_uri).scheme != "https":
            raise AudienceError("--jwks-uri must be an https URL")
        now = int(self._clock())
        doc = {"audience": audience, "kid": key.kid if key else None,
               "public_jwk": key.key.as_dict(private=False) if key else None,
               "jwks_uri": jwks_uri, "created_at": now, "updated_at": now, "sector": sector,
               "subject_type": subject_type}
        try:
            self._store.insert(AUDIENCES, doc)
        except DuplicateKeyError as exc:
            raise AudienceError(f"{audience} is already registered (use `update` to change its key)") from exc
        with self._lock:
            self._records.pop(audience, None)
        return _audience(doc)

    def update_key(self, audience: str, *, key: EncryptionKey | None, jwks_uri: str | None) -> Audience:
        """Switch an audience to a new key (rotation): new tokens use it at once.

        The replaced key stays listed as ``previous_kid`` (with ``replaced_at``): the downstream service holds
        both until the tokens encrypted to it have expired (docs/downstream.md, "Rotation").
        """
        if (key is None) == (jwks_uri is None):
            raise AudienceError("give exactly one of --encryption-key or --jwks-uri")
        existing = self._store.get(AUDIENCES, audience)
        if existing is None:
            raise AudienceError(f"{audience} is not registered")
        now = max(int(self._clock()), int(existing.get("updated_at") or 0) + 1)
        new_kid = key.kid if key else None
        rotated = existing.get("kid") is not None and existing.get("kid") != new_kid
        previous = {"previous_kid": existing["kid"], "previous_jwk": existing.get("public_jwk"),
                    "replaced_at": now} if rotated else {}
        self._store.update(AUDIENCES, {"audience": audience}, {
            "kid": new_kid,
            "public_jwk": key.key.as_dict(private=False) if key else None,
            "jwks_uri": jwks_uri,
            "updated_at": now,
            **previous,
        })
        with self._lock:
            self._records.pop(audience, None)
        return _audience(self._store.get(AUDIENCES, audience) or existing)

    def set_subjects(self, audience: str, *, subject_type: str | None, sector: str | None) -> tuple[Audience, Audience]:
        """Change the subject type or sector of an audience; returns (before, after).

        A breaking change for that service: from the next token on, it sees other ``sub`` values for
        the same people (docs/downstream.md, "Moving an audience to pairwise subjects").
        """
        existing = self._store.get(AUDIENCES, audience)
        if existing is None:
            raise AudienceError(f"{audience} is not registered")
        before = _audience(existing)
        chosen_type = subject_type or before.subject_type
        chosen_sector = _checked_subjects(audience, sector or before.sector, chosen_type)
        if (chosen_type, chosen_sector) == (before.subject_type, before.sector):
            raise AudienceError(f"{audience} already has subject type {chosen_type} in sector {chosen_sector}")
        self._store.update(AUDIENCES, {"audience": audience}, {
            "subject_type": chosen_type, "sector": chosen_sector,
            "updated_at": max(int(self._clock()), before.updated_at + 1)})
        with self._lock:
            self._records.pop(audience, None)
        return before, _audience(self._store.get(AUDIENCES, audience) or existing)

    def all(self) -> list[Audience]:
        return [_audience(d) for d in self._store.find(AUDIENCES, {}, order=Order("created_at"))]

    def remove(self, audience: str) -> bool:
        removed = self._store.delete(AUDIENCES, {"audience": audience}) > 0
        with self._lock:
            self._records.pop(audience, None)
        return removed
