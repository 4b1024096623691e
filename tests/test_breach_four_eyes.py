"""Four-eyes: requests, approvals, and the resolve run refusing anything but a fresh approval bound to it.

The last part replays the security review's reproductions (a second name for oneself, self-approval,
replay through an edited state file, four-eyes off in production): each is now refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.audit import AUDIT_LOG, AuditLog, record_hash
from identity.breach import opening
from identity.breach.errors import BreachError, Refused
from identity.breach.four_eyes import REQUESTS, USE_ACTION, FourEyes, approval_payload, four_eyes_policy
from identity.breach.officers import (fingerprint, generate_key, load_public_key, load_signing_key, public_text,
                                      read_proof)
from identity.breach.output import state_path
from identity.breach.registry import ACTIVE, OFFICERS, PENDING, Registry
from identity.breach.resolve import resolve_pseudonyms
from identity.store import StoreUnavailable
from identity.verify.b64 import b64url_encode
from tests.audit_support import signed_log
from tests.breach_support import FailingStore, Officer, found, params, populate, write_list
from tests.lookup_support import present


@pytest.fixture
def audit(store) -> AuditLog:
    return signed_log(store)


@pytest.fixture
def registry(store, audit) -> Registry:
    return Registry(store, audit)


@pytest.fixture
def officers(registry: Registry) -> dict[str, Officer]:
    anna, bram = Officer("anna"), Officer("bram")
    found(registry, anna, bram)
    return {"anna": anna, "bram": bram}


@pytest.fixture
def listing(store, keys_dir: Path, tmp_path: Path) -> Path:
    return write_list(tmp_path / "affected.txt", populate(store, keys_dir).order)


@pytest.fixture
def four_eyes(store, registry: Registry, audit: AuditLog) -> FourEyes:
    return FourEyes(store, registry, audit)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_request(four_eyes: FourEyes, officers, listing: Path, **overrides) -> dict:
    values = dict(officer="anna", key=officers["anna"].key, incident="INC-2026-01",
                  reason="tracking data leaked from the analytics bucket", pseudonyms_sha256=sha(listing), entries=12)
    values.update(overrides)
    return four_eyes.file(**values)


def approved_request(four_eyes: FourEyes, officers, listing: Path) -> str:
    request = file_request(four_eyes, officers, listing)
    four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"].key)
    return request["request_id"]


def run(store, tmp_path, keys_dir, listing, request_id, **overrides):
    return resolve_pseudonyms(store, signed_log(store), params(tmp_path, keys_dir, listing, request_id=request_id,
                                                             **overrides), four_eyes_required=True)


def never_open(monkeypatch) -> None:
    monkeypatch.setattr(opening, "open_all", lambda *a: pytest.fail("an e-mail was opened"))


def test_keygen_writes_a_private_a_public_and_a_proof_file(tmp_path: Path):
    made = generate_key(tmp_path / "k", "pw", officer="carla")
    assert oct(made.private_path.stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in made.private_path.read_bytes()
    assert len(made.fingerprint) == 64
    public = load_public_key(made.public_path)
    assert read_proof(made.proof_path, "carla", public)
    with pytest.raises(Refused, match="not the proof for officer dirk"):
        read_proof(made.proof_path, "dirk", public)
    with pytest.raises(Refused, match="already exists"):
        generate_key(tmp_path / "k", "pw", officer="carla")
    with pytest.raises(Refused, match="wrong passphrase"):
        load_signing_key(made.private_path, "not it")


def test_approved_request_lets_the_run_go_once(store, four_eyes, officers, listing, tmp_path, keys_dir):
    request = file_request(four_eyes, officers, listing)
    four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"].key, pseudonyms_sha256=sha(listing))
    summary = run(store, tmp_path, keys_dir, listing, request["request_id"])
    assert summary.counts["resolved"] == 11
    assert store.get(REQUESTS, request["request_id"])["status"] == "used"
    (use,) = [r for r in AuditLog(store).records() if r["action"] == USE_ACTION]
    assert use["details"]["request_id"] == request["request_id"] and use["details"]["run_id"] == summary.run_id
    with pytest.raises(Refused, match="already used"):
        run(store, tmp_path, keys_dir, listing, request["request_id"], out=tmp_path / "again.csv")


def test_the_use_is_audited_before_the_run_starts(store, four_eyes, officers, listing, tmp_path, keys_dir):
    run(store, tmp_path, keys_dir, listing, approved_request(four_eyes, officers, listing))
    actions = [r["action"] + "/" + r["outcome"] for r in AuditLog(store).records()][-3:]
    assert actions == [f"{USE_ACTION}/ok", "breach.resolve/started", "breach.resolve/completed"]


def test_a_completed_run_may_be_run_again_with_its_request_and_opens_nothing(
        store, four_eyes, officers, listing, tmp_path, keys_dir, monkeypatch):
    request_id = approved_request(four_eyes, officers, listing)
    run(store, tmp_path, keys_dir, listing, request_id)
    never_open(monkeypatch)
    assert run(store, tmp_path, keys_dir, listing, request_id).resumed


def test_an_interrupted_run_resumes_with_its_request(store, four_eyes, officers, listing, tmp_path, keys_dir):
    request_id = approved_request(four_eyes, officers, listing)
    with pytest.raises(BreachError):
        run(FailingStore(store, 2, StoreUnavailable("connection lost")), tmp_path, keys_dir, listing, request_id)
    summary = run(store, tmp_path, keys_dir, listing, request_id)
    assert summary.resumed and summary.counts["resolved"] == 11


def test_required_request_is_refused_when_absent(store, listing, tmp_path, keys_dir):
    with pytest.raises(Refused, match="second officer's approval is required"):
        run(store, tmp_path, keys_dir, listing, None)
    assert not (tmp_path / "contacts.csv").exists()
    assert [r["outcome"] for r in AuditLog(store).records()] == ["refused"]


def test_unapproved_request_is_refused(store, four_eyes, officers, listing, tmp_path, keys_dir):
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="not approved"):
        run(store, tmp_path, keys_dir, listing, request["request_id"])


def test_nobody_approves_their_own_request(four_eyes, officers, listing):
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="own request"):
        four_eyes.approve(request["request_id"], officer="anna", key=officers["anna"].key)


def test_an_approval_signed_with_someone_elses_key_is_refused(four_eyes, officers, listing):
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="signature of bram does not match"):
        four_eyes.approve(request["request_id"], officer="bram", key=officers["anna"].key)


def test_a_request_signed_with_an_unregistered_key_is_refused(four_eyes, officers, listing):
    with pytest.raises(Refused, match="signature of anna does not match"):
        file_request(four_eyes, officers, listing, key=Ed25519PrivateKey.generate())


def test_approval_checks_the_list_the_approver_holds(four_eyes, officers, listing):
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="not the one"):
        four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"].key, pseudonyms_sha256="0" * 64)


@pytest.mark.parametrize("field, value", [("reason", "curiosity"), ("incident", "INC-OTHER"),
                                          ("pseudonyms_sha256", "f" * 64), ("requested_by", "bram"),
                                          ("approved_by", "anna")])
def test_a_request_altered_in_the_store_is_refused(store, four_eyes, officers, listing, tmp_path, keys_dir,
                                                   field, value):
    request_id = approved_request(four_eyes, officers, listing)
    store.update(REQUESTS, {"request_id": request_id}, {field: value})
    with pytest.raises(Refused, match="altered"):
        run(store, tmp_path, keys_dir, listing, request_id)
    assert not (tmp_path / "contacts.csv").exists()


@pytest.mark.parametrize("field, value, match", [("reason", "another reason", "reason differs"),
                                                 ("incident", "INC-OTHER", "is for incident")])
def test_the_run_must_match_the_approved_request(store, four_eyes, officers, listing, tmp_path, keys_dir,
                                                 field, value, match):
    request_id = approved_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match=match):
        run(store, tmp_path, keys_dir, listing, request_id, **{field: value})


def test_the_run_must_use_the_approved_list(store, four_eyes, officers, listing, tmp_path, keys_dir):
    request_id = approved_request(four_eyes, officers, listing)
    longer = write_list(tmp_path / "longer.txt", listing.read_text().split() + ["a" * 26])
    with pytest.raises(Refused, match="pseudonym list is not the one"):
        run(store, tmp_path, keys_dir, longer, request_id)


def test_a_revoked_officers_approval_no_longer_counts(store, registry, four_eyes, officers, listing, tmp_path,
                                                      keys_dir):
    request_id = approved_request(four_eyes, officers, listing)
    registry.revoke("bram", by="anna", signer=officers["anna"].key)
    assert store.get(OFFICERS, "bram")["status"] == "revoked"
    with pytest.raises(Refused, match="bram is not an active enrolled officer"):
        run(store, tmp_path, keys_dir, listing, request_id)


def test_an_unknown_request_is_refused(store, listing, tmp_path, keys_dir):
    with pytest.raises(Refused, match="no four-eyes request"):
        run(store, tmp_path, keys_dir, listing, "req-nope")


# -- the security review's reproductions, each refused now -------------------------------------------------------


@pytest.mark.parametrize("founded", [False, True])
def test_review_nobody_enrols_officers_without_an_enrolled_officers_signature(registry, store, founded):
    """Reproduction 1a: with free-text ``--by``, one person enrolled ``alice`` and ``alice-2``."""
    if founded:
        found(registry, Officer("anna"), Officer("bram"))
    alice, alice2 = Officer("alice"), Officer("alice-2")
    with pytest.raises(Refused, match="security-lead is not an enrolled officer"):
        registry.enrol("alice", alice.key.public_key(), alice.proof, by="security-lead", signer=alice.key)
    with pytest.raises(Refused, match="alice is not an enrolled officer"):
        registry.enrol("alice-2", alice2.key.public_key(), alice2.proof, by="alice", signer=alice.key)
    assert store.count(OFFICERS, {}) == (2 if founded else 0)


def test_review_an_officer_cannot_enrol_a_second_name_for_themselves(registry, officers, four_eyes, listing):
    """Reproduction 1b: an enrolled officer gives themselves a second name, with a new key or their own."""
    anna, alter_ego = officers["anna"], Officer("anna-2")
    registry.enrol("anna-2", alter_ego.key.public_key(), alter_ego.proof, by="anna", signer=anna.key)
    assert registry.all()[-1]["status"] == PENDING
    with pytest.raises(Refused, match="a second officer must confirm"):
        registry.enrol("anna-2", alter_ego.key.public_key(), alter_ego.proof, by="anna", signer=anna.key)
    with pytest.raises(Refused, match="nobody enrols themselves"):
        registry.enrol("anna-2", alter_ego.key.public_key(), alter_ego.proof, by="anna-2", signer=alter_ego.key)
    same_key = Officer("anna-3", anna.key)
    with pytest.raises(Refused, match="already enrolled"):
        registry.enrol("anna-3", anna.key.public_key(), same_key.proof, by="anna", signer=anna.key)
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="anna-2 is not an active enrolled officer"):
        four_eyes.approve(request["request_id"], officer="anna-2", key=alter_ego.key)


def test_review_an_officer_written_into_the_store_counts_for_nothing(store, officers, four_eyes, listing):
    """Reproduction 1c: an operator with database access inserts a second name and approves with it."""
    mallory, now = Officer("anna-2"), int(time.time()) + 1
    store.insert(OFFICERS, {
        "officer": "anna-2", "kind": "enrolled", "public_key": public_text(mallory.key.public_key()),
        "fingerprint": fingerprint(mallory.key.public_key()), "proof": mallory.proof, "status": ACTIVE,
        "enrolled_by": "bram", "enrolled_at": now, "enrolment_signature": b64url_encode(mallory.key.sign(b"bram")),
        "confirmed_by": "anna", "confirmed_at": now, "confirmation_signature": b64url_encode(mallory.key.sign(b"anna"))})
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="enrolment of anna-2 is not signed by bram"):
        four_eyes.approve(request["request_id"], officer="anna-2", key=mallory.key)


def test_review_the_filer_cannot_approve_under_a_name_that_shares_their_key(store, four_eyes, officers, listing,
                                                                             tmp_path, keys_dir):
    """Reproduction 2: self-approval, under one's own name or as someone else with one's own key."""
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="own request"):
        four_eyes.approve(request["request_id"], officer="anna", key=officers["anna"].key)
    with pytest.raises(Refused, match="signature of bram does not match"):
        four_eyes.approve(request["request_id"], officer="bram", key=officers["anna"].key)
    # the store is edited to say bram approved, with anna's signature: the run refuses it
    doc = store.get(REQUESTS, request["request_id"])
    doc.update(approved_by="bram", approved_at=1, status="approved")
    store.update(REQUESTS, {"request_id": doc["request_id"]}, {
        "approved_by": "bram", "approved_at": 1, "status": "approved",
        "approval_signature": b64url_encode(officers["anna"].key.sign(approval_payload(doc)))})
    with pytest.raises(Refused, match="signature of bram does not match"):
        run(store, tmp_path, keys_dir, listing, request["request_id"])


def edit_state(path: Path, **values) -> None:
    """What an operator can do to the run's state file: it is a plain SQLite file."""
    with sqlite3.connect(path) as conn:
        for name, value in values.items():
            conn.execute("UPDATE meta SET value = ? WHERE name = ?", (json.dumps(value), name))


