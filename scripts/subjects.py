#!/usr/bin/env python3
"""Data-subject requests handled by operators: show, restrict, unrestrict, close, reopen, erase, purge.

    subjects.py show PSEUDONYM [--reason TEXT]
    subjects.py restrict|unrestrict|close|reopen|erase PSEUDONYM --reason TEXT
    subjects.py show|restrict|…|erase SUBJECT --sector NAME [--reason TEXT]
    subjects.py purge [--inactive-for 24m] [--cancelled-for 30d] [--dry-run]

With ``--sector NAME`` the identifier is the pairwise subject a service of that sector knows the
person by (a request the service forwarded); it is taken back to the person's pseudonym first, and a
subject that is not one of that sector's is refused (audited).

Prints one JSON object on stdout; every change, and every ``show`` (an operator reading a person's
record), is recorded in the audit log (actor: IDENTITY_OPERATOR or the login name). A reason that
holds an e-mail address is refused before anything is done: the audit log keeps it for good. A
command interrupted midway (the store failed) is finished by running it again. Reads the same
IDENTITY_* environment as the service.
"""

from __future__ import annotations

import argparse

from identity.cli import CommandError, emit, operator_name, run, services_from_environment
from identity.logs import EMAIL_PATTERN
from identity.pairwise import sector_problem
from identity.retention import DEFAULT_CANCELLED_FOR, DEFAULT_INACTIVE_FOR, check_cancelled_for
from identity.rights import SubjectRights, UnknownSubject, iso, parse_period, reason_problem
from identity.services import Services
from identity.vault import is_pseudonym

# what a refusal says when the identity is not in the state the command starts from
REQUIRED_STATE = {"restrict": "active ", "close": "active ", "unrestrict": "restricted ", "reopen": "closed ",
                  "erase": ""}


SECTOR_HELP = "the identifier is a pairwise subject of this sector (as a service of it knows the person)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="subjects.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="what the service holds about a pseudonym")
    show.add_argument("pseudonym")
    show.add_argument("--sector", metavar="NAME", help=SECTOR_HELP)
    show.add_argument("--reason", help="why (recorded in the audit log, as the access itself is)")
    for name, text in (("restrict", "stop issuing and accepting tokens for the person (Art. 18)"),
                       ("unrestrict", "lift a restriction"),
                       ("close", "cancel the account: sessions end now, the purge erases it after --cancelled-for"),
                       ("reopen", "withdraw a cancellation before the purge erased the account"),
                       ("erase", "erase the person: the pseudonym can never be resolved again (Art. 17)")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("pseudonym")
        cmd.add_argument("--sector", metavar="NAME", help=SECTOR_HELP)
        cmd.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    purge = sub.add_parser("purge", help="erase closed and inactive identities; drop expired codes and tokens")
    purge.add_argument("--inactive-for", default=DEFAULT_INACTIVE_FOR, metavar="PERIOD",
                       help=f"no login for this long, e.g. 24m (d days, w weeks, m months, y years; "
                            f"default {DEFAULT_INACTIVE_FOR})")
    purge.add_argument("--cancelled-for", default=DEFAULT_CANCELLED_FOR, metavar="PERIOD",
                       help=f"closed this long ago (default {DEFAULT_CANCELLED_FOR}; at most what keeps the "
                            "promise to erase within 2 months of cancellation)")
    purge.add_argument("--dry-run", action="store_true", help="only count what would be purged")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.command != "purge":
        check_inputs(args)  # before anything is done, or written to the audit log
    services = services_from_environment()
    rights = services.rights
    if args.command == "purge":
        return purge(rights, args)
    pseudonym = args.pseudonym if args.sector is None else from_sector(services, args)
    try:
        if args.command == "show":
            emit(rights.show(pseudonym, actor=operator_name(), reason=args.reason))
        else:
            action = getattr(rights, args.command)
            emit(action(pseudonym, actor=operator_name(), reason=args.reason))
    except UnknownSubject as exc:
        raise CommandError(f"no {REQUIRED_STATE.get(args.command, '')}identity {args.pseudonym!r}") from exc
    return 0


def check_inputs(args: argparse.Namespace) -> None:
    """Refuse (exit 2) an identifier that is no pseudonym or subject, a sector that is no sector name, and a
    reason that is empty or holds an e-mail address; the messages never repeat what was given."""
    if not is_pseudonym(args.pseudonym):
        what = "a pairwise subject" if args.sector is not None else "a pseudonym"
        raise CommandError(f"the identifier must be {what}: 26 characters of a-z and 2-7", exit_code=2)
    if args.sector is not None:
        problem = sector_problem(args.sector) or ("a sector is a name such as records.example.org, not an e-mail "
                                                  "address" if EMAIL_PATTERN.search(args.sector) else None)
        if problem:
            raise CommandError(f"--sector: {problem}", exit_code=2)
    if args.reason is not None or args.command != "show":
        problem = reason_problem(args.reason or "")
        if problem:
            raise CommandError(f"--reason {problem}", exit_code=2)


def from_sector(services: Services, args: argparse.Namespace) -> str:
    """The pseudonym behind a pairwise subject of ``--sector``; refused (and audited) when there is none."""
    pseudonym = services.oauth.subjects.resolve(args.sector, args.pseudonym)
    if pseudonym is None:
        problem = "no identity has this subject in this sector (wrong sector, unknown or erased)"
        services.audit.append(actor=operator_name(), action=f"subjects.{args.command}", outcome="refused",
                              reason=args.reason,
                              details={"subject": args.pseudonym[:64], "sector": args.sector[:300], "problem": problem})
        raise CommandError(f"{problem}: {args.pseudonym!r} in sector {args.sector!r}")
    return pseudonym


def purge(rights: SubjectRights, args: argparse.Namespace) -> int:
    """Run (or count) the retention purge; one JSON object with the counts."""
    periods = {}
    for flag, text, check in (("--inactive-for", args.inactive_for, None),
                              ("--cancelled-for", args.cancelled_for, check_cancelled_for)):
        try:
            periods[flag] = parse_period(text)
            if check:
                check(periods[flag])
        except ValueError as exc:
            raise CommandError(f"{flag}: {exc}", exit_code=2) from exc
    report = rights.purge(inactive_for=periods["--inactive-for"], cancelled_for=periods["--cancelled-for"],
                          actor=operator_name(), dry_run=args.dry_run)
    done = "" if report.dry_run else "erased"
    emit({"dry_run": report.dry_run, "inactive_since": iso(report.cutoff),
          "closed_before": iso(report.cancelled_cutoff),
          "identities_erased" if done else "identities_to_erase": report.identities,
          "cancelled_erased" if done else "cancelled_to_erase": report.cancelled,
          "expired_records" if done else "expired_records_to_drop": report.expired})
    return 0


if __name__ == "__main__":
    run(main)
