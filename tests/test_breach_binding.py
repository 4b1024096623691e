"""The attack a sealed box alone cannot stop: someone with write access to the store moves or copies person
A's sealed e-mail into person B's row. B is on a breach list; without the binding, A would be notified of B's
breach. With it, B's line is ``misbound``: never in the contacts file, counted in the summary and the audit record.
Values sealed before the binding (``sb1.``) still resolve and are counted ``unbound``."""

from __future__ import annotations

import json

import pytest

from identity.audit import AuditLog
from identity.breach.output import unresolved_path
from identity.breach.resolve import check_opened, resolve_pseudonyms
from identity.keys.files import load_dpo_public_key
from identity.pairwise import PairwiseKey, SubjectMap
from identity.keys import Keyring
from identity.sealing import Sealer
from identity.store import SQLiteStore
from identity.vault import IDENTITIES
from tests.audit_support import signed_log
from tests.breach_support import params, populate, rows, write_list
from tests.breach_support import audit, people  # noqa: F401  (fixtures)
from tests.test_breach_cli import base_args, run_script, text

DIARY = "diary.example"


def sealed(store, pseudonym: str) -> str:
    return store.get(IDENTITIES, pseudonym)["sealed_email"]


def completed(audit: AuditLog) -> dict:
    """The last run's ``completed`` record."""
    return [r for r in audit.records() if (r["action"], r["outcome"]) == ("breach.resolve", "completed")][-1]


def copy_sealed(store, source: str, target: str) -> None:
    store.update(IDENTITIES, {"pseudonym": target}, {"sealed_email": sealed(store, source)})


@pytest.mark.parametrize("workers", [0, 2])
def test_a_sealed_email_copied_into_another_row_is_misbound_and_never_written(store, audit, people, tmp_path,
                                                                              keys_dir, workers):
    a, b = people.order[0], people.order[1]
    copy_sealed(store, a, b)
    listing = write_list(tmp_path / "affected.txt", [b])  # only B was affected
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, workers=workers))
    assert rows(tmp_path / "contacts.csv") == [["pseudonym", "email"]]
    assert people.pseudonyms[a] not in (tmp_path / "contacts.csv").read_text()  # A is not told of B's breach
    assert rows(unresolved_path(tmp_path / "contacts.csv"))[1:] == [["1", b, "misbound"]]
    assert summary.counts["misbound"] == 1 and summary.counts["resolved"] == 0
    assert summary.line() == "resolved=0 unknown=0 erased=0 malformed=0 misbound=1"
    record = completed(audit)
    assert record["counts"]["misbound"] == 1 and record["counts"]["resolved"] == 0
    assert record["counts"]["unbound"] == 0 and "@" not in json.dumps(list(audit.records()))


def test_swapped_emails_are_both_misbound_and_everyone_else_resolves(store, audit, people, tmp_path, keys_dir):
    a, b = people.order[0], people.order[1]
    value_a, value_b = sealed(store, a), sealed(store, b)
    store.update(IDENTITIES, {"pseudonym": a}, {"sealed_email": value_b})
    store.update(IDENTITIES, {"pseudonym": b}, {"sealed_email": value_a})
    listing = write_list(tmp_path / "affected.txt", people.order)
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    written = rows(tmp_path / "contacts.csv")[1:]
    assert written == [[p, people.pseudonyms[p]] for p in people.order if p not in (a, b, people.erased)]
    assert {tuple(r) for r in rows(unresolved_path(tmp_path / "contacts.csv"))[1:]} == {
        ("1", a, "misbound"), ("2", b, "misbound"), ("4", people.erased, "erased")}
    assert summary.line() == "resolved=9 unknown=0 erased=1 malformed=0 misbound=2"
    counts = completed(audit)["counts"]
    assert (counts["misbound"], counts["resolved"], counts["unopenable"], counts["unbound"]) == (2, 9, 0, 0)


def test_a_copy_is_caught_while_the_original_row_still_resolves(store, audit, people, tmp_path, keys_dir):
    a, b = people.order[0], people.order[1]
    copy_sealed(store, a, b)
    listing = write_list(tmp_path / "affected.txt", [a, b])
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, chunk_size=1))
    assert rows(tmp_path / "contacts.csv")[1:] == [[a, people.pseudonyms[a]]]  # A once, for A's own line
    assert summary.counts["misbound"] == 1 and summary.counts["resolved"] == 1


