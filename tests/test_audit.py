"""The signed, hash-chained audit log: appends, concurrent appends, and tamper detection of every kind.

Each attack is tried as someone with write access to the store (but not to the keys or the heads
sink) would try it, and must be detected.
"""

from __future__ import annotations

import base64
import multiprocessing
import random
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.audit import AUDIT_LOG, AuditLog, AuditSignerMissing, ChainReport, HeadsUnavailable, record_hash, \
    subjects_hash
from identity.audit_heads import FileHeads, read_heads
from identity.audit_signing import OfficerSigner, ServiceSigner, signed_message
from identity.store import SQLiteStore, StoreUnavailable
from tests.audit_support import SERVICE_SIGNER, exported_heads, rewrite, signed_log, trusted
from tests.lookup_support import present

OFFICER_KEY = Ed25519PrivateKey.generate()
ANNA = OfficerSigner("anna", OFFICER_KEY)


@pytest.fixture
def heads(tmp_path: Path) -> Path:
    return tmp_path / "audit-heads.jsonl"


@pytest.fixture
def audit(store, heads: Path) -> AuditLog:
    log = signed_log(store, heads=heads, clock=lambda: 1000.0)
    for i in range(5):
        log.append(actor="dpo", action="test", reason=f"r{i}", incident="INC-1" if i % 2 else "INC-2")
    return log


def verify(log: AuditLog, heads: Path | None = None, **kwargs) -> ChainReport:
    return log.verify_chain(keys=kwargs.pop("keys", trusted()), heads=read_heads([heads]) if heads else None,
                            **kwargs)


def test_a_sound_chain_verifies_and_names_its_head(audit: AuditLog, heads: Path):
    report = verify(audit, heads)
    assert report.ok and report.count == 5 and report.head_hash == present(audit.head())["hash"]
    assert report.problems == () and report.signers == {SERVICE_SIGNER.signer_id: 5}
    heads_finding = present(report.heads)
    assert heads_finding.checked == 5 and heads_finding.matched == 5 and heads_finding.latest == 5


def test_records_filter_by_incident(audit: AuditLog):
    assert [r["reason"] for r in audit.records(incident="INC-1")] == ["r1", "r3"]


def test_subjects_hash_hides_the_list_and_ignores_order():
    assert subjects_hash(["b", "a"]) == subjects_hash(["a", "b", "a"])
    assert len(subjects_hash(["a"])) == 64 and subjects_hash(["a"]) != subjects_hash(["b"])


# -- signatures ----------------------------------------------------------------------------------


def test_every_record_is_signed_over_its_hash_by_its_signer(audit: AuditLog):
    public = SERVICE_SIGNER.private_key.public_key()
    for record in audit.records():
        assert record["signer"] == SERVICE_SIGNER.signer_id and record["signer"].startswith("service:")
        public.verify(base64.urlsafe_b64decode(record["signature"] + "=="), signed_message(record["hash"]))


def test_the_signer_is_part_of_the_hash(audit: AuditLog, store):
    store.update(AUDIT_LOG, {"seq": 2}, {"signer": "officer:dpo"})
    report = verify(audit)
    assert not report.ok and report.first_bad_seq == 2 and "record 2 was altered" in report.problems


def test_an_unsigned_append_is_refused_before_anything_is_written(store):
    with pytest.raises(AuditSignerMissing):
        AuditLog(store).append(actor="ops", action="test")
    assert AuditLog(store).head() is None


def test_rewriting_record_2_and_recomputing_every_later_hash_is_detected(audit: AuditLog, store, heads: Path):
    """The attack the unkeyed chain missed: the links and hashes all check out, the signatures do not."""
    rewrite(store, 2, {"reason": "nothing happened"})
    report = verify(audit, heads)
    assert not report.ok and report.first_bad_seq == 2
    assert report.problems[0] == "record 2 has a bad signature (signer %s) (and 3 more)" % SERVICE_SIGNER.signer_id
    assert any(p.startswith("rewritten: the exported head of record 2") for p in report.problems)
    assert not any("altered" in p or "does not follow" in p for p in report.problems)


