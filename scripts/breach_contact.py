#!/usr/bin/env python3
"""Breach contact: the DPO resolves affected pseudonyms to e-mail addresses (and notifies them), under audit.

  python scripts/breach_contact.py --incident ID --operator NAME --reason TEXT --pseudonyms FILE|- \\
      --dpo-key SHARE --dpo-key SHARE --out FILE [--request ID] \\
      [--notify --notice FILE [--language nl|en|both] [--dry-run]]
  python scripts/breach_contact.py --incident ID --operator NAME --reason TEXT --pseudonyms FILE --counts-only

A list from one downstream service holds the pairwise subjects that service's sector sees: add
``--sector NAME`` (the sector ``scripts/audiences.py show`` names), or give a CSV whose first line
is ``subject,sector`` with each subject's sector (empty: a vault pseudonym). Subjects of another
sector resolve to nothing (reported as unknown); OUT then reads ``subject,sector,email``.

Audit records are signed: with ``--officer-key PATH`` by the acting officer's enrolled key (``--operator``
is then the officer's name; passphrase from IDENTITY_OFFICER_KEY_PASSPHRASE or a prompt), otherwise by
the service audit key in IDENTITY_KEYS_DIR. Where neither is at hand nothing runs (exit 2).

Writes OUT (``pseudonym,email``), OUT.unresolved.csv (``line,pseudonym,problem``) and OUT.state (to
resume), all mode 0600; ``--stdout`` writes the CSV to standard output instead (no resume). Ends with
``resolved=N unknown=N erased=N malformed=N`` on stdout, and `` misbound=N`` when e-mails sealed for
other pseudonyms were found (then the exit status is 1). Run the same command again to resume an
interrupted run (nothing is written or sent twice). ``--dpo-key`` names one share file per holder
present (as many as the key set's threshold, e.g. 2 of 3); each holder types their own share's
passphrase at the prompt (IDENTITY_DPO_KEY_PASSPHRASE, when set, unlocks every file: development
and tests). A whole dpo_private.pem of a vault not yet re-sealed is accepted alone. Everything else
comes from the same IDENTITY_* environment as the service (IDENTITY_DB_URI, IDENTITY_KEYS_DIR for
dpo_public.pem, IDENTITY_FOUR_EYES_REQUIRED, IDENTITY_SMTP_*). See docs/breach-contact.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from identity.audit import AuditLog, open_audit_log
from identity.breach.audit_keys import officer_audit_signer
from identity.breach.errors import BreachError, Refused
from identity.breach.four_eyes import four_eyes_policy
from identity.breach.inputs import spool
from identity.breach.notify import Letter, NoticeReport, send_notices
from identity.breach.output import state_path
from identity.breach.resolve import CountParams, ResolveParams, Summary, count_pseudonyms, resolve_pseudonyms
from identity.breach.smtp import Mailer, SmtpSettings, load_smtp_settings
from identity.breach.state import RunState, StateError
from identity.breach.templates import LANGUAGES, load_notice, render
from identity.cli import CommandError, passphrase_from, run, say, settings_from_environment, share_passphrase
from identity.config import ConfigError, Settings
from identity.keys import KeyPaths
from identity.keys.dpo_shares import looks_like_share_file
from identity.keys.files import KeyMaterialError, pem_is_encrypted
from identity.store import StoreError, open_store

ACTION = "breach.resolve"


class UsageError(Exception):
    """A command line argparse cannot read (audited like any other refused attempt)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog="breach_contact.py", description=__doc__.splitlines()[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--incident", metavar="ID", help="the incident id (required)")
    parser.add_argument("--operator", metavar="NAME", help="who runs this (required)")
    parser.add_argument("--reason", metavar="TEXT", help="why, for the audit log (required)")
    parser.add_argument("--pseudonyms", metavar="FILE|-", help="affected pseudonyms, one a line; - for stdin")
    parser.add_argument("--sector", metavar="NAME",
                        help="the list holds pairwise subjects of this sector (a data set from one service)")
    parser.add_argument("--dpo-key", metavar="PATH", type=Path, action="append",
                        help="a DPO key share file (dpo_share_N.json), once per holder present; or one whole "
                             "dpo_private.pem of a vault not yet re-sealed")
    parser.add_argument("--out", metavar="FILE", type=Path, help="the CSV to create (mode 0600)")
    parser.add_argument("--stdout", action="store_true", help="write the CSV to standard output instead of --out")
    parser.add_argument("--request", metavar="ID", help="the approved four-eyes request (scripts/four_eyes.py)")
    parser.add_argument("--notify", action="store_true", help="e-mail every resolved person the notice")
    parser.add_argument("--notice", metavar="FILE", type=Path, help="the notice's texts (JSON), with --notify")
    parser.add_argument("--language", choices=("nl", "en", "both"), default="both",
                        help="the notice's language (default: both, Dutch first)")
    parser.add_argument("--dry-run", action="store_true", help="with --notify: show what would be sent, send nothing")
    parser.add_argument("--counts-only", action="store_true",
                        help="only count (for the authority's 72-hour notice): no key, nothing opened")
    parser.add_argument("--workers", type=int, metavar="N", help="processes opening e-mails (default: one a core)")
    parser.add_argument("--officer-key", metavar="PATH", type=Path,
                        help="your enrolled officer key: signs this run's audit records (required where "
                             "IDENTITY_KEYS_DIR has no audit signing key, e.g. the DPO's machine)")
    return parser.parse_args(argv)


def flag_value(argv: list[str], flag: str) -> str | None:
    """A flag's value from a command line that did not parse (for the audit record)."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def audit_usage_error(settings: Settings, store, argv: list[str], message: str) -> None:
    args = argparse.Namespace(**{name: flag_value(argv, f"--{name}") for name in ("operator", "reason", "incident")})
    officer_key = flag_value(argv, "--officer-key")
    try:
        audit = run_audit_log(settings, store, Path(officer_key) if officer_key else None, args.operator)
    except CommandError as exc:
        say(f"warning: the usage error is not audited: {exc}")
        return
    try:
        refuse(audit, args, f"usage: {message}")
    except CommandError:
        pass


def run_audit_log(settings: Settings, store, officer_key: Path | None, operator: str | None) -> AuditLog:
    """This run's audit log: signed by the acting officer's key, else by the service audit key."""
    try:
        if officer_key is not None:
            passphrase = None
            if officer_key.exists() and pem_is_encrypted(officer_key):
                passphrase = passphrase_from("IDENTITY_OFFICER_KEY_PASSPHRASE", "Passphrase for your officer key: ")
            signer = officer_audit_signer(store, operator or "", officer_key, passphrase)
            return open_audit_log(settings, store, signer=signer)
        return open_audit_log(settings, store)
    except Refused as exc:
        raise CommandError(f"{exc} (--officer-key signs the audit log as officer --operator); nothing was done",
                           exit_code=2) from exc
    except KeyMaterialError as exc:
        raise CommandError(f"no key to sign the audit log: {exc}; where the service's audit key is not at hand "
                           "(e.g. the DPO's machine), give --officer-key PATH, your enrolled officer key",
                           exit_code=2) from exc


def refuse(audit: AuditLog, args: argparse.Namespace, problem: str, action: str = ACTION) -> NoReturn:
    """Audit a refusal found here (the library audits its own) and stop."""
    audit.append(actor=(args.operator or "").strip() or "(unnamed)", action=action, outcome="refused",
                 reason=args.reason or None, incident=args.incident or None, details={"problem": problem})
    raise CommandError(problem)


def check_flags(audit: AuditLog, args: argparse.Namespace) -> None:
    problems = []
    if not args.pseudonyms:
        problems.append("--pseudonyms is required")
    if not args.dpo_key:
        problems.append("--dpo-key is required")
    if bool(args.out) == bool(args.stdout):
        problems.append("give exactly one of --out FILE and --stdout")
    if args.notify and args.stdout:
        problems.append("--notify needs --out (it sends from the CSV file and resumes from its state)")
    if args.notify and not args.notice:
        problems.append("--notify needs --notice FILE (the notice's texts)")
    if (args.dry_run or args.notice) and not args.notify:
        problems.append("--dry-run and --notice go with --notify")
    if problems:
        refuse(audit, args, "; ".join(problems))


def languages(args: argparse.Namespace) -> tuple[str, ...]:
    return LANGUAGES if args.language == "both" else (args.language,)


def prepare_notices(audit: AuditLog, args: argparse.Namespace) -> tuple[SmtpSettings, Letter]:
    """SMTP settings and the rendered notice, checked before anything is opened."""
    try:
        smtp = load_smtp_settings()
        notice = load_notice(args.notice, languages(args))
    except ConfigError as exc:
        refuse(audit, args, "; ".join(exc.problems))
    except Refused as exc:
        refuse(audit, args, str(exc))
    subject, body = render(notice, languages(args), args.incident or "")
    return smtp, Letter(smtp.sender, subject, body, languages(args))


def dpo_passphrase(paths: list[Path]) -> str | None:
    """IDENTITY_DPO_KEY_PASSPHRASE (for every file), or the prompt of a lone encrypted whole key."""
    shared = os.environ.get("IDENTITY_DPO_KEY_PASSPHRASE") or None
    if shared or len(paths) != 1 or looks_like_share_file(paths[0]):
        return shared
    try:
        encrypted = pem_is_encrypted(paths[0])
    except OSError:
        return None  # the library refuses the unreadable key (and audits it)
    if not encrypted:
        return None
    return passphrase_from("IDENTITY_DPO_KEY_PASSPHRASE", "Passphrase for the DPO private key: ")


def input_path(audit: AuditLog, args: argparse.Namespace) -> tuple[Path, bool]:
    """The list as a file (standard input is spooled to a private temporary file first)."""
    if args.pseudonyms == "-":
        return spool(sys.stdin.buffer), True
    if not args.pseudonyms:
        refuse(audit, args, "--pseudonyms is required", "breach.count" if args.counts_only else ACTION)
    return Path(args.pseudonyms), False


def report_unresolved(summary: Summary, args: argparse.Namespace) -> None:
    where = f" (see {args.out}.unresolved.csv)" if args.out else " (listed on stderr)"
    if summary.malformed_lines:
        shown = ", ".join(str(n) for n in summary.malformed_lines)
        more = summary.counts["malformed"] - len(summary.malformed_lines)
        say(f"malformed lines: {shown}{f' and {more} more' if more > 0 else ''}{where}")
    for kind in ("duplicate", "restricted"):
        if summary.counts.get(kind):
            say(f"{kind}: {summary.counts[kind]}")
    for sector, counts in sorted(summary.by_sector().items()):
        say(f"sector {sector or '(vault pseudonyms)'}: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if summary.counts.get("unbound"):
        say(f"unbound: {summary.counts['unbound']} (sealed before e-mails were bound to their pseudonym: delivered "
            "unchecked; keys.py dpo-reseal binds them)")
    if summary.counts.get("unopenable"):
        say(f"error: {summary.counts['unopenable']} sealed e-mails could not be opened{where}")
    if summary.counts.get("misbound"):
        say(f"error: {summary.counts['misbound']} sealed e-mails were sealed for another pseudonym (moved or copied "
            f"in the database): not written, nobody is notified for them{where}")


def notify(audit: AuditLog, args: argparse.Namespace, smtp: SmtpSettings, letter: Letter,
           summary: Summary) -> NoticeReport:
    try:
        state = RunState.load(state_path(args.out))
    except StateError as exc:
        refuse(audit, args, f"cannot send notices: {exc}", "breach.notify")
    try:
        if args.dry_run:
            say(f"dry run: would send through {smtp.describe()}, subject: {letter.subject}")
            say("----- message (the same for everyone) -----\n" + letter.body + "-----")
        mailer = None if args.dry_run else Mailer(smtp)
        report = send_notices(args.out, state, letter, audit, mailer=mailer, operator=args.operator,
                              incident=args.incident, total=summary.counts["resolved"], dry_run=args.dry_run)
    except Refused as exc:
        raise CommandError(str(exc)) from exc
    finally:
        state.close()
    say(f"notices: {report.line()}")
    if report.stopped:
        say(f"error: sending stopped: {report.stopped}; run the same command again to continue")
    elif report.failed or report.uncertain:
        say("error: some notices failed or are uncertain (see `scripts/audit.py show --incident "
            f"{args.incident}`); run the same command again to retry the failed ones")
    return report


def count_only(store, audit: AuditLog, args: argparse.Namespace) -> int:
    path, spooled = input_path(audit, args)
    try:
        summary = count_pseudonyms(store, audit, CountParams(args.incident, args.operator, args.reason, path,
                                                             sector=args.sector))
    except Refused as exc:
        raise CommandError(str(exc)) from exc
    finally:
        if spooled:
            path.unlink(missing_ok=True)
    say("counts only: nothing was opened; 'resolved' counts the pseudonyms the vault can still resolve")
    report_unresolved(summary, args)
    print(summary.line(), flush=True)
    return 0


def require_four_eyes(audit: AuditLog, args: argparse.Namespace, settings: Settings) -> bool:
    """Whether this run needs an approved request; production refuses to run with four-eyes off (audited)."""
    try:
        return four_eyes_policy(production=settings.is_production, required=settings.requires_four_eyes)
    except Refused as exc:
        refuse(audit, args, str(exc))


def resolve(settings: Settings, store, audit: AuditLog, args: argparse.Namespace) -> int:
    check_flags(audit, args)
    four_eyes_required = require_four_eyes(audit, args, settings)
    smtp, letter = prepare_notices(audit, args) if args.notify else (None, None)
    path, spooled = input_path(audit, args)
    params = ResolveParams(
        incident=args.incident, operator=args.operator, reason=args.reason, pseudonyms=path,
        dpo_key=tuple(args.dpo_key), dpo_public=KeyPaths(settings.keys_dir).dpo_public, sector=args.sector,
        passphrase=dpo_passphrase(args.dpo_key), passphrase_for=share_passphrase, out=args.out,
        request_id=args.request, workers=args.workers,
        notes={"notify": args.notify, "dry_run": args.dry_run},
    )
    try:
        summary = resolve_pseudonyms(store, audit, params, four_eyes_required=four_eyes_required)
    except (Refused, BreachError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        if spooled:
            path.unlink(missing_ok=True)
    sys.stdout.flush()
    report_unresolved(summary, args)
    ok = not summary.counts.get("unopenable") and not summary.counts.get("misbound")
    if smtp is not None and letter is not None:  # --notify
        ok = notify(audit, args, smtp, letter, summary).ok and ok
    head = audit.head()
    if head:
        say(f"audit log head: record {head['seq']} {head['hash']} (keep it outside the database; "
            "check later with scripts/audit.py verify --expect-head HASH)")
    print(summary.line(), flush=True)
    return 0 if ok else 1


def main() -> int:
    settings = settings_from_environment()
    store = open_store(settings.db_uri)
    argv = sys.argv[1:]
    try:
        try:
            args = parse_args(argv)
        except UsageError as exc:
            audit_usage_error(settings, store, argv, str(exc))
            raise CommandError(f"{exc} (see --help)", exit_code=2) from exc
        audit = run_audit_log(settings, store, args.officer_key, args.operator)
        return count_only(store, audit, args) if args.counts_only else resolve(settings, store, audit, args)
    except StoreError as exc:
        raise CommandError(f"the store is unavailable: {exc}") from exc
    finally:
        store.close()


if __name__ == "__main__":
    run(main)