def test_legacy_unbound_values_still_resolve_and_are_counted(store, audit, people, tmp_path, keys_dir):
    sealer = Sealer(load_dpo_public_key(keys_dir / "dpo_public.pem"))
    legacy = people.order[6:9]
    for pseudonym in legacy:  # as a vault from before sb2 holds them
        store.update(IDENTITIES, {"pseudonym": pseudonym},
                     {"sealed_email": sealer.seal(people.pseudonyms[pseudonym].encode())})
    listing = write_list(tmp_path / "affected.txt", people.order)
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    written = rows(tmp_path / "contacts.csv")[1:]
    assert written == [[p, people.pseudonyms[p]] for p in people.order if p != people.erased]
    assert summary.line() == "resolved=11 unknown=0 erased=1 malformed=0"  # unchanged: nothing misbound
    assert summary.counts["unbound"] == 3 and summary.counts["misbound"] == 0
    assert completed(audit)["counts"]["unbound"] == 3


def test_an_unbound_value_copied_into_another_row_cannot_be_caught(store, audit, people, tmp_path, keys_dir):
    """The limit, documented: an sb1 value names nobody, so a copy of one is delivered (and counted unbound)
    until ``keys.py dpo-reseal`` binds every such value to its row."""
    sealer = Sealer(load_dpo_public_key(keys_dir / "dpo_public.pem"))
    a, b = people.order[0], people.order[1]
    store.update(IDENTITIES, {"pseudonym": b}, {"sealed_email": sealer.seal(people.pseudonyms[a].encode())})
    listing = write_list(tmp_path / "affected.txt", [b])
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    assert rows(tmp_path / "contacts.csv")[1:] == [[b, people.pseudonyms[a]]]
    assert summary.counts["unbound"] == 1 and summary.counts["misbound"] == 0


def test_a_bound_value_with_a_non_address_is_still_unopenable(store, audit, people, tmp_path, keys_dir):
    """``deliverable`` applies to the e-mail part: a formula sealed for the right pseudonym is not written."""
    sealer = Sealer(load_dpo_public_key(keys_dir / "dpo_public.pem"))
    victim = people.order[0]
    store.update(IDENTITIES, {"pseudonym": victim}, {"sealed_email": sealer.seal_email(victim, "=HYPERLINK(1)@x.org")})
    listing = write_list(tmp_path / "affected.txt", [victim])
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    assert rows(unresolved_path(tmp_path / "contacts.csv"))[1:] == [["1", victim, "unopenable"]]
    assert summary.counts["unopenable"] == 1 and summary.counts["misbound"] == 0


@pytest.mark.parametrize("opened, outcome", [
    (None, ("unopenable", None)),
    (("p" * 26, "a@example.org"), ("bound", "a@example.org")),
    (("q" * 26, "a@example.org"), ("misbound", None)),
    (("P" * 26, "a@example.org"), ("misbound", None)),  # exact: no case folding
    ((None, "a@example.org"), ("unbound", "a@example.org")),
    (("p" * 26, "A@example.org"), ("unopenable", None)),  # not normalised
    (("q" * 26, "=1+1"), ("misbound", None)),  # the binding is checked first
    ((None, "=1+1"), ("unopenable", None)),
])
def test_check_opened(opened, outcome):
    assert check_opened(opened, "p" * 26) == outcome


