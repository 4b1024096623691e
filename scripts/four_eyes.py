#!/usr/bin/env python3
"""Four-eyes approval of breach resolutions: officers' keys, requests and approvals.

  keygen   --officer NAME --out PATH                 an officer's Ed25519 key pair (PATH, PATH.pub)
  enrol    --officer NAME --public-key PATH --by NAME   register an officer's public key (audited)
  revoke   --officer NAME --by NAME                  withdraw an officer (audited)
  officers                                           list enrolled officers and key fingerprints
  request  --officer NAME --key PATH --incident ID --reason TEXT --pseudonyms FILE|-   file a request
  approve  --officer NAME --key PATH --request ID [--pseudonyms FILE|-]               approve one
  show     --request ID                              a request and its state

Officer keys are encrypted with IDENTITY_OFFICER_KEY_PASSPHRASE (or a prompt). The store comes from
the same IDENTITY_* environment as the service. Enrolments, revocations, requests and approvals are
audited, refused ones included (keygen touches no store).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import _bootstrap  # noqa: F401

from identity.audit import AuditLog, open_audit_log
from identity.breach.errors import Refused
from identity.breach.four_eyes import FourEyes
from identity.breach.inputs import file_sha256, read_entries, spool
from identity.breach.officers import Registry, check_name, generate_key, load_public_key, load_signing_key
from identity.cli import CommandError, emit, passphrase_from, run, say, settings_from_environment
from identity.keys.files import KeyMaterialError, pem_is_encrypted
from identity.config import Settings
from identity.store import Store, StoreError, open_store

PASSPHRASE_VARIABLE = "IDENTITY_OFFICER_KEY_PASSPHRASE"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="four_eyes.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="create an officer's key pair")
    keygen.add_argument("--officer", required=True)
    keygen.add_argument("--out", required=True, type=Path, help="private key path; the public key is PATH.pub")
    enrol = sub.add_parser("enrol", help="register an officer's public key")
    enrol.add_argument("--officer", required=True)
    enrol.add_argument("--public-key", required=True, type=Path)
    enrol.add_argument("--by", required=True, help="who enrols (for the audit log)")
    revoke = sub.add_parser("revoke", help="withdraw an officer")
    revoke.add_argument("--officer", required=True)
    revoke.add_argument("--by", required=True)
    sub.add_parser("officers", help="list enrolled officers")
    request = sub.add_parser("request", help="file a request to resolve a pseudonym list")
    request.add_argument("--officer", required=True)
    request.add_argument("--key", required=True, type=Path)
    request.add_argument("--incident", required=True)
    request.add_argument("--reason", required=True)
    request.add_argument("--pseudonyms", required=True, metavar="FILE|-")
    approve = sub.add_parser("approve", help="approve another officer's request")
    approve.add_argument("--officer", required=True)
    approve.add_argument("--key", required=True, type=Path)
    approve.add_argument("--request", required=True)
    approve.add_argument("--pseudonyms", metavar="FILE|-", help="confirm the list you reviewed is the requested one")
    show = sub.add_parser("show", help="show a request")
    show.add_argument("--request", required=True)
    return parser.parse_args()


def signing_key(path: Path) -> Any:
    try:
        encrypted = pem_is_encrypted(path)
    except OSError:
        encrypted = False
    passphrase = passphrase_from(PASSPHRASE_VARIABLE, "Passphrase for your officer key: ") if encrypted else None
    return load_signing_key(path, passphrase)


def list_facts(spec: str) -> tuple[str, int]:
    """SHA-256 and number of non-blank lines of a pseudonym list (a file, or - for stdin)."""
    path = spool(sys.stdin.buffer) if spec == "-" else Path(spec)
    try:
        with open(path, "rb") as handle:
            entries = sum(1 for _ in read_entries(handle))
        return file_sha256(path), entries
    except OSError as exc:
        raise Refused(f"cannot read the pseudonym list {spec}: {exc.strerror}") from exc
    finally:
        if spec == "-":
            path.unlink(missing_ok=True)


def cmd_keygen(args: argparse.Namespace) -> dict[str, Any]:
    settings = settings_from_environment()
    check_name(args.officer)
    passphrase = passphrase_from(PASSPHRASE_VARIABLE, "Passphrase for your new officer key: ")
    if settings.is_production and not passphrase:
        raise Refused(f"{PASSPHRASE_VARIABLE} (or a prompt answer) is required in production")
    made = generate_key(args.out, passphrase)
    say(f"Keep {made.private_path} to yourself. Give {made.public_path} to whoever enrols you, and "
        f"confirm the fingerprint {made.fingerprint} with them in person or by phone.")
    return {"status": "created", "officer": args.officer, "private_key": str(made.private_path),
            "public_key": str(made.public_path), "fingerprint": made.fingerprint, "encrypted": bool(passphrase)}


def audited(audit: AuditLog, action: str, actor: str, work: Callable[[], dict[str, Any]], *,
            incident: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """Run ``work``; audit its outcome, refusals included."""
    try:
        result = work()
    except Refused as exc:
        audit.append(actor=actor or "(unnamed)", action=action, outcome="refused", incident=incident,
                     reason=reason, details={"problem": str(exc)})
        raise
    audit.append(actor=actor, action=action, incident=incident or result.get("incident"), reason=reason,
                 details={k: v for k, v in result.items() if k in ("officer", "fingerprint", "request_id",
                                                                    "pseudonyms_sha256", "entries", "requested_by")})
    return result


def audit_log(settings: Settings, store: Store) -> AuditLog:
    """Signed by the service audit key of IDENTITY_KEYS_DIR (officers' own keys: see identity.breach.audit_keys)."""
    try:
        return open_audit_log(settings, store)
    except KeyMaterialError as exc:
        raise CommandError(f"no key to sign the audit log: {exc}") from exc


def public_request(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


def main() -> int:
    args = parse_args()
    try:
        if args.command == "keygen":
            emit(cmd_keygen(args))
            return 0
        settings = settings_from_environment()
        store = open_store(settings.db_uri)
        audit, registry = audit_log(settings, store), Registry(store)
        four_eyes = FourEyes(store, registry)
        if args.command == "enrol":
            emit(audited(audit, "officers.enrol", args.by, lambda: registry.enrol(
                args.officer, load_public_key(args.public_key), by=args.by)))
        elif args.command == "revoke":
            emit(audited(audit, "officers.revoke", args.by, lambda: (
                registry.revoke(args.officer), {"officer": args.officer, "status": "revoked"})[1]))
        elif args.command == "officers":
            emit({"officers": registry.all()})
        elif args.command == "request":
            def file_request() -> dict[str, Any]:
                sha, entries = list_facts(args.pseudonyms)
                return four_eyes.file(officer=args.officer, key=signing_key(args.key), incident=args.incident,
                                      reason=args.reason, pseudonyms_sha256=sha, entries=entries)
            emit(public_request(audited(audit, "four_eyes.request", args.officer, file_request,
                                        incident=args.incident, reason=args.reason)))
        elif args.command == "approve":
            def approve() -> dict[str, Any]:
                sha = list_facts(args.pseudonyms)[0] if args.pseudonyms else None
                return four_eyes.approve(args.request, officer=args.officer, key=signing_key(args.key),
                                         pseudonyms_sha256=sha)
            emit(public_request(audited(audit, "four_eyes.approve", args.officer, approve)))
        else:
            emit(public_request(four_eyes.get(args.request)))
        return 0
    except Refused as exc:
        raise CommandError(str(exc)) from exc
    except StoreError as exc:
        raise CommandError(f"the store is unavailable: {exc}") from exc


if __name__ == "__main__":
    run(main)