def test_rewriting_record_2_and_re_signing_with_another_key_is_detected(audit: AuditLog, store, heads: Path):
    forger = ServiceSigner(Ed25519PrivateKey.generate())
    rewrite(store, 2, {"reason": "nothing happened"}, signer=forger)
    report = verify(audit, heads)
    assert not report.ok and report.first_bad_seq == 2
    assert f"record 2 is signed by an unknown key {forger.signer_id}" in report.problems[0]


def test_rewriting_with_the_stolen_service_key_is_caught_by_the_exported_heads(audit: AuditLog, store, heads: Path):
    rewrite(store, 2, {"reason": "nothing happened"}, signer=SERVICE_SIGNER)
    assert verify(audit).ok  # links, hashes and signatures all check out: only the heads can tell
    report = verify(audit, heads)
    assert not report.ok and report.first_bad_seq == 2
    assert report.problems == (
        f"rewritten: the exported head of record 2 ({heads}:2) is not in the chain (4 heads differ): "
        "records up to 2 were changed and re-linked",)


def test_a_full_rewrite_under_a_different_key_is_detected(audit: AuditLog, store, heads: Path):
    forger = ServiceSigner(Ed25519PrivateKey.generate())
    rewrite(store, 1, {"actor": "nobody"}, signer=forger)
    report = verify(audit, heads)
    assert not report.ok and report.first_bad_seq == 1
    assert report.problems[0] == (f"record 1 is signed by an unknown key {forger.signer_id} (not among the "
                                  "trusted audit keys) (and 4 more)")
    assert any(p.startswith("full rewrite: none of the 5 exported heads is in the chain") for p in report.problems)


def test_a_full_rewrite_with_the_stolen_key_is_caught_by_the_exported_heads(audit: AuditLog, store, heads: Path):
    rewrite(store, 1, {"actor": "nobody"}, signer=SERVICE_SIGNER)
    report = verify(audit, heads)
    assert not report.ok and len(report.problems) == 1 and present(report.problem).startswith("full rewrite:")


def test_deleting_the_last_record_is_a_truncated_tail(audit: AuditLog, store, heads: Path):
    store.delete(AUDIT_LOG, {"seq": 5})
    assert verify(audit).ok  # the links alone cannot show it
    report = verify(audit, heads)
    assert not report.ok and report.first_bad_seq is None
    assert report.problems == (f"truncated tail: an exported head names record 5 ({heads}:5) but the chain ends "
                               "at record 4: records were removed from the end",)


def test_deleting_a_middle_record_is_detected(audit: AuditLog, store, heads: Path):
    store.delete(AUDIT_LOG, {"seq": 2})
    report = verify(audit, heads)
    assert not report.ok and report.first_bad_seq == 2
    assert report.problems == ("record 2 is missing: deleted from the middle of the chain",)


def test_deleting_a_middle_record_and_renumbering_with_the_stolen_key_is_detected(audit, store, heads: Path):
    store.delete(AUDIT_LOG, {"seq": 2})
    for seq in (3, 4, 5):
        doc = store.get(AUDIT_LOG, seq)
        store.delete(AUDIT_LOG, {"seq": seq})
        store.insert(AUDIT_LOG, doc | {"seq": seq - 1})
    rewrite(store, 2, {}, signer=SERVICE_SIGNER)
    report = verify(audit, heads)
    assert not report.ok
    assert any(p.startswith("truncated tail:") for p in report.problems)
    assert any(p.startswith("rewritten: the exported head of record 2") for p in report.problems)


def test_a_stripped_signature_is_detected(audit: AuditLog, store):
    store.update(AUDIT_LOG, {"seq": 3}, {"signature": None})
    report = verify(audit)
    assert not report.ok and report.problems == ("record 3 is not signed",)


def test_a_signature_moved_from_another_record_is_bad(audit: AuditLog, store):
    store.update(AUDIT_LOG, {"seq": 3}, {"signature": store.get(AUDIT_LOG, 4)["signature"]})
    report = verify(audit)
    assert report.problems == (f"record 3 has a bad signature (signer {SERVICE_SIGNER.signer_id})",)


# -- officers -------------------------------------------------------------------------------------


