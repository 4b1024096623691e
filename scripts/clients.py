#!/usr/bin/env python3
"""OAuth clients (apps): add, update, list, show, remove. Prints exactly one JSON object on stdout.

The ``sub`` of a client's ID tokens (OpenID Connect Core §8.1): ``--subject-type pairwise`` (the
default for new clients) gives the person's subject of the client's sector, which is
``--sector-identifier NAME`` if registered, else the host of its https redirect URIs (several hosts
need a sector identifier), else a sector of its own; ``public`` gives the vault pseudonym (clients
registered before subject types existed keep it). ``update --subject-type``/``--sector-identifier``
changes every person's sub for that app and needs --breaking.

A downstream service that introspects tokens (RFC 7662) is its audience's resource server:
``--introspects AUD`` on ``add`` or ``update`` (``--no-introspection`` ends it). A client may always
introspect its own tokens; ``--audience`` alone does not let it introspect other apps' tokens.

Changes apply to a running service within seconds, without a restart. Reads the same IDENTITY_*
environment as the service; each change is recorded in the audit log (actor: IDENTITY_OPERATOR or
the login name).
"""

from __future__ import annotations

import argparse

from identity.cli import CommandError, emit, operator_name, run, say, services_from_environment
from identity.oauth.clients import GRANT_TYPES, ClientRegistrationError
from identity.pairwise import DEFAULT_SUBJECT_TYPE, SUBJECT_TYPES
from identity.services import Services


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="clients.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="register a client; a confidential client's secret is shown once")
    add.add_argument("--name", required=True, help="a human-readable name")
    add.add_argument("--public", action="store_true",
                     help="a public client (mobile or browser app: no secret, PKCE required)")
    add.add_argument("--redirect-uri", action="append", default=[], metavar="URI",
                     help="an exact redirect URI (repeat for several)")
    add.add_argument("--grant", action="append", choices=GRANT_TYPES, metavar="G",
                     help=f"allowed grant type, one of {', '.join(GRANT_TYPES)} (repeatable); default: public "
                          "authorization_code + refresh_token, confidential client_credentials")
    add.add_argument("--scope", action="append", metavar="S",
                     help="a scope the client may request (repeatable); default: openid only")
    add.add_argument("--audience", action="append", default=[], metavar="AUD",
                     help="a registered audience the client may get tokens for (repeatable)")
    add.add_argument("--uses-nonce", action="store_true",
                     help="a confidential code-flow client that checks the ID token's nonce: its code flow may "
                          "omit PKCE when it sends a nonce with scope openid (every other code flow needs PKCE)")
    add.add_argument("--third-party", action="store_true",
                     help="an app of another organisation: the person sees its name, the scopes and the services "
                          "that receive tokens, and allows or denies, before it gets a code (default: first-party, "
                          "no consent page)")
    add.add_argument("--post-logout-redirect-uri", action="append", default=[], metavar="URI",
                     help="where /logout (end_session_endpoint) may send the person after signing out; matched "
                          "exactly (repeat for several)")
    add_subject_flags(add, default=DEFAULT_SUBJECT_TYPE)
    add_introspects_flag(add)
    update = sub.add_parser("update", help="change the subject type or sector identifier of a client's ID tokens, "
                                           "or the audiences it introspects")
    update.add_argument("client_id")
    add_subject_flags(update, default=None)
    add_introspects_flag(update)
    update.add_argument("--no-introspection", action="store_true",
                        help="it is no longer any audience's resource server")
    update.add_argument("--breaking", action="store_true",
                        help="confirm: the sub of every person changes for that app (docs/downstream.md)")
    sub.add_parser("list", help="list clients")
    show = sub.add_parser("show", help="show one client")
    show.add_argument("client_id")
    remove = sub.add_parser("remove", help="remove a client (its tokens stop working)")
    remove.add_argument("client_id")
    return parser.parse_args()


def add_subject_flags(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    parser.add_argument("--subject-type", choices=SUBJECT_TYPES, default=default,
                        help="the sub of its ID tokens: pairwise (its sector's subject; default for new clients) "
                             "or public (the vault pseudonym)")
    parser.add_argument("--sector-identifier", metavar="NAME",
                        help="its sector (OIDC Core §8.1, registered here instead of fetching a "
                             "sector_identifier_uri); default: the host of its https redirect URIs")


def add_introspects_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--introspects", action="append", default=[], metavar="AUD",
                        help="a registered audience whose resource server this confidential client is: it may "
                             "introspect every access token for it (repeatable; on update, replaces the list). "
                             "--audience alone does not allow that: every app calling the API has it")


