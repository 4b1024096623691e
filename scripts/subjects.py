#!/usr/bin/env python3
"""Data-subject requests handled by operators: show, restrict, unrestrict, erase, purge.

    subjects.py show PSEUDONYM
    subjects.py restrict|unrestrict|erase PSEUDONYM --reason TEXT
    subjects.py purge --inactive-for 24m [--dry-run]

Prints one JSON object on stdout; every change is recorded in the audit log (actor:
IDENTITY_OPERATOR or the login name). Reads the same IDENTITY_* environment as the service.
"""

from __future__ import annotations

import argparse

import _bootstrap  # noqa: F401

from identity.cli import CommandError, emit, operator_name, run, services_from_environment
from identity.rights import UnknownSubject, iso, parse_period


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="subjects.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="what the service holds about a pseudonym")
    show.add_argument("pseudonym")
    for name, text in (("restrict", "stop issuing and accepting tokens for the person (Art. 18)"),
                       ("unrestrict", "lift a restriction"),
                       ("erase", "erase the person: the pseudonym can never be resolved again (Art. 17)")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("pseudonym")
        cmd.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    purge = sub.add_parser("purge", help="erase inactive identities and drop expired codes and tokens")
    purge.add_argument("--inactive-for", required=True, metavar="PERIOD",
                       help="no login for this long, e.g. 24m (d days, w weeks, m months, y years)")
    purge.add_argument("--dry-run", action="store_true", help="only count what would be purged")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    services = services_from_environment()
    rights = services.rights
    if args.command == "purge":
        try:
            period = parse_period(args.inactive_for)
        except ValueError as exc:
            raise CommandError(f"--inactive-for: {exc}", exit_code=2) from exc
        report = rights.purge(inactive_for=period, actor=operator_name(), dry_run=args.dry_run)
        emit({"dry_run": report.dry_run, "inactive_since": iso(report.cutoff),
              "identities_erased" if not report.dry_run else "identities_to_erase": report.identities,
              "expired_records" if not report.dry_run else "expired_records_to_drop": report.expired})
        return 0
    if args.command != "show" and not args.reason.strip():
        raise CommandError("--reason must say why", exit_code=2)
    try:
        if args.command == "show":
            emit(rights.describe(args.pseudonym))
        else:
            action = getattr(rights, args.command)
            emit(action(args.pseudonym, actor=operator_name(), reason=args.reason))
    except UnknownSubject as exc:
        raise CommandError(f"no {'' if args.command == 'unrestrict' else 'active '}identity {args.pseudonym!r}"
                           + (" that is restricted" if args.command == "unrestrict" else "")) from exc
    return 0


if __name__ == "__main__":
    run(main)
