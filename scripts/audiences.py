#!/usr/bin/env python3
"""Audiences (downstream services that read access tokens): add, update, show, list, remove, keygen.

Every audience has an encryption key (its RSA public key, PEM or JWK, or a JWKS URI): access tokens
are always encrypted to it. Every audience belongs to a sector (--sector NAME, default: the audience
URI; audiences of one organisation may share one) and has a subject type: ``pairwise`` (the default
for new audiences: its tokens carry the person's subject of its sector) or ``public`` (the vault
pseudonym; audiences registered before subject types existed keep it). Changing either changes the
``sub`` of every person that service sees: ``update --subject-type``/``--sector`` needs --breaking;
``map-subjects`` gives the service, for the pseudonyms it holds, its people's subjects in its
sector, so it can re-key its data (docs/downstream.md). Prints exactly one JSON object on stdout;
changes are audited.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

from identity.cli import CommandError, emit, operator_name, run, say, services_from_environment
from identity.oauth.audiences import AudienceError, AudienceRegistry, EncryptionKey, parse_encryption_key
from identity.oauth.self_audience import self_audience_uri
from identity.pairwise import DEFAULT_SUBJECT_TYPE, SUBJECT_TYPES
from identity.services import Services


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="audiences.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("add", "register an audience"),
                       ("update", "replace an audience's key (rotation), or change its subject type or sector")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--audience", required=True, metavar="URI", help="the audience URI (the token's aud)")
        source = cmd.add_mutually_exclusive_group(required=name == "add")
        source.add_argument("--encryption-key", type=Path, metavar="PATH",
                            help="the downstream service's RSA public key (PEM or JWK)")
        source.add_argument("--jwks-uri", metavar="URL", help="an https URL of the service's JWKS")
        cmd.add_argument("--sector", metavar="NAME",
                         help="the sector whose pairwise subjects its tokens carry (default: the audience URI); "
                              "audiences of one organisation that may join their data share one")
        cmd.add_argument("--subject-type", choices=SUBJECT_TYPES, default=DEFAULT_SUBJECT_TYPE if name == "add" else None,
                         help="pairwise: the person's subject of the sector (default for new audiences); "
                              "public: the vault pseudonym")
        if name == "update":
            cmd.add_argument("--breaking", action="store_true",
                             help="confirm a change of --subject-type or --sector: every person's sub changes for "
                                  "that service (docs/downstream.md)")
    mapping = sub.add_parser("map-subjects", help="for a move to pairwise: each pseudonym the service holds, with "
                                                  "its subject in the audience's sector (CSV)")
    mapping.add_argument("--audience", required=True, metavar="URI")
    mapping.add_argument("--pseudonyms", required=True, type=Path, metavar="FILE",
                         help="the subs the service holds today (vault pseudonyms), one a line")
    mapping.add_argument("--out", required=True, type=Path, metavar="FILE",
                         help="the CSV to create (pseudonym,subject; mode 0600) for the service's team")
    show = sub.add_parser("show", help="show one audience (its sector and subject type)")
    show.add_argument("--audience", required=True, metavar="URI")
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
    if args.command == "map-subjects":
        return map_subjects(services, args)
    try:
        if args.command == "add":
            record = registry.add(args.audience, key=_key(args.encryption_key), jwks_uri=args.jwks_uri,
                                  sector=args.sector, subject_type=args.subject_type)
        elif args.command == "update":
            changes_subjects = args.subject_type is not None or args.sector is not None
            if not changes_subjects and args.encryption_key is None and args.jwks_uri is None:
                raise CommandError("nothing to update: give --encryption-key/--jwks-uri, --subject-type or --sector",
                                   exit_code=2)
            if changes_subjects:
                record = change_subjects(services, registry, args)
                if args.encryption_key is None and args.jwks_uri is None:
                    emit(record.view())
                    return 0
            record = registry.update_key(args.audience, key=_key(args.encryption_key), jwks_uri=args.jwks_uri)
        elif args.command == "show":
            found = registry.get(args.audience)
            if found is None:
                raise CommandError(f"no audience {args.audience!r}")
            emit(found.view())
            return 0
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
                          details={"audience": record.audience, "kid": record.kid, "jwks_uri": record.jwks_uri,
                                   "sector": record.sector, "subject_type": record.subject_type})
    emit(record.view())
    return 0


def change_subjects(services: Services, registry: AudienceRegistry, args: argparse.Namespace):
    """Move an audience to another subject type or sector: refused without --breaking, audited either way."""
    actor = operator_name()
    wanted = {"subject_type": args.subject_type, "sector": args.sector}
    problem = None
    if args.audience == self_audience_uri(services.settings.issuer):
        problem = "the service's own audience keeps public subjects (/me reads the pseudonym from its tokens)"
    elif not args.breaking:
        problem = ("changing the subject type or sector changes the sub of every person this service sees "
                   "(a breaking change for it, docs/downstream.md): repeat with --breaking")
    try:
        if problem:
            raise AudienceError(problem)
        before, after = registry.set_subjects(args.audience, subject_type=args.subject_type, sector=args.sector)
    except AudienceError as exc:
        services.audit.append(actor=actor, action="audiences.subjects", outcome="refused",
                              details={"audience": args.audience, "problem": str(exc), **wanted})
        raise CommandError(str(exc)) from exc
    services.audit.append(actor=actor, action="audiences.subjects", reason="breaking change confirmed",
                          details={"audience": after.audience,
                                   "before": {"subject_type": before.subject_type, "sector": before.sector},
                                   "after": {"subject_type": after.subject_type, "sector": after.sector}})
    say(f"{after.audience} now sees {after.subject_type} subjects (sector {after.sector}) in new tokens: "
        "tell its team that every sub changes (docs/downstream.md)")
    return after


def map_subjects(services: Services, args: argparse.Namespace) -> int:
    """``pseudonym,subject`` for each listed person the vault still holds, in the audience's sector."""
    record = services.oauth.audiences.get(args.audience)
    if record is None:
        raise CommandError(f"no audience {args.audience!r}")
    try:
        lines = args.pseudonyms.read_text("ascii").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.pseudonyms}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise CommandError(f"cannot create {args.out}: {exc.strerror} (it must not exist)") from exc
    mapped = skipped = 0
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write("pseudonym,subject\n")
        for pseudonym in dict.fromkeys(line.lower() for line in lines):
            identity = services.vault.find(pseudonym)
            if identity is None or identity.status == "erased":
                skipped += 1
                continue
            out.write(f"{pseudonym},{services.oauth.subjects.in_sector(record.sector, pseudonym)}\n")
            mapped += 1
    services.audit.append(actor=operator_name(), action="audiences.map_subjects",
                          counts={"mapped": mapped, "skipped": skipped},
                          details={"audience": record.audience, "sector": record.sector,
                                   "pseudonyms_sha256": hashlib.sha256(args.pseudonyms.read_bytes()).hexdigest()})
    say(f"give {args.out} to the team of {record.audience} only; they re-key their data and destroy it "
        "(the pseudonyms in it link every sector)")
    emit({"audience": record.audience, "sector": record.sector, "mapped": mapped, "skipped": skipped,
          "out": str(args.out)})
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