def test_review_a_finished_run_is_not_reopened_by_editing_its_state_file(
        store, four_eyes, officers, listing, tmp_path, keys_dir, monkeypatch):
    """Reproduction 3a: the used approval's run is "resumed" from the start by an edited state file."""
    request_id = approved_request(four_eyes, officers, listing)
    out = tmp_path / "contacts.csv"
    run(store, tmp_path, keys_dir, listing, request_id)
    edit_state(state_path(out), complete=False, lines_done=0, out_bytes=len(b"pseudonym,email\n"),
               unresolved_bytes=len(b"line,pseudonym,problem\n"), counts={})
    never_open(monkeypatch)
    with pytest.raises(Refused, match="state file was altered"):
        run(store, tmp_path, keys_dir, listing, request_id)
    assert present(AuditLog(store).head())["outcome"] == "refused"


def test_review_a_copied_state_file_does_not_open_a_second_output(
        store, four_eyes, officers, listing, tmp_path, keys_dir, monkeypatch):
    """Reproduction 3b: the finished run's state is copied next to a new, empty output and edited."""
    request_id = approved_request(four_eyes, officers, listing)
    run(store, tmp_path, keys_dir, listing, request_id)
    second = tmp_path / "second.csv"
    second.write_bytes(b"")
    second.chmod(0o600)
    shutil.copy(state_path(tmp_path / "contacts.csv"), state_path(second))
    edit_state(state_path(second), complete=False, lines_done=0, out_bytes=0, unresolved_bytes=0, counts={})
    never_open(monkeypatch)
    with pytest.raises(Refused, match="state file was altered"):
        run(store, tmp_path, keys_dir, listing, request_id, out=second)


