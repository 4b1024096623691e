"""The hash-chained audit log: appends, concurrent appends, and tamper detection of every kind."""

from __future__ import annotations

import threading

import pytest

from identity.audit import AUDIT_LOG, AuditLog, record_hash, subjects_hash


@pytest.fixture
def audit(store) -> AuditLog:
    log = AuditLog(store, clock=lambda: 1000.0)
    for i in range(5):
        log.append(actor="dpo", action="test", reason=f"r{i}", incident="INC-1" if i % 2 else "INC-2")
    return log


def test_a_sound_chain_verifies_and_names_its_head(audit: AuditLog):
    report = audit.verify_chain()
    assert report.ok and report.count == 5 and report.head_hash == audit.head()["hash"]


def test_records_filter_by_incident(audit: AuditLog):
    assert [r["reason"] for r in audit.records(incident="INC-1")] == ["r1", "r3"]


def test_subjects_hash_hides_the_list_and_ignores_order():
    assert subjects_hash(["b", "a"]) == subjects_hash(["a", "b", "a"])
    assert len(subjects_hash(["a"])) == 64 and subjects_hash(["a"]) != subjects_hash(["b"])


def test_changed_record_is_detected(audit: AuditLog, store):
    store.update(AUDIT_LOG, {"seq": 3}, {"reason": "something else"})
    report = audit.verify_chain()
    assert not report.ok and report.first_bad_seq == 3 and "altered" in report.problem


def test_changed_record_with_recomputed_hash_breaks_the_next_link(audit: AuditLog, store):
    doc = store.get(AUDIT_LOG, 3)
    doc["reason"] = "forged"
    store.update(AUDIT_LOG, {"seq": 3}, {"reason": "forged", "hash": record_hash(doc)})
    report = audit.verify_chain()
    assert not report.ok and report.first_bad_seq == 4


def test_deleted_record_is_detected(audit: AuditLog, store):
    store.delete(AUDIT_LOG, {"seq": 2})
    report = audit.verify_chain()
    assert not report.ok and report.first_bad_seq == 2 and "missing" in report.problem


def test_deleted_last_record_changes_the_head(audit: AuditLog, store):
    head = audit.head()["hash"]
    store.delete(AUDIT_LOG, {"seq": 5})
    report = audit.verify_chain()
    assert report.ok and report.head_hash != head  # only a head kept elsewhere shows truncation


def test_inserted_record_is_detected(audit: AuditLog, store):
    moved = [store.get(AUDIT_LOG, s) for s in (5, 4, 3)]
    for doc in moved:
        store.delete(AUDIT_LOG, {"seq": doc["seq"]})
        doc["seq"] += 1
        store.insert(AUDIT_LOG, doc)
    fake = {"seq": 3, "at": 1.0, "actor": "intruder", "action": "test", "outcome": "ok", "prev_hash": "0" * 64}
    fake["hash"] = record_hash(fake)
    store.insert(AUDIT_LOG, fake)
    report = audit.verify_chain()
    assert not report.ok and report.first_bad_seq == 3


def test_reordered_records_are_detected(audit: AuditLog, store):
    two, three = store.get(AUDIT_LOG, 2), store.get(AUDIT_LOG, 3)
    store.delete(AUDIT_LOG, {"seq": 2})
    store.delete(AUDIT_LOG, {"seq": 3})
    two["seq"], three["seq"] = 3, 2
    store.insert(AUDIT_LOG, two)
    store.insert(AUDIT_LOG, three)
    report = audit.verify_chain()
    assert not report.ok and report.first_bad_seq == 2


def test_concurrent_appends_keep_one_unbroken_chain(sqlite_store):
    """Threads race for the next ``seq``; the unique key settles it. (SQLite only: mongomock's unique
    check is not atomic under threads, unlike a real server; see DEPENDENCY-NOTES.)"""
    log = AuditLog(sqlite_store)
    threads = [threading.Thread(target=lambda: [log.append(actor="t", action="a") for _ in range(5)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = log.verify_chain()
    assert report.ok and report.count == 40


def test_an_append_that_loses_the_race_retries_at_the_new_head(store):
    """What a concurrent writer does to us on any backend: our seq is taken, so we go again."""
    log = AuditLog(store)
    log.append(actor="a", action="first")
    real_insert = store.insert
    raced = []

    def insert_after_a_rival(coll, doc):
        if not raced:
            raced.append(True)
            AuditLog(store).append(actor="rival", action="won the race")
        return real_insert(coll, doc)

    store.insert = insert_after_a_rival
    try:
        mine = log.append(actor="b", action="second")
    finally:
        store.insert = real_insert
    assert mine["seq"] == 3
    assert [r["actor"] for r in log.records()] == ["a", "rival", "b"] and log.verify_chain().ok
