"""Pairwise subjects, module by module: sector names and the §8.1 client rules, the keyed derivation,
and the mapping rows the breach path reads (no key needed, nothing linkable)."""

from __future__ import annotations

import re

import pytest

from identity.pairwise import (ERASED, SECTOR_SUBJECTS, SECTORS, PairwiseKey, SeveralHosts, SubjectErased, SubjectMap,
                               client_sector, row_id, seal, sector_problem, unseal)
from identity.pairwise.sectors import ascii_host, ascii_sector, redirect_hosts
from identity.vault import IDENTITIES, PSEUDONYM_PATTERN, new_pseudonym

KEY = bytes(range(32))


# -- sectors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["records.example.org", "https://records.example.org", "urn:example:health",
                                  "client:abc", "x" * 255])
def test_sector_names_that_are_accepted(name):
    assert sector_problem(name) is None


@pytest.mark.parametrize("name", ["", "with space", "tab\there", "comma,sector", 'quote"d', "caf\u00e9.example",
                                  "x" * 256, None, 7])
def test_sector_names_that_are_refused(name):
    assert sector_problem(name)


def test_a_client_sector_is_its_sector_identifier_when_registered():
    assert client_sector(client_id="c1", redirect_uris=["https://a.example/cb", "https://b.example/cb"],
                         sector_identifier="example-group") == "example-group"


def test_a_client_sector_is_the_one_https_host_of_its_redirect_uris():
    uris = ["https://App.Example.org/cb", "https://app.example.org/other", "http://127.0.0.1/cb",
            "com.example.app:/cb"]
    assert client_sector(client_id="c1", redirect_uris=uris, sector_identifier=None) == "app.example.org"


def test_several_hosts_without_a_sector_identifier_are_refused_oidc_8_1():
    with pytest.raises(SeveralHosts, match="--sector-identifier"):
        client_sector(client_id="c1", redirect_uris=["https://a.example/cb", "https://b.example/cb"],
                      sector_identifier=None)


def test_native_apps_without_a_web_host_get_a_sector_of_their_own_not_a_shared_loopback_one():
    one = client_sector(client_id="c1", redirect_uris=["http://127.0.0.1/cb"], sector_identifier=None)
    two = client_sector(client_id="c2", redirect_uris=["http://127.0.0.1/cb", "com.example.b:/cb"],
                        sector_identifier=None)
    assert (one, two) == ("client:c1", "client:c2")


def test_an_internationalised_host_counts_in_its_a_label_form_and_never_fails():
    """OIDC Core §8.1 derives the sector from the host: as DNS spells it, whatever case or Unicode form the URI
    had (earlier releases accepted such hosts at registration; derivation and the mapping take ASCII only)."""
    uris = ["https://B\u00fccher.example/cb", "https://bu\u0308cher.example/other", "https://xn--bcher-kva.example/x"]
    assert redirect_hosts(uris) == {"xn--bcher-kva.example"}
    assert client_sector(client_id="c1", redirect_uris=uris, sector_identifier=None) == "xn--bcher-kva.example"
    assert ascii_host("\u4f8b\u3048.\u30c6\u30b9\u30c8") == "xn--r8jz45g.xn--zckzah"  # 例え.テスト, IANA's IDN test name
    assert ascii_sector("b\u00fccher.example") == "xn--bcher-kva.example"
    for stored in ("records.example.org", "client:abc", "with space", "Upper.Example"):  # ASCII: kept as it is
        assert ascii_sector(stored) == stored
    assert PairwiseKey(KEY).subject(ascii_sector("\ud800\u00e9.example"), new_pseudonym())  # even a lone surrogate


# -- derivation ----------------------------------------------------------------------------------

def test_a_subject_has_the_pseudonyms_alphabet_and_length_and_is_stable():
    pseudonym = new_pseudonym()
    subject = PairwiseKey(KEY).subject("records.example.org", pseudonym)
    assert PSEUDONYM_PATTERN.fullmatch(subject) and len(subject) == 26
    assert PairwiseKey(bytes(KEY)).subject("records.example.org", pseudonym) == subject  # a new process


def test_subjects_differ_across_sectors_and_people_and_are_not_the_pseudonym():
    key, pseudonym = PairwiseKey(KEY), new_pseudonym()
    subjects = {key.subject(sector, pseudonym) for sector in ("a.example", "b.example", "https://a.example")}
    assert len(subjects) == 3 and pseudonym not in subjects
    assert key.subject("a.example", new_pseudonym()) not in subjects


def test_without_the_key_the_subject_is_not_derivable():
    pseudonym = new_pseudonym()
    assert PairwiseKey(KEY).subject("a.example", pseudonym) != PairwiseKey(bytes(32)).subject("a.example", pseudonym)


def test_a_short_key_is_refused_and_the_key_never_shows():
    with pytest.raises(ValueError):
        PairwiseKey(b"short")
    assert KEY.hex() not in repr(PairwiseKey(KEY)) and "PairwiseKey()" == repr(PairwiseKey(KEY))


# -- mapping rows --------------------------------------------------------------------------------