def test_review_a_state_file_naming_another_run_cannot_resume_with_the_request(
        store, four_eyes, officers, listing, tmp_path, keys_dir, monkeypatch):
    """Reproduction 3c: the state file is edited to name a new run, and the request document to match."""
    request_id = approved_request(four_eyes, officers, listing)
    run(store, tmp_path, keys_dir, listing, request_id)
    edit_state(state_path(tmp_path / "contacts.csv"), run_id="run-forged", complete=False, lines_done=0)
    never_open(monkeypatch)
    with pytest.raises(Refused, match="not used by run run-forged"):
        run(store, tmp_path, keys_dir, listing, request_id)
    store.update(REQUESTS, {"request_id": request_id}, {"used_run": "run-forged"})
    with pytest.raises(Refused, match="audit log does not bind request"):
        run(store, tmp_path, keys_dir, listing, request_id)


def test_review_a_request_reset_to_approved_in_the_store_is_not_used_again(
        store, four_eyes, officers, listing, tmp_path, keys_dir, monkeypatch):
    """Reproduction 3d: an operator with database access marks the used request approved again."""
    request_id = approved_request(four_eyes, officers, listing)
    run(store, tmp_path, keys_dir, listing, request_id)
    store.update(REQUESTS, {"request_id": request_id}, {"status": "approved", "used_run": None, "used_by": None})
    never_open(monkeypatch)
    with pytest.raises(Refused, match="already used"):
        run(store, tmp_path, keys_dir, listing, request_id, out=tmp_path / "again.csv")
    assert not (tmp_path / "again.csv").exists()