def test_an_officer_signs_their_own_records_and_verify_asks_the_hook_for_their_key(store):
    log = signed_log(store)
    log.append(actor="ops", action="four_eyes.enrol")
    signed_log(store, signer=ANNA).append(actor="anna", action="breach.resolve", outcome="started")
    asked = []

    def officer_key(name):
        asked.append(name)
        return OFFICER_KEY.public_key() if name == "anna" else None

    report = log.verify_chain(keys=trusted(officer_key=officer_key))
    assert report.ok and report.signers == {SERVICE_SIGNER.signer_id: 1, "officer:anna": 1} and asked == ["anna"]
    assert not log.verify_chain(keys=trusted()).ok  # no officer hook: an officer's record is not trusted


def test_an_officer_key_cannot_sign_someone_elses_record(store):
    with pytest.raises(ValueError, match="officer:anna cannot sign a record of actor 'bram'"):
        signed_log(store, signer=ANNA).append(actor="bram", action="four_eyes.approve")
    assert AuditLog(store).head() is None


def test_a_forged_officer_signed_record_is_detected(store):
    log = signed_log(store)
    log.append(actor="ops", action="x")
    impostor = OfficerSigner("anna", Ed25519PrivateKey.generate())  # claims to be anna, is not
    signed_log(store, signer=impostor).append(actor="anna", action="breach.resolve", outcome="completed")
    report = log.verify_chain(keys=trusted(officers={"anna": OFFICER_KEY.public_key()}))
    assert not report.ok and report.problems == ("record 2 has a bad signature (signer officer:anna)",)


def test_an_officer_record_edited_to_another_actor_and_re_signed_is_detected(store):
    signed_log(store, signer=ANNA).append(actor="anna", action="four_eyes.approve")
    doc = store.get(AUDIT_LOG, 1) | {"actor": "bram"}
    doc["hash"] = record_hash(doc)
    doc["signature"] = ANNA.sign(doc["hash"])  # anna's own key, someone else's name
    store.delete(AUDIT_LOG, {"seq": 1})
    store.insert(AUDIT_LOG, doc)
    report = AuditLog(store).verify_chain(keys=trusted(officers={"anna": OFFICER_KEY.public_key()}))
    assert report.problems == ("record 1 is signed by officer anna but names actor 'bram'",)


def test_an_unknown_officer_is_not_trusted(store):
    signed_log(store, signer=OfficerSigner("mallory", Ed25519PrivateKey.generate())).append(
        actor="mallory", action="breach.resolve")
    report = AuditLog(store).verify_chain(keys=trusted(officers={"anna": OFFICER_KEY.public_key()}))
    assert report.problems == ("record 1 is signed by an unknown officer mallory (not among the trusted audit keys)",)


# -- records written before signing ------------------------------------------------------------------


def legacy(store, n: int) -> None:
    prev = "0" * 64
    for seq in range(1, n + 1):
        doc = {"seq": seq, "at": 1.0, "actor": "ops", "action": "old", "outcome": "ok", "prev_hash": prev}
        doc["hash"] = prev = record_hash(doc)
        store.insert(AUDIT_LOG, doc)


def test_records_from_before_signing_keep_their_hash_and_are_sealed_by_the_next_signed_one(store):
    legacy(store, 3)
    signed_log(store).append(actor="ops", action="upgrade")
    report = AuditLog(store).verify_chain(keys=trusted())
    assert report.ok and report.unsigned_legacy == 3 and report.count == 4
    rewrite(store, 2, {"actor": "someone else"})  # re-linked without a key: the signed record 4 breaks
    assert AuditLog(store).verify_chain(keys=trusted()).problems == (
        f"record 4 has a bad signature (signer {SERVICE_SIGNER.signer_id})",)


def test_a_chain_with_no_signed_record_is_not_authenticated(store):
    legacy(store, 2)
    report = AuditLog(store).verify_chain(keys=trusted())
    assert not report.ok and present(report.problem).startswith("no record is signed")


# -- the links (as before signing) ----------------------------------------------------------------------


def test_changed_record_is_detected(audit: AuditLog, store):
    store.update(AUDIT_LOG, {"seq": 3}, {"reason": "something else"})
    report = verify(audit)
    assert not report.ok and report.first_bad_seq == 3 and "altered" in present(report.problem)