def test_a_row_opens_only_with_its_own_sector_and_subject():
    pseudonym, subject = new_pseudonym(), new_pseudonym()
    sealed = seal("a.example", subject, pseudonym)
    row = row_id("a.example", subject)
    assert unseal("a.example", subject, row, sealed) == pseudonym
    assert unseal("b.example", subject, row, sealed) is None  # the right row id, the wrong sector
    assert unseal("a.example", new_pseudonym(), row, sealed) is None
    assert row_id("b.example", subject) != row


def test_a_row_moved_or_altered_does_not_open():
    subject_a, subject_b = new_pseudonym(), new_pseudonym()
    sealed_a = seal("a.example", subject_a, new_pseudonym())
    assert unseal("a.example", subject_a, row_id("a.example", subject_b), sealed_a) is None  # under another id
    flipped = sealed_a[:-2] + ("A" if sealed_a[-2] != "A" else "B") + sealed_a[-1]
    assert unseal("a.example", subject_a, row_id("a.example", subject_a), flipped) is None
    assert unseal("a.example", subject_a, row_id("a.example", subject_a), "not base64!") is None


def test_the_store_holds_no_sector_pseudonym_or_time_that_links_a_persons_rows(store):
    mapping, key, pseudonym = SubjectMap(store), PairwiseKey(KEY), new_pseudonym()
    subjects = {sector: key.subject(sector, pseudonym) for sector in ("a.example", "b.example")}
    for sector, subject in subjects.items():
        mapping.record(sector, subject, pseudonym)
        mapping.record(sector, subject, pseudonym)  # idempotent
    rows = list(store.find(SECTOR_SUBJECTS, {}))
    assert len(rows) == 2 and all(set(doc) == {"row", "sealed"} for doc in rows)
    dump = repr(rows)
    assert pseudonym not in dump and not any(s in dump for s in subjects.values()) and "example" not in dump
    assert rows[0]["sealed"] != rows[1]["sealed"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", doc["row"]) for doc in rows)
    assert mapping.sectors() == ["a.example", "b.example"]
    assert sorted(d["sector"] for d in store.find(SECTORS, {})) == ["a.example", "b.example"]


def test_resolve_answers_the_pseudonym_erased_or_unknown(store):
    mapping, key, pseudonym = SubjectMap(store), PairwiseKey(KEY), new_pseudonym()
    subject = key.subject("a.example", pseudonym)
    mapping.record("a.example", subject, pseudonym)
    assert mapping.resolve("a.example", subject) == pseudonym
    assert mapping.resolve("b.example", subject) is None  # presented as another sector's
    assert mapping.erase([("a.example", subject), ("b.example", subject)]) == 1
    assert mapping.resolve("a.example", subject) == ERASED
    mapping.record("a.example", subject, pseudonym)  # a late recording never brings it back
    assert mapping.resolve("a.example", subject) == ERASED


# -- no subject recorded for an erased person ---------------------------------------------------------------


def held(store, pseudonym: str, status: str = "active") -> str:
    """An identity of ``status`` in the vault's collection (a tombstone when erased)."""
    store.insert(IDENTITIES, {"pseudonym": pseudonym, "blind_index": None, "sealed_email": None, "created_at": 0,
                              "last_login_at": None, "status": status, "status_changed_at": 0})
    return pseudonym


def test_the_service_records_no_subject_for_an_erased_or_unknown_person(store):
    mapping, key = SubjectMap(store), PairwiseKey(KEY)
    active, erased, unknown = held(store, new_pseudonym()), held(store, new_pseudonym(), "erased"), new_pseudonym()
    mapping.record("a.example", key.subject("a.example", active), active, refuse_erased=True)
    assert mapping.resolve("a.example", key.subject("a.example", active)) == active
    for pseudonym in (erased, unknown):
        subject = key.subject("a.example", pseudonym)
        with pytest.raises(SubjectErased):
            mapping.record("a.example", subject, pseudonym, refuse_erased=True)
        assert mapping.resolve("a.example", subject) in (None, ERASED)
    mapping.erase([("a.example", key.subject("a.example", active))])  # the person's erasure
    with pytest.raises(SubjectErased):  # an erased row: refused, from the row alone
        mapping.record("a.example", key.subject("a.example", active), active, refuse_erased=True)
    mapping.record("a.example", key.subject("a.example", active), active)  # the DPO's tools: unchanged, no error
    assert mapping.resolve("a.example", key.subject("a.example", active)) == ERASED


def test_a_row_recorded_while_an_erasure_runs_does_not_survive_it(store, monkeypatch):
    """The erasure (the vault's write, then forgetting the person's rows) lands between the recording's read of the
    row and its insert: the row inserted after the erasure forgot the rows must not resolve."""
    mapping, key, pseudonym = SubjectMap(store), PairwiseKey(KEY), held(store, new_pseudonym())
    subject = key.subject("a.example", pseudonym)
    real_get = store.get

    def erasure_meanwhile(coll, key_value):
        found = real_get(coll, key_value)
        if coll is SECTOR_SUBJECTS:
            monkeypatch.setattr(store, "get", real_get)
            store.update(IDENTITIES, {"pseudonym": pseudonym}, {"status": "erased"})
            mapping.erase([("a.example", subject)])  # nothing to forget yet
        return found
    monkeypatch.setattr(store, "get", erasure_meanwhile)
    with pytest.raises(SubjectErased):
        mapping.record("a.example", subject, pseudonym, refuse_erased=True)
    assert mapping.resolve("a.example", subject) == ERASED
