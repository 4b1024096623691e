#!/usr/bin/env python3
"""The audit log: ``verify`` checks the hash chain, ``show`` lists records.

Reads the same IDENTITY_* environment as the service (only IDENTITY_DB_URI matters here): it needs
the store, never any key material.

``verify`` exits 0 and prints the chain head when every record is in place, and exits 1 naming the
first bad record otherwise. Keep the printed head somewhere else (a ticket, a notebook, a second
system) and pass it back with ``--expect-head`` later: that also detects records cut off the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable

import _bootstrap  # noqa: F401

from identity.audit import AuditLog
from identity.cli import CommandError, emit, run, say, settings_from_environment
from identity.store import Store, StoreUnavailable, open_store


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="audit.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="check every link of the hash chain; print its head")
    verify.add_argument("--expect-head", metavar="HASH",
                        help="a head printed by an earlier verify: it must still be in the chain")
    show = sub.add_parser("show", help="list records in chain order (one JSON object)")
    show.add_argument("--incident", metavar="ID", help="only records of this incident")
    return parser.parse_args()


def open_audit() -> tuple[Store, AuditLog]:
    settings = settings_from_environment()
    store = open_store(settings.db_uri)
    return store, AuditLog(store)


def cmd_verify(args: argparse.Namespace) -> int:
    _, audit = open_audit()
    report = audit.verify_chain(expected_head=args.expect_head)
    if report.ok:
        emit({"status": "ok", "records": report.count, "head": report.head_hash})
        return 0
    emit({"status": "broken", "records_verified": report.count, "first_bad_record": report.first_bad_seq,
          "problem": report.problem})
    where = f"record {report.first_bad_seq}" if report.first_bad_seq is not None else "the chain's end"
    say(f"error: the audit chain is broken at {where}: {report.problem}")
    return 1


def stream_records(records: Iterable[dict[str, Any]], *, incident: str | None) -> int:
    """Print ``{"incident": …, "records": [...], "count": N}`` one record at a time (bounded memory)."""
    out = sys.stdout
    out.write('{\n  "incident": ' + json.dumps(incident) + ',\n  "records": [')
    count = 0
    for record in records:
        out.write(("," if count else "") + "\n    " + json.dumps(record, sort_keys=True, default=str))
        count += 1
    out.write(("\n  " if count else "") + '],\n  "count": ' + str(count) + "\n}\n")
    out.flush()
    return count


def cmd_show(args: argparse.Namespace) -> int:
    _, audit = open_audit()
    stream_records(audit.records(incident=args.incident), incident=args.incident)
    return 0


def main() -> int:
    args = parse_args()
    try:
        return cmd_verify(args) if args.command == "verify" else cmd_show(args)
    except StoreUnavailable as exc:
        raise CommandError(f"the store is unavailable: {exc}") from exc


if __name__ == "__main__":
    run(main)