def test_changed_record_with_recomputed_hash_breaks_the_next_link(audit: AuditLog, store):
    doc = store.get(AUDIT_LOG, 3)
    doc["reason"] = "forged"
    store.update(AUDIT_LOG, {"seq": 3}, {"reason": "forged", "hash": record_hash(doc)})
    report = verify(audit)
    assert not report.ok and report.first_bad_seq == 3
    assert "record 4 does not follow record 3" in report.problems


def test_inserted_record_is_detected(audit: AuditLog, store):
    moved = [store.get(AUDIT_LOG, s) for s in (5, 4, 3)]
    for doc in moved:
        store.delete(AUDIT_LOG, {"seq": doc["seq"]})
        doc["seq"] += 1
        store.insert(AUDIT_LOG, doc)
    fake = {"seq": 3, "at": 1.0, "actor": "intruder", "action": "test", "outcome": "ok", "prev_hash": "0" * 64}
    fake["hash"] = record_hash(fake)
    store.insert(AUDIT_LOG, fake)
    report = verify(audit)
    assert not report.ok and report.first_bad_seq == 3


def test_reordered_records_are_detected(audit: AuditLog, store):
    two, three = store.get(AUDIT_LOG, 2), store.get(AUDIT_LOG, 3)
    store.delete(AUDIT_LOG, {"seq": 2})
    store.delete(AUDIT_LOG, {"seq": 3})
    two["seq"], three["seq"] = 3, 2
    store.insert(AUDIT_LOG, two)
    store.insert(AUDIT_LOG, three)
    report = verify(audit)
    assert not report.ok and report.first_bad_seq == 2


def test_an_expected_head_must_still_be_in_the_chain(audit: AuditLog, store):
    head = present(audit.head())["hash"]
    assert verify(audit, expected_head=head).ok
    store.delete(AUDIT_LOG, {"seq": 5})
    report = verify(audit, expected_head=head)
    assert not report.ok and report.first_bad_seq is None and "expected head" in present(report.problem)


# -- heads: export, failure, concurrency --------------------------------------------------------------------


def test_each_append_exports_its_head(audit: AuditLog, heads: Path):
    exported = exported_heads(heads)
    assert [(h.seq, h.hash, h.at, h.signer) for h in exported] == [
        (r["seq"], r["hash"], 1000.0, SERVICE_SIGNER.signer_id) for r in audit.records()]


def test_heads_out_of_order_are_accepted(audit: AuditLog, heads: Path):
    lines = heads.read_bytes().splitlines(keepends=True)
    random.Random(7).shuffle(lines)
    heads.write_bytes(b"".join(lines))
    assert verify(audit, heads).ok


def test_an_empty_or_deleted_heads_file_fails_verification(audit: AuditLog, heads: Path):
    heads.unlink()
    report = verify(audit, heads)
    assert not report.ok and report.problems[0].startswith(f"the heads file {heads} does not exist")
    heads.write_text("")
    assert verify(audit, heads).problems == ("no exported heads were found: a cut-off tail or a rewritten chain "
                                             "cannot be detected (check --heads)",)


def test_a_garbled_heads_line_is_reported(audit: AuditLog, heads: Path):
    with open(heads, "a") as handle:
        handle.write("not a head\n")
    assert verify(audit, heads).problems == (f"{heads}:6 is not an audit head",)


class BrokenSink:
    def __init__(self) -> None:
        self.broken = True
        self.lines: list[bytes] = []

    def describe(self) -> str:
        return "a test sink"

    def check(self) -> None:
        if self.broken:
            raise OSError("sink down")

    def export(self, line: bytes) -> None:
        self.check()
        self.lines.append(line)


def test_a_heads_sink_failure_fails_the_append_loudly_and_leaves_no_silent_gap(store, tmp_path: Path):
    sink = BrokenSink()
    log = AuditLog(store, signer=SERVICE_SIGNER, heads=sink)
    with pytest.raises(HeadsUnavailable, match="audit record 1 is stored but its head could not be exported"):
        log.append(actor="ops", action="erase")
    assert isinstance(HeadsUnavailable("x"), StoreUnavailable)  # answered as 503, like a store outage
    sink.broken = False
    log.append(actor="ops", action="next")
    (tmp_path / "h").write_bytes(b"".join(sink.lines))
    report = verify(log, tmp_path / "h")
    assert report.ok and present(report.heads).checked == 1  # the later head vouches for the record before it


