"""The breach path's way back: (sector, pairwise subject) → vault pseudonym, readable without any service key.

The DPO resolves a leaked data set on an offline machine that holds no service secret, so the
store must map a pairwise subject back. It does so without handing a reader of the store a table
that links a person's sectors: each row is found, and opened, only by whoever already holds that
sector's subject.

* row id: BLAKE2b-128 of ``sector 0 subject`` (personalised ``pairwise-row-id``), hex;
* sealed: the vault pseudonym under AES-256-GCM, keyed by BLAKE2b-256 of the same input
  (personalised ``pairwise-seal``), random 96-bit nonce, the row id as associated data (a row
  moved under another id fails to open); stored as base64(nonce ‖ ciphertext).

A row holds nothing else: no sector, no pseudonym, no time. A reader of the store sees unrelated
random-looking rows; with one service's data set they open that sector's rows (what the breach
path is for), never another sector's, whose subjects need the service's pairwise key. An erased
person's rows keep their id with ``sealed`` removed (reported as erased, never opened again).

``sectors`` lists every sector that ever had a row, so erasure and the rights export can visit
each (deriving the person's subject in each with the key the service holds).

The service records a row only for a person the vault does not hold as erased (``record(...,
refuse_erased=True)``), and no row it records while an erasure runs survives it: the row is written
first and the person's status read after, and the erasure forgets the person's rows once more after
its vault write, so either the erasure's last pass finds the row or the read finds the person erased.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from typing import Callable, Iterable, Iterator, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..store import Collection, DuplicateKeyError, In, Store
from ..vault import IDENTITIES, IDENTITY_ERASED, is_pseudonym

NONCE_BYTES = 12
ERASED = "erased"
SECTOR_SUBJECTS = Collection(
    name="sector_subjects",
    key="row",
    fields={"row": str, "sealed": str},  # sealed None: the person was erased
)
SECTORS = Collection(name="sectors", key="sector", fields={"sector": str, "first_seen_at": int})


ROW_ID, SEAL = b"pairwise-row-id", b"pairwise-seal"  # BLAKE2b personalisations: one input, two uses


def _material(sector: str, subject: str) -> bytes:
    return sector.encode("ascii") + b"\x00" + subject.encode("ascii")


def _row_id(material: bytes) -> str:
    return hashlib.blake2b(material, digest_size=16, person=ROW_ID).hexdigest()


def row_id(sector: str, subject: str) -> str:
    """The row of (sector, subject): computable by anyone who holds both, and by nobody else."""
    return _row_id(_material(sector, subject))


def _seal_key(material: bytes) -> AESGCM:
    return AESGCM(hashlib.blake2b(material, digest_size=32, person=SEAL).digest())


def _open(material: bytes, row: str, sealed: str) -> str | None:
    try:
        raw = binascii.a2b_base64(sealed, strict_mode=True)
        plain = _seal_key(material).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], row.encode("ascii"))
    except (InvalidTag, ValueError, binascii.Error):
        return None
    pseudonym = plain.decode("ascii", "replace")
    return pseudonym if is_pseudonym(pseudonym) else None


def seal(sector: str, subject: str, pseudonym: str) -> str:
    """The pseudonym sealed under a key only (sector, subject) gives."""
    nonce = os.urandom(NONCE_BYTES)
    box = _seal_key(_material(sector, subject)).encrypt(nonce, pseudonym.encode("ascii"),
                                                        row_id(sector, subject).encode("ascii"))
    return base64.b64encode(nonce + box).decode("ascii")


def unseal(sector: str, subject: str, row: str, sealed: str) -> str | None:
    """The pseudonym in a row of (sector, subject), or None if it does not open (altered, misplaced)."""
    return _open(_material(sector, subject), row, sealed)


class SubjectErased(LookupError):
    """No pairwise subject is recorded for a person the vault holds as erased (or does not hold)."""


class RowBatch:
    """Many (sector, subject) pairs at once, for the breach path: their row ids, then what the rows hold.

    The same as ``row_id`` and ``unseal`` one by one, with each input encoded once.
    """

    def __init__(self) -> None:
        self._pending: dict[str, tuple[str, bytes]] = {}  # row id → (identifier, material)
        self._prefixes: dict[str, bytes] = {}

    def add(self, identifier: str, sector: str, subject: str) -> None:
        prefix = self._prefixes.get(sector)
        if prefix is None:
            prefix = self._prefixes[sector] = sector.encode("ascii") + b"\x00"
        material = prefix + subject.encode("ascii")
        self._pending[_row_id(material)] = (identifier, material)

    @property
    def ids(self) -> list[str]:
        return list(self._pending)

    def opened(self, rows: Iterable[tuple[str, str | None]]) -> Iterator[tuple[str, str | None]]:
        """(identifier, pseudonym) for each row found: ``ERASED`` when erased, None when it does not open."""
        pending = self._pending
        for row, sealed in rows:
            identifier, material = pending[row]
            yield identifier, (ERASED if sealed is None else _open(material, row, sealed))


class SubjectMap:
    """The mapping rows and the sector list in the store (no key needed: the DPO's tools use it too)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._known_sectors: set[str] = set()

    def record(self, sector: str, subject: str, pseudonym: str, *, refuse_erased: bool = False) -> None:
        """Make (sector, subject) resolvable to ``pseudonym``; idempotent, safe under concurrent calls.

        A read first (the row usually exists), then an insert; a concurrent insert of the same row
        wins harmlessly. ``refuse_erased`` (the service's way, before a subject leaves it): raise
        ``SubjectErased`` when the row was erased or the vault holds the person as erased (or not at all),
        leaving no row that resolves; a row inserted meanwhile is erased again (module docstring).

        :raises StoreUnavailable: the store fails: the subject must not leave the service before its row exists.
        """
        self._note_sector(sector)
        row = row_id(sector, subject)
        found = self._store.get(SECTOR_SUBJECTS, row)
        if found is not None:
            if refuse_erased and found.get("sealed") is None:
                raise SubjectErased("the person was erased")
            return
        try:
            self._store.insert(SECTOR_SUBJECTS, {"row": row, "sealed": seal(sector, subject, pseudonym)})
        except DuplicateKeyError:
            pass  # recorded meanwhile by another worker
        if refuse_erased and not self._is_held(pseudonym):
            self._store.update(SECTOR_SUBJECTS, {"row": row}, {"sealed": None})
            raise SubjectErased("the person was erased")

    def _is_held(self, pseudonym: str) -> bool:
        """Whether the vault holds the person and not as erased (read after the row's insert)."""
        identity = self._store.get(IDENTITIES, pseudonym)
        return identity is not None and identity.get("status") != IDENTITY_ERASED

    def _note_sector(self, sector: str) -> None:
        if sector in self._known_sectors:
            return
        if self._store.get(SECTORS, sector) is None:
            try:
                self._store.insert(SECTORS, {"sector": sector, "first_seen_at": int(self._clock())})
            except DuplicateKeyError:
                pass
        self._known_sectors.add(sector)

    def sectors(self) -> list[str]:
        """Every sector that ever had a subject recorded."""
        return sorted(doc["sector"] for doc in self._store.find(SECTORS, {}))

    def rows(self, ids: Sequence[str]) -> dict[str, str | None]:
        """The rows among ``ids`` that exist: row id → sealed pseudonym (None when erased)."""
        if not ids:
            return {}
        return {doc["row"]: doc.get("sealed") for doc in self._store.find(SECTOR_SUBJECTS, {"row": In(tuple(ids))})}

    def resolve(self, sector: str, subject: str) -> str | None:
        """The pseudonym behind (sector, subject); ``ERASED`` for an erased person; None if unknown."""
        row = row_id(sector, subject)
        found = self.rows([row])
        if row not in found:
            return None
        sealed = found[row]
        if sealed is None:
            return ERASED
        return unseal(sector, subject, row, sealed)

    def erase(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Remove the sealed pseudonym from the rows of these (sector, subject) pairs; how many existed."""
        ids = tuple(row_id(sector, subject) for sector, subject in pairs)
        if not ids:
            return 0
        return self._store.update(SECTOR_SUBJECTS, {"row": In(ids)}, {"sealed": None})
