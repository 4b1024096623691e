"""Moving a vault from a whole DPO key to a key set: every e-mail re-sealed, resumable, audited, race-safe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from identity.audit import AuditLog
from identity.breach import opening
from identity.breach.errors import BreachError, Refused
from identity.breach.reseal import ResealParams, reseal_vault
from identity.keys import Keyring
from identity.keys.dpo_shares import Holder, create_key_set, unlock, write_key_set
from identity.keys.files import private_key_pem
from identity.sealing import Opener, SealError, Sealer
from identity.store import StoreUnavailable
from identity.vault import IDENTITIES, IDENTITY_ERASED, Vault
from tests.audit_support import signed_log
from tests.breach_support import EMAILS, dpo_private_key

OLD_PASSPHRASE = "the old whole key's passphrase"


@pytest.fixture
def old_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


@pytest.fixture
def old_key_file(old_key, tmp_path: Path) -> Path:
    path = tmp_path / "offline" / "dpo_private.pem"
    path.parent.mkdir()
    path.write_bytes(private_key_pem(old_key, OLD_PASSPHRASE))
    return path


@pytest.fixture
def vault_under_old_key(store, keys_dir: Path, old_key) -> dict[str, str]:
    """Twelve people sealed to the old key (one erased); the keys dir already holds the new key set's public key."""
    vault = Vault(store, pepper=Keyring(keys_dir, passphrase=None).pepper, sealer=Sealer(old_key.public_key()))
    people = {vault.pseudonymise(email).identity.pseudonym: email for email in EMAILS}
    erased = sorted(people)[4]
    store.update(IDENTITIES, {"pseudonym": erased},
                 {"status": IDENTITY_ERASED, "sealed_email": None, "blind_index": None})
    del people[erased]
    return people


@pytest.fixture
def audit(store) -> AuditLog:
    return signed_log(store)


def params(tmp_path: Path, keys_dir: Path, old_key_file: Path | Sequence[Path], **overrides: Any) -> ResealParams:
    values: dict[str, Any] = dict(operator="dpo.jansen", old_key=old_key_file, new_public=keys_dir / "dpo_public.pem",
                  state=tmp_path / "reseal.state.json", passphrase=OLD_PASSPHRASE, workers=0, batch_size=4)
    return ResealParams(**(values | overrides))


def sealed_values(store) -> dict[str, str | None]:
    return {d["pseudonym"]: d.get("sealed_email") for d in store.find(IDENTITIES, {})}


def assert_only_the_new_key_opens(store, keys_dir: Path, old_key, people: dict[str, str]) -> None:
    new, old = Opener(dpo_private_key(keys_dir)), Opener(old_key)
    for pseudonym, sealed in sealed_values(store).items():
        if pseudonym not in people:
            assert sealed is None  # the erased record stays erased
            continue
        assert sealed is not None and sealed.startswith("sb2.")
        assert new.unseal(sealed) == (pseudonym, people[pseudonym])  # bound to its own row
        with pytest.raises(SealError):
            old.open(sealed)


def test_a_pass_reseals_every_email_to_the_new_key_set(store, audit, vault_under_old_key, keys_dir, old_key,
                                                        old_key_file, tmp_path):
    report = reseal_vault(store, audit, params(tmp_path, keys_dir, old_key_file))
    assert report.as_dict() == {"resealed": 11, "not_old_key": 0, "changed": 0, "erased": 1}
    assert report.binding() == {"upgraded": 0, "misbound": 0}  # sealed bound already, to their own rows
    assert_only_the_new_key_opens(store, keys_dir, old_key, vault_under_old_key)
    kinds = [(r["action"], r["outcome"]) for r in audit.records()]
    assert kinds == [("keys.dpo_reseal", "started"), ("keys.dpo_reseal", "completed")]
    assert list(audit.records())[-1]["details"]["binding"] == {"upgraded": 0, "misbound": 0}
    assert "@" not in json.dumps(list(audit.records())) and "@" not in (tmp_path / "reseal.state.json").read_text()

    again = reseal_vault(store, audit, params(tmp_path, keys_dir, old_key_file))  # the proof: nothing left
    assert again.passes == 2 and not again.resumed
    assert again.as_dict() == {"resealed": 0, "not_old_key": 11, "changed": 0, "erased": 1}


def test_worker_processes_reseal_the_same(store, audit, vault_under_old_key, keys_dir, old_key, old_key_file,
                                          tmp_path):
    report = reseal_vault(store, audit, params(tmp_path, keys_dir, old_key_file, workers=2, batch_size=3))
    assert report.counts["resealed"] == 11
    assert_only_the_new_key_opens(store, keys_dir, old_key, vault_under_old_key)


class FailingAfter:
    """The store, losing its connection on the n-th update."""

    def __init__(self, inner, updates: int, error: BaseException) -> None:
        self._inner, self._left, self._error = inner, updates, error

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def update(self, coll, where, changes, **kwargs):
        self._left -= 1
        if self._left < 0:
            raise self._error
        return self._inner.update(coll, where, changes, **kwargs)


