#!/usr/bin/env python3
"""The audit log: ``verify`` checks the chain, its signatures and its exported heads; ``show`` lists records.

Reads the same IDENTITY_* environment as the service (IDENTITY_DB_URI, IDENTITY_KEYS_DIR for
audit_signing.pub.pem, IDENTITY_AUDIT_HEADS): it needs public key material only.

``verify`` exits 0 and prints the chain head when every record is in place, signed by a trusted key,
and every exported head (``--heads``, by default the configured heads file) is in the chain. It exits 1
with one line per kind of problem otherwise: an altered record, a bad or missing signature, a record
deleted from the middle, a truncated tail (an exported head beyond the chain's end) or a rewritten
chain (exported heads not in it). ``--expect-head`` checks a head kept by hand as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable

from pathlib import Path

from identity.audit import AuditLog, ChainReport
from identity.audit_heads import heads_sink, read_heads, readable_files
from identity.audit_signing import TrustedKeys, load_public_key
from identity.breach.audit_keys import registered_officer_key
from identity.cli import CommandError, emit, run, say, settings_from_environment
from identity.config import Settings
from identity.keys import KeyMaterialError, KeyPaths
from identity.store import Store, StoreUnavailable, open_store

EXPORT_HINT = "journalctl -t identity-audit -o cat > heads.jsonl"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="audit.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="check links, signatures and exported heads; print the chain's head")
    verify.add_argument("--expect-head", metavar="HASH",
                        help="a head printed by an earlier verify: it must still be in the chain")
    verify.add_argument("--heads", metavar="PATH", type=Path, action="append",
                        help="a file of exported heads (repeatable: one per host or sink; syslog exports "
                             "too); default: the IDENTITY_AUDIT_HEADS file")
    verify.add_argument("--no-heads", action="store_true",
                        help="skip the exported heads (a cut-off tail or a re-signed rewrite cannot show)")
    verify.add_argument("--audit-public-key", metavar="PATH", type=Path, action="append", default=[],
                        help="another trusted audit public key, e.g. a retired one (repeatable); "
                             "IDENTITY_KEYS_DIR/audit_signing.pub.pem is always trusted when present")
    show = sub.add_parser("show", help="list records in chain order (one JSON object)")
    show.add_argument("--incident", metavar="ID", help="only records of this incident")
    return parser.parse_args()


def open_audit() -> tuple[Store, AuditLog]:
    settings = settings_from_environment()
    store = open_store(settings.db_uri)
    return store, AuditLog(store)


def trusted_keys(settings: Settings, store: Store, extra: list[Path]) -> TrustedKeys:
    """The service audit public keys (keys directory and ``--audit-public-key``) and the officer registry."""
    default = KeyPaths(settings.keys_dir).audit_public
    paths = ([default] if default.exists() else []) + extra
    if not paths:
        raise CommandError(f"no audit public key to check signatures with: {default} is missing (copy "
                           "audit_signing.pub.pem from the service's keys directory) and no --audit-public-key "
                           "was given", exit_code=2)
    try:
        keys = [load_public_key(path) for path in paths]
    except KeyMaterialError as exc:
        raise CommandError(str(exc), exit_code=2) from exc
    return TrustedKeys(keys, officer_key=registered_officer_key(store))


def heads_files(settings: Settings, args: argparse.Namespace) -> list[Path] | None:
    """The heads files to check (None: not checked)."""
    if args.no_heads:
        if args.heads:
            raise CommandError("--heads and --no-heads contradict each other", exit_code=2)
        say("warning: exported heads not checked (--no-heads): a cut-off tail or a re-signed rewrite cannot show")
        return None
    if args.heads:
        return args.heads
    sink = heads_sink(settings.audit_heads, settings.db_uri)
    if sink is None:
        say("warning: IDENTITY_AUDIT_HEADS=none: no heads are exported, so none are checked")
        return None
    files = readable_files(sink)
    if not files:
        raise CommandError(f"the heads go to {sink.describe()} (IDENTITY_AUDIT_HEADS): export them, e.g. "
                           f"`{EXPORT_HINT}`, and pass --heads heads.jsonl", exit_code=2)
    return files


def cmd_verify(args: argparse.Namespace) -> int:
    settings = settings_from_environment()
    store = open_store(settings.db_uri)
    files = heads_files(settings, args)
    report = AuditLog(store).verify_chain(
        keys=trusted_keys(settings, store, args.audit_public_key),
        heads=read_heads(files) if files is not None else None, expected_head=args.expect_head,
    )
    if report.ok:
        emit({"status": "ok", "records": report.count, "head": report.head_hash, "signers": report.signers,
              "unsigned_legacy_records": report.unsigned_legacy, "heads": heads_summary(report, files)})
        return 0
    emit({"status": "broken", "records_verified": report.count, "first_bad_record": report.first_bad_seq,
          "problem": report.problem, "problems": list(report.problems), "heads": heads_summary(report, files)})
    where = f"record {report.first_bad_seq}" if report.first_bad_seq is not None else "the chain's end"
    say(f"error: the audit chain is broken at {where}:")
    for problem in report.problems:
        say(f"error: {problem}")
    return 1


def heads_summary(report: ChainReport, files: list[Path] | None) -> dict[str, object]:
    if report.heads is None or files is None:
        return {"checked": False}
    return {"checked": True, "files": [str(f) for f in files], "heads": report.heads.checked,
            "latest": report.heads.latest or None}


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
