"""``scripts/store.py migrate``: every collection's table and indexes, created ahead of traffic, idempotently.

Each module declares the ``Collection`` it owns (``identity.store.base``) and the store creates a
collection's table or indexes on its first use in a process. ``migrate`` does it for all of them at once,
before a deployment: on MongoDB an index build on a large collection takes time and needs the
``createIndex`` privilege, which the service's own database user then no longer uses (every index exists,
so its first-use ``createIndex`` calls change nothing). Running it again changes nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import Collection, Store

#: Packages whose collections are not the service's (the development IdP's codes are created on its first use).
SKIPPED_PACKAGES = ("identity.devidp",)


def all_collections() -> list[Collection]:
    """Every ``Collection`` declared at module level in the ``identity`` package, by name."""
    import identity

    found: dict[str, Collection] = {}
    for info in pkgutil.walk_packages(identity.__path__, prefix="identity."):
        if info.name.startswith(SKIPPED_PACKAGES):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, Collection):
                existing = found.setdefault(value.name, value)
                if existing != value:
                    raise RuntimeError(f"two different collections are named {value.name!r}")
    return [found[name] for name in sorted(found)]


def migrate(store: Store, collections: list[Collection] | None = None) -> dict[str, Any]:
    """Prepare every collection: for each, its indexes and those this run created."""
    report = [{"collection": coll.name, **store.prepare(coll)}
              for coll in (collections if collections is not None else all_collections())]
    return {"collections": report, "created": sum(len(c["created"]) for c in report)}
