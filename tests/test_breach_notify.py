"""Notices (GDPR Art. 34) through a real SMTP server on 127.0.0.1 (aiosmtpd): TLS, retries, audit, resume."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
from pathlib import Path
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from identity.audit import AuditLog
from identity.breach.errors import Refused
from identity.breach.notify import Letter, send_notices
from identity.breach.output import state_path
from identity.breach.resolve import resolve_pseudonyms
from identity.breach.smtp import Mailer, load_smtp_settings
from identity.breach.state import SENDING, RunState
from identity.breach.templates import load_notice, render
from identity.config import ConfigError
from tests.audit_support import signed_log
from tests.breach_support import NOTICE, Inbox, Population, params, populate, self_signed_tls, write_list


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(inbox: Inbox, **kwargs) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, Controller]]:
    box = Inbox()
    controller = start(box)
    yield box, controller
    controller.stop()


def plain_env(controller: Controller, **extra: str) -> dict[str, str]:
    return {"IDENTITY_SMTP_HOST": "127.0.0.1", "IDENTITY_SMTP_PORT": str(controller.port),
            "IDENTITY_SMTP_SECURITY": "none", "IDENTITY_SMTP_FROM": "privacy@voorbeeld.nl",
            "IDENTITY_SMTP_BACKOFF": "0", "IDENTITY_SMTP_TIMEOUT": "5", **extra}


@pytest.fixture
def notice_file(tmp_path: Path) -> Path:
    path = tmp_path / "notice.json"
    path.write_text(json.dumps(NOTICE), encoding="utf-8")
    return path


@pytest.fixture
def resolved(sqlite_store, keys_dir: Path, tmp_path: Path) -> tuple[Population, Path]:
    people = populate(sqlite_store, keys_dir)
    listing = write_list(tmp_path / "affected.txt", people.order)
    p = params(tmp_path, keys_dir, listing)
    resolve_pseudonyms(sqlite_store, signed_log(sqlite_store), p)
    assert p.out is not None
    return people, p.out


def letter(notice_file: Path, languages=("nl", "en")) -> Letter:
    subject, body = render(load_notice(notice_file, languages), languages, "INC-2026-01")
    return Letter("privacy@voorbeeld.nl", subject, body, languages)


def notify(store, out: Path, notice_file: Path, env: dict[str, str], *, sleep=None, dry_run=False):
    state = RunState.load(state_path(out))
    try:
        settings = load_smtp_settings(env)
        mailer = None if dry_run else Mailer(settings, sleep=sleep or (lambda s: None))
        return send_notices(out, state, letter(notice_file), signed_log(store), mailer=mailer, operator="dpo.jansen",
                            incident="INC-2026-01", dry_run=dry_run, progress=False)
    finally:
        state.close()


def notify_records(store) -> list[dict]:
    return [r for r in AuditLog(store).records() if r["action"] == "breach.notify"]


# -- the notice itself ------------------------------------------------------------------------


def test_the_notice_has_what_art_34_requires_in_both_languages(notice_file):
    subject, body = render(load_notice(notice_file, ("nl", "en")), ("nl", "en"), "INC-2026-01")
    assert "datalek" in subject and "data breach" in subject
    for language in ("nl", "en"):
        for part in ("nature", "consequences", "measures"):
            assert NOTICE[language][part] in body
    assert NOTICE["dpo_contact"] in body and "INC-2026-01" in body
    assert body.index("Wat er is gebeurd") < body.index("What happened")
    assert "Do not click links" in body and "Wees extra alert" in body  # given advice, default advice


def test_a_notice_file_missing_required_texts_is_refused_naming_them(tmp_path):
    incomplete = {"organisation": "X", "nl": {"nature": "n"}, "en": {}}
    (tmp_path / "n.json").write_text(json.dumps(incomplete))
    with pytest.raises(Refused) as info:
        load_notice(tmp_path / "n.json", ("nl", "en"))
    for missing in ("'dpo_contact'", "'nl.consequences'", "'nl.measures'", "'en.nature'"):
        assert missing in str(info.value)


def test_smtp_settings_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        load_smtp_settings({"IDENTITY_SMTP_HOST": "mail.example.org", "IDENTITY_SMTP_SECURITY": "none",
                            "IDENTITY_SMTP_USERNAME": "dpo"})
    text = str(info.value)
    assert "IDENTITY_SMTP_FROM" in text and "IDENTITY_SMTP_PASSWORD" in text and "loopback" in text
    settings = load_smtp_settings({"IDENTITY_SMTP_HOST": "mail.example.org", "IDENTITY_SMTP_FROM": "a@b.org",
                                   "IDENTITY_SMTP_PASSWORD": "s3cret", "IDENTITY_SMTP_USERNAME": "dpo"})
    assert (settings.port, settings.security) == (587, "starttls") and "s3cret" not in repr(settings)


# -- delivery ---------------------------------------------------------------------------------


def test_everyone_resolved_gets_one_message_and_each_is_audited(sqlite_store, resolved, inbox, notice_file):
    people, out = resolved
    box, controller = inbox
    report = notify(sqlite_store, out, notice_file,
                    plain_env(controller, IDENTITY_SMTP_FROM="Privacy Voorbeeld <privacy@voorbeeld.nl>"))
    assert report.sent == 11 and report.ok
    assert sorted(box.recipients()) == sorted(people.pseudonyms.values())
    message = email.message_from_bytes(box.messages[0][1], policy=email.policy.default)
    assert message["From"].addresses[0].addr_spec == "privacy@voorbeeld.nl" and "datalek" in message["Subject"]
    assert NOTICE["en"]["measures"] in message.get_content()
    records = notify_records(sqlite_store)
    per_person = [r for r in records if r["details"].get("pseudonym")]
    assert sorted(r["details"]["pseudonym"] for r in per_person) == sorted(people.pseudonyms)
    assert {r["outcome"] for r in per_person} == {"sent"}
    assert "@" not in json.dumps(records)
    assert records[-1]["outcome"] == "completed" and records[-1]["counts"]["sent"] == 11


def test_running_again_sends_nothing_twice(sqlite_store, resolved, inbox, notice_file):
    box, controller = inbox
    notify(sqlite_store, resolved[1], notice_file, plain_env(controller))
    again = notify(sqlite_store, resolved[1], notice_file, plain_env(controller))
    assert again.already_sent == 11 and again.sent == 0 and len(box.messages) == 11


def test_dry_run_sends_nothing_and_changes_nothing(sqlite_store, resolved, inbox, notice_file):
    box, controller = inbox
    report = notify(sqlite_store, resolved[1], notice_file, plain_env(controller), dry_run=True)
    assert report.would_send == 11 and box.messages == []
    assert notify(sqlite_store, resolved[1], notice_file, plain_env(controller)).sent == 11
    assert notify_records(sqlite_store)[0]["outcome"] == "dry-run"


def test_deferred_messages_are_retried_with_backoff(sqlite_store, resolved, inbox, notice_file):
    box, controller = inbox
    box.plan = ["451 4.3.0 try again later", "421 4.7.0 busy"]
    sleeps: list[float] = []
    env = plain_env(controller, IDENTITY_SMTP_BACKOFF="1")
    report = notify(sqlite_store, resolved[1], notice_file, env, sleep=sleeps.append)
    assert report.sent == 11 and len(box.messages) == 11
    assert len(sleeps) == 2 and 1 <= sleeps[0] <= 1.25 and 2 <= sleeps[1] <= 2.5
    first = next(r for r in notify_records(sqlite_store) if r["details"].get("pseudonym"))
    assert first["details"]["attempts"] == 3


def test_a_refused_recipient_is_reported_and_audited_without_its_address(sqlite_store, resolved, inbox,
                                                                         notice_file):
    people, out = resolved
    box, controller = inbox
    victim = next(p for p, e in people.pseudonyms.items() if e == "person7@example.org")
    box.fail_for["person7@example.org"] = "550 5.1.1 <person7@example.org>: mailbox unavailable"
    report = notify(sqlite_store, out, notice_file, plain_env(controller, IDENTITY_SMTP_ATTEMPTS="3"))
    assert (report.sent, report.failed, report.ok) == (10, 1, False)
    failed = [r for r in notify_records(sqlite_store) if r["outcome"] == "failed"]
    assert len(failed) == 1 and failed[0]["details"]["pseudonym"] == victim
    assert failed[0]["details"]["smtp_code"] == 550 and failed[0]["details"]["attempts"] == 1
    assert "person7" not in json.dumps(failed)
    del box.fail_for["person7@example.org"]
    retry = notify(sqlite_store, out, notice_file, plain_env(controller))
    assert (retry.sent, retry.already_sent) == (1, 10) and box.recipients().count("person7@example.org") == 1


def test_a_message_interrupted_mid_send_is_never_sent_again(sqlite_store, resolved, inbox, notice_file):
    people, out = resolved
    box, controller = inbox
    interrupted = people.order[0]
    state = RunState.load(state_path(out))
    state.mark_notice(interrupted, SENDING, 1)
    state.close()
    report = notify(sqlite_store, out, notice_file, plain_env(controller))
    assert (report.sent, report.uncertain, report.ok) == (10, 1, False)
    assert people.pseudonyms[interrupted] not in box.recipients()
    uncertain = [r for r in notify_records(sqlite_store) if r["outcome"] == "uncertain"]
    assert [r["details"]["pseudonym"] for r in uncertain] == [interrupted]


def test_an_unreachable_server_stops_the_phase_and_a_rerun_continues(sqlite_store, resolved, notice_file):
    people, out = resolved
    box = Inbox()
    port = free_port()
    env = {"IDENTITY_SMTP_HOST": "127.0.0.1", "IDENTITY_SMTP_PORT": str(port), "IDENTITY_SMTP_SECURITY": "none",
           "IDENTITY_SMTP_FROM": "privacy@voorbeeld.nl", "IDENTITY_SMTP_ATTEMPTS": "2", "IDENTITY_SMTP_BACKOFF": "0"}
    down = notify(sqlite_store, out, notice_file, env)
    assert down.stopped and down.sent == 0 and down.failed == 1
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        up = notify(sqlite_store, out, notice_file, env)
    finally:
        controller.stop()
    assert up.sent == 11 and sorted(box.recipients()) == sorted(people.pseudonyms.values())


# -- TLS --------------------------------------------------------------------------------------


def test_starttls_with_login_and_a_verified_certificate(sqlite_store, resolved, notice_file, tmp_path):
    ca_file, context = self_signed_tls(tmp_path)
    logins: list[str] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append(auth_data.login.decode())
        ok = auth_data.login == b"dpo" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)

    box = Inbox()
    controller = start(box, tls_context=context, require_starttls=True, authenticator=authenticator,
                       auth_required=True, auth_require_tls=True)
    try:
        env = {"IDENTITY_SMTP_HOST": "127.0.0.1", "IDENTITY_SMTP_PORT": str(controller.port),
               "IDENTITY_SMTP_FROM": "privacy@voorbeeld.nl", "IDENTITY_SMTP_CA_FILE": str(ca_file),
               "IDENTITY_SMTP_USERNAME": "dpo", "IDENTITY_SMTP_PASSWORD": "s3cret", "IDENTITY_SMTP_BACKOFF": "0",
               "IDENTITY_SMTP_TIMEOUT": "5"}
        assert notify(sqlite_store, resolved[1], notice_file, env).sent == 11
        assert len(box.messages) == 11 and set(logins) == {"dpo"}
        wrong = env | {"IDENTITY_SMTP_PASSWORD": "nope"}
        state = RunState.load(state_path(resolved[1]))
        state._conn.execute("DELETE FROM notices")
        state.close()
        refused = notify(sqlite_store, resolved[1], notice_file, wrong)
        assert refused.stopped and "refused the login (535)" in refused.stopped and len(box.messages) == 11
    finally:
        controller.stop()


def test_an_untrusted_certificate_is_refused(sqlite_store, resolved, notice_file, tmp_path):
    _, context = self_signed_tls(tmp_path)
    box = Inbox()
    controller = start(box, tls_context=context, require_starttls=True)
    try:
        env = {"IDENTITY_SMTP_HOST": "127.0.0.1", "IDENTITY_SMTP_PORT": str(controller.port),
               "IDENTITY_SMTP_FROM": "privacy@voorbeeld.nl", "IDENTITY_SMTP_ATTEMPTS": "1"}
        report = notify(sqlite_store, resolved[1], notice_file, env)
        assert report.stopped and box.messages == []
    finally:
        controller.stop()


def test_implicit_tls(sqlite_store, resolved, notice_file, tmp_path):
    ca_file, context = self_signed_tls(tmp_path)
    box = Inbox()
    controller = start(box, ssl_context=context)
    try:
        env = {"IDENTITY_SMTP_HOST": "127.0.0.1", "IDENTITY_SMTP_PORT": str(controller.port),
               "IDENTITY_SMTP_SECURITY": "tls", "IDENTITY_SMTP_FROM": "privacy@voorbeeld.nl",
               "IDENTITY_SMTP_CA_FILE": str(ca_file)}
        assert notify(sqlite_store, resolved[1], notice_file, env).sent == 11
        assert len(box.messages) == 11
    finally:
        controller.stop()


def test_notices_refuse_an_output_replaced_by_a_symbolic_link(sqlite_store, resolved, inbox, notice_file, tmp_path):
    """A link planted at OUT would make the notices go to whatever addresses its target lists."""
    _, out = resolved
    box, controller = inbox
    planted = tmp_path / "planted.csv"
    planted.write_text("pseudonym,email\nabcdefghijklmnopqrstuvwxyz,victim@example.org\n")
    planted.chmod(0o600)
    os.replace(out, tmp_path / "moved.csv")
    os.symlink(planted, out)
    with pytest.raises(Refused, match="symbolic link"):
        notify(sqlite_store, out, notice_file, plain_env(controller))
    assert box.recipients() == []
    assert notify_records(sqlite_store)[-1]["outcome"] == "refused"
