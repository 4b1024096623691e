#!/usr/bin/env python3
"""Four-eyes approval of breach resolutions: officers' keys, the officer registry, requests and approvals.

  keygen   --officer NAME --out PATH       an officer's Ed25519 key pair (PATH, PATH.pub) and proof (PATH.proof)
  found    --officer NAME --key PATH --statement FILE --cofounder NAME --cofounder-key PATH.pub
                                           first founder: write the founding statement, signed
  found    --officer NAME --key PATH --statement FILE
                                           second founder: countersign it and found the registry (once)
  enrol    --officer NAME --public-key PATH --proof PATH --by NAME --key PATH
                                           enrol an officer; a second officer runs the same to confirm
  revoke   --officer NAME --by NAME --key PATH   withdraw another officer (signed)
  officers                                 list officers, fingerprints and whether each chain verifies
  request  --officer NAME --key PATH --incident ID --reason TEXT --pseudonyms FILE|- [--sector NAME]
                                           file a request (--sector: the list holds that sector's subjects)
  approve  --officer NAME --key PATH --request ID [--pseudonyms FILE|- [--sector NAME]]   approve one
  show     --request ID                    a request and its state

Officer keys are encrypted with IDENTITY_OFFICER_KEY_PASSPHRASE (or a prompt). The store comes from
the same IDENTITY_* environment as the service. Everything that touches the store is audited,
refusals included (keygen and the first founder's step touch no store). See docs/breach-contact.md §3.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any, Callable

from identity.audit import AuditLog, open_audit_log
from identity.audit_signing import OfficerSigner, raw_public
from identity.breach import ceremony
from identity.breach.audit_keys import registered_officer_key
from identity.breach.errors import Refused
from identity.breach.four_eyes import FourEyes
from identity.breach.inputs import spool
from identity.breach.list_formats import detect, list_digest
from identity.breach.officers import check_name, generate_key, load_public_key, load_signing_key, read_proof
from identity.breach.registry import Registry
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
    found = sub.add_parser("found", help="the founding ceremony: enrol the first two officers together")
    found.add_argument("--officer", required=True, help="you, a founder")
    found.add_argument("--key", required=True, type=Path, help="your private key")
    found.add_argument("--statement", required=True, type=Path, help="the founding statement file")
    found.add_argument("--cofounder", help="first founder only: the other founder's name")
    found.add_argument("--cofounder-key", type=Path, help="first founder only: the other founder's PATH.pub")
    enrol = sub.add_parser("enrol", help="enrol an officer, or confirm an enrolment another officer signed")
    enrol.add_argument("--officer", required=True, help="the officer to enrol")
    enrol.add_argument("--public-key", required=True, type=Path, help="their PATH.pub")
    enrol.add_argument("--proof", required=True, type=Path, help="their PATH.proof (proof of possession)")
    enrol.add_argument("--by", required=True, help="you, an active officer")
    enrol.add_argument("--key", required=True, type=Path, help="your private key")
    revoke = sub.add_parser("revoke", help="withdraw another officer")
    revoke.add_argument("--officer", required=True)
    revoke.add_argument("--by", required=True, help="you, another active officer")
    revoke.add_argument("--key", required=True, type=Path, help="your private key")
    sub.add_parser("officers", help="list enrolled officers")
    request = sub.add_parser("request", help="file a request to resolve a pseudonym list")
    request.add_argument("--officer", required=True)
    request.add_argument("--key", required=True, type=Path)
    request.add_argument("--incident", required=True)
    request.add_argument("--reason", required=True)
    request.add_argument("--pseudonyms", required=True, metavar="FILE|-")
    request.add_argument("--sector", metavar="NAME", help="the list holds pairwise subjects of this sector")
    approve = sub.add_parser("approve", help="approve another officer's request")
    approve.add_argument("--officer", required=True)
    approve.add_argument("--key", required=True, type=Path)
    approve.add_argument("--request", required=True)
    approve.add_argument("--pseudonyms", metavar="FILE|-", help="confirm the list you reviewed is the requested one")
    approve.add_argument("--sector", metavar="NAME", help="with --pseudonyms: the sector of the list's subjects")
    show = sub.add_parser("show", help="show a request")
    show.add_argument("--request", required=True)
    return parser.parse_args()


@functools.cache
def signing_key(path: Path) -> Any:
    """The officer's private key (asked for its passphrase once per run)."""
    try:
        encrypted = pem_is_encrypted(path)
    except OSError:
        encrypted = False
    passphrase = passphrase_from(PASSPHRASE_VARIABLE, "Passphrase for your officer key: ") if encrypted else None
    return load_signing_key(path, passphrase)


def list_facts(spec: str, sector: str | None = None) -> tuple[str, int]:
    """Digest and number of entries of a list (a file, or - for stdin): the SHA-256 of the file, bound
    to ``sector`` when the list holds that sector's pairwise subjects (``list_formats``)."""
    path = spool(sys.stdin.buffer) if spec == "-" else Path(spec)
    try:
        fmt = detect(path, sector)
        with open(path, "rb") as handle:
            entries = sum(1 for _ in fmt.entries(handle))
        return list_digest(path, fmt.sector), entries
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
    made = generate_key(args.out, passphrase, officer=args.officer)
    say(f"Keep {made.private_path} to yourself. Give {made.public_path} and {made.proof_path} to the "
        f"officers who enrol you, and confirm the fingerprint {made.fingerprint} with each of them in "
        "person or by phone.")
    return {"status": "created", "officer": args.officer, "private_key": str(made.private_path),
            "public_key": str(made.public_path), "proof": str(made.proof_path), "fingerprint": made.fingerprint,
            "encrypted": bool(passphrase)}