@pytest.mark.parametrize("error", [StoreUnavailable("connection lost"), KeyboardInterrupt()])
def test_a_killed_pass_resumes_where_it_stopped(store, audit, vault_under_old_key, keys_dir, old_key, old_key_file,
                                                tmp_path, monkeypatch, error):
    with pytest.raises(BreachError if isinstance(error, StoreUnavailable) else KeyboardInterrupt):
        reseal_vault(FailingAfter(store, 6, error), audit, params(tmp_path, keys_dir, old_key_file))
    state = json.loads((tmp_path / "reseal.state.json").read_text())
    assert state["cursor"] and not state["complete"]
    done_before = state["counts"]["resealed"]
    assert 0 < done_before <= 6

    opened: list[str] = []
    real = opening.open_all

    def open_all(values, *key):
        opened.extend(values)
        return real(values, *key)

    monkeypatch.setattr(opening, "open_all", open_all)
    report = reseal_vault(store, audit, params(tmp_path, keys_dir, old_key_file))
    assert report.resumed
    assert report.counts["resealed"] + report.counts["not_old_key"] == 11
    assert report.counts["not_old_key"] == 6 - done_before  # re-sealed after the last checkpoint: met again
    assert len(opened) == 11 - done_before  # nothing before the checkpoint is opened again
    assert_only_the_new_key_opens(store, keys_dir, old_key, vault_under_old_key)
    outcomes = [r["outcome"] for r in audit.records()]
    assert outcomes == ["started", "interrupted" if isinstance(error, KeyboardInterrupt) else "failed", "started",
                        "completed"]


def test_a_record_changed_meanwhile_is_not_overwritten(store, audit, vault_under_old_key, keys_dir, old_key_file,
                                                       tmp_path):
    victim = sorted(vault_under_old_key)[0]

    class ErasedMeanwhile(FailingAfter):
        def update(self, coll, where, changes, **kwargs):
            if where.get("pseudonym") == victim:  # the person exercises Art. 17 while the pass runs
                self._inner.update(IDENTITIES, {"pseudonym": victim}, {"status": IDENTITY_ERASED, "sealed_email": None})
            return self._inner.update(coll, where, changes, **kwargs)

    report = reseal_vault(ErasedMeanwhile(store, 0, Exception()), audit, params(tmp_path, keys_dir, old_key_file))
    assert report.counts["changed"] == 1 and report.counts["resealed"] == 10
    assert store.get(IDENTITIES, victim)["sealed_email"] is None


def refused(store, audit, p, monkeypatch, match: str) -> dict:
    before = sealed_values(store)
    monkeypatch.setattr(opening, "open_all", lambda *a: pytest.fail("an e-mail was opened"))
    with pytest.raises(Refused, match=match):
        reseal_vault(store, audit, p)
    assert sealed_values(store) == before
    (record,) = audit.records()
    assert (record["action"], record["outcome"]) == ("keys.dpo_reseal", "refused")
    return record


