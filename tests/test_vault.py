"""The identity vault: normalisation, pseudonyms, sealing, race-free creation, no e-mail in logs."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from identity.keys import Keyring
from identity.sealing import Opener, SealError, Sealer
from identity.store import SQLiteStore
from identity.vault import IDENTITIES, InvalidEmail, Vault, is_pseudonym, new_pseudonym, normalise_email
from tests.breach_support import dpo_private_key
from tests.lookup_support import present
from tests.process_support import race_in_processes

EMAIL = "Alice.Example@Example.ORG"


@pytest.fixture
def keyring(keys_dir: Path) -> Keyring:
    return Keyring(keys_dir, passphrase=None)


@pytest.fixture
def vault(store, keyring: Keyring) -> Vault:
    return Vault(store, pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key), clock=lambda: 1_700_000_000)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Alice@Example.org ", "alice@example.org"),
        ("ALICE@EXAMPLE.ORG", "alice@example.org"),
        ("e\u0301lise@example.org", "\u00e9lise@example.org"),  # NFD → NFC
        ("user+tag@sub.example.org", "user+tag@sub.example.org"),
    ],
)
def test_normalisation_rule(raw: str, expected: str):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "no-at-sign", "@example.org", "alice@", "a b@example.org", "alice@exa mple.org",
            "alice@example..org", "alice@.example.org", "x" * 65 + "@example.org", "a@" + "d" * 260,
            "alice\x00@example.org", "alice@example.org\u200b"],
)
def test_malformed_addresses_are_refused_without_echoing_them(raw: str):
    with pytest.raises(InvalidEmail) as info:
        normalise_email(raw)
    if raw.strip():
        assert raw.strip() not in str(info.value)


def test_pseudonym_format_is_128_random_bits_base32():
    values = {new_pseudonym() for _ in range(1000)}
    assert len(values) == 1000
    assert all(is_pseudonym(v) for v in values)
    assert not is_pseudonym("A" * 26) and not is_pseudonym("a" * 25) and not is_pseudonym(None)


def test_same_email_same_pseudonym_after_normalisation(vault: Vault):
    first = vault.pseudonymise(EMAIL)
    again = vault.pseudonymise("  alice.example@example.org")
    assert first.created and not again.created
    assert first.identity.pseudonym == again.identity.pseudonym
    assert is_pseudonym(first.identity.pseudonym)


def test_different_emails_get_different_unlinkable_pseudonyms(vault: Vault):
    a = vault.pseudonymise("a@example.org").identity.pseudonym
    b = vault.pseudonymise("b@example.org").identity.pseudonym
    assert a != b


def test_pseudonym_is_not_derived_from_the_email(store, keyring: Keyring, tmp_path: Path):
    """Two vaults with the same pepper give the same e-mail different pseudonyms."""
    other = SQLiteStore(tmp_path / "other.sqlite3")
    v1 = Vault(store, pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key))
    v2 = Vault(other, pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key))
    assert v1.pseudonymise(EMAIL).identity.pseudonym != v2.pseudonymise(EMAIL).identity.pseudonym


def test_record_holds_no_clear_email_only_blind_index_and_sealed_copy(vault: Vault, store, keyring: Keyring):
    pseudonym = vault.pseudonymise(EMAIL).identity.pseudonym
    doc = store.get(IDENTITIES, pseudonym)
    assert set(doc) == {"pseudonym", "blind_index", "sealed_email", "created_at", "last_login_at", "status",
                        "status_changed_at"}
    flat = repr(doc).lower()
    assert "alice" not in flat and "example.org" not in flat
    assert doc["blind_index"] == vault.blind_index(EMAIL)
    dpo = Opener(dpo_private_key(keyring.paths.root))
    assert dpo.open(doc["sealed_email"]) == b"alice.example@example.org"


def test_blind_index_depends_on_the_pepper(store, keyring: Keyring):
    other = Vault(store, pepper=b"\x01" * 32, sealer=Sealer(keyring.dpo_public_key))
    mine = Vault(store, pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key))
    assert other.blind_index(EMAIL) != mine.blind_index(EMAIL)


def test_sealed_email_cannot_be_opened_with_another_key(vault: Vault, store):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    doc = store.get(IDENTITIES, vault.pseudonymise(EMAIL).identity.pseudonym)
    with pytest.raises(SealError):
        Opener(X25519PrivateKey.generate()).open(doc["sealed_email"])


def test_find_and_record_login(vault: Vault):
    pseudonym = vault.pseudonymise(EMAIL).identity.pseudonym
    assert present(vault.find(pseudonym)).last_login_at is None
    vault.record_login(pseudonym)
    assert present(vault.find(pseudonym)).last_login_at == 1_700_000_000
    assert vault.find("not-a-pseudonym") is None
    assert vault.find(new_pseudonym()) is None


def test_find_by_email_looks_up_without_creating(vault: Vault, store):
    assert vault.find_by_email(EMAIL) is None and store.count(IDENTITIES, {}) == 0
    pseudonym = vault.pseudonymise(EMAIL).identity.pseudonym
    assert present(vault.find_by_email("  alice.example@example.org ")).pseudonym == pseudonym  # normalised
    vault.set_status(pseudonym, "restricted", only_from="active")
    assert present(vault.find_by_email(EMAIL)).status == "restricted"
    vault.erase(pseudonym)
    assert vault.find_by_email(EMAIL) is None  # an erased identity keeps no link to the address
    with pytest.raises(InvalidEmail):
        vault.find_by_email("not an address")


def test_concurrent_first_logins_from_threads_yield_one_pseudonym(sqlite_store, keyring: Keyring):
    """SQLite only: mongomock's unique check is not atomic under threads (a real server's is); the
    retry path itself is tested on both backends below."""
    store = sqlite_store
    vault = Vault(store, pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key))
    barrier = threading.Barrier(16)
    results: list[str] = []

    def login() -> None:
        barrier.wait()
        results.append(vault.pseudonymise(EMAIL).identity.pseudonym)

    threads = [threading.Thread(target=login) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and len(set(results)) == 1
    assert store.count(IDENTITIES, {}) == 1


def _login_in_process(db: str, keys_dir: str, emails: list[str]) -> list[str]:
    keyring = Keyring(Path(keys_dir), passphrase=None)
    vault = Vault(SQLiteStore(db), pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key))
    return [vault.pseudonymise(e).identity.pseudonym for e in emails]


def test_concurrent_first_logins_from_processes_yield_one_pseudonym_per_email(tmp_path: Path, keys_dir: Path):
    db = str(tmp_path / "shared.sqlite3")
    emails = [f"person{i}@example.org" for i in range(10)]
    results = race_in_processes(_login_in_process, [(db, str(keys_dir), emails)] * 6)
    assert all(r == results[0] for r in results)
    assert len(set(results[0])) == 10
    assert SQLiteStore(db).count(IDENTITIES, {}) == 10


def test_no_email_in_any_log_record_of_vault_operations(vault: Vault, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    pseudonym = vault.pseudonymise(EMAIL).identity.pseudonym
    vault.pseudonymise(EMAIL)
    vault.record_login(pseudonym)
    with pytest.raises(InvalidEmail):
        vault.pseudonymise("broken address@example.org")
    assert caplog.records, "the vault should log its operations"
    for record in caplog.records:
        text = (record.getMessage() + repr(vars(record))).lower()
        assert "alice" not in text and "example.org" not in text and "broken" not in text


def test_a_first_login_that_loses_the_race_returns_the_winners_pseudonym(vault: Vault, store):
    """The loser's insert hits the unique blind index; it reads the winner's record instead."""
    real_insert = store.insert
    winner: list[str] = []

    def insert_after_a_rival(coll, doc):
        if not winner:
            winner.append(doc["pseudonym"].replace(doc["pseudonym"][0], "a" if doc["pseudonym"][0] != "a" else "b", 1))
            real_insert(coll, {**doc, "pseudonym": winner[0]})
        return real_insert(coll, doc)

    store.insert = insert_after_a_rival
    try:
        result = vault.pseudonymise(EMAIL)
    finally:
        store.insert = real_insert
    assert not result.created and result.identity.pseudonym == winner[0]
    assert store.count(IDENTITIES, {}) == 1


# -- the sealed e-mail is bound to the pseudonym of its row (sb2) --------------------------------


def test_a_new_identity_is_sealed_bound_to_its_own_pseudonym(vault: Vault, store, keyring: Keyring):
    pseudonym = vault.pseudonymise(EMAIL).identity.pseudonym
    sealed = store.get(IDENTITIES, pseudonym)["sealed_email"]
    assert sealed.startswith("sb2.")
    assert Opener(dpo_private_key(keyring.paths.root)).unseal(sealed) == (pseudonym, "alice.example@example.org")


def test_after_a_pseudonym_collision_the_seal_is_made_for_the_pseudonym_inserted(vault: Vault, store, keyring: Keyring,
                                                                                   monkeypatch: pytest.MonkeyPatch):
    """A clash on the random pseudonym retries with a fresh one; the value must not stay bound to the first."""
    import identity.vault as vault_module

    taken = vault.pseudonymise("someone.else@example.org").identity.pseudonym
    taken_before = store.get(IDENTITIES, taken)
    fresh = new_pseudonym()
    drawn = iter([taken, taken, fresh])
    monkeypatch.setattr(vault_module, "new_pseudonym", lambda: next(drawn))
    result = vault.pseudonymise(EMAIL)
    assert result.created and result.identity.pseudonym == fresh
    assert store.get(IDENTITIES, taken) == taken_before  # the clashing row is untouched
    opened = Opener(dpo_private_key(keyring.paths.root)).unseal(store.get(IDENTITIES, fresh)["sealed_email"])
    assert opened == (fresh, "alice.example@example.org")


def test_rekey_seals_the_new_address_bound_to_the_same_pseudonym(vault: Vault, store, keyring: Keyring):
    pseudonym = vault.pseudonymise(EMAIL).identity.pseudonym
    vault.rekey(pseudonym, "  New.Address@Example.ORG ")
    sealed = store.get(IDENTITIES, pseudonym)["sealed_email"]
    assert Opener(dpo_private_key(keyring.paths.root)).unseal(sealed) == (pseudonym, "new.address@example.org")
    assert present(vault.find_by_email("new.address@example.org")).pseudonym == pseudonym


@pytest.mark.parametrize("pseudonym", ["not-a-pseudonym", "", "a" * 25 + "\0"])
def test_rekey_of_something_that_is_no_pseudonym_finds_nobody(vault: Vault, store, pseudonym):
    vault.pseudonymise(EMAIL)
    before = list(store.find(IDENTITIES, {}))
    with pytest.raises(LookupError):
        vault.rekey(pseudonym, "new.address@example.org")
    assert list(store.find(IDENTITIES, {})) == before


# -- what the retention purge selects, and erases only while it still holds --------------------------------


def test_the_inactivity_selection_keeps_restricted_identities(store, keyring: Keyring):
    now = [1_700_000_000]
    vault = Vault(store, pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key), clock=lambda: now[0])
    idle, restricted, closed = (vault.pseudonymise(f"{name}@example.org").identity.pseudonym
                                for name in ("idle", "restricted", "closed"))
    vault.set_status(restricted, "restricted", only_from="active")
    vault.set_status(closed, "closed", only_from="active")
    now[0] += 1000
    assert sorted(vault.inactive_since(now[0], limit=10)) == sorted([idle, closed])
    assert vault.purge_counts(now[0], now[0]) == (2, 1)
    assert not vault.erase_if_inactive(restricted, now[0])
    assert present(vault.find(restricted)).status == "restricted"


def test_a_conditional_erasure_keeps_whoever_no_longer_meets_the_condition(store, keyring: Keyring):
    now = [1_700_000_000]
    vault = Vault(store, pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key), clock=lambda: now[0])
    returning, never, gone, reopened, closed = (vault.pseudonymise(f"{name}@example.org").identity.pseudonym
                                                for name in ("returning", "never", "gone", "reopened", "closed"))
    vault.record_login(gone)
    for pseudonym in (reopened, closed):
        vault.set_status(pseudonym, "closed", only_from="active")
    now[0] += 1000
    cutoff = now[0] - 10
    vault.record_login(returning)  # signed in after the purge chose them
    vault.set_status(reopened, "active", only_from="closed")
    assert not vault.erase_if_inactive(returning, cutoff)
    assert vault.erase_if_inactive(never, cutoff) and vault.erase_if_inactive(gone, cutoff)  # no login / an old one
    assert not vault.erase_if_closed_before(reopened, cutoff)
    assert vault.erase_if_closed_before(closed, cutoff)
    assert not vault.erase_if_closed_before(closed, cutoff) and not vault.erase_if_inactive(never, cutoff)  # once
    statuses = {p: present(vault.find(p)).status for p in (returning, never, gone, reopened, closed)}
    assert statuses == {returning: "active", never: "erased", gone: "erased", reopened: "active", closed: "erased"}
    assert store.get(IDENTITIES, gone)["sealed_email"] is None and store.get(IDENTITIES, returning)["sealed_email"]
