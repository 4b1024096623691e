"""Changing the keys passphrase (``identity.keys.passphrase``): every protected key, atomically, resumably."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from identity.keys import KeyMaterialError, Keyring, init_keys, rotate_signing_keys
from identity.keys import passphrase as module
from identity.keys.files import KeyPaths, load_private_key, pem_is_encrypted
from identity.keys.passphrase import change_passphrase, passphrase_problem, protected_files

OLD, NEW = "old passphrase of the keys", "new passphrase of the keys"


@pytest.fixture
def encrypted_keys(tmp_path: Path) -> Path:
    root = tmp_path / "keys"
    init_keys(root, passphrase=OLD, dpo_passphrase=None, development=True, now=time.time())
    rotate_signing_keys(root, passphrase=OLD, longest_token_ttl=3600, now=time.time())  # two signing keys
    return root


def public_half(path: Path, passphrase: str | None) -> bytes:
    return load_private_key(path, passphrase).public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def test_every_protected_key_moves_to_the_new_passphrase_and_stays_the_same_key(encrypted_keys: Path):
    files = protected_files(KeyPaths(encrypted_keys))
    assert len(files) == 4  # two signing keys, the self-audience key, the audit key
    before = {path: public_half(path, OLD) for path in files}

    change = change_passphrase(encrypted_keys, current=OLD, new=NEW)

    assert sorted(change.changed) == sorted(files) and change.already == []
    for path in files:
        assert pem_is_encrypted(path) and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert public_half(path, NEW) == before[path]
        with pytest.raises(KeyMaterialError):
            load_private_key(path, OLD)
    assert not list(encrypted_keys.rglob(".*.new"))
    keyring = Keyring(encrypted_keys, passphrase=NEW)  # the service starts with the new one
    assert keyring.active_signing_key().kid


def test_a_wrong_current_passphrase_changes_nothing(encrypted_keys: Path):
    files = protected_files(KeyPaths(encrypted_keys))
    contents = {path: path.read_bytes() for path in files}
    with pytest.raises(KeyMaterialError, match="nothing was changed"):
        change_passphrase(encrypted_keys, current="a guess", new=NEW)
    assert {path: path.read_bytes() for path in files} == contents


def test_a_run_cut_short_is_finished_by_running_it_again(encrypted_keys: Path, monkeypatch: pytest.MonkeyPatch):
    files = protected_files(KeyPaths(encrypted_keys))
    real_replace = module._replace
    calls: list[Path] = []

    def crash_after_two(path: Path, data: bytes) -> None:
        if len(calls) == 2:
            raise OSError("power cut")
        calls.append(path)
        real_replace(path, data)

    monkeypatch.setattr(module, "_replace", crash_after_two)
    with pytest.raises(OSError):
        change_passphrase(encrypted_keys, current=OLD, new=NEW)
    monkeypatch.setattr(module, "_replace", real_replace)

    change = change_passphrase(encrypted_keys, current=OLD, new=NEW)

    assert sorted(change.already) == sorted(calls) and len(change.changed) == len(files) - 2
    for path in files:
        load_private_key(path, NEW)


def test_unencrypted_development_keys_get_a_passphrase(keys_dir: Path):
    change = change_passphrase(keys_dir, current=None, new=NEW)
    assert change.changed and all(pem_is_encrypted(path) for path in change.changed)
    with pytest.raises(KeyMaterialError, match="encrypted and no passphrase"):
        Keyring(keys_dir, passphrase=None).active_signing_key()


def test_a_directory_without_keys_is_refused(tmp_path: Path):
    with pytest.raises(KeyMaterialError, match="no private key"):
        change_passphrase(tmp_path, current=None, new=NEW)


@pytest.mark.parametrize(("passphrase", "production", "problem"), [
    ("", False, "empty"),
    ("short-but-dev", False, None),
    ("fifteen chars!!", True, "at least 16"),
    ("sixteen chars!!!", True, None),
])
def test_new_passphrase_rules(passphrase: str, production: bool, problem: str | None):
    found = passphrase_problem(passphrase, production=production)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_production_starts_with_a_weak_passphrase_but_says_how_to_change_it(settings, tmp_path: Path, caplog):
    import dataclasses
    import logging

    from identity.services import build_services
    from tests.conftest import production_settings

    weak = production_settings(settings, tmp_path)  # passphrase "pass", made before the rule
    with caplog.at_level(logging.WARNING, logger="identity.services"):
        build_services(weak)
    assert "IDENTITY_KEYS_PASSPHRASE is weak" in caplog.text and "scripts/keys.py passphrase" in caplog.text
    assert "pass" not in caplog.text.replace("passphrase", "")  # the passphrase itself is never logged

    change_passphrase(weak.keys_dir, current="pass", new=NEW)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="identity.services"):
        build_services(dataclasses.replace(weak, keys_passphrase=NEW))
    assert "weak" not in caplog.text