def test_a_pairwise_subject_is_checked_against_the_person_behind_it(store, audit, people, tmp_path, keys_dir):
    key = PairwiseKey(Keyring(keys_dir, passphrase=None).pairwise_key)
    subjects = {p: key.subject(DIARY, p) for p in people.order}
    for pseudonym, subject in subjects.items():
        SubjectMap(store).record(DIARY, subject, pseudonym)
    a, b, c = people.order[0], people.order[1], people.order[2]
    copy_sealed(store, a, b)
    listing = write_list(tmp_path / "diary.txt", [subjects[b], subjects[c]])
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, sector=DIARY))
    assert rows(tmp_path / "contacts.csv")[1:] == [[subjects[c], DIARY, people.pseudonyms[c]]]
    assert rows(unresolved_path(tmp_path / "contacts.csv"))[1:] == [["1", subjects[b], DIARY, "misbound"]]
    assert summary.line() == "resolved=1 unknown=0 erased=0 malformed=0 misbound=1"
    mixed = write_list(tmp_path / "mixed.csv", ["subject,sector", f"{subjects[b]},{DIARY}", f"{b},", f"{c},"])
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, mixed, out=tmp_path / "mixed-out.csv"))
    assert rows(tmp_path / "mixed-out.csv")[1:] == [[c, "", people.pseudonyms[c]]]
    assert summary.counts["misbound"] == 2 and summary.counts["resolved"] == 1


def test_the_script_reports_misbound_and_exits_1(tmp_path, keys_dir):
    db = tmp_path / "identity.sqlite3"
    store = SQLiteStore(db)
    people = populate(store, keys_dir)
    a, b = people.order[0], people.order[1]
    copy_sealed(store, a, b)
    legacy = people.order[2]
    store.update(IDENTITIES, {"pseudonym": legacy}, {"sealed_email": Sealer(
        load_dpo_public_key(keys_dir / "dpo_public.pem")).seal(people.pseudonyms[legacy].encode())})
    store.close()
    listing = write_list(tmp_path / "affected.txt", people.order)
    env = {"IDENTITY_DB_URI": f"sqlite:///{db}", "IDENTITY_KEYS_DIR": str(keys_dir)}
    out = tmp_path / "contacts.csv"
    result = run_script("breach_contact.py", *base_args(tmp_path, keys_dir, listing), "--out", str(out), env=env)
    assert result.returncode == 1, text(result, "stderr")
    assert text(result).splitlines()[-1] == "resolved=10 unknown=0 erased=1 malformed=0 misbound=1"
    stderr = text(result, "stderr")
    assert "error: 1 sealed e-mails were sealed for another pseudonym" in stderr and "unbound: 1" in stderr
    assert people.pseudonyms[a] not in stderr and out.read_text().count(people.pseudonyms[a]) == 1  # A's own line


def test_an_interrupted_run_keeps_its_misbound_and_unbound_counts_when_it_resumes(store, audit, people, tmp_path,
                                                                                 keys_dir, monkeypatch):
    from identity.breach import resolve as resolve_module
    from identity.breach.errors import BreachError
    from identity.store import StoreUnavailable
    from tests.breach_support import FailingStore

    monkeypatch.setattr(resolve_module, "CHECKPOINT_SECONDS", 0.0)  # checkpoint after every chunk
    a, b = people.order[0], people.order[1]
    copy_sealed(store, a, b)
    legacy = people.order[2]
    store.update(IDENTITIES, {"pseudonym": legacy}, {"sealed_email": Sealer(
        load_dpo_public_key(keys_dir / "dpo_public.pem")).seal(people.pseudonyms[legacy].encode())})
    listing = write_list(tmp_path / "affected.txt", people.order)
    clean = resolve_pseudonyms(store, signed_log(store), params(tmp_path, keys_dir, listing, out=tmp_path / "clean.csv",
                                                                 chunk_size=3))
    p = params(tmp_path, keys_dir, listing, chunk_size=3)
    with pytest.raises(BreachError):
        resolve_pseudonyms(FailingStore(store, 3, StoreUnavailable("connection lost")), audit, p)
    assert 1 < len(rows(tmp_path / "contacts.csv")) < 11  # stopped part-way, after the misbound line
    summary = resolve_pseudonyms(store, audit, p)
    assert summary.resumed and summary.line() == clean.line() == "resolved=10 unknown=0 erased=1 malformed=0 misbound=1"
    assert (summary.counts["misbound"], summary.counts["unbound"]) == (1, 1) == (clean.counts["misbound"],
                                                                                 clean.counts["unbound"])
    assert (tmp_path / "contacts.csv").read_bytes() == (tmp_path / "clean.csv").read_bytes()
    assert completed(audit)["counts"]["misbound"] == 1 and completed(audit)["counts"]["unbound"] == 1
