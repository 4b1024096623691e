"""Audit signing keys: who may sign what, the service audit key on disk, and the service's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from identity.audit_signing import (
    OfficerSigner,
    ServiceSigner,
    TrustedKeys,
    key_id,
    load_officer_signer,
    load_service_signer,
    signed_message,
)
from identity.breach.audit_keys import officer_audit_signer, registered_officer_key
from identity.breach.errors import Refused
from identity.breach.registry import Registry
from identity.config import ConfigError
from identity.keys import KeyMaterialError, KeyPaths, ensure_audit_key
from identity.keys.files import private_key_pem
from identity.services import build_services
from identity.keys.files import private_key_pem
from tests.audit_support import signed_log
from tests.breach_support import Officer, found
from tests.conftest import production_settings
from tests.lookup_support import present

HASH = "cd" * 32


def test_signer_ids_name_the_key_or_the_officer():
    key = Ed25519PrivateKey.generate()
    assert ServiceSigner(key).signer_id == f"service:{key_id(key.public_key())}" and len(key_id(key.public_key())) == 16
    assert OfficerSigner("anna", key).signer_id == "officer:anna"
    assert "private" not in repr(ServiceSigner(key)) and repr(key) not in repr(OfficerSigner("anna", key))


def test_the_signed_bytes_are_domain_separated_from_officers_statements():
    assert signed_message(HASH) == b"identity-audit-record/v1:" + HASH.encode()
    assert not signed_message(HASH).startswith(b"{")  # four-eyes statements are JSON objects


def test_a_record_with_a_malformed_signature_is_refused_not_crashed():
    key = Ed25519PrivateKey.generate()
    keys = TrustedKeys([key.public_key()])
    signer = ServiceSigner(key).signer_id
    for signature in ("!!!", "", "AAAA", ServiceSigner(key).sign("ef" * 32)):
        problem = keys.problem_with({"seq": 1, "actor": "x", "hash": HASH, "signer": signer, "signature": signature})
        assert problem in ("record 1 is not signed", f"record 1 has a bad signature (signer {signer})")
    assert keys.problem_with({"seq": 1, "actor": "x", "hash": HASH, "signer": "weird", "signature": "AA"}) == \
        "record 1 is signed by an unknown key weird (not among the trusted audit keys)"


def test_the_service_key_is_created_with_the_other_keys_private_and_with_its_public_half(keys_dir: Path):
    paths = KeyPaths(keys_dir)
    assert paths.audit_signing.stat().st_mode & 0o777 == 0o600
    assert paths.audit_public.stat().st_mode & 0o777 == 0o644
    signer = load_service_signer(paths, None)
    public = serialization.load_pem_public_key(paths.audit_public.read_bytes())
    assert isinstance(public, Ed25519PublicKey)
    assert key_id(public) == signer.signer_id.removeprefix("service:")


def test_a_public_half_that_does_not_match_is_refused(keys_dir: Path):
    paths = KeyPaths(keys_dir)
    paths.audit_public.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(KeyMaterialError, match="is not the public half"):
        load_service_signer(paths, None)


def test_ensure_adds_the_key_restores_a_lost_public_half_and_never_replaces_a_kept_one(keys_dir: Path):
    paths = KeyPaths(keys_dir)
    assert ensure_audit_key(keys_dir, passphrase=None) == []
    private = paths.audit_signing.read_bytes()
    paths.audit_public.unlink()
    assert ensure_audit_key(keys_dir, passphrase=None) == [paths.audit_public]
    assert paths.audit_signing.read_bytes() == private and load_service_signer(paths, None)
    paths.audit_signing.unlink()
    with pytest.raises(KeyMaterialError, match="exists without"):
        ensure_audit_key(keys_dir, passphrase=None)
    paths.audit_public.unlink()
    assert ensure_audit_key(keys_dir, passphrase=None) == [paths.audit_signing, paths.audit_public]


def test_the_service_will_not_start_without_its_audit_key(settings):
    KeyPaths(settings.keys_dir).audit_signing.unlink()
    with pytest.raises(ConfigError, match=r"scripts/keys.py init --if-absent"):
        build_services(settings)


def test_production_refuses_an_unencrypted_audit_key(settings, tmp_path: Path):
    prod = production_settings(settings, tmp_path)
    paths = KeyPaths(prod.keys_dir)
    key = load_service_signer(paths, "pass").private_key
    paths.audit_signing.write_bytes(private_key_pem(key, None))
    with pytest.raises(ConfigError, match="audit_signing.pem is not encrypted with IDENTITY_KEYS_PASSPHRASE"):
        build_services(prod)


def test_production_starts_with_its_encrypted_audit_key(settings, tmp_path: Path):
    svc = build_services(production_settings(settings, tmp_path))
    assert present(svc.audit.signer).signer_id.startswith("service:")


def test_an_officer_key_loads_as_that_officers_signer(tmp_path: Path, sqlite_store):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "anna.key"
    path.write_bytes(private_key_pem(key, "pw"))
    assert load_officer_signer("anna", path, "pw").signer_id == "officer:anna"
    with pytest.raises(Refused, match="not the enrolled key of officer anna"):
        officer_audit_signer(sqlite_store, "anna", path, "pw")  # not enrolled yet
    found(Registry(sqlite_store, signed_log(sqlite_store)), Officer("anna", key), Officer("lead"))
    assert officer_audit_signer(sqlite_store, "anna", path, "pw").vouches_for("anna")
    with pytest.raises(Refused, match="cannot use the officer key"):
        officer_audit_signer(sqlite_store, "anna", path, "wrong")
    x25519 = tmp_path / "dpo.pem"
    x25519.write_bytes(private_key_pem(X25519PrivateKey.generate(), None))
    with pytest.raises(Refused, match="not an Ed25519 private key"):
        officer_audit_signer(sqlite_store, "anna", x25519, None)
    assert registered_officer_key(sqlite_store)("nobody") is None
