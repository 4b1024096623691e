"""Fast regression tests for store faults found by the gunicorn fault tests (test_faults.py)."""

from __future__ import annotations

import threading

from identity import create_app
from identity.store import SQLiteStore, StoreUnavailable
from identity.vault import IDENTITIES


def test_a_failing_write_is_store_unavailable_and_never_deadlocks(tmp_path):
    """A write that fails (disk full, read-only, locked) used to re-take the writers' lock it held."""
    store = SQLiteStore(tmp_path / "store.sqlite3")
    doc = {"pseudonym": "a" * 26, "blind_index": "x", "sealed_email": "s", "created_at": 1, "last_login_at": None,
           "status": "active", "status_changed_at": 1}
    store.insert(IDENTITIES, doc)
    outcome: list[object] = []

    def write() -> None:
        store._connection(True).execute("PRAGMA query_only = ON")  # every write on this connection fails
        try:
            store.insert(IDENTITIES, {**doc, "pseudonym": "b" * 26, "blind_index": "y"})
            outcome.append("written")
        except StoreUnavailable as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive(), "the failing write deadlocked"
    assert isinstance(outcome[0], StoreUnavailable)
    retry = threading.Thread(target=lambda: store.insert(IDENTITIES, {**doc, "pseudonym": "c" * 26,
                                                                      "blind_index": "z"}))
    retry.start()  # the writers' lock was released: the next write goes through
    retry.join(timeout=10)
    assert store.count(IDENTITIES, {}) == 2
    store.close()


def test_create_app_leaves_no_store_connection_open_for_a_fork(settings):
    """gunicorn --preload forks after create_app: SQLite state must not cross the fork (README, Production)."""
    app = create_app(settings)
    store = app.extensions["identity"].store
    assert getattr(store._local, "conn", None) is None and getattr(store._local, "fast_conn", None) is None