@pytest.mark.parametrize("rehash", [False, True])
def test_review_the_use_record_cannot_be_edited_away(store, four_eyes, officers, listing, tmp_path, keys_dir,
                                                     rehash):
    """Reproduction 3e: the audit record that binds the request to its run is altered in the store."""
    request_id = approved_request(four_eyes, officers, listing)
    run(store, tmp_path, keys_dir, listing, request_id)
    (use,) = store.find(AUDIT_LOG, {"action": USE_ACTION})
    use["details"] = {**use["details"], "request_id": "req-other"}
    store.update(AUDIT_LOG, {"seq": use["seq"]}, {"details": use["details"]} | (
        {"hash": record_hash(use)} if rehash else {}))
    store.update(REQUESTS, {"request_id": request_id}, {"status": "approved"})
    problem = f"record {use['seq'] + 1} does not follow" if rehash else f"record {use['seq']} was altered"
    with pytest.raises(Refused, match=problem):
        run(store, tmp_path, keys_dir, listing, request_id, out=tmp_path / "again.csv")


@pytest.mark.parametrize("production, required, outcome", [(True, True, True), (True, False, None),
                                                           (False, False, False), (False, True, True)])
def test_review_production_never_resolves_with_four_eyes_off(production, required, outcome):
    """Reproduction 4 (library half; tests/test_breach_cli.py runs the script)."""
    if outcome is None:
        with pytest.raises(Refused, match="production never resolves"):
            four_eyes_policy(production=production, required=required)
    else:
        assert four_eyes_policy(production=production, required=required) is outcome
