"""Data-subject rights (GDPR Art. 15–20): access, export, erasure, restriction, retention purges.

Flask-free: the ``/me`` endpoints and ``scripts/subjects.py`` both call ``SubjectRights``. Every act
is written to the audit log by pseudonym only.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from .audit import AuditLog
from .email_change import EMAIL_CHANGES
from .oauth.clients import ClientRegistry
from .oauth.grants import Grants
from .oauth.records import (
    AUTHORIZATION_CODES,
    GRANTS,
    ISSUED_ACCESS_TOKENS,
    PENDING_AUTHORIZATIONS,
    REFRESH_TOKENS,
)
from .store import Collection, Lt, Store
from .vault import ACTIVE, ERASED, RESTRICTED, Vault

PURGE_BATCH = 500
PERIOD_PATTERN = re.compile(r"^(\d{1,4})([dwmy])$")
SECONDS_PER_UNIT = {"d": 86_400, "w": 7 * 86_400, "m": 30.4375 * 86_400, "y": 365.25 * 86_400}
EMAIL_NOTE = ("held only sealed to the data protection officer's public key; this service cannot read it. "
              "Ask the data protection officer for it.")

#: Collections whose records die at ``expires_at`` (the retention purge removes them).
EXPIRING: list[tuple[Collection, str]] = [
    (PENDING_AUTHORIZATIONS, "expires_at"),
    (AUTHORIZATION_CODES, "expires_at"),
    (REFRESH_TOKENS, "expires_at"),
    (ISSUED_ACCESS_TOKENS, "expires_at"),
    (GRANTS, "expires_at"),
    (EMAIL_CHANGES, "expires_at"),
]


class UnknownSubject(LookupError):
    """No identity with that pseudonym (or it is erased, where that matters)."""


def parse_period(text: str) -> int:
    """``24m`` → seconds (d days, w weeks, m months of 30.44 days, y years); ``ValueError`` otherwise."""
    match = PERIOD_PATTERN.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError("a period is a number and a unit: 90d, 12w, 24m or 2y")
    return int(int(match.group(1)) * SECONDS_PER_UNIT[match.group(2)])


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class PurgeReport:
    cutoff: int
    identities: int
    expired: dict[str, int]
    dry_run: bool


class SubjectRights:
    """What a person (or an operator on their behalf) can ask of the identity service."""

    def __init__(
        self, *, store: Store, vault: Vault, grants: Grants, clients: ClientRegistry, audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._vault = vault
        self._grants = grants
        self._clients = clients
        self._audit = audit
        self._clock = clock

    # -- access and export (Art. 15, 20) ------------------------------------------------------

    def describe(self, pseudonym: str) -> dict[str, Any]:
        """Pseudonym, created, last login, status and the apps holding active grants."""
        identity = self._vault.find(pseudonym)
        if identity is None or identity.status == ERASED:
            raise UnknownSubject(pseudonym)
        return {
            "pseudonym": identity.pseudonym,
            "created_at": iso(identity.created_at),
            "last_login_at": iso(identity.last_login_at),
            "status": identity.status,
            "apps": self._apps(pseudonym),
        }

    def _apps(self, pseudonym: str) -> list[dict[str, Any]]:
        apps = []
        for grant in self._grants.active_for_subject(pseudonym):
            client = self._clients.get(grant.client_id)
            apps.append({
                "client_id": grant.client_id,
                "name": client.name if client else None,
                "audience": grant.audience,
                "scope": grant.scope,
                "granted_at": iso(grant.created_at),
                "expires_at": iso(grant.expires_at),
            })
        return apps

    def export(self, pseudonym: str) -> dict[str, Any]:
        """Everything held about the person, machine-readable (Art. 20)."""
        summary = self.describe(pseudonym)
        history = [
            {"at": iso(r["at"]), "action": r["action"], "outcome": r["outcome"]}
            for r in self._audit.records()
            if (r.get("details") or {}).get("pseudonym") == pseudonym
        ]
        return {
            "format": "identity-service-export/1",
            "generated_at": iso(self._clock()),
            "identity": {k: summary[k] for k in ("pseudonym", "created_at", "last_login_at", "status")},
            "email_address": EMAIL_NOTE,
            "grants": summary["apps"],
            "history": history,
        }

    # -- erasure and restriction (Art. 17, 18) -------------------------------------------------

    def erase(self, pseudonym: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Forget the e-mail link at once and end every session; the pseudonym can never resolve again."""
        if not self._vault.erase(pseudonym):
            raise UnknownSubject(pseudonym)
        revoked = self._grants.revoke_all_for_subject(pseudonym, reason="erasure")
        self._store.delete(AUTHORIZATION_CODES, {"subject": pseudonym})
        self._audit.append(actor=actor, action="subjects.erase", reason=reason,
                           counts={"grants_revoked": revoked}, details={"pseudonym": pseudonym})
        return {"pseudonym": pseudonym, "status": ERASED, "grants_revoked": revoked}

    def restrict(self, pseudonym: str, *, actor: str, reason: str) -> dict[str, Any]:
        """No new tokens, no refresh, introspection inactive — until ``unrestrict``."""
        if not self._vault.set_status(pseudonym, RESTRICTED, only_from=ACTIVE):
            raise UnknownSubject(pseudonym)
        self._audit.append(actor=actor, action="subjects.restrict", reason=reason, details={"pseudonym": pseudonym})
        return {"pseudonym": pseudonym, "status": RESTRICTED}

    def unrestrict(self, pseudonym: str, *, actor: str, reason: str) -> dict[str, Any]:
        if not self._vault.set_status(pseudonym, ACTIVE, only_from=RESTRICTED):
            raise UnknownSubject(pseudonym)
        self._audit.append(actor=actor, action="subjects.unrestrict", reason=reason,
                           details={"pseudonym": pseudonym})
        return {"pseudonym": pseudonym, "status": ACTIVE}

    # -- retention ---------------------------------------------------------------------------

    def purge(self, *, inactive_for: int, actor: str, dry_run: bool) -> PurgeReport:
        """Erase identities with no login for ``inactive_for`` seconds; drop expired codes and tokens."""
        now = int(self._clock())
        cutoff = now - inactive_for
        if dry_run:
            identities = len(self._vault.inactive_since(cutoff, limit=10**9))
            expired = {coll.name: self._store.count(coll, {field: Lt(now)}) for coll, field in EXPIRING}
            return PurgeReport(cutoff, identities, expired, True)
        identities = 0
        while batch := self._vault.inactive_since(cutoff, limit=PURGE_BATCH):
            erased_now = 0
            for pseudonym in batch:
                if self._vault.erase(pseudonym):
                    self._grants.revoke_all_for_subject(pseudonym, reason="retention")
                    erased_now += 1
            identities += erased_now
            if erased_now == 0:
                break  # another purge is erasing the same identities
        expired = {coll.name: self._store.delete(coll, {field: Lt(now)}) for coll, field in EXPIRING}
        self._audit.append(actor=actor, action="subjects.purge", reason=f"no login since {iso(cutoff)}",
                           counts={"identities_erased": identities, **expired})
        return PurgeReport(cutoff, identities, expired, False)