def test_concurrent_appends_keep_one_unbroken_chain(sqlite_store, heads: Path):
    """Threads race for the next ``seq``; the unique key settles it, and every head reaches the file. (SQLite
    only: mongomock's unique check is not atomic under threads, unlike a real server; see DEPENDENCY-NOTES.)"""
    log = signed_log(sqlite_store, heads=heads)
    threads = [threading.Thread(target=lambda: [log.append(actor="t", action="a") for _ in range(5)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = verify(log, heads)
    assert report.ok and report.count == 40 and present(report.heads).checked == 40


def _append_from_a_worker(db: str, heads: str, worker: int) -> None:
    log = signed_log(SQLiteStore(db), heads=Path(heads))
    for i in range(10):
        log.append(actor=f"worker{worker}", action="a", details={"i": i})


def test_worker_processes_appending_at_once_keep_one_chain_and_every_head(tmp_path: Path, heads: Path):
    """Like gunicorn workers: separate processes, one database, one heads file (lines in any order)."""
    db = str(tmp_path / "workers.sqlite3")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_from_a_worker, args=(db, str(heads), n)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    report = verify(AuditLog(SQLiteStore(db)), heads)
    assert report.ok and report.count == 40 and present(report.heads).checked == 40
    assert present(report.heads).matched == 40


def test_an_append_that_loses_the_race_retries_at_the_new_head(store, heads: Path):
    """What a concurrent writer does to us on any backend: our seq is taken, so we go again."""
    log = signed_log(store, heads=heads)
    log.append(actor="a", action="first")
    real_insert = store.insert
    raced: list[bool] = []

    def insert_after_a_rival(coll, doc):
        if not raced:
            raced.append(True)
            signed_log(store, heads=heads).append(actor="rival", action="won the race")
        return real_insert(coll, doc)

    store.insert = insert_after_a_rival
    try:
        mine = log.append(actor="b", action="second")
    finally:
        store.insert = real_insert
    assert mine["seq"] == 3
    assert [r["actor"] for r in log.records()] == ["a", "rival", "b"] and verify(log, heads).ok
    assert [h.seq for h in exported_heads(heads)] == [1, 2, 3]  # the losing attempt exported nothing


def test_on_mongodb_the_head_is_read_at_majority_and_each_record_written_at_majority(monkeypatch, heads: Path):
    """Read at the default read concern ("local"), the head may be a record that only the primary has; a
    failover rolls it back, and a record chained onto it leaves a hole in the chain for ever. So the log is
    read at read concern "majority" (the head, and so the next seq and prev_hash) and written at w=majority."""
    import mongomock
    import mongomock.collection

    from identity.store import MongoStore

    used: list[tuple[str, str | None, dict]] = []  # (operation, read concern, write concern) on the audit log

    def spied(operation: str):
        real = getattr(mongomock.collection.Collection, operation)

        def spy(self, *args, **kwargs):
            if self.name == AUDIT_LOG.name:
                used.append((operation, self.read_concern.level, self.write_concern.document))
            return real(self, *args, **kwargs)
        return spy

    for operation in ("find", "insert_one"):
        monkeypatch.setattr(mongomock.collection.Collection, operation, spied(operation))
    server: mongomock.MongoClient = mongomock.MongoClient()
    log = signed_log(MongoStore("mongodb://localhost/identity", client_factory=lambda: server), heads=heads)
    log.append(actor="ops", action="first")
    log.append(actor="ops", action="second")
    assert present(log.head())["seq"] == 2
    reads = [level for name, level, _ in used if name == "find"]
    writes = [concern for name, _, concern in used if name == "insert_one"]
    assert len(reads) == 3 and set(reads) == {"majority"}
    assert writes == [{"w": "majority", "wtimeout": 10000}] * 2


def test_file_heads_are_private_appended_and_never_follow_a_symlink(tmp_path: Path):
    path = tmp_path / "heads" / "h.jsonl"
    sink = FileHeads(path)
    sink.export(b"one\n")
    sink.export(b"two\n")
    assert path.read_bytes() == b"one\ntwo\n" and path.stat().st_mode & 0o777 == 0o600
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        sink.export(b"three\n")
    assert not (tmp_path / "elsewhere").exists()