def test_refuses_before_the_new_public_key_is_installed(store, audit, vault_under_old_key, old_key, tmp_path,
                                                        monkeypatch, old_key_file):
    same = tmp_path / "still-old.pem"
    from cryptography.hazmat.primitives import serialization
    same.write_bytes(old_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    refused(store, audit, params(tmp_path, tmp_path, old_key_file, new_public=same), monkeypatch,
            "still the old key's public half")


def test_refuses_a_wrong_passphrase_for_the_old_key(store, audit, vault_under_old_key, keys_dir, old_key_file,
                                                    tmp_path, monkeypatch):
    record = refused(store, audit, params(tmp_path, keys_dir, old_key_file, passphrase="not it"), monkeypatch,
                     "wrong passphrase")
    assert "not it" not in json.dumps(record)


def test_refuses_the_state_of_another_migration(store, audit, vault_under_old_key, keys_dir, old_key_file,
                                                tmp_path, monkeypatch):
    (tmp_path / "reseal.state.json").write_text(json.dumps({
        "format": "identity-dpo-reseal/1", "old_key_sha256": "0" * 64, "new_key_sha256": "1" * 64,
        "cursor": "a", "counts": {}, "complete": False, "passes": 1}))
    refused(store, audit, params(tmp_path, keys_dir, old_key_file), monkeypatch, "another --state")


def test_a_key_set_is_retired_with_its_shares(store, audit, keys_dir, tmp_path, monkeypatch):
    """A share lost or stolen, a holder leaving: the old set's holders re-seal everything to a new set."""
    old_set = create_key_set([Holder(f"old-{i}", "-") for i in (1, 2, 3)], 2, development=True)
    old_shares = write_key_set(tmp_path / "old-set", old_set)
    vault = Vault(store, pepper=Keyring(keys_dir, passphrase=None).pepper, sealer=Sealer(old_set.public_key))
    people = {vault.pseudonymise(email).identity.pseudonym: email for email in EMAILS}
    old_key = unlock(old_shares[:2], old_set.public_key, lambda share: None).private_key

    with pytest.raises(Refused, match="2 different shares .* 1 given"):  # one old holder alone cannot
        reseal_vault(store, audit, params(tmp_path, keys_dir, old_shares[0], passphrase=None))
    report = reseal_vault(store, audit, params(tmp_path, keys_dir, (old_shares[2], old_shares[0]), passphrase=None))
    assert report.counts["resealed"] == 12
    assert_only_the_new_key_opens(store, keys_dir, old_key, people)
    started = next(r for r in audit.records() if r["outcome"] == "started")
    assert started["details"]["old_key"] == "shares"


# -- binding: every value written is sb2, bound to its row; an sb2 value keeps whom it names -------------


def _legacy(store, old_key, people: dict[str, str]) -> None:
    """Every record's value as a vault from before sb2 holds it: the e-mail alone (sb1), sealed to the old key."""
    sealer = Sealer(old_key.public_key())
    for pseudonym, email in people.items():
        store.update(IDENTITIES, {"pseudonym": pseudonym}, {"sealed_email": sealer.seal(email.encode())})


def test_a_pass_binds_legacy_values_to_their_rows(store, audit, vault_under_old_key, keys_dir, old_key, old_key_file,
                                                  tmp_path):
    _legacy(store, old_key, vault_under_old_key)
    assert all(v is None or v.startswith("sb1.") for v in sealed_values(store).values())
    report = reseal_vault(store, audit, params(tmp_path, keys_dir, old_key_file))
    assert report.as_dict() == {"resealed": 11, "not_old_key": 0, "changed": 0, "erased": 1}
    assert report.binding() == {"upgraded": 11, "misbound": 0}
    assert_only_the_new_key_opens(store, keys_dir, old_key, vault_under_old_key)
    completed = list(audit.records())[-1]
    assert completed["outcome"] == "completed" and completed["details"]["binding"] == {"upgraded": 11, "misbound": 0}
    again = reseal_vault(store, audit, params(tmp_path, keys_dir, old_key_file))
    assert again.as_dict()["not_old_key"] == 11 and again.binding() == {"upgraded": 0, "misbound": 0}


def test_a_pass_keeps_a_misbound_value_naming_whom_it_was_sealed_for(store, audit, vault_under_old_key, keys_dir,
                                                                     old_key, old_key_file, tmp_path):
    """Re-sealing must not launder a value copied into another row into one bound to that row."""
    a, b = sorted(vault_under_old_key)[:2]
    store.update(IDENTITIES, {"pseudonym": b}, {"sealed_email": sealed_values(store)[a]})
    report = reseal_vault(store, audit, params(tmp_path, keys_dir, old_key_file))
    assert report.counts["resealed"] == 11 and report.binding() == {"upgraded": 0, "misbound": 1}
    new, sealed = Opener(dpo_private_key(keys_dir)), sealed_values(store)
    value_in_b, value_in_a = sealed[b], sealed[a]
    assert value_in_b is not None and value_in_a is not None
    assert new.unseal(value_in_b) == (a, vault_under_old_key[a])  # still names A, in B's row
    assert new.unseal(value_in_a) == (a, vault_under_old_key[a])
    assert list(audit.records())[-1]["details"]["binding"] == {"upgraded": 0, "misbound": 1}

    from identity.breach.resolve import resolve_pseudonyms
    from tests.breach_support import params as breach_params, write_list
    listing = write_list(tmp_path / "affected.txt", [b])
    summary = resolve_pseudonyms(store, audit, breach_params(tmp_path, keys_dir, listing))
    assert summary.counts["misbound"] == 1 and vault_under_old_key[a] not in (tmp_path / "contacts.csv").read_text()


def test_the_script_reports_the_binding_counts(tmp_path: Path, keys_dir: Path, old_key, old_key_file):
    from identity.store import SQLiteStore
    from tests.test_scripts_keys import run_keys

    db = tmp_path / "identity.sqlite3"
    store = SQLiteStore(db)
    vault = Vault(store, pepper=Keyring(keys_dir, passphrase=None).pepper, sealer=Sealer(old_key.public_key()))
    people = {vault.pseudonymise(email).identity.pseudonym: email for email in EMAILS[:4]}
    a, b, legacy = sorted(people)[:3]
    store.update(IDENTITIES, {"pseudonym": b}, {"sealed_email": sealed_values(store)[a]})
    _legacy(store, old_key, {legacy: people[legacy]})
    store.close()
    env = {"IDENTITY_KEYS_DIR": str(keys_dir), "IDENTITY_DB_URI": f"sqlite:///{db}",
           "IDENTITY_DPO_KEY_PASSPHRASE": OLD_PASSPHRASE, "IDENTITY_OPERATOR": "dpo.jansen"}
    result = run_keys("dpo-reseal", "--old-key", str(old_key_file), "--state", str(tmp_path / "reseal.json"),
                      "--workers", "0", env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["counts"] == {"resealed": 4, "not_old_key": 0, "changed": 0, "erased": 0}
    assert answer["binding"] == {"upgraded": 1, "misbound": 1}
    assert "warning: 1 sealed e-mails name another pseudonym" in result.stderr
