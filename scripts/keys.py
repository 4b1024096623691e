#!/usr/bin/env python3
"""Key material: ``init`` creates it, ``rotate`` rotates the signing key, ``list`` shows the keys,
``passphrase`` re-encrypts the private keys under a new IDENTITY_KEYS_PASSPHRASE.

The DPO key is held by several people (k-of-n share files, never the whole private key on disk):
``dpo-create`` makes a key set on the DPO's offline machine (each holder types their passphrase);
``init --dpo-public`` installs its public key on the service (production), while ``init`` alone
makes a development key set in the keys directory (shares under IDENTITY_DPO_KEY_PASSPHRASE, or the
published development passphrase). ``dpo-reseal`` moves an existing vault from a whole DPO key to
a new key set (resumable). Reads the same IDENTITY_* environment as the service (IDENTITY_KEYS_DIR,
IDENTITY_KEYS_PASSPHRASE, IDENTITY_ENV, IDENTITY_DB_URI).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from identity.audit import open_audit_log
from identity.breach.errors import BreachError, Refused
from identity.breach.reseal import ResealParams, reseal_vault
from identity.cli import (CommandError, emit, operator_name, passphrase_from, run, say, settings_from_environment,
                          share_passphrase)
from identity.keys import (KeyMaterialError, KeyPaths, describe, ensure_audit_key, ensure_pairwise_key, init_keys,
                           rotate_signing_keys)
from identity.keys.dpo_shares import (DEFAULT_THRESHOLD, Holder, check_holders, create_key_set, fingerprint,
                                      share_file_name, write_key_set)
from identity.keys.files import DPO_PUBLIC, load_dpo_public_key, pem_is_encrypted, write_public_file
from identity.keys.passphrase import change_passphrase, passphrase_problem, protected_files
from identity.store import StoreError, StoreUnavailable, open_store

MIN_SHARE_PASSPHRASE = 12


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="keys.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create signing key, blind-index pepper, DPO key pair and audit key")
    init.add_argument("--development", action="store_true",
                      help="mark the material as development keys (production refuses them)")
    init.add_argument("--if-absent", action="store_true",
                      help="when key material already exists, only add what an older release lacks "
                           "(the audit signing key, the pairwise subject key); exit 0")
    init.add_argument("--dpo-public", metavar="PATH", type=Path,
                      help="the dpo_public.pem of a key set made offline with dpo-create (required in production)")
    create = sub.add_parser("dpo-create", help="on the DPO's offline machine: a DPO key set (k-of-n share files)")
    create.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="where to write dpo_public.pem and dpo_share_<i>.json (not the service's keys)")
    create.add_argument("--holder", metavar="NAME", action="append", required=True,
                        help="a share holder (repeat: one share each, at least two)")
    create.add_argument("--threshold", metavar="K", type=int, default=DEFAULT_THRESHOLD,
                        help=f"shares needed to open e-mails (default {DEFAULT_THRESHOLD}, at least 2)")
    reseal = sub.add_parser("dpo-reseal", help="re-seal every e-mail from an old whole DPO key to the new key set")
    reseal.add_argument("--old-key", metavar="PATH", type=Path, action="append", required=True,
                        help="the old dpo_private.pem, or (repeated) the share files of the key set to retire")
    reseal.add_argument("--state", metavar="FILE", type=Path, default=Path("dpo-reseal.state.json"),
                        help="progress, to resume (default: dpo-reseal.state.json)")
    reseal.add_argument("--workers", type=int, metavar="N", help="processes opening e-mails (default: one a core)")
    sub.add_parser("rotate", help="promote next → active → retired and add a new next signing key")
    sub.add_parser("passphrase", help="re-encrypt the private keys under a new passphrase (IDENTITY_KEYS_NEW_"
                                      "PASSPHRASE, or typed twice); resumable")
    sub.add_parser("list", help="list signing keys and their states")
    return parser.parse_args()


def cmd_init(args: argparse.Namespace) -> int:
    settings = settings_from_environment()
    paths = KeyPaths(settings.keys_dir)
    if args.if_absent and paths.manifest.exists():
        try:
            added = ensure_audit_key(paths.root, passphrase=settings.keys_passphrase)
            added += ensure_pairwise_key(paths.root)
        except KeyMaterialError as exc:
            raise CommandError(str(exc)) from exc
        if added:
            say(f"Added {', '.join(p.name for p in added)} to {paths.root}.")
        if paths.pairwise_key in added:
            say("The pairwise subject key is never rotated: give every instance this same file.")
        emit({"status": "exists", "keys_dir": str(paths.root), "added": [str(p) for p in added]})
        return 0
    if settings.is_production and args.development:
        raise CommandError("--development keys cannot be created with IDENTITY_ENV=production")
    weak = passphrase_problem(settings.keys_passphrase, production=settings.is_production)
    if settings.keys_passphrase and weak:
        raise CommandError(f"IDENTITY_KEYS_PASSPHRASE: {weak}")
    if settings.is_production and not args.dpo_public:
        raise CommandError("in production the DPO key set is made offline, never on the service host: run "
                           "`python scripts/keys.py dpo-create --out DIR --holder NAME --holder NAME …` on the "
                           "DPO's machine, then `init --dpo-public DIR/dpo_public.pem` here")
    try:
        dpo_public = load_dpo_public_key(args.dpo_public) if args.dpo_public else None
        created = init_keys(
            paths.root,
            passphrase=settings.keys_passphrase,
            dpo_passphrase=None if dpo_public else os.environ.get("IDENTITY_DPO_KEY_PASSPHRASE") or None,
            development=args.development,
            now=time.time(),
            dpo_public=dpo_public,
        )
    except KeyMaterialError as exc:
        raise CommandError(str(exc)) from exc
    shares = [str(path) for name, path in created.files.items() if name.startswith("dpo_share_")]
    say(f"Created key material in {paths.root}.")
    if shares:
        say(f"IMPORTANT: {', '.join(shares)} are the DPO key's shares ({DEFAULT_THRESHOLD} of {len(shares)} open "
            "e-mails), made here for development. They belong OFFLINE, one with each holder: production refuses "
            "to start while any dpo_* file but dpo_public.pem is on its host, and makes its key set with "
            "`keys.py dpo-create` on the DPO's machine.")
    emit({
        "status": "created",
        "signing_kid": created.signing_kid,
        "development": args.development,
        "encrypted": bool(settings.keys_passphrase),
        "files": {name: str(path) for name, path in created.files.items()},
        "dpo_public_key_sha256": fingerprint(load_dpo_public_key(created.files["dpo_public_key"])),
        "dpo_shares_belong_offline": bool(shares),
    })
    return 0


def holder_passphrases(holders: list[str], *, production: bool) -> list[str]:
    """Each holder types their own passphrase twice (a terminal); else IDENTITY_DPO_KEY_PASSPHRASE for all."""
    if sys.stdin.isatty():
        chosen = []
        for name in holders:
            first = getpass.getpass(f"{name}: choose the passphrase of your DPO key share: ")
            if len(first) < MIN_SHARE_PASSPHRASE:
                raise CommandError(f"{name}: a share passphrase has at least {MIN_SHARE_PASSPHRASE} characters; "
                                   "nothing was written")
            if getpass.getpass(f"{name}: the same passphrase again: ") != first:
                raise CommandError(f"{name}: the two passphrases differ; nothing was written")
            chosen.append(first)
        if len(set(chosen)) != len(chosen):
            raise CommandError("two holders chose the same passphrase: each needs their own; nothing was written")
        return chosen
    if production:
        raise CommandError("in production each holder types their own passphrase: run dpo-create on a terminal")
    shared = os.environ.get("IDENTITY_DPO_KEY_PASSPHRASE")
    if not shared:
        raise CommandError("no terminal for the holders' passphrases: run on a terminal (outside production, "
                           "IDENTITY_DPO_KEY_PASSPHRASE may give one passphrase for every share)")
    return [shared] * len(holders)


def cmd_dpo_create(args: argparse.Namespace) -> int:
    settings = settings_from_environment()
    out: Path = args.out
    if out.resolve() == Path(settings.keys_dir).resolve():
        raise CommandError(f"{out} is the service's keys directory: make the key set on the DPO's machine, "
                           "in a directory of its own")
    try:
        check_holders([Holder(name, "-") for name in args.holder], args.threshold)
    except KeyMaterialError as exc:
        raise CommandError(str(exc)) from exc
    targets = [out / DPO_PUBLIC] + [out / share_file_name(i) for i in range(1, len(args.holder) + 1)]
    existing = [path for path in targets if path.exists()]
    if existing:
        raise CommandError(f"{existing[0]} already exists; refusing to overwrite it")
    passphrases = holder_passphrases(args.holder, production=settings.is_production)
    try:
        key_set = create_key_set([Holder(n, p) for n, p in zip(args.holder, passphrases, strict=True)], args.threshold)
        files = write_key_set(out, key_set)
        write_public_file(out / DPO_PUBLIC, key_set.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    except KeyMaterialError as exc:
        raise CommandError(str(exc)) from exc
    say(f"Created DPO key set {key_set.set_id}: {args.threshold} of {len(files)} shares open e-mails; the whole "
        "private key was never written. Give each share file to its holder (their own medium) and delete it "
        f"here. Install {out / DPO_PUBLIC} on the service (`keys.py init --dpo-public`, or replace "
        "keys/dpo_public.pem and run `keys.py dpo-reseal` with the old key).")
    emit({
        "status": "created", "set": key_set.set_id, "threshold": args.threshold,
        "public_key": str(out / DPO_PUBLIC), "public_key_sha256": fingerprint(key_set.public_key),
        "shares": [{"index": i, "holder": holder, "file": str(path)}
                   for i, (holder, path) in enumerate(zip(key_set.holders, files, strict=True), start=1)],
    })
    return 0


def cmd_dpo_reseal(args: argparse.Namespace) -> int:
    settings = settings_from_environment()
    passphrase = os.environ.get("IDENTITY_DPO_KEY_PASSPHRASE") or None
    try:
        if not passphrase and len(args.old_key) == 1 and pem_is_encrypted(args.old_key[0]):
            passphrase = passphrase_from("IDENTITY_DPO_KEY_PASSPHRASE", "Passphrase for the old DPO private key: ")
    except OSError:
        pass  # the library refuses the unreadable key (and audits it)
    store = open_store(settings.db_uri)
    params = ResealParams(operator=operator_name(), old_key=tuple(args.old_key),
                          new_public=KeyPaths(settings.keys_dir).dpo_public, state=args.state,
                          passphrase=passphrase, passphrase_for=share_passphrase, workers=args.workers)
    try:
        report = reseal_vault(store, open_audit_log(settings, store), params)
    except (Refused, BreachError, KeyMaterialError) as exc:
        raise CommandError(str(exc)) from exc
    except StoreError as exc:
        raise CommandError(f"the store is unavailable: {exc}") from exc
    finally:
        store.close()
    if report.counts["resealed"] or report.counts["changed"]:
        say("Run the same command again once the service seals to the new key: a pass that re-seals nothing "
            "shows the old key opens nothing in the vault; then destroy the old key and its copies.")
    else:
        say("Nothing in the vault opens with the old key: destroy it and every copy of it "
            "(database backups made before the re-sealing still open with it).")
    if report.counts["misbound"]:
        say(f"warning: {report.counts['misbound']} sealed e-mails name another pseudonym than their record's (moved "
            "or copied in the store): re-sealed as they were, so breach runs report them as misbound; investigate.")
    emit({"status": "completed", "pass": report.passes, "resumed": report.resumed, "counts": report.as_dict(),
          "binding": report.binding(), "old_key_sha256": report.old_key, "new_key_sha256": report.new_key,
          "state": str(args.state)})
    return 0


def cmd_rotate() -> int:
    settings = settings_from_environment()
    paths = KeyPaths(settings.keys_dir)
    passphrase = settings.keys_passphrase
    try:
        existing = describe(paths.root)
    except KeyMaterialError as exc:
        raise CommandError(str(exc)) from exc
    encrypted = any(pem_is_encrypted(paths.signing_key(k["kid"])) for k in existing
                    if paths.signing_key(k["kid"]).exists())
    if encrypted and not passphrase:
        passphrase = passphrase_from("IDENTITY_KEYS_PASSPHRASE", "Passphrase for the signing keys: ")
        if not passphrase:
            raise CommandError("the signing keys are encrypted: set IDENTITY_KEYS_PASSPHRASE")
    try:  # the rotation must be audited: refuse before rotating if the audit log cannot take a record
        audit = open_audit_log(settings, open_store(settings.db_uri), passphrase=passphrase)
        audit.head()
    except (StoreUnavailable, KeyMaterialError) as exc:
        raise CommandError(f"the audit log is unavailable, nothing rotated: {exc}") from exc
    try:
        manifest = rotate_signing_keys(
            paths.root, passphrase=passphrase, longest_token_ttl=settings.longest_signed_token_ttl,
            now=time.time(),
        )
    except KeyMaterialError as exc:
        audit.append(actor=operator_name(), action="keys.rotate", outcome="failed", details={"problem": str(exc)})
        raise CommandError(str(exc)) from exc
    states = {k["kid"]: k["state"] for k in manifest["keys"]}
    audit.append(actor=operator_name(), action="keys.rotate", details={
        "keys_dir": str(paths.root), "states": states,
        "dropped": sorted({k["kid"] for k in existing} - set(states)),
    })
    emit({"status": "rotated", "keys": manifest["keys"]})
    return 0


def new_keys_passphrase() -> str:
    """The new passphrase: IDENTITY_KEYS_NEW_PASSPHRASE, else typed twice on a terminal."""
    value = os.environ.get("IDENTITY_KEYS_NEW_PASSPHRASE")
    if value:
        return value
    if not sys.stdin.isatty():
        raise CommandError("set IDENTITY_KEYS_NEW_PASSPHRASE, or run this on a terminal to type the new passphrase")
    first = getpass.getpass("New passphrase for the keys: ")
    if first != getpass.getpass("The new passphrase again: "):
        raise CommandError("the two new passphrases differ; nothing was changed")
    return first


def cmd_passphrase() -> int:
    settings = settings_from_environment()
    paths = KeyPaths(settings.keys_dir)
    current = settings.keys_passphrase
    if not current and any(pem_is_encrypted(path) for path in protected_files(paths)):
        current = passphrase_from("IDENTITY_KEYS_PASSPHRASE", "Current passphrase of the keys: ")
        if not current:
            raise CommandError("the keys are encrypted: set IDENTITY_KEYS_PASSPHRASE to the current passphrase")
    new = new_keys_passphrase()
    problem = passphrase_problem(new, production=settings.is_production)
    if problem:
        raise CommandError(f"{problem}; nothing was changed")
    if new == current:
        raise CommandError("the new passphrase is the current one; nothing was changed")
    audit = None
    for passphrase in (current, new):  # the audit key is under the new one already if a run was cut short
        try:  # the change must be audited: refuse before changing anything if the audit log cannot take a record
            audit = open_audit_log(settings, open_store(settings.db_uri), passphrase=passphrase)
            audit.head()
            break
        except KeyMaterialError as exc:
            problem = str(exc)
        except StoreUnavailable as exc:
            raise CommandError(f"the audit log is unavailable, nothing was changed: {exc}") from exc
    if audit is None:
        raise CommandError(f"the audit log is unavailable, nothing was changed: {problem}")
    try:
        change = change_passphrase(paths.root, current=current, new=new)
    except KeyMaterialError as exc:
        audit.append(actor=operator_name(), action="keys.passphrase", outcome="failed", details={"problem": str(exc)})
        raise CommandError(str(exc)) from exc
    audit.append(actor=operator_name(), action="keys.passphrase", counts={
        "files_changed": len(change.changed), "files_already_changed": len(change.already)},
        details={"keys_dir": str(paths.root)})
    say("Set IDENTITY_KEYS_PASSPHRASE to the new passphrase wherever the service and the scripts run, and restart "
        "every instance now. Copies of the keys directory made before (backups) still open with the old one.")
    emit({"status": "changed", "keys_dir": str(paths.root), "changed": [str(p) for p in change.changed],
          "already_changed": [str(p) for p in change.already]})
    return 0


def cmd_list() -> int:
    settings = settings_from_environment()
    try:
        emit({"keys_dir": str(settings.keys_dir), "keys": describe(settings.keys_dir)})
    except KeyMaterialError as exc:
        raise CommandError(str(exc)) from exc
    return 0


def main() -> int:
    args = parse_args()
    if args.command == "init":
        return cmd_init(args)
    if args.command == "rotate":
        return cmd_rotate()
    if args.command == "dpo-create":
        return cmd_dpo_create(args)
    if args.command == "dpo-reseal":
        return cmd_dpo_reseal(args)
    if args.command == "passphrase":
        return cmd_passphrase()
    return cmd_list()


if __name__ == "__main__":
    run(main)
