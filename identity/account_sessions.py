"""The account page's sessions: kept server side, found by a random id in the person's cookie.

A session starts when the person signs in at the IdP from ``/account`` (always a fresh sign-in) and
holds the pseudonym, the moment of that sign-in and when the person was last seen. The cookie holds
256 random bits; the store keeps their SHA-256. A session ends after ``IDLE_SECONDS`` without a request,
``MAX_SECONDS`` after the sign-in, at sign-out, at erasure, and when the same browser signs in again
(a new id every sign-in: a fixated or stolen id dies with it).

Forms carry ``HMAC(key, session id, generation)``: each state-changing form accepted moves the
generation on with one compare-and-set, so a form — or a recorded request replayed with the same
cookie — is good once, and of two concurrent replays exactly one wins.

Flask-free: ``identity.web.account`` sets the cookie and renders the pages.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Callable

from .oauth.records import new_secret_value, token_hash
from .store import Collection, Gt, Lt, Store

IDLE_SECONDS = 15 * 60
MAX_SECONDS = 8 * 3600
RECENT_SIGN_IN_SECONDS = 5 * 60  # "delete my account" needs a sign-in this recent
TOUCH_AFTER_SECONDS = 30  # last-seen is written at most this often (one write per page view is enough)

ACCOUNT_SESSIONS = Collection(
    name="account_sessions",
    key="session_hash",
    fields={
        "session_hash": str,
        "subject": str,
        "authenticated_at": int,
        "last_seen_at": int,
        "expires_at": int,  # the earlier of the idle and the absolute end, for lookups and the purge
        "csrf_generation": int,
    },
    indexed=("subject", "expires_at"),
)


@dataclass(frozen=True)
class AccountSession:
    """A live session. ``session_id`` is the cookie's secret: never log it."""

    session_id: str
    subject: str
    authenticated_at: int
    csrf_generation: int

    def __repr__(self) -> str:
        return f"AccountSession(subject={self.subject!r}, authenticated_at={self.authenticated_at})"


class AccountSessions:
    """Starts, finds, ends the account page's sessions; checks and spends their form tokens."""

    def __init__(self, store: Store, *, csrf_key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._csrf_key = csrf_key
        self._clock = clock

    def __repr__(self) -> str:
        return "AccountSessions()"

    def start(self, subject: str, *, replacing: object = None) -> str:
        """A new session for a person who just signed in; ends ``replacing`` (this browser's old one)."""
        now = int(self._clock())
        self.end(replacing)
        self._store.delete(ACCOUNT_SESSIONS, {"expires_at": Lt(now)})  # tidy up (one indexed delete)
        session_id = new_secret_value()
        self._store.insert(ACCOUNT_SESSIONS, {
            "session_hash": token_hash(session_id), "subject": subject, "authenticated_at": now,
            "last_seen_at": now, "expires_at": now + IDLE_SECONDS, "csrf_generation": 0,
        })
        return session_id

    def find(self, session_id: object) -> AccountSession | None:
        """The live session with this id (its idle time restarts), or None."""
        if not isinstance(session_id, str) or not session_id or len(session_id) > 128:
            return None
        now = int(self._clock())
        doc = self._store.get(ACCOUNT_SESSIONS, token_hash(session_id))
        if doc is None or doc["expires_at"] <= now:
            return None
        if now - doc["last_seen_at"] >= TOUCH_AFTER_SECONDS:
            expires_at = min(now + IDLE_SECONDS, doc["authenticated_at"] + MAX_SECONDS)
            self._store.update(ACCOUNT_SESSIONS, {"session_hash": doc["session_hash"], "expires_at": Gt(now)},
                               {"last_seen_at": now, "expires_at": expires_at})
        return AccountSession(session_id, doc["subject"], doc["authenticated_at"], doc["csrf_generation"] or 0)

    def signed_in_recently(self, session: AccountSession) -> bool:
        return self._clock() - session.authenticated_at <= RECENT_SIGN_IN_SECONDS

    def end(self, session_id: object) -> None:
        if isinstance(session_id, str) and session_id and len(session_id) <= 128:
            self._store.delete(ACCOUNT_SESSIONS, {"session_hash": token_hash(session_id)})

    def end_all_for(self, subject: str) -> int:
        """Every session of a person (erasure)."""
        return self._store.delete(ACCOUNT_SESSIONS, {"subject": subject})

    # -- form tokens ---------------------------------------------------------------------------

    def csrf_token(self, session: AccountSession) -> str:
        message = f"{session.session_id}\x00{session.csrf_generation}".encode()
        return hmac.new(self._csrf_key, message, hashlib.sha256).hexdigest()

    def csrf_matches(self, session: AccountSession, presented: object) -> bool:
        """The form carries this session's current token (for forms that change nothing)."""
        return isinstance(presented, str) and hmac.compare_digest(self.csrf_token(session).encode(), presented.encode())

    def spend_csrf(self, session: AccountSession, presented: object) -> bool:
        """Accept the form once: the token must be current, and moving the generation on must succeed."""
        if not self.csrf_matches(session, presented):
            return False
        return self._store.update(
            ACCOUNT_SESSIONS,
            {"session_hash": token_hash(session.session_id), "csrf_generation": session.csrf_generation},
            {"csrf_generation": session.csrf_generation + 1},
        ) == 1
