"""Sending one notice per resolved person, from the run's CSV, resumably and under audit.

Runs after the resolution has completed, reading ``OUT`` as a stream. For each row the run's
state says whether that person's notice was already sent (skip), was being sent when a run was
interrupted (*uncertain*: reported and audited, never sent twice), failed before (try again) or is
new. Every sent, failed or uncertain message gets its own ``breach.notify`` audit record with the
pseudonym and the outcome, never the address. If the mail server cannot be reached at all the
phase stops (nothing is dropped: running the command again continues where it stopped).

A run over pairwise subjects writes ``subject,sector,email``: each notice is then known by its
(sector, subject), which its audit record names instead of a pseudonym.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

from ..audit import AuditLog
from .errors import Refused
from .list_formats import SEPARATOR
from .output import SUBJECT_RESOLVED_HEADER
from .private_files import UnsafeFile, open_own_file
from .progress import ProgressBar
from .smtp import FAILED, SENT, UNCERTAIN, MailServerUnavailable, Mailer
from .state import SENDING, RunState
from .templates import build_message

ACTION = "breach.notify"


@dataclass(frozen=True)
class Letter:
    """The notice as rendered for this incident (the same for everyone) and who sends it."""

    sender: str
    subject: str
    body: str
    languages: Sequence[str]


@dataclass
class NoticeReport:
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    already_sent: int = 0
    would_send: int = 0
    stopped: str | None = None

    def counts(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "uncertain": self.uncertain,
                "already_sent": self.already_sent, "would_send": self.would_send}

    def line(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.counts().items())

    @property
    def ok(self) -> bool:
        return not (self.failed or self.uncertain or self.stopped)


class _Notifier:
    def __init__(self, state: RunState, mailer: Mailer | None, letter: Letter, audit: AuditLog, *,
                 operator: str, incident: str) -> None:
        self.state, self.mailer, self.letter, self.audit = state, mailer, letter, audit
        self.operator, self.incident = operator, incident
        self.report = NoticeReport()

    def _record(self, pseudonym: str, outcome: str, details: dict[str, Any]) -> None:
        sector, separator, subject = pseudonym.partition(SEPARATOR)
        named = {"subject": subject, "sector": sector} if separator else {"pseudonym": pseudonym}
        self.audit.append(actor=self.operator, action=ACTION, outcome=outcome, incident=self.incident,
                          details={**named, **details})

    def handle(self, pseudonym: str, email: str, *, dry_run: bool) -> bool:
        """Deal with one row; False when the phase must stop (mail server unreachable)."""
        prior = self.state.notice(pseudonym)
        status, tries = prior if prior else (None, 0)
        if status == SENT:
            self.report.already_sent += 1
        elif status == UNCERTAIN:
            self.report.uncertain += 1
        elif status == SENDING:
            self.state.mark_notice(pseudonym, UNCERTAIN, tries)
            self._record(pseudonym, UNCERTAIN, {"error": "a run stopped while sending; check, do not resend"})
            self.report.uncertain += 1
        elif dry_run:
            self.report.would_send += 1
        else:
            return self._send(pseudonym, email, tries)
        return True

    def _send(self, pseudonym: str, email: str, tries: int) -> bool:
        assert self.mailer is not None
        letter = self.letter
        try:
            message = build_message(sender=letter.sender, recipient=email, subject=letter.subject,
                                    body=letter.body, languages=letter.languages)
        except ValueError:
            self.state.mark_notice(pseudonym, FAILED, tries)
            self._record(pseudonym, FAILED, {"error": "unusable address"})
            self.report.failed += 1
            return True
        self.state.mark_notice(pseudonym, SENDING, tries)
        try:
            delivery = self.mailer.deliver(email, message)
        except MailServerUnavailable as exc:
            self.state.mark_notice(pseudonym, FAILED, tries + self.mailer.settings.attempts)
            self._record(pseudonym, FAILED, {"error": str(exc)})
            self.report.failed += 1
            self.report.stopped = str(exc)
            return False
        self.state.mark_notice(pseudonym, delivery.outcome, tries + delivery.attempts)
        self._record(pseudonym, delivery.outcome, delivery.details())
        setattr(self.report, delivery.outcome, getattr(self.report, delivery.outcome) + 1)
        return True


def send_notices(csv_path: Path, state: RunState, letter: Letter, audit: AuditLog, *, mailer: Mailer | None,
                 operator: str, incident: str, total: int | None = None, dry_run: bool = False,
                 stderr: TextIO | None = None, progress: bool | None = None) -> NoticeReport:
    """One notice per row of ``csv_path`` not yet notified; ``mailer=None`` only with ``dry_run``.

    :raises Refused: ``csv_path`` is a symbolic link or not a private regular file of ours (audited).
    """
    notifier = _Notifier(state, mailer, letter, audit, operator=operator, incident=incident)
    bar = ProgressBar(total, stream=stderr, enabled=progress)
    done, outcome, details = 0, None, {"run_id": state.identity["run_id"]}
    try:
        try:
            fd = open_own_file(csv_path, os.O_RDONLY)  # never through a link planted at OUT
        except UnsafeFile as exc:
            outcome, details["problem"] = "refused", f"cannot send notices: {exc}"
            raise Refused(details["problem"]) from exc
        with os.fdopen(fd, newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle)
            header = tuple(next(rows, ()))
            width = len(header) if header == SUBJECT_RESOLVED_HEADER else 2
            for row in rows:
                if len(row) == width:
                    # a pairwise run's notices are known by SECTOR<TAB>SUBJECT (the state's key, the audit's names)
                    who = row[0] if width == 2 else row[1] + SEPARATOR + row[0]
                    if not notifier.handle(who, row[-1], dry_run=dry_run):
                        break
                done += 1
                bar.update(done)
    except BaseException:
        outcome = outcome or "interrupted"
        raise
    finally:
        bar.close()
        if mailer is not None:
            mailer.close()
        report = notifier.report
        outcome = outcome or ("dry-run" if dry_run else ("stopped" if report.stopped else "completed"))
        audit.append(actor=operator, action=ACTION, outcome=outcome, incident=incident, counts=report.counts(),
                     details=details)
    return report
