#!/usr/bin/env python3
"""Audiences (downstream services that read access tokens): add, update, list, remove, keygen.

Every audience has an encryption key (its RSA public key, PEM or JWK, or a JWKS URI): access tokens
are always encrypted to it. Prints exactly one JSON object on stdout; changes are audited.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401

from identity.cli import CommandError, emit, operator_name, run, services_from_environment
from identity.oauth.audiences import AudienceError, EncryptionKey, parse_encryption_key


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="audiences.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("add", "register an audience"), ("update", "replace an audience's key (rotation)")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--audience", required=True, metavar="URI", help="the audience URI (the token's aud)")
        source = cmd.add_mutually_exclusive_group(required=True)
        source.add_argument("--encryption-key", type=Path, metavar="PATH",
                            help="the downstream service's RSA public key (PEM or JWK)")
        source.add_argument("--jwks-uri", metavar="URL", help="an https URL of the service's JWKS")
    sub.add_parser("list", help="list audiences")
    remove = sub.add_parser("remove", help="remove an audience")
    remove.add_argument("--audience", required=True, metavar="URI")
    keygen = sub.add_parser("keygen", help="write a key pair for a downstream service")
    keygen.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory for the key files")
    return parser.parse_args()


def _key(path: Path | None) -> EncryptionKey | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return parse_encryption_key(data)
    except AudienceError as exc:
        raise CommandError(f"{path}: {exc}") from exc


def main() -> int:
    args = parse_args()
    if args.command == "keygen":
        return keygen(args.out)
    services = services_from_environment()
    registry = services.oauth.audiences
    try:
        if args.command == "add":
            record = registry.add(args.audience, key=_key(args.encryption_key), jwks_uri=args.jwks_uri)
        elif args.command == "update":
            record = registry.update_key(args.audience, key=_key(args.encryption_key), jwks_uri=args.jwks_uri)
        elif args.command == "list":
            emit({"audiences": [a.view() for a in registry.all()]})
            return 0
        else:
            if not registry.remove(args.audience):
                raise CommandError(f"no audience {args.audience!r}")
            services.audit.append(actor=operator_name(), action="audiences.remove",
                                  details={"audience": args.audience})
            emit({"removed": args.audience})
            return 0
    except AudienceError as exc:
        raise CommandError(str(exc)) from exc
    services.audit.append(actor=operator_name(), action=f"audiences.{args.command}",
                          details={"audience": record.audience, "kid": record.kid, "jwks_uri": record.jwks_uri})
    emit(record.view())
    return 0


def keygen(out: Path) -> int:
    """Write a key pair for a downstream service: the private part stays with it, the public part
    is what ``add --encryption-key`` registers here."""
    from identity.verify import ConfigurationError, generate_audience_key

    try:
        files = generate_audience_key(out)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from exc
    emit({"kid": files.kid, "private_key": str(files.private_key), "public_key": str(files.public_key)})
    return 0


if __name__ == "__main__":
    run(main)
