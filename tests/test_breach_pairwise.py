"""The breach path for pairwise subjects: a leaked data set from one service, with its sector.

Subjects are made as the service makes them (the pairwise key of the keys directory, rows recorded
in the store); the run itself uses no service key, like the DPO's offline machine.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from identity.audit import AuditLog
from identity.breach import resolve as resolve_module
from identity.breach.errors import BreachError, Refused
from identity.breach.four_eyes import FourEyes
from identity.breach.list_formats import detect, list_digest
from identity.breach.output import unresolved_path
from identity.breach.registry import Registry
from identity.breach.resolve import CountParams, count_pseudonyms, resolve_pseudonyms
from identity.keys import Keyring
from identity.pairwise import PairwiseKey, SubjectMap
from identity.store import StoreUnavailable
from identity.vault import new_pseudonym
from tests.audit_support import signed_log
from tests.breach_support import FailingStore, Officer, Population, found, params, populate, rows, write_list
from tests.breach_support import audit, people  # noqa: F401  (fixtures)
from tests.test_breach_notify import inbox, notice_file, notify, notify_records, plain_env  # noqa: F401 - fixtures

DIARY, CHAT = "diary.example", "https://chat.example.org"


class Sectors:
    """The people's subjects in two sectors, recorded as the service records them."""

    def __init__(self, store, keys_dir: Path, people: Population) -> None:
        self.key = PairwiseKey(Keyring(keys_dir, passphrase=None).pairwise_key)
        self.map = SubjectMap(store)
        self.people = people
        for sector in (DIARY, CHAT):
            for pseudonym in people.order:
                self.map.record(sector, self.of(sector, pseudonym), pseudonym)

    def of(self, sector: str, pseudonym: str) -> str:
        return self.key.subject(sector, pseudonym)

    def listed(self, sector: str) -> list[str]:
        return [self.of(sector, p) for p in self.people.order]


@pytest.fixture
def sectors(store, keys_dir: Path, people: Population) -> Sectors:
    return Sectors(store, keys_dir, people)


def resolve_records(audit: AuditLog) -> list[dict]:
    return [r for r in audit.records() if r["action"] == "breach.resolve"]


def test_a_leaked_data_set_of_one_sector_reaches_the_people(store, audit, people, sectors, tmp_path, keys_dir):
    listing = write_list(tmp_path / "diary.txt", sectors.listed(DIARY))
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, sector=DIARY))
    out = rows(tmp_path / "contacts.csv")
    assert out[0] == ["subject", "sector", "email"]
    assert out[1:] == [[sectors.of(DIARY, p), DIARY, people.pseudonyms[p]] for p in people.order if p != people.erased]
    assert summary.line() == "resolved=11 unknown=0 erased=1 malformed=0" and summary.counts["restricted"] == 1
    started, completed = resolve_records(audit)
    assert started["details"]["sector"] == DIARY and completed["details"]["sector"] == DIARY
    assert started["details"]["pseudonyms_sha256"] == list_digest(listing, DIARY) != list_digest(listing)
    assert not any(p in repr(list(audit.records())) for p in people.order)  # the run never names a pseudonym
    assert "@" not in repr(list(audit.records()))


def test_a_sector_a_subject_presented_as_sector_b_resolves_to_nothing_and_is_audited(
        store, audit, people, sectors, tmp_path, keys_dir):
    listing = write_list(tmp_path / "diary.txt", sectors.listed(DIARY))
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, sector=CHAT))
    assert rows(tmp_path / "contacts.csv") == [["subject", "sector", "email"]]
    assert summary.line() == "resolved=0 unknown=12 erased=0 malformed=0"
    unresolved = rows(unresolved_path(tmp_path / "contacts.csv"))
    assert unresolved[0] == ["line", "subject", "sector", "problem"]
    assert {(row[2], row[3]) for row in unresolved[1:]} == {(CHAT, "unknown")}
    completed = resolve_records(audit)[-1]
    assert completed["details"]["sector"] == CHAT and completed["counts"]["unknown"] == 12
    assert completed["counts"]["resolved"] == 0


def test_vault_pseudonyms_given_as_a_sectors_subjects_resolve_to_nothing(store, audit, people, sectors, tmp_path,
                                                                          keys_dir):
    listing = write_list(tmp_path / "pseudonyms.txt", people.order)
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, sector=DIARY))
    assert summary.counts["resolved"] == 0 and summary.counts["unknown"] == 12


