"""``scripts/subjects.py``: operators act on data-subject requests; JSON out, audited."""

from __future__ import annotations

import json
import time

import pytest

from identity import create_app
from identity.audit import AuditLog
from identity.vault import IDENTITIES
from tests.test_scripts_oauth import cli, env  # noqa: F401  (fixture)


def test_show_restrict_unrestrict_erase(env, settings):
    app = create_app(settings)
    services = app.extensions["identity"]
    pseudonym = services.vault.pseudonymise("someone@example.org").identity.pseudonym

    shown = cli("subjects.py", "show", pseudonym, env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "active"
    assert "example.org" not in shown.stdout
    assert json.loads(cli("subjects.py", "restrict", pseudonym, "--reason", "ticket 42", env=env).stdout)["status"] == "restricted"
    assert cli("subjects.py", "restrict", pseudonym, "--reason", "again", env=env).returncode == 1
    assert json.loads(cli("subjects.py", "unrestrict", pseudonym, "--reason", "done", env=env).stdout)["status"] == "active"
    erased = cli("subjects.py", "erase", pseudonym, "--reason", "request by e-mail", env=env)
    assert erased.returncode == 0 and json.loads(erased.stdout)["status"] == "erased"
    assert cli("subjects.py", "show", pseudonym, env=env).returncode == 1
    assert cli("subjects.py", "erase", pseudonym, "--reason", "twice", env=env).returncode == 1
    assert cli("subjects.py", "erase", pseudonym, env=env).returncode == 2  # --reason is required
    actions = [(r["action"], r["actor"], r["reason"]) for r in AuditLog(services.store).records()]
    assert actions == [("subjects.show", "ops-alice", None),  # reading the record is an access: audited too
                       ("subjects.restrict", "ops-alice", "ticket 42"), ("subjects.unrestrict", "ops-alice", "done"),
                       ("subjects.erase", "ops-alice", "request by e-mail")]


def test_purge_dry_run_and_real(env, settings):
    app = create_app(settings)
    app.extensions["identity"].vault.pseudonymise("old@example.org")
    dry = cli("subjects.py", "purge", "--inactive-for", "24m", "--dry-run", env=env)
    assert dry.returncode == 0 and json.loads(dry.stdout)["identities_to_erase"] == 0
    real = json.loads(cli("subjects.py", "purge", "--inactive-for", "1d", env=env).stdout)
    assert real["identities_erased"] == 0 and real["dry_run"] is False
    assert cli("subjects.py", "purge", "--inactive-for", "soon", env=env).returncode == 2


def test_close_and_reopen(env, settings):
    app = create_app(settings)
    pseudonym = app.extensions["identity"].vault.pseudonymise("leaving@example.org").identity.pseudonym
    closed = cli("subjects.py", "close", pseudonym, "--reason", "contract cancelled", env=env)
    assert closed.returncode == 0 and json.loads(closed.stdout)["status"] == "closed"
    again = cli("subjects.py", "close", pseudonym, "--reason", "twice", env=env)
    assert again.returncode == 1 and "no active identity" in again.stderr
    reopened = cli("subjects.py", "reopen", pseudonym, "--reason", "withdrawn", env=env)
    assert json.loads(reopened.stdout)["status"] == "active"
    assert "no closed identity" in cli("subjects.py", "reopen", pseudonym, "--reason", "x", env=env).stderr


def app_ready(settings) -> dict:
    return create_app(settings).test_client().get("/readyz").json


def test_purge_defaults_and_the_promise(env, settings):
    assert app_ready(settings)["retention"]["last_purge_at"] is None
    dry = json.loads(cli("subjects.py", "purge", "--dry-run", env=env).stdout)
    assert dry["cancelled_to_erase"] == 0 and dry["identities_to_erase"] == 0
    real = json.loads(cli("subjects.py", "purge", env=env).stdout)
    assert real["cancelled_erased"] == 0 and real["inactive_since"] < real["closed_before"]  # 24 months, 30 days
    assert app_ready(settings)["retention"]["stale"] is False  # the run was recorded
    too_late = cli("subjects.py", "purge", "--cancelled-for", "3m", env=env)
    assert too_late.returncode == 2 and "2 months" in too_late.stderr
    assert cli("subjects.py", "purge", "--cancelled-for", "59d", "--dry-run", env=env).returncode == 0


def test_a_request_forwarded_by_a_service_names_the_person_by_its_sectors_subject(env, settings):
    app = create_app(settings)
    services = app.extensions["identity"]
    pseudonym = services.vault.pseudonymise("someone@example.org").identity.pseudonym
    subject = services.oauth.subjects.in_sector("diary.example", pseudonym)

    shown = cli("subjects.py", "show", subject, "--sector", "diary.example", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["pseudonym"] == pseudonym
    wrong = cli("subjects.py", "erase", subject, "--sector", "chat.example", "--reason", "forwarded", env=env)
    assert wrong.returncode == 1 and "wrong sector" in wrong.stderr
    assert services.vault.find(pseudonym).status == "active"
    erased = cli("subjects.py", "erase", subject, "--sector", "diary.example", "--reason", "forwarded", env=env)
    assert erased.returncode == 0 and json.loads(erased.stdout)["status"] == "erased"
    again = cli("subjects.py", "show", subject, "--sector", "diary.example", env=env)
    assert again.returncode == 1  # erased: the subject never resolves again
    records = [(r["action"], r["outcome"], r["details"]) for r in AuditLog(services.store).records()]
    assert records[0] == ("subjects.show", "ok", {"pseudonym": pseudonym})
    assert records[1][:2] == ("subjects.erase", "refused") and records[1][2]["sector"] == "chat.example"
    assert records[2] == ("subjects.erase", "ok", {"pseudonym": pseudonym})
    assert records[3][:2] == ("subjects.show", "refused")


def test_a_reason_holding_an_e_mail_address_is_refused_before_anything_is_done(env, settings):
    """The audit log keeps a reason for good, next to the pseudonym, after erasure forgot the person's address."""
    services = create_app(settings).extensions["identity"]
    pseudonym = services.vault.pseudonymise("alice@example.org").identity.pseudonym
    subject = services.oauth.subjects.in_sector("diary.example", pseudonym)
    for args in (("erase", pseudonym), ("restrict", pseudonym), ("close", pseudonym), ("show", pseudonym),
                 ("erase", subject, "--sector", "diary.example"), ("erase", subject, "--sector", "chat.example")):
        refused = cli("subjects.py", *args, "--reason", "Art. 17 request mailed by Alice@Example.org", env=env)
        assert refused.returncode == 2 and "e-mail address" in refused.stderr, refused.stderr
        assert "example.org" not in refused.stderr.lower() and "Traceback" not in refused.stderr
    assert services.vault.find(pseudonym).status == "active"
    assert list(AuditLog(services.store).records()) == []


def test_show_is_audited_and_names_the_person_by_pseudonym_only(env, settings):
    services = create_app(settings).extensions["identity"]
    pseudonym = services.vault.pseudonymise("someone@example.org").identity.pseudonym
    subject = services.oauth.subjects.in_sector("diary.example", pseudonym)
    assert cli("subjects.py", "show", pseudonym, "--reason", "Art. 15 request, ticket 12", env=env).returncode == 0
    assert json.loads(cli("subjects.py", "show", subject, "--sector", "diary.example", env=env).stdout)["status"]
    records = [(r["action"], r["outcome"], r["actor"], r["reason"], r["details"])
               for r in AuditLog(services.store).records()]
    assert records == [("subjects.show", "ok", "ops-alice", "Art. 15 request, ticket 12", {"pseudonym": pseudonym}),
                       ("subjects.show", "ok", "ops-alice", None, {"pseudonym": pseudonym})]
    assert "example.org" not in json.dumps(records)
    assert [h["action"] for h in services.rights.export(pseudonym)["history"]] == ["subjects.show"] * 2


@pytest.mark.parametrize("args", [
    ("show", "UPPERCASE" * 3),
    ("show", "someone@example.org"),
    ("show", "x" * 5000),
    ("show", "\u00e9" * 26, "--sector", "diary.example"),
    ("show", "{pseudonym}", "--sector", "b\u00fccher.example"),
    ("erase", "{pseudonym}", "--sector", "", "--reason", "forwarded"),
    ("erase", "{pseudonym}", "--sector", "someone@example.org", "--reason", "forwarded"),
    ("restrict", "{pseudonym}", "--reason", "x" * 100_000),
])
def test_an_identifier_sector_or_reason_that_cannot_be_one_is_refused_unaudited(env, settings, args):
    services = create_app(settings).extensions["identity"]
    pseudonym = services.vault.pseudonymise("someone@example.org").identity.pseudonym
    refused = cli("subjects.py", *(a.format(pseudonym=pseudonym) for a in args), env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "someone@" not in refused.stderr and len(refused.stderr) < 500
    assert services.vault.find(pseudonym).status == "active" and list(AuditLog(services.store).records()) == []


def test_a_period_beyond_a_century_is_refused_before_anything_is_erased(env, settings):
    """``--inactive-for 9999y`` (meant as "never for inactivity") erased closed accounts, then crashed unaudited."""
    services = create_app(settings).extensions["identity"]
    pseudonym = services.vault.pseudonymise("leaving@example.org").identity.pseudonym
    services.rights.close(pseudonym, actor="ops", reason="contract ended")
    services.store.update(IDENTITIES, {"pseudonym": pseudonym}, {"status_changed_at": int(time.time()) - 40 * 86400})
    refused = cli("subjects.py", "purge", "--inactive-for", "9999y", env=env)
    assert refused.returncode == 2 and "at most 100 years" in refused.stderr and "Traceback" not in refused.stderr
    assert services.vault.find(pseudonym).status == "closed"
    century = json.loads(cli("subjects.py", "purge", "--inactive-for", "100y", env=env).stdout)
    assert century["cancelled_erased"] == 1 and services.vault.find(pseudonym).status == "erased"
    assert [r["action"] for r in AuditLog(services.store).records()] == ["subjects.close", "subjects.purge"]
