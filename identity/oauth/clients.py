"""Registered OAuth clients: records, secrets (keyed hash), redirect URI matching, a short cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from ..pairwise.sectors import (CLIENT_SECTOR_PREFIX, DEFAULT_SUBJECT_TYPE, LEGACY_SUBJECT_TYPE, PAIRWISE, SeveralHosts,
                                ascii_host, ascii_sector, client_sector, sector_problem, subject_type_problem)
from ..store import Collection, DuplicateKeyError, Order, Store

AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS = "authorization_code", "refresh_token", "client_credentials"
GRANT_TYPES = (AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS)
DEFAULT_SCOPES = ("openid",)
SECRET_BYTES = 32  # 256 bits
CACHE_SECONDS = 2.0

CLIENTS = Collection(
    name="clients",
    key="client_id",
    fields={
        "client_id": str,
        "name": str,
        "public": bool,
        "secret_hash": str,
        "redirect_uris": list,
        "grant_types": list,
        "scopes": list,
        "audiences": list,
        "created_at": int,
        "uses_nonce": bool,  # absent in clients registered before it existed: False
        "third_party": bool,  # asks the person's consent; absent (older clients): first-party, False
        "post_logout_redirect_uris": list,  # RP-Initiated Logout 1.0; absent: none registered
        # ID tokens' subjects (OIDC Core §8.1); absent in clients registered before: public
        "subject_type": str,
        "sector_identifier": str,  # as registered by the operator (None: from the redirect URIs)
        "sector": str,  # the effective sector, fixed at registration
        # audiences whose resource server this client is: it may introspect any of their access tokens
        # (RFC 7662 §4); absent (older clients): none
        "introspects": list,
    },
)


class ClientRegistrationError(ValueError):
    """A client registration that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    public: bool
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    created_at: int
    uses_nonce: bool = False  # checks the ID token's nonce, so a code flow with nonce may skip PKCE
    third_party: bool = False  # the person is asked for consent before it gets a code
    post_logout_redirect_uris: tuple[str, ...] = ()  # where /logout may send the person back (exact match)
    subject_type: str = LEGACY_SUBJECT_TYPE  # the ``sub`` of its ID tokens: pairwise (its sector's) or public
    sector_identifier: str | None = None
    sector: str = ""
    introspects: tuple[str, ...] = ()  # audiences it serves as resource server: it introspects their tokens

    @property
    def confidential(self) -> bool:
        return not self.public

    def allows_grant(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    def allows_scopes(self, requested: list[str]) -> bool:
        return set(requested) <= set(self.scopes)

    def public_view(self) -> dict[str, Any]:
        """The registration as shown to operators (no secret, no hash)."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "type": "public" if self.public else "confidential",
            "redirect_uris": list(self.redirect_uris),
            "grant_types": list(self.grant_types),
            "scopes": list(self.scopes),
            "audiences": list(self.audiences),
            "uses_nonce": self.uses_nonce,
            "third_party": self.third_party,
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "subject_type": self.subject_type,
            "sector": self.sector,
            "sector_identifier": self.sector_identifier,
            "introspects": list(self.introspects),
            "created_at": self.created_at,
        }

    def allows_post_logout_redirect(self, uri: str) -> bool:
        """RP-Initiated Logout 1.0 §3: ``uri`` exactly equals a registered value (no port leeway)."""
        presented = uri.encode()
        return any(hmac.compare_digest(r.encode(), presented) for r in self.post_logout_redirect_uris)


def _client(doc: dict[str, Any]) -> Client:
    return Client(
        client_id=doc["client_id"],
        name=doc["name"],
        public=bool(doc["public"]),
        secret_hash=doc.get("secret_hash"),
        redirect_uris=tuple(doc.get("redirect_uris") or ()),
        grant_types=tuple(doc.get("grant_types") or ()),
        scopes=tuple(doc.get("scopes") or ()),
        audiences=tuple(doc.get("audiences") or ()),
        created_at=doc["created_at"],
        uses_nonce=bool(doc.get("uses_nonce")),
        third_party=bool(doc.get("third_party")),
        post_logout_redirect_uris=tuple(doc.get("post_logout_redirect_uris") or ()),
        subject_type=doc.get("subject_type") or LEGACY_SUBJECT_TYPE,
        sector_identifier=doc.get("sector_identifier"),
        sector=ascii_sector(doc.get("sector") or _legacy_sector(doc)),
        introspects=tuple(doc.get("introspects") or ()),
    )


def _legacy_sector(doc: dict[str, Any]) -> str:
    """The sector of a client stored before sectors were: §8.1 from its redirect URIs (one host)."""
    try:
        return client_sector(client_id=doc["client_id"], redirect_uris=doc.get("redirect_uris") or (),
                             sector_identifier=None)
    except SeveralHosts:
        return CLIENT_SECTOR_PREFIX + doc["client_id"]


def new_client_id() -> str:
    """22 characters of lower-case base32 (unreserved, never starting with ``-``)."""
    return base64.b32encode(secrets.token_bytes(14)).decode("ascii").rstrip("=").lower()


def redirect_uri_problem(uri: str, *, public: bool) -> str | None:
    """Why ``uri`` cannot be registered as a redirect URI (RFC 6749 §3.1.2, RFC 8252), or None."""
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment or "#" in uri:
        return "a redirect URI must be absolute and have no fragment"
    if parts.username or parts.password:
        return "a redirect URI must not contain user information"
    if parts.hostname and not parts.hostname.isascii():
        return (f"a redirect URI's host must be ASCII: register {parts.hostname} in its IDNA A-label (punycode) "
                f"form, as DNS has it ({ascii_host(parts.hostname)})")
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        if parts.hostname == "localhost":
            return "use 127.0.0.1 or [::1] rather than localhost (RFC 8252 §8.3)"
        return None
    if parts.scheme not in ("http", "https") and "." in parts.scheme and public:
        return None  # private-use scheme of a native app, e.g. com.example.app:/callback (RFC 8252 §7.1)
    return "a redirect URI must use https, a loopback http address, or a reverse-DNS private scheme"


def redirect_uri_matches(registered: str, presented: str) -> bool:
    """Exact string match; for loopback http URIs only the port may differ (RFC 8252 §7.3)."""
    if hmac.compare_digest(registered.encode(), presented.encode()):
        return True
    try:
        reg, got = urlsplit(registered), urlsplit(presented)
        got.port  # noqa: B018 - raises on a malformed port
    except ValueError:  # e.g. an unbalanced IPv6 bracket: matches nothing
        return False
    if reg.scheme != "http" or reg.hostname not in ("127.0.0.1", "::1"):
        return False
    expected_netloc = f"[{reg.hostname}]" if reg.hostname == "::1" else reg.hostname
    got_netloc_host = got.netloc if got.port is None else got.netloc.rsplit(":", 1)[0]
    return (
        got.scheme == "http"
        and got_netloc_host == expected_netloc
        and got.path == reg.path
        and got.query == reg.query
        and not got.fragment
        and "#" not in presented
    )


class ClientRegistry:
    """Clients in the store, with a short in-process cache (changes apply within seconds)."""

    def __init__(
        self, store: Store, *, secret_key: bytes, clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._secret_key = secret_key
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, Client | None]] = {}
        self._lock = threading.Lock()

    def hash_secret(self, secret: str) -> str:
        """HMAC-SHA256 under a service key: the secrets are 256-bit random, so no slow hash is needed."""
        return hmac.new(self._secret_key, secret.encode("utf-8"), hashlib.sha256).hexdigest()

    def secret_matches(self, client: Client, presented: str) -> bool:
        if client.secret_hash is None:
            return False
        return hmac.compare_digest(self.hash_secret(presented), client.secret_hash)

    def get(self, client_id: str) -> Client | None:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 128:
            return None
        now = self._monotonic()
        cached = self._cache.get(client_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        doc = self._store.get(CLIENTS, client_id)
        client = None if doc is None else _client(doc)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[client_id] = (now, client)
        return client

    def register(
        self,
        *,
        name: str,
        public: bool,
        redirect_uris: list[str],
        grant_types: list[str] | None,
        scopes: list[str] | None,
        audiences: list[str],
        uses_nonce: bool = False,
        third_party: bool = False,
        post_logout_redirect_uris: list[str] | None = None,
        subject_type: str = DEFAULT_SUBJECT_TYPE,
        sector_identifier: str | None = None,
        introspects: list[str] | None = None,
    ) -> tuple[Client, str | None]:
        """Create a client; return it with its secret (confidential clients only, shown once).

        ``subject_type``/``sector_identifier``: the ``sub`` of its ID tokens (OIDC Core §8.1, see
        ``identity.pairwise.sectors.client_sector``); a pairwise client whose redirect URIs name
        several hosts needs a sector identifier.

        ``uses_nonce``: a confidential client that checks the ID token's ``nonce`` may omit PKCE in the
        code flow when it sends a nonce (RFC 9700 §2.1.1); every other code flow needs PKCE.
        ``third_party``: the person sees a consent page before the app gets a code.
        ``post_logout_redirect_uris``: where ``/logout`` may send the person afterwards (exact match).
        ``introspects``: the audiences whose resource server it is (confidential only): it may introspect
        every access token issued for them, and learns the subject those tokens carry.
        """
        grants = list(dict.fromkeys(grant_types or (
            [AUTHORIZATION_CODE, REFRESH_TOKEN] if public else [CLIENT_CREDENTIALS])))
        self._check_registration(name, public, redirect_uris, grants, scopes or [])
        if uses_nonce:
            self._check_nonce_registration(public, grants, list(scopes or DEFAULT_SCOPES))
        logout_uris = list(dict.fromkeys(post_logout_redirect_uris or ()))
        self._check_post_logout_redirect_uris(public, logout_uris)
        self._check_subjects(subject_type, sector_identifier, redirect_uris)
        if introspects and public:
            raise ClientRegistrationError("--introspects is for confidential clients: introspection needs a secret")
        secret = None if public else secrets.token_urlsafe(SECRET_BYTES)
        doc = {
            "name": name,
            "public": public,
            "secret_hash": None if secret is None else self.hash_secret(secret),
            "redirect_uris": list(dict.fromkeys(redirect_uris)),
            "grant_types": grants,
            "scopes": list(dict.fromkeys(scopes or DEFAULT_SCOPES)),
            "audiences": list(dict.fromkeys(audiences)),
            "created_at": int(self._clock()),
            "uses_nonce": uses_nonce,
            "third_party": third_party,
            "post_logout_redirect_uris": logout_uris,
            "subject_type": subject_type,
            "sector_identifier": sector_identifier,
            "introspects": list(dict.fromkeys(introspects or ())),
        }
        for _ in range(5):
            client_id = new_client_id()
            doc["client_id"] = client_id
            doc["sector"] = client_sector(client_id=client_id, redirect_uris=redirect_uris,
                                          sector_identifier=sector_identifier)
            try:
                self._store.insert(CLIENTS, doc)
                return _client(doc), secret
            except DuplicateKeyError:
                continue
        raise ClientRegistrationError("could not allocate a client id")

    @staticmethod
    def _check_registration(
        name: str, public: bool, redirect_uris: list[str], grants: list[str], scopes: list[str]
    ) -> None:
        if not name.strip():
            raise ClientRegistrationError("a client needs a --name")
        unknown = [g for g in grants if g not in GRANT_TYPES]
        if unknown:
            raise ClientRegistrationError(f"unsupported grant type(s) {unknown}; use {list(GRANT_TYPES)}")
        if public and CLIENT_CREDENTIALS in grants:
            raise ClientRegistrationError("client_credentials is for confidential clients only")
        if REFRESH_TOKEN in grants and AUTHORIZATION_CODE not in grants:
            raise ClientRegistrationError("refresh_token needs authorization_code")
        if AUTHORIZATION_CODE in grants and not redirect_uris:
            raise ClientRegistrationError("authorization_code needs at least one --redirect-uri")
        for uri in redirect_uris:
            problem = redirect_uri_problem(uri, public=public)
            if problem:
                raise ClientRegistrationError(f"{uri}: {problem}")
        for scope in scopes:
            if not scope or any(c in scope for c in ' "\\') or not scope.isprintable():
                raise ClientRegistrationError(f"invalid scope token {scope!r} (RFC 6749 §3.3)")

    @staticmethod
    def _check_subjects(subject_type: str, sector_identifier: str | None, redirect_uris: list[str]) -> None:
        problem = subject_type_problem(subject_type)
        if problem:
            raise ClientRegistrationError(problem)
        if sector_identifier is not None:
            problem = sector_problem(sector_identifier)
            if problem:
                raise ClientRegistrationError(f"--sector-identifier: {problem}")
        elif subject_type == PAIRWISE:
            try:
                client_sector(client_id="", redirect_uris=redirect_uris, sector_identifier=None)
            except SeveralHosts as exc:
                raise ClientRegistrationError(str(exc)) from exc

    def set_subjects(self, client_id: str, *, subject_type: str | None,
                     sector_identifier: str | None) -> tuple[Client, Client]:
        """Change the subject type or sector identifier of a client's ID tokens; returns (before, after).

        A breaking change for the app: the ``sub`` of its ID tokens changes for every person.
        """
        doc = self._store.get(CLIENTS, client_id)
        if doc is None:
            raise ClientRegistrationError(f"no client {client_id!r}")
        before = _client(doc)
        chosen_type = subject_type or before.subject_type
        identifier = sector_identifier if sector_identifier is not None else before.sector_identifier
        self._check_subjects(chosen_type, identifier, list(before.redirect_uris))
        sector = client_sector(client_id=client_id, redirect_uris=before.redirect_uris, sector_identifier=identifier) \
            if chosen_type == PAIRWISE or identifier else before.sector
        if (chosen_type, sector) == (before.subject_type, before.sector):
            raise ClientRegistrationError(f"client {client_id} already has subject type {chosen_type} in sector {sector}")
        self._store.update(CLIENTS, {"client_id": client_id},
                           {"subject_type": chosen_type, "sector_identifier": identifier, "sector": sector})
        self._forget_cached(client_id)
        return before, _client(self._store.get(CLIENTS, client_id) or doc)

    def _forget_cached(self, client_id: str) -> None:
        """This process stops answering from its cached copy (the others within ``CACHE_SECONDS``)."""
        with self._lock:
            self._cache.pop(client_id, None)

    def set_introspects(self, client_id: str, audiences: list[str]) -> tuple[Client, Client]:
        """Make a confidential client the resource server of ``audiences`` (replacing the list; empty: none);
        returns (before, after)."""
        doc = self._store.get(CLIENTS, client_id)
        if doc is None:
            raise ClientRegistrationError(f"no client {client_id!r}")
        before = _client(doc)
        if before.public and audiences:
            raise ClientRegistrationError("--introspects is for confidential clients: introspection needs a secret")
        self._store.update(CLIENTS, {"client_id": client_id}, {"introspects": list(dict.fromkeys(audiences))})
        self._forget_cached(client_id)
        return before, _client(self._store.get(CLIENTS, client_id) or doc)

    @staticmethod
    def _check_nonce_registration(public: bool, grants: list[str], scopes: list[str]) -> None:
        """The nonce exception is for confidential code-flow clients that receive ID tokens."""
        if public:
            raise ClientRegistrationError("--uses-nonce is for confidential clients: public clients always use PKCE")
        if AUTHORIZATION_CODE not in grants:
            raise ClientRegistrationError("--uses-nonce needs the authorization_code grant")
        if "openid" not in scopes:
            raise ClientRegistrationError("--uses-nonce needs the openid scope (the nonce comes back in the ID token)")

    @staticmethod
    def _check_post_logout_redirect_uris(public: bool, uris: list[str]) -> None:
        """The same rules as redirect URIs: https, loopback http, or a native app's private scheme."""
        for uri in uris:
            problem = redirect_uri_problem(uri, public=public)
            if problem:
                raise ClientRegistrationError(f"{uri}: {problem.replace('a redirect URI', 'a post-logout redirect URI')}")

    def all(self) -> list[Client]:
        return [_client(d) for d in self._store.find(CLIENTS, {}, order=Order("created_at"))]

    def remove(self, client_id: str) -> bool:
        removed = self._store.delete(CLIENTS, {"client_id": client_id}) > 0
        self._forget_cached(client_id)
        return removed