def test_a_mixed_list_names_each_subjects_sector_and_each_person_is_reached_once(
        store, audit, people, sectors, tmp_path, keys_dir):
    a, b, c = people.order[0], people.order[1], people.order[2]
    lines = ["subject,sector",
             f"{sectors.of(DIARY, a)},{DIARY}",
             f"{sectors.of(CHAT, b)},{CHAT}",
             f"{sectors.of(CHAT, a)},{CHAT}",     # a again, in another sector: the same person
             f"{c},",                              # a vault pseudonym
             f"{sectors.of(DIARY, c)},{CHAT}",    # a diary subject presented as chat's
             f"{sectors.of(DIARY, people.erased)},{DIARY}",
             "garbage,line,here"]
    listing = write_list(tmp_path / "mixed.csv", lines)
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    out = rows(tmp_path / "contacts.csv")
    assert out == [["subject", "sector", "email"],
                   [sectors.of(DIARY, a), DIARY, people.pseudonyms[a]],
                   [sectors.of(CHAT, b), CHAT, people.pseudonyms[b]],
                   [c, "", people.pseudonyms[c]]]
    problems = [(row[0], row[2], row[3]) for row in rows(unresolved_path(tmp_path / "contacts.csv"))[1:]]
    assert problems == [("4", CHAT, "duplicate"), ("6", CHAT, "unknown"), ("7", DIARY, "erased"),
                        ("8", "", "malformed")]
    assert summary.line() == "resolved=3 unknown=1 erased=1 malformed=1" and summary.counts["duplicate"] == 1
    completed = resolve_records(audit)[-1]
    assert completed["details"]["sectors"] == {DIARY: {"resolved": 1, "erased": 1},
                                               CHAT: {"resolved": 1, "duplicate": 1, "unknown": 1},
                                               "": {"resolved": 1}}
    assert resolve_records(audit)[0]["details"]["pseudonyms_sha256"] == hashlib.sha256(listing.read_bytes()).hexdigest()


def test_a_mixed_list_with_the_sector_column_first_and_windows_line_ends(store, audit, people, sectors, tmp_path,
                                                                        keys_dir):
    listing = tmp_path / "mixed.csv"
    listing.write_bytes(f"Sector,Subject\r\n{DIARY},{sectors.of(DIARY, people.order[0]).upper()}\r\n".encode())
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    assert summary.counts["resolved"] == 1


def test_sector_and_a_sector_column_together_are_refused_and_audited(store, audit, sectors, tmp_path, keys_dir):
    listing = write_list(tmp_path / "mixed.csv", ["subject,sector", f"{sectors.listed(DIARY)[0]},{DIARY}"])
    with pytest.raises(Refused, match="sector column"):
        resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, sector=DIARY))
    with pytest.raises(Refused, match="--sector"):
        resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, sector="has space"))
    refused = [r for r in resolve_records(audit) if r["outcome"] == "refused"]
    assert len(refused) == 2 and not (tmp_path / "contacts.csv").exists()


def test_after_erasure_none_of_the_persons_subjects_resolve(store, audit, people, sectors, tmp_path, keys_dir):
    gone = people.order[0]
    sectors.map.erase([(sector, sectors.of(sector, gone)) for sector in (DIARY, CHAT)])
    for sector in (DIARY, CHAT):
        listing = write_list(tmp_path / f"{len(sector)}.txt", [sectors.of(sector, gone)])
        out = tmp_path / f"out-{len(sector)}.csv"
        summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, sector=sector, out=out))
        assert summary.counts["resolved"] == 0 and summary.counts["erased"] == 1
        assert rows(out) == [["subject", "sector", "email"]]


def test_counts_only_takes_the_sector_and_counts_people_once(store, audit, people, sectors, tmp_path):
    listing = write_list(tmp_path / "diary.txt", sectors.listed(DIARY) + [new_pseudonym()])
    counted = count_pseudonyms(store, audit, CountParams("INC-1", "dpo", "count", listing, sector=DIARY))
    assert counted.as_dict()["resolved"] == 11 and counted.as_dict()["unknown"] == 1
    assert [r for r in audit.records() if r["action"] == "breach.count"][-1]["details"]["sector"] == DIARY
    a = people.order[0]
    mixed = write_list(tmp_path / "mixed.csv", ["subject,sector", f"{sectors.of(DIARY, a)},{DIARY}",
                                                f"{sectors.of(CHAT, a)},{CHAT}"])
    counted = count_pseudonyms(store, audit, CountParams("INC-1", "dpo", "count", mixed))
    assert counted.as_dict()["resolved"] == 1 and counted.as_dict()["duplicate"] == 1


