#!/usr/bin/env python3
"""Key material: ``init`` creates it, ``rotate`` rotates the signing key, ``list`` shows the keys.

Reads the same IDENTITY_* environment as the service (IDENTITY_KEYS_DIR, IDENTITY_KEYS_PASSPHRASE,
IDENTITY_ENV); the DPO key's passphrase comes from IDENTITY_DPO_KEY_PASSPHRASE or a prompt.
"""

from __future__ import annotations

import argparse
import time

import _bootstrap  # noqa: F401

from identity.audit import open_audit_log
from identity.cli import CommandError, emit, operator_name, passphrase_from, run, say, settings_from_environment
from identity.keys import KeyMaterialError, KeyPaths, describe, ensure_audit_key, init_keys, rotate_signing_keys
from identity.keys.files import pem_is_encrypted
from identity.store import StoreUnavailable, open_store


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="keys.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create signing key, blind-index pepper, DPO key pair and audit key")
    init.add_argument("--development", action="store_true",
                      help="mark the material as development keys (production refuses them)")
    init.add_argument("--if-absent", action="store_true",
                      help="when key material already exists, only add what an older release lacks "
                           "(the audit signing key); exit 0")
    sub.add_parser("rotate", help="promote next → active → retired and add a new next signing key")
    sub.add_parser("list", help="list signing keys and their states")
    return parser.parse_args()


def cmd_init(args: argparse.Namespace) -> int:
    settings = settings_from_environment()
    paths = KeyPaths(settings.keys_dir)
    if args.if_absent and paths.manifest.exists():
        try:
            added = ensure_audit_key(paths.root, passphrase=settings.keys_passphrase)
        except KeyMaterialError as exc:
            raise CommandError(str(exc)) from exc
        if added:
            say(f"Added the audit signing key to {paths.root}.")
        emit({"status": "exists", "keys_dir": str(paths.root), "added": [str(p) for p in added]})
        return 0
    if settings.is_production and args.development:
        raise CommandError("--development keys cannot be created with IDENTITY_ENV=production")
    dpo_passphrase = passphrase_from("IDENTITY_DPO_KEY_PASSPHRASE", "Passphrase for the DPO private key: ")
    if settings.is_production and not dpo_passphrase:
        raise CommandError("IDENTITY_DPO_KEY_PASSPHRASE (or a prompt answer) is required in production")
    try:
        created = init_keys(
            paths.root,
            passphrase=settings.keys_passphrase,
            dpo_passphrase=dpo_passphrase,
            development=args.development,
            now=time.time(),
        )
    except KeyMaterialError as exc:
        raise CommandError(str(exc)) from exc
    say(f"Created key material in {paths.root}.")
    say(f"IMPORTANT: {created.files['dpo_private_key']} is the DPO's private key. It belongs OFFLINE "
        "with the data protection officer: move it off this host now. The service needs only "
        f"{created.files['dpo_public_key']}.")
    emit({
        "status": "created",
        "signing_kid": created.signing_kid,
        "development": args.development,
        "encrypted": bool(settings.keys_passphrase),
        "files": {name: str(path) for name, path in created.files.items()},
        "dpo_private_key_belongs_offline": True,
    })
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
    return cmd_list()


if __name__ == "__main__":
    run(main)