def registered(services: Services, audiences: list[str]) -> None:
    missing = [a for a in audiences if services.oauth.audiences.get(a) is None]
    if missing:
        raise CommandError(f"audience {missing[0]} is not registered (scripts/audiences.py add)")


def update(services: Services, args: argparse.Namespace) -> None:
    """Change the audiences a client introspects and its subject type or sector (the latter refused without
    --breaking); audited either way."""
    if args.introspects and args.no_introspection:
        raise CommandError("--introspects and --no-introspection contradict each other")
    if args.introspects or args.no_introspection:
        if args.subject_type is not None or args.sector_identifier is not None:
            raise CommandError("change the audiences it introspects and its subjects in two runs (one is breaking)")
        update_introspects(services, args.client_id, args.introspects)
    else:
        update_subjects(services, args)


def update_introspects(services: Services, client_id: str, audiences: list[str]) -> None:
    registered(services, audiences)
    try:
        before, after = services.oauth.clients.set_introspects(client_id, audiences)
    except ClientRegistrationError as exc:
        raise CommandError(str(exc)) from exc
    services.audit.append(actor=operator_name(), action="clients.introspects",
                          details={"client_id": client_id, "before": list(before.introspects),
                                   "after": list(after.introspects)})
    say(f"client {client_id} introspects tokens for: {', '.join(after.introspects) or 'no audience'}")
    emit(after.public_view())


def update_subjects(services: Services, args: argparse.Namespace) -> None:
    """Change a client's subject type or sector: refused without --breaking, audited either way."""
    actor = operator_name()
    wanted = {"client_id": args.client_id, "subject_type": args.subject_type,
              "sector_identifier": args.sector_identifier}
    try:
        if args.subject_type is None and args.sector_identifier is None:
            raise ClientRegistrationError("nothing to update: give --subject-type, --sector-identifier, "
                                          "--introspects or --no-introspection")
        if not args.breaking:
            raise ClientRegistrationError("changing the subject type or sector changes the sub of every person this "
                                          "app sees (a breaking change for it): repeat with --breaking")
        before, after = services.oauth.clients.set_subjects(args.client_id, subject_type=args.subject_type,
                                                            sector_identifier=args.sector_identifier)
    except ClientRegistrationError as exc:
        services.audit.append(actor=actor, action="clients.subjects", outcome="refused",
                              details={**wanted, "problem": str(exc)})
        raise CommandError(str(exc)) from exc
    services.audit.append(actor=actor, action="clients.subjects", reason="breaking change confirmed",
                          details={"client_id": after.client_id,
                                   "before": {"subject_type": before.subject_type, "sector": before.sector},
                                   "after": {"subject_type": after.subject_type, "sector": after.sector}})
    say(f"client {after.client_id} now gets {after.subject_type} subjects (sector {after.sector}) in new ID tokens")
    emit(after.public_view())


def main() -> int:
    args = parse_args()
    services = services_from_environment()
    registry = services.oauth.clients
    if args.command == "add":
        registered(services, args.audience + args.introspects)
        try:
            client, secret = registry.register(
                name=args.name, public=args.public, redirect_uris=args.redirect_uri, grant_types=args.grant,
                scopes=args.scope, audiences=args.audience, uses_nonce=args.uses_nonce,
                third_party=args.third_party, post_logout_redirect_uris=args.post_logout_redirect_uri,
                subject_type=args.subject_type, sector_identifier=args.sector_identifier,
                introspects=args.introspects,
            )
        except ClientRegistrationError as exc:
            raise CommandError(str(exc)) from exc
        services.audit.append(actor=operator_name(), action="clients.add",
                              details={"client_id": client.client_id, "name": client.name,
                                       "type": "public" if client.public else "confidential",
                                       "uses_nonce": client.uses_nonce, "third_party": client.third_party,
                                       "subject_type": client.subject_type, "sector": client.sector,
                                       "introspects": list(client.introspects)})
        output = {"client_id": client.client_id}
        if secret is not None:
            output["client_secret"] = secret
        emit(output)
    elif args.command == "update":
        update(services, args)
    elif args.command == "list":
        emit({"clients": [c.public_view() for c in registry.all()]})
    elif args.command == "show":
        shown = registry.get(args.client_id)
        if shown is None:
            raise CommandError(f"no client {args.client_id!r}")
        emit(shown.public_view())
    else:
        if not registry.remove(args.client_id):
            raise CommandError(f"no client {args.client_id!r}")
        revoked = services.oauth.grants.revoke_all_for_client(args.client_id, reason="client removed")
        services.audit.append(actor=operator_name(), action="clients.remove", counts={"grants_revoked": revoked},
                              details={"client_id": args.client_id})
        emit({"removed": args.client_id, "grants_revoked": revoked})
    return 0


if __name__ == "__main__":
    run(main)