def cmd_found_start(args: argparse.Namespace) -> dict[str, Any]:
    """The first founder's half of the ceremony (touches no store)."""
    if not args.cofounder_key:
        raise Refused("the first founder gives --cofounder NAME and --cofounder-key PATH.pub")
    started = ceremony.start(args.officer, signing_key(args.key), args.cofounder, load_public_key(args.cofounder_key),
                             now=time.time())
    ceremony.write(args.statement, started)
    say(f"Give {args.statement} to {args.cofounder}; compare both fingerprints and the statement's SHA-256 "
        "with them in person before they countersign.")
    return {"status": "signed", "statement": str(args.statement), **ceremony.summary(started)}


def found_registry(registry: Registry, args: argparse.Namespace) -> dict[str, Any]:
    """The second founder's half: countersign the statement and found the registry."""
    if args.cofounder_key:
        raise Refused("--cofounder and --cofounder-key go with the first founder's step only")
    signed = ceremony.read(args.statement).sign(args.officer, signing_key(args.key))
    say(f"founding statement {signed.sha256}: " + ", ".join(
        f"{f['officer']} {f['fingerprint']}" for f in ceremony.summary(signed)["founders"]))
    return registry.found(signed, by=args.officer)


def enrol_officer(registry: Registry, args: argparse.Namespace) -> dict[str, Any]:
    key = load_public_key(args.public_key)
    done = registry.enrol(args.officer, key, read_proof(args.proof, args.officer, key), by=args.by,
                          signer=signing_key(args.key))
    if done["status"] == "pending":
        say(f"{args.officer} is enrolled pending confirmation: a second officer (not {args.by}) runs the same "
            "command with their own --by and --key after checking the fingerprint with them.")
    return {k: done.get(k) for k in ("officer", "fingerprint", "status", "enrolled_by", "confirmed_by")
            if done.get(k) is not None}


def audited(audit: AuditLog, action: str, actor: str, work: Callable[[], dict[str, Any]], *,
            incident: str | None = None, reason: str | None = None, record_success: bool = True) -> dict[str, Any]:
    """Run ``work``; audit its outcome, refusals included (``record_success=False``: ``work`` audits its own)."""
    try:
        result = work()
    except Refused as exc:
        audit.append(actor=actor or "(unnamed)", action=action, outcome="refused", incident=incident,
                     reason=reason, details={"problem": str(exc)})
        raise
    if record_success:
        audit.append(actor=actor, action=action, incident=incident or result.get("incident"), reason=reason,
                     details={k: v for k, v in result.items() if k in (
                         "officer", "fingerprint", "request_id", "pseudonyms_sha256", "entries", "requested_by")})
    return result


#: The command's acting officer (the argument naming them): their own key signs what the command audits.
ACTING_OFFICER = {"found": "officer", "enrol": "by", "revoke": "by", "request": "officer", "approve": "officer"}


def acting_audit_log(settings: Settings, store: Store, args: argparse.Namespace) -> AuditLog:
    """The audit log this command appends to, signed by the acting officer's key where it has one.

    Officers run these commands on their own machines, which hold no service audit key. A key that is not
    the officer's enrolled one signs nothing: the service audit key signs instead where it is present (so a
    refusal is still recorded); otherwise nothing runs. Founders sign the founding with the keys the
    founding statement names (checked by the registry). Read-only commands append nothing.
    """
    field = ACTING_OFFICER.get(args.command)
    if field is None:
        return AuditLog(store)
    officer = getattr(args, field)
    key = signing_key(args.key)
    enrolled = None if args.command == "found" else registered_officer_key(store)(officer)
    if args.command == "found" or (enrolled is not None and raw_public(enrolled) == raw_public(key.public_key())):
        return open_audit_log(settings, store, signer=OfficerSigner(officer, key))
    try:
        return open_audit_log(settings, store)
    except KeyMaterialError as exc:
        raise CommandError(f"{args.key} is not the enrolled key of officer {officer}, and no service audit key "
                           f"is here to record the refusal ({exc})") from exc


def public_request(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


def main() -> int:
    args = parse_args()
    try:
        if args.command == "keygen":
            emit(cmd_keygen(args))
            return 0
        if args.command == "found" and args.cofounder:
            emit(cmd_found_start(args))
            return 0
        settings = settings_from_environment()
        store = open_store(settings.db_uri)
        audit = acting_audit_log(settings, store, args)
        registry = Registry(store, audit)
        four_eyes = FourEyes(store, registry, audit)
        if args.command == "found":
            emit(audited(audit, "officers.found", args.officer, lambda: found_registry(registry, args),
                         record_success=False))
        elif args.command == "enrol":
            emit(audited(audit, "officers.enrol", args.by, lambda: enrol_officer(registry, args),
                         record_success=False))
        elif args.command == "revoke":
            emit(audited(audit, "officers.revoke", args.by, lambda: registry.revoke(
                args.officer, by=args.by, signer=signing_key(args.key)), record_success=False))
        elif args.command == "officers":
            emit({"officers": registry.all()})
        elif args.command == "request":
            def file_request() -> dict[str, Any]:
                sha, entries = list_facts(args.pseudonyms, args.sector)
                return four_eyes.file(officer=args.officer, key=signing_key(args.key), incident=args.incident,
                                      reason=args.reason, pseudonyms_sha256=sha, entries=entries)
            emit(public_request(audited(audit, "four_eyes.request", args.officer, file_request,
                                        incident=args.incident, reason=args.reason)))
        elif args.command == "approve":
            def approve() -> dict[str, Any]:
                sha = list_facts(args.pseudonyms, args.sector)[0] if args.pseudonyms else None
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