def test_an_interrupted_mixed_run_resumes_and_still_reaches_each_person_once(
        store, audit, people, sectors, tmp_path, keys_dir, monkeypatch):
    monkeypatch.setattr(resolve_module, "CHECKPOINT_SECONDS", 0.0)
    lines = ["subject,sector"] + [f"{sectors.of(DIARY, p)},{DIARY}" for p in people.order] + \
            [f"{sectors.of(CHAT, p)},{CHAT}" for p in people.order]
    listing = write_list(tmp_path / "mixed.csv", lines)
    clean = params(tmp_path, keys_dir, listing, out=tmp_path / "clean.csv")
    assert clean.out is not None
    resolve_pseudonyms(store, audit, clean)
    p = params(tmp_path, keys_dir, listing)
    assert p.out is not None
    with pytest.raises(BreachError):  # after some of chat's lines (duplicates of diary's people) were written
        resolve_pseudonyms(FailingStore(store, 5, StoreUnavailable("connection lost")), audit, p)
    assert "duplicate" in unresolved_path(p.out).read_text() and len(rows(p.out)) == 12
    summary = resolve_pseudonyms(store, audit, p)
    assert p.out.read_bytes() == clean.out.read_bytes()
    assert summary.counts["resolved"] == 11 and summary.counts["duplicate"] == 11 and summary.counts["erased"] == 2


def test_an_approval_for_one_sectors_list_does_not_approve_it_as_another_sector(store, audit, people, sectors,
                                                                               tmp_path, keys_dir):
    registry = Registry(store, audit)
    anna, bram = Officer("anna"), Officer("bram")
    found(registry, anna, bram)
    four_eyes = FourEyes(store, registry, audit)
    listing = write_list(tmp_path / "diary.txt", sectors.listed(DIARY))
    request = four_eyes.file(officer="anna", key=anna.key, incident="INC-2026-01",
                             reason="tracking data leaked from the analytics bucket",
                             pseudonyms_sha256=list_digest(listing, DIARY), entries=12)
    four_eyes.approve(request["request_id"], officer="bram", key=bram.key,
                      pseudonyms_sha256=list_digest(listing, DIARY))
    with pytest.raises(Refused):
        resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, sector=CHAT,
                                                request_id=request["request_id"]), four_eyes_required=True)
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, sector=DIARY,
                                                      request_id=request["request_id"]), four_eyes_required=True)
    assert summary.counts["resolved"] == 11


def test_list_forms_are_told_apart(tmp_path):
    plain = write_list(tmp_path / "plain.txt", [new_pseudonym()])
    assert detect(plain, None).kind == "pseudonyms" and detect(plain, DIARY).kind == "sector"
    header = write_list(tmp_path / "mixed.csv", ["pseudonym,sector"])
    assert detect(header, None).kind == "mixed"
    not_header = write_list(tmp_path / "other.csv", ["subject,colour"])
    assert detect(not_header, None).kind == "pseudonyms"


def test_notices_from_a_sectors_run_are_audited_by_subject_and_sector_never_by_pseudonym(
        sqlite_store, keys_dir, tmp_path, inbox, notice_file):
    people = populate(sqlite_store, keys_dir)
    sectors = Sectors(sqlite_store, keys_dir, people)
    listing = write_list(tmp_path / "diary.txt", sectors.listed(DIARY))
    p = params(tmp_path, keys_dir, listing, sector=DIARY)
    assert p.out is not None
    resolve_pseudonyms(sqlite_store, signed_log(sqlite_store), p)
    box, controller = inbox
    report = notify(sqlite_store, p.out, notice_file, plain_env(controller))
    assert report.sent == 11 and sorted(box.recipients()) == sorted(people.pseudonyms.values())
    per_person = [r for r in notify_records(sqlite_store) if r["outcome"] == "sent"]
    assert {(r["details"]["sector"], r["details"]["subject"]) for r in per_person} == {
        (DIARY, sectors.of(DIARY, q)) for q in people.pseudonyms}
    assert not any("pseudonym" in r["details"] for r in per_person)
    assert notify(sqlite_store, p.out, notice_file, plain_env(controller)).already_sent == 11  # resumable as before
