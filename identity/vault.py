"""The identity vault: e-mail address → random pseudonym.

The only module that stores anything derived from an e-mail address (a blind index and a sealed
copy). The login broker holds the verified address in memory for one request and hands it here.

Rules, as documented in the README:

* **Normalisation** — trim surrounding whitespace, Unicode NFC, lower-case the whole address, NFC
  again (lower-casing can create a new composition).
  ``" Alice@Example.ORG "`` and ``"alice@example.org"`` are the same person.
* **Blind index** — HMAC-SHA256 over the normalised address under the pepper from the key
  material (never in the database), hex encoded; unique in the store.
* **Pseudonym** — 128 random bits from ``secrets``, lower-case RFC 4648 base32 without padding:
  26 characters of ``a-z2-7``. Never derived from the e-mail.
* **Sealed e-mail** — the normalised address sealed to the DPO's public key, bound to the row's
  pseudonym (``Sealer.seal_email``, ``sb2.``: the breach path delivers it to no other pseudonym);
  the service cannot open it. Rows written before sb2 hold unbound ``sb1.`` values.

Creation is race-free by the unique index on the blind index: the loser of a concurrent first
login gets ``DuplicateKeyError`` and reads the winner's record.

Words: to *pseudonymise* is e-mail → pseudonym (``Vault.pseudonymise``, at every login); to *resolve*
is the way back, pseudonym → e-mail, which only the DPO can do, offline (``identity.breach``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

from .sealing import Sealer
from .store import Collection, DuplicateKeyError, In, Lt, Store, StoreUnavailable, find_one

log = logging.getLogger(__name__)

# An identity's status (a refresh token's is another thing: ``identity.oauth.records``).
IDENTITY_ACTIVE, IDENTITY_RESTRICTED, IDENTITY_ERASED = "active", "restricted", "erased"
IDENTITY_CLOSED = "closed"  # cancelled by the person or for them: no tokens; the retention purge erases it
NOT_ERASED = In((IDENTITY_ACTIVE, IDENTITY_RESTRICTED, IDENTITY_CLOSED))
#: whom the inactivity purge erases: a restricted identity is kept however long unused (Art. 18: stored, not erased)
INACTIVITY_ERASABLE = In((IDENTITY_ACTIVE, IDENTITY_CLOSED))
PSEUDONYM_PATTERN = re.compile(r"^[a-z2-7]{26}$")
MAX_EMAIL_LENGTH = 254
CREATE_ATTEMPTS = 8

IDENTITIES = Collection(
    name="identities",
    key="pseudonym",
    fields={
        "pseudonym": str,
        "blind_index": str,
        "sealed_email": str,
        "created_at": int,
        "last_login_at": int,
        "status": str,
        "status_changed_at": int,
    },
    unique=("blind_index",),
    indexed=("last_login_at", ("status", "created_at"), ("status", "status_changed_at")),
)


class InvalidEmail(ValueError):
    """The address cannot be an e-mail address (the message never repeats it)."""


class EmailInUse(Exception):
    """Rectification to an address that already belongs to another pseudonym."""


@dataclass(frozen=True)
class Identity:
    """What the vault holds about a person, minus the sealed e-mail."""

    pseudonym: str
    created_at: int
    last_login_at: int | None
    status: str

    @property
    def is_active(self) -> bool:
        return self.status == IDENTITY_ACTIVE


@dataclass(frozen=True)
class Pseudonymised:
    identity: Identity
    created: bool


def normalise_email(raw: str) -> str:
    """Trim, NFC, lower-case; raise ``InvalidEmail`` for anything that is not an address."""
    if not isinstance(raw, str):
        raise InvalidEmail("an e-mail address must be text")
    # NFC again after lower(): lower-casing can create a new composition ("W\u030a" → U+1E98).
    email = unicodedata.normalize("NFC", unicodedata.normalize("NFC", raw.strip()).lower())
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise InvalidEmail("an e-mail address needs a local part, '@' and a domain")
    if len(email) > MAX_EMAIL_LENGTH or len(local) > 64:
        raise InvalidEmail("the e-mail address is too long")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in email):
        raise InvalidEmail("the e-mail address contains spaces or control characters")
    if domain.startswith(".") or domain.endswith(".") or ".." in domain or "@" in domain:
        raise InvalidEmail("the e-mail domain is malformed")
    return email


def new_pseudonym() -> str:
    """128 random bits, lower-case base32 without padding (26 characters)."""
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def is_pseudonym(value: object) -> bool:
    return isinstance(value, str) and PSEUDONYM_PATTERN.fullmatch(value) is not None


def _identity(doc: dict) -> Identity:
    return Identity(
        pseudonym=doc["pseudonym"],
        created_at=doc["created_at"],
        last_login_at=doc.get("last_login_at"),
        status=doc["status"],
    )


class Vault:
    """Maps e-mail addresses to pseudonyms; holds nothing that turns a pseudonym back."""

    def __init__(
        self, store: Store, *, pepper: bytes, sealer: Sealer, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._pepper = pepper
        self._sealer = sealer
        self._clock = clock

    def __repr__(self) -> str:
        return "Vault()"

    def blind_index(self, email: str) -> str:
        """HMAC-SHA256 of the normalised address under the pepper."""
        return self._index(normalise_email(email))

    def _index(self, normalised: str) -> str:
        return hmac.new(self._pepper, normalised.encode("utf-8"), hashlib.sha256).hexdigest()

    def pseudonymise(self, email: str) -> Pseudonymised:
        """The pseudonym for ``email``, created on first sight. Safe under concurrent calls."""
        normalised = normalise_email(email)
        index = self._index(normalised)
        for attempt in range(CREATE_ATTEMPTS):
            found = find_one(self._store, IDENTITIES, {"blind_index": index})
            if found is not None:
                return Pseudonymised(_identity(found), created=False)
            pseudonym = new_pseudonym()  # a fresh one each attempt, and the seal made for it
            now = int(self._clock())
            doc = {
                "pseudonym": pseudonym,
                "blind_index": index,
                "sealed_email": self._sealer.seal_email(pseudonym, normalised),
                "created_at": now,
                "last_login_at": None,
                "status": IDENTITY_ACTIVE,
                "status_changed_at": now,
            }
            try:
                self._store.insert(IDENTITIES, doc)
            except DuplicateKeyError:
                # A concurrent first login won (or a pseudonym clashed): read again, after a short
                # random pause so that a crowd of losers does not retry in lock-step.
                time.sleep(random.uniform(0, 0.001 * attempt))
                continue
            log.info("identity created")  # no pseudonym in a log line: it is personal data
            return Pseudonymised(_identity(doc), created=True)
        raise StoreUnavailable("could not create the identity; try again")

    def find(self, pseudonym: str) -> Identity | None:
        """The identity with this pseudonym, whatever its status, or None."""
        if not is_pseudonym(pseudonym):
            return None
        doc = self._store.get(IDENTITIES, pseudonym)
        return None if doc is None else _identity(doc)

    def find_by_email(self, email: str) -> Identity | None:
        """The identity (active or restricted) this address belongs to, or None; creates nothing.

        Raises ``InvalidEmail`` for a malformed address.
        """
        found = find_one(self._store, IDENTITIES, {"blind_index": self.blind_index(email)})
        return None if found is None else _identity(found)

    def record_login(self, pseudonym: str) -> None:
        """Note a successful login (retention counts inactivity from it)."""
        self._store.update(IDENTITIES, {"pseudonym": pseudonym}, {"last_login_at": int(self._clock())})

    def set_status(self, pseudonym: str, status: str, *, only_from: str) -> bool:
        """Move an identity from ``only_from`` to ``status`` (restriction and its reversal)."""
        return self._store.update(
            IDENTITIES, {"pseudonym": pseudonym, "status": only_from},
            {"status": status, "status_changed_at": int(self._clock())},
        ) == 1

    def erase(self, pseudonym: str) -> bool:
        """Remove the blind index and the sealed e-mail in one write; keep a tombstone.

        Afterwards nothing links the pseudonym to an address: the same e-mail logging in again gets
        a new, unrelated pseudonym, and the breach path reports this one as erased.
        """
        return self._erase_where({"pseudonym": pseudonym, "status": NOT_ERASED})

    def erase_if_inactive(self, pseudonym: str, cutoff: int) -> bool:
        """``erase``, only if the identity still is one ``inactive_since(cutoff)`` names, checked in the same
        write: a person who signed in (or was restricted) since the purge read them is kept."""
        return any(self._erase_where({**where, "pseudonym": pseudonym}) for where in self._inactive(cutoff))

    def erase_if_closed_before(self, pseudonym: str, cutoff: int) -> bool:
        """``erase``, only if the identity still is one ``closed_before(cutoff)`` names, checked in the same write:
        an account reopened since the purge read it is kept."""
        return self._erase_where({**self._closed(cutoff), "pseudonym": pseudonym})

    def _erase_where(self, where: dict[str, Any]) -> bool:
        return self._store.update(
            IDENTITIES, where,
            {"blind_index": None, "sealed_email": None, "last_login_at": None, "status": IDENTITY_ERASED,
             "status_changed_at": int(self._clock())},
        ) == 1

    def rekey(self, pseudonym: str, new_email: str) -> None:
        """Rectification: the same pseudonym now belongs to ``new_email``; the old address is forgotten.

        The new address is sealed bound to ``pseudonym`` (sb2). Raises ``EmailInUse`` when the new
        address already has a pseudonym of its own, ``InvalidEmail`` for a malformed one, and
        ``LookupError`` when no active identity has this pseudonym.
        """
        normalised = normalise_email(new_email)
        if not is_pseudonym(pseudonym):
            raise LookupError("no active identity with that pseudonym")
        index = self._index(normalised)
        sealed = self._sealer.seal_email(pseudonym, normalised)
        try:
            changed = self._store.update(
                IDENTITIES, {"pseudonym": pseudonym, "status": IDENTITY_ACTIVE},
                {"blind_index": index, "sealed_email": sealed})
        except DuplicateKeyError as exc:
            raise EmailInUse() from exc
        if changed != 1:
            raise LookupError("no active identity with that pseudonym")
        log.info("identity re-keyed")

    @staticmethod
    def _inactive(cutoff: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Identities active or closed (never restricted ones) with no login (or creation, if never) before
        ``cutoff``: two conditions."""
        return ({"last_login_at": Lt(cutoff), "status": INACTIVITY_ERASABLE},
                {"last_login_at": None, "created_at": Lt(cutoff), "status": INACTIVITY_ERASABLE})

    @staticmethod
    def _closed(cutoff: int) -> dict[str, Any]:
        return {"status": IDENTITY_CLOSED, "status_changed_at": Lt(cutoff)}

    def inactive_since(self, cutoff: int, *, limit: int) -> list[str]:
        """Pseudonyms of identities active or closed with no login (or creation, if never) before ``cutoff``;
        a restricted identity is kept (Art. 18), however long unused."""
        found = [d["pseudonym"] for where in self._inactive(cutoff) for d in self._store.find(IDENTITIES, where,
                                                                                              limit=limit)]
        return found[:limit]

    def closed_before(self, cutoff: int, *, limit: int) -> list[str]:
        """Pseudonyms of identities closed (cancelled) before ``cutoff`` and not erased yet."""
        return [d["pseudonym"] for d in self._store.find(IDENTITIES, self._closed(cutoff), limit=limit)]

    def purge_counts(self, inactive_cutoff: int, closed_cutoff: int) -> tuple[int, int]:
        """What a purge would erase, counted by the store (nothing loaded): (identities, of which closed);
        one both closed and inactive counts once."""
        closed = self._store.count(IDENTITIES, self._closed(closed_cutoff))
        inactive = sum(self._store.count(IDENTITIES, where) for where in self._inactive(inactive_cutoff))
        both = sum(self._store.count(IDENTITIES, {**where, **self._closed(closed_cutoff)})
                   for where in self._inactive(inactive_cutoff))
        return closed + inactive - both, closed
