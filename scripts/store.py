#!/usr/bin/env python3
"""The store's schema: ``store.py migrate`` creates every table and index the service uses, idempotently.

    IDENTITY_DB_URI=mongodb+srv://admin@cluster.example.net/identity python scripts/store.py migrate

Run it before starting a new release (docs/deploy.md): a second run creates nothing. Reads the settings as the
service does, but uses only ``IDENTITY_DB_URI`` (no key material is opened). Prints one JSON object: the
backend and, per collection, its indexes and those this run created.
"""

from __future__ import annotations

import argparse

from identity.cli import CommandError, emit, run, settings_from_environment
from identity.store import StoreUnavailable, open_store
from identity.store.migrate import migrate


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="store.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create every collection's table and indexes (idempotent)")
    return parser.parse_args()


def main() -> int:
    parse_args()
    settings = settings_from_environment()
    store = open_store(settings.db_uri)
    try:
        report = migrate(store)
    except StoreUnavailable as exc:
        raise CommandError(f"the store cannot be migrated: {exc}") from exc
    finally:
        store.close()
    backend = "sqlite" if settings.db_uri.startswith("sqlite:") else "mongodb"
    emit({"backend": backend, **report})
    return 0


if __name__ == "__main__":
    run(main)
