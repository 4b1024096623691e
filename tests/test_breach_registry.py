"""The officer registry: the founding ceremony, enrolment by two officers, signed revocation, verified chains.

Every record the registry hands out must chain back to the founding ceremony; records written into
the store by anyone else (an operator with database access) are tried here and refused.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.audit import AuditLog
from identity.breach import ceremony
from identity.breach.ceremony import Founding
from identity.breach.errors import Refused
from identity.breach.officers import fingerprint, public_from_text, public_text, sign_claim
from identity.breach.registry import (ACTIVE, ENROL_ACTION, FOUND_ACTION, FOUNDINGS, OFFICERS, PENDING, REVOKE_ACTION,
                                      Registry)
from identity.store import StoreUnavailable
from identity.verify.b64 import b64url_encode
from tests.audit_support import SERVICE_SIGNER, signed_log
from tests.breach_support import Officer, enrol, found


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audit(store) -> AuditLog:
    return signed_log(store)


@pytest.fixture
def registry(store, audit, clock) -> Registry:
    return Registry(store, audit, clock=clock)


@pytest.fixture
def people() -> dict[str, Officer]:
    return {name: Officer(name) for name in ("anna", "bram", "carla", "dirk")}


@pytest.fixture
def founded(registry, people, clock) -> dict[str, Officer]:
    found(registry, people["anna"], people["bram"], now=clock.now)
    clock.now += 10
    return people


def actions(audit: AuditLog) -> list[tuple[str, str]]:
    return [(r["action"], r["outcome"]) for r in audit.records()]


# -- the founding ceremony ---------------------------------------------------------------------------------------


def test_the_founding_ceremony_enrols_both_founders(registry, founded, audit):
    for name in ("anna", "bram"):
        key, print_ = registry.public_key(name)
        assert print_ == fingerprint(founded[name].key.public_key()) == fingerprint(key)
    (record,) = audit.records()
    assert (record["action"], record["actor"]) == (FOUND_ACTION, "bram")
    assert record["details"]["founders"] == ["anna", "bram"] and len(record["details"]["statement_sha256"]) == 64
    assert [(o["officer"], o["verified"], o["active"]) for o in registry.all()] == [("anna", True, True),
                                                                                     ("bram", True, True)]


def test_the_founding_needs_both_founders_signatures(registry, people, store):
    started = ceremony.start("anna", people["anna"].key, "bram", people["bram"].key.public_key(), now=1)
    with pytest.raises(Refused, match="not signed by bram yet"):
        registry.found(started, by="anna")
    forged = Founding(started.statement, {**started.signatures, "bram": started.signatures["anna"]})
    with pytest.raises(Refused, match="signature of bram does not match"):
        registry.found(forged, by="bram")
    assert store.count(OFFICERS, {}) == 0 and store.get(FOUNDINGS, "founding") is None


def test_each_founder_signs_with_the_key_the_statement_names(people):
    started = ceremony.start("anna", people["anna"].key, "bram", people["bram"].key.public_key(), now=1)
    with pytest.raises(Refused, match="not the one the founding statement names for bram"):
        started.sign("bram", people["anna"].key)
    with pytest.raises(Refused, match="does not name carla"):
        started.sign("carla", people["carla"].key)


@pytest.mark.parametrize("cofounder, same_key", [("anna", False), ("bram", True)])
def test_the_founders_are_two_names_with_two_keys(people, cofounder, same_key):
    key = people["anna"].key.public_key() if same_key else people["bram"].key.public_key()
    with pytest.raises(Refused, match="two different officers with two different keys"):
        ceremony.start("anna", people["anna"].key, cofounder, key, now=1)


def test_the_ceremony_happens_only_once(registry, founded, store):
    again = ceremony.start("carla", founded["carla"].key, "dirk", founded["dirk"].key.public_key(), now=2)
    with pytest.raises(Refused, match="already founded"):
        registry.found(again.sign("dirk", founded["dirk"].key), by="dirk")
    store.delete(OFFICERS, {})  # an operator empties the registry to found it with keys of their own
    store.delete(FOUNDINGS, {})
    with pytest.raises(Refused, match="audit log records an earlier founding"):
        registry.found(again.sign("dirk", founded["dirk"].key), by="dirk")


def test_a_founding_written_into_the_store_is_not_the_audited_one(registry, founded, store):
    again = ceremony.start("carla", founded["carla"].key, "dirk", founded["dirk"].key.public_key(), now=2)
    again = again.sign("dirk", founded["dirk"].key)
    store.delete(OFFICERS, {})
    store.update(FOUNDINGS, {"ceremony": "founding"}, {"statement": again.statement, "signatures": again.signatures})
    for one in again.founders:
        store.insert(OFFICERS, {"officer": one.officer, "kind": "founder", "public_key": one.public_key,
                                "fingerprint": fingerprint(one.key), "status": ACTIVE})
    with pytest.raises(Refused, match="not the one the audit log records"):
        registry.public_key("carla")


def test_a_founding_record_inserted_before_the_chain_is_refused(registry, founded, store, audit):
    """An operator stores an ``officers.found`` record at seq -1 (its own hash right, no chain through it) so
    that it comes first among the founding records: nothing relies on it, and ``verify`` names it."""
    from identity.audit import AUDIT_LOG, record_hash
    from tests.audit_support import trusted
    real = next(r for r in audit.records() if r["action"] == FOUND_ACTION)
    forged = {**real, "seq": -1, "prev_hash": "0" * 64, "signer": None, "signature": None,
              "details": {**real["details"], "statement_sha256": "f" * 64}}
    forged["hash"] = record_hash(forged)
    store.insert(AUDIT_LOG, forged)
    registry_now = Registry(store, audit)
    with pytest.raises(Refused, match="outside the chain"):
        registry_now.public_key("anna")
    report = audit.verify_chain(keys=trusted())
    assert not report.ok and any("before record 1, outside the chain" in p for p in report.problems)


def test_a_record_relinked_to_the_next_one_alone_is_refused(registry, founded, store, audit, clock):
    """Changing a revocation in place and re-linking only the record after it: that record's own hash no longer
    holds, so the revocation is not relied on (it used to be, until ``verify`` ran)."""
    from identity.audit import AUDIT_LOG, record_hash
    anna, bram, carla = founded["anna"], founded["bram"], founded["carla"]
    enrol(registry, carla, anna, bram)
    registry.revoke("carla", by="anna", signer=anna.key)
    audit.append(actor="svc", action="something.after")
    revocation = next(r for r in audit.records() if r["action"] == REVOKE_ACTION)
    changed = {**revocation, "details": {**revocation["details"], "fingerprint": "0" * 64}}
    changed["hash"] = record_hash(changed)
    store.update(AUDIT_LOG, {"seq": changed["seq"]}, {"details": changed["details"], "hash": changed["hash"]})
    store.update(AUDIT_LOG, {"seq": changed["seq"] + 1}, {"prev_hash": changed["hash"]})
    with pytest.raises(Refused, match=f"record {changed['seq'] + 1} was altered"):
        Registry(store, audit, clock=clock).public_key("carla")


class FailingAudit(AuditLog):
    def __init__(self, store, failures: int) -> None:
        super().__init__(store, signer=SERVICE_SIGNER)
        self.failures = failures

    def append(self, **kwargs):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("connection lost")
        return super().append(**kwargs)


def test_a_founding_cut_short_before_its_audit_record_is_finished_by_running_it_again(store, people):
    signed = ceremony.start("anna", people["anna"].key, "bram", people["bram"].key.public_key(), now=1)
    signed = signed.sign("bram", people["bram"].key)
    flaky = Registry(store, FailingAudit(store, 1))
    with pytest.raises(StoreUnavailable):
        flaky.found(signed, by="bram")
    with pytest.raises(Refused, match="not the one the audit log records"):
        flaky.public_key("anna")
    assert flaky.found(signed, by="bram")["status"] == "founded"
    assert flaky.public_key("anna")
    with pytest.raises(Refused, match="already founded"):
        flaky.found(signed, by="bram")


# -- enrolment ---------------------------------------------------------------------------------------------------


def test_an_enrolment_needs_a_second_officer_to_confirm_it(registry, founded, audit):
    carla = founded["carla"]
    registry.enrol("carla", carla.key.public_key(), carla.proof, by="anna", signer=founded["anna"].key)
    with pytest.raises(Refused, match="carla is not an active enrolled officer"):
        registry.public_key("carla")
    registry.enrol("carla", carla.key.public_key(), carla.proof, by="bram", signer=founded["bram"].key)
    assert registry.public_key("carla")[1] == fingerprint(carla.key.public_key())
    assert actions(audit)[1:] == [(ENROL_ACTION, PENDING), (ENROL_ACTION, "ok")]
    assert [r["actor"] for r in audit.records()][1:] == ["anna", "bram"]


def test_the_confirming_officer_must_be_shown_the_same_key(registry, founded):
    carla, impostor = founded["carla"], Officer("carla")
    registry.enrol("carla", carla.key.public_key(), carla.proof, by="anna", signer=founded["anna"].key)
    with pytest.raises(Refused, match="names another key"):
        registry.enrol("carla", impostor.key.public_key(), impostor.proof, by="bram", signer=founded["bram"].key)


def test_the_proof_of_possession_is_the_enrolees(registry, founded):
    carla, anna = founded["carla"], founded["anna"]
    with pytest.raises(Refused, match="proof of possession is not carla's"):
        registry.enrol("carla", carla.key.public_key(), sign_claim("carla", anna.key), by="anna", signer=anna.key)
    with pytest.raises(Refused, match="proof of possession is not carla's"):
        registry.enrol("carla", carla.key.public_key(), sign_claim("dirk", carla.key), by="anna", signer=anna.key)


def test_the_enrolling_officer_signs_with_their_own_key(registry, founded):
    carla = founded["carla"]
    with pytest.raises(Refused, match="not the one enrolled for anna"):
        registry.enrol("carla", carla.key.public_key(), carla.proof, by="anna", signer=founded["bram"].key)


def test_names_and_keys_are_never_reused(registry, founded):
    anna, bram, carla = founded["anna"], founded["bram"], founded["carla"]
    enrol(registry, carla, anna, bram)
    with pytest.raises(Refused, match="already enrolled"):
        enrol(registry, carla, anna, bram)
    with pytest.raises(Refused, match="already enrolled"):
        enrol(registry, Officer("dirk", carla.key), anna, bram)
    registry.revoke("carla", by="anna", signer=anna.key)
    with pytest.raises(Refused, match="was revoked"):
        enrol(registry, Officer("carla"), anna, bram)


def test_a_pending_officer_signs_nothing(registry, founded):
    anna, carla, dirk = founded["anna"], founded["carla"], founded["dirk"]
    registry.enrol("carla", carla.key.public_key(), carla.proof, by="anna", signer=anna.key)
    with pytest.raises(Refused, match="carla is not an active enrolled officer"):
        registry.enrol("dirk", dirk.key.public_key(), dirk.proof, by="carla", signer=carla.key)
    with pytest.raises(Refused, match="carla is not an active enrolled officer"):
        registry.revoke("anna", by="carla", signer=carla.key)


def test_enrolled_officers_enrol_others(registry, founded, clock):
    anna, bram, carla, dirk = (founded[n] for n in ("anna", "bram", "carla", "dirk"))
    enrol(registry, carla, anna, bram)
    clock.now += 10
    enrol(registry, dirk, carla, anna)
    assert registry.public_key("dirk")


# -- revocation --------------------------------------------------------------------------------------------------


def test_revocation_is_signed_by_another_active_officer(registry, founded, audit):
    anna, bram = founded["anna"], founded["bram"]
    with pytest.raises(Refused, match="nobody revokes themselves"):
        registry.revoke("anna", by="anna", signer=anna.key)
    with pytest.raises(Refused, match="mallory is not an enrolled officer"):
        registry.revoke("anna", by="mallory", signer=Ed25519PrivateKey.generate())
    with pytest.raises(Refused, match="not the one enrolled for bram"):
        registry.revoke("anna", by="bram", signer=anna.key)
    registry.revoke("anna", by="bram", signer=bram.key)
    with pytest.raises(Refused, match="anna is not an active enrolled officer"):
        registry.public_key("anna")
    with pytest.raises(Refused, match="anna is not an active enrolled officer"):
        registry.revoke("bram", by="anna", signer=anna.key)
    (record,) = [r for r in audit.records() if r["action"] == REVOKE_ACTION]
    assert record["actor"] == "bram" and record["details"]["fingerprint"] == fingerprint(anna.key.public_key())


def test_officers_stay_enrolled_when_an_officer_who_enrolled_them_leaves(registry, founded, clock):
    anna, bram, carla = founded["anna"], founded["bram"], founded["carla"]
    enrol(registry, carla, anna, bram)
    clock.now += 10
    registry.revoke("anna", by="bram", signer=bram.key)
    assert registry.public_key("carla")


def test_a_revocation_undone_in_the_store_still_counts(registry, founded, store):
    anna, bram, carla = founded["anna"], founded["bram"], founded["carla"]
    enrol(registry, carla, anna, bram)
    registry.revoke("carla", by="anna", signer=anna.key)
    store.update(OFFICERS, {"officer": "carla"}, {"status": ACTIVE, "revoked_by": None, "revoked_at": None,
                                                  "revocation_signature": None})
    with pytest.raises(Refused, match="carla is not an active enrolled officer"):
        registry.public_key("carla")


def test_a_signature_made_after_the_signer_was_revoked_does_not_count(registry, founded, store, clock):
    anna, bram, carla = founded["anna"], founded["bram"], founded["carla"]
    enrol(registry, carla, anna, bram)
    clock.now += 10
    registry.revoke("anna", by="bram", signer=bram.key)
    # the revoked key's holder, with database access, re-signs carla's enrolment as of now
    late = {**store.get(OFFICERS, "carla"), "enrolled_at": int(clock.now) + 5}
    from identity.breach.statements import enrolment
    store.update(OFFICERS, {"officer": "carla"}, {"enrolled_at": late["enrolled_at"],
                                                  "enrolment_signature": b64url_encode(anna.key.sign(enrolment(late)))})
    with pytest.raises(Refused, match="signed by anna, who was not an active officer then"):
        registry.public_key("carla")


# -- records written into the store by someone else ----------------------------------------------------------------


def forged_record(officer: Officer, **fields) -> dict:
    public = officer.key.public_key()
    return {"officer": officer.name, "kind": "enrolled", "public_key": public_text(public),
            "fingerprint": fingerprint(public), "proof": officer.proof, "status": ACTIVE, **fields}


def test_an_enrolment_signed_with_a_revoked_key_and_dated_back_is_never_confirmed(registry, founded, store, clock):
    """One person, alone: anna re-keyed (her old name revoked, enrolled anew as anna2 by two colleagues). With
    her revoked key and database access she writes a pending enrolment of a third name dated before the
    revocation, and confirms it as anna2: two names for one person, unless the enroller must be active when
    the enrolment is confirmed."""
    from identity.breach.officers import public_text
    from identity.breach.statements import confirmation, enrolment
    from tests.breach_support import Officer
    anna, bram, carla = founded["anna"], founded["bram"], founded["carla"]
    enrol(registry, carla, anna, bram)
    clock.now += 100
    registry.revoke("anna", by="bram", signer=bram.key)
    clock.now += 100
    anna2, anna3 = Officer("anna2"), Officer("anna3")
    enrol(registry, anna2, bram, carla)
    clock.now += 100
    public = anna3.key.public_key()
    backdated = {"officer": "anna3", "kind": "enrolled", "public_key": public_text(public),
                 "fingerprint": fingerprint(public), "proof": anna3.proof, "enrolled_by": "anna",
                 "enrolled_at": int(clock.now) - 250, "status": PENDING}  # while anna was still an officer
    backdated["enrolment_signature"] = b64url_encode(anna.key.sign(enrolment(backdated)))
    store.insert(OFFICERS, backdated)
    with pytest.raises(Refused, match="anna, who signed the enrolment of anna3, is no longer an active officer"):
        registry.enrol("anna3", public, anna3.proof, by="anna2", signer=anna2.key)
    # confirmed by writing the store directly, dated now or back: either way it counts for nothing
    for confirmed_at in (int(clock.now), int(clock.now) - 250):
        done = {**backdated, "confirmed_by": "anna2", "confirmed_at": confirmed_at, "status": ACTIVE}
        done["confirmation_signature"] = b64url_encode(anna2.key.sign(confirmation(done)))
        store.update(OFFICERS, {"officer": "anna3"}, {k: done[k] for k in (
            "confirmed_by", "confirmed_at", "confirmation_signature", "status")})
        with pytest.raises(Refused):
            Registry(store, registry._audit, clock=clock).public_key("anna3")


def test_an_inserted_founder_is_refused(registry, founded, store):
    store.insert(OFFICERS, forged_record(founded["carla"], kind="founder"))
    with pytest.raises(Refused, match="founding statement does not name carla"):
        registry.public_key("carla")


def test_a_founders_key_changed_in_the_store_is_refused(registry, founded, store):
    mallory = Officer("anna")
    store.update(OFFICERS, {"officer": "anna"}, {"public_key": public_text(mallory.key.public_key()),
                                                 "fingerprint": fingerprint(mallory.key.public_key())})
    with pytest.raises(Refused, match="not the one the founding ceremony names"):
        registry.public_key("anna")


def test_an_enrolment_copied_onto_another_key_is_refused(registry, founded, store, clock):
    anna, bram, carla = founded["anna"], founded["bram"], founded["carla"]
    enrol(registry, carla, anna, bram)
    signed = store.get(OFFICERS, "carla")
    mallory = Officer("mallory")
    copied = {k: signed[k] for k in ("enrolled_by", "enrolled_at", "enrolment_signature", "confirmed_by",
                                     "confirmed_at", "confirmation_signature")}
    store.insert(OFFICERS, forged_record(mallory, **copied))
    with pytest.raises(Refused, match="enrolment of mallory is not signed by anna"):
        registry.public_key("mallory")


def test_a_pending_enrolment_marked_active_in_the_store_is_refused(registry, founded, store):
    carla = founded["carla"]
    registry.enrol("carla", carla.key.public_key(), carla.proof, by="anna", signer=founded["anna"].key)
    store.update(OFFICERS, {"officer": "carla"}, {"status": ACTIVE})
    with pytest.raises(Refused, match="confirmation of carla is incomplete"):
        registry.public_key("carla")


def test_an_enrolment_confirmed_by_its_own_enroller_in_the_store_is_refused(registry, founded, store):
    anna, carla = founded["anna"], founded["carla"]
    registry.enrol("carla", carla.key.public_key(), carla.proof, by="anna", signer=anna.key)
    doc = {**store.get(OFFICERS, "carla"), "confirmed_by": "anna", "confirmed_at": int(registry._clock())}
    from identity.breach.statements import confirmation
    store.update(OFFICERS, {"officer": "carla"}, {
        "status": ACTIVE, "confirmed_by": "anna", "confirmed_at": doc["confirmed_at"],
        "confirmation_signature": b64url_encode(anna.key.sign(confirmation(doc)))})
    with pytest.raises(Refused, match="not confirmed by a second officer"):
        registry.public_key("carla")


def test_an_enrolment_chain_that_loops_is_refused(registry, founded, store):
    x, y = Officer("x"), Officer("y")
    store.insert(OFFICERS, forged_record(x, enrolled_by="y", enrolled_at=1, enrolment_signature="AA"))
    store.insert(OFFICERS, forged_record(y, enrolled_by="x", enrolled_at=1, enrolment_signature="AA"))
    with pytest.raises(Refused, match="chain of x loops"):
        registry.public_key("x")


def test_the_listing_shows_which_records_verify(registry, founded, store):
    store.insert(OFFICERS, forged_record(founded["carla"], enrolled_by="anna", enrolled_at=1,
                                         enrolment_signature="AA"))
    listed = {o["officer"]: o for o in registry.all()}
    assert listed["anna"]["verified"] and not listed["carla"]["verified"]
    assert "not an active officer then" in listed["carla"]["problem"]
    assert all("signature" not in key and key != "proof" for o in listed.values() for key in o)


@pytest.mark.parametrize("stored", [None, 7, b"", "not*a*key", "AAAA"])
def test_a_stored_officer_public_key_that_is_not_ed25519_text_is_refused(people, stored):
    """Whatever the store hands back (bytes included, as a MongoDB binary would come), a clear refusal."""
    with pytest.raises(Refused, match="a stored officer public key is not an Ed25519 key"):
        public_from_text(stored)
    anna = people["anna"].key.public_key()
    assert public_from_text(public_text(anna)) == anna
    with pytest.raises(Refused):
        public_from_text(public_text(anna).encode("ascii"))  # type: ignore[arg-type]  # bytes on purpose: refused
