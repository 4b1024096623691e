"""The ``sub`` each audience and each client sees for a person: ``Subjects.subject_for``.

Every token, ID token, introspection answer and UserInfo-like response that names a person takes
its subject from ``subject_for`` — the one place that knows whether the receiver sees the vault
pseudonym (subject type ``public``) or the pairwise subject of its sector (``pairwise``). Before a
pairwise subject leaves the service its mapping row exists (``identity.pairwise.mapping``), so the
breach path can always take it back; in-process, a bounded cache keeps the token path free of
store round trips for people seen recently.

An audience or client that is not (or no longer) registered is treated as pairwise in a sector of
its own: a missing registration never yields the pseudonym. No new subject is recorded, or handed out,
for a person the vault holds as erased (``PersonErased``): a request that raced the erasure fails.
To compare a ``sub`` someone presents with a person (a sign-out's ``id_token_hint``), ``is_subject_for``
computes it and records nothing.
"""

from __future__ import annotations

import hmac
import threading
from typing import Any

from ..errors import InvalidGrant
from ..pairwise.derivation import PairwiseKey
from ..pairwise.mapping import ERASED, SubjectErased, SubjectMap, row_id
from ..pairwise.sectors import CLIENT_SECTOR_PREFIX, PAIRWISE, sector_problem
from ..vault import is_pseudonym
from .audiences import Audience, AudienceRegistry
from .clients import Client, ClientRegistry

CACHE_ENTRIES = 100_000  # (sector, pseudonym) → subject, recorded; about 25 MB per process when full


class PersonErased(InvalidGrant):
    """The person was erased while this request ran: no subject is recorded or handed out for them
    (``invalid_grant`` where a token was asked for)."""

    description = "the account is not active"


class Subjects:
    """Derives, records and resolves pairwise subjects for the service (holds the pairwise key)."""

    def __init__(self, *, key: PairwiseKey, subject_map: SubjectMap, audiences: AudienceRegistry,
                 clients: ClientRegistry, cache_entries: int = CACHE_ENTRIES) -> None:
        self._key = key
        self._map = subject_map
        self._audiences = audiences
        self._clients = clients
        self._cache_entries = cache_entries
        self._recorded: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Subjects()"

    @property
    def map(self) -> SubjectMap:
        return self._map

    # -- what a receiver sees ------------------------------------------------------------------

    def subject_for(self, pseudonym: str, *, audience: str | Audience | None = None,
                    client: str | Client | None = None) -> str:
        """The ``sub`` for the person ``pseudonym`` as ``audience`` (access tokens, their introspection)
        or ``client`` (ID tokens, UserInfo) sees it. Give exactly one of the two.

        :raises StoreUnavailable: a new pairwise subject cannot be recorded.
        :raises PersonErased: the person was erased (a pairwise subject is recorded for nobody else).
        """
        subject_type, sector = self._view(audience, client)
        if subject_type != PAIRWISE:
            return pseudonym
        return self.in_sector(sector, pseudonym)

    def is_subject_for(self, subject: str, pseudonym: str, *, audience: str | Audience | None = None,
                       client: str | Client | None = None) -> bool:
        """Whether ``subject`` is the ``sub`` ``audience`` or ``client`` sees for the person ``pseudonym``:
        computed, never recorded (a presented ``sub`` is compared; nothing leaves the service, so no row
        is needed, and none is written for a receiver the person never used)."""
        subject_type, sector = self._view(audience, client)
        expected = pseudonym if subject_type != PAIRWISE else self._key.subject(sector, pseudonym)
        return hmac.compare_digest(expected.encode("ascii"), subject.encode("ascii", "replace"))

    def in_sector(self, sector: str, pseudonym: str) -> str:
        """The pairwise subject of ``pseudonym`` in ``sector``, recorded for the breach path.

        :raises PersonErased: the person was erased (``SubjectMap.record(..., refuse_erased=True)``).
        """
        cached = self._recorded.get((sector, pseudonym))
        if cached is not None:
            return cached
        subject = self._key.subject(sector, pseudonym)
        try:
            self._map.record(sector, subject, pseudonym, refuse_erased=True)
        except SubjectErased as exc:
            raise PersonErased() from exc
        with self._lock:
            if len(self._recorded) >= self._cache_entries:
                del self._recorded[next(iter(self._recorded))]  # the oldest entry
            self._recorded[(sector, pseudonym)] = subject
        return subject

    def _view(self, audience: str | Audience | None, client: str | Client | None) -> tuple[str, str]:
        """(subject type, sector) of the one receiver given."""
        if audience is not None and client is None:
            return self._audience_view(audience)
        if client is not None and audience is None:
            return self._client_view(client)
        raise TypeError("give exactly one of audience= and client=")

    def _audience_view(self, audience: str | Audience) -> tuple[str, str]:
        record = self._audiences.get(audience) if isinstance(audience, str) else audience
        if record is None:
            return PAIRWISE, str(audience)
        return record.subject_type, record.sector

    def _client_view(self, client: str | Client) -> tuple[str, str]:
        record = self._clients.get(client) if isinstance(client, str) else client
        if record is None:
            return PAIRWISE, CLIENT_SECTOR_PREFIX + str(client)
        return record.subject_type, record.sector

    # -- the way back, for operators (``scripts/subjects.py --sector``) ---------------------------

    def resolve(self, sector: str, subject: str) -> str | None:
        """The vault pseudonym behind a pairwise subject of ``sector``; None when unknown or erased."""
        if sector_problem(sector) or not is_pseudonym(subject):
            return None
        found = self._map.resolve(sector, subject)
        return None if found in (None, ERASED) else found

    # -- rights ----------------------------------------------------------------------------------

    def subjects_of(self, pseudonym: str) -> list[dict[str, Any]]:
        """The person's pairwise subject in every sector where one was issued, from the mapping rows
        (one read by primary key, whatever the size of the store), with the services in each sector."""
        derived = {sector: self._key.subject(sector, pseudonym) for sector in self._map.sectors()}
        rows = self._map.rows([row_id(sector, subject) for sector, subject in derived.items()])
        live = [(sector, subject) for sector, subject in derived.items() if rows.get(row_id(sector, subject))]
        services = self._services_by_sector()
        return [{"sector": sector, "subject": subject, "services": services.get(sector, [])}
                for sector, subject in live]

    def _services_by_sector(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for audience in self._audiences.all():
            if audience.subject_type == PAIRWISE:
                found.setdefault(audience.sector, []).append(audience.audience)
        for client in self._clients.all():
            if client.subject_type == PAIRWISE:
                found.setdefault(client.sector, []).append(f"app: {client.name}")
        return found

    def forget(self, pseudonym: str) -> int:
        """Erasure: no pairwise subject of the person resolves again, in any sector; how many rows held one."""
        sectors = self._map.sectors()
        erased = self._map.erase((sector, self._key.subject(sector, pseudonym)) for sector in sectors)
        with self._lock:
            for sector in sectors:
                self._recorded.pop((sector, pseudonym), None)
        return erased
