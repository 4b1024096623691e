"""identity.verify.keygen: audience key pairs for downstream services."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwk as jwcrypto_jwk

from identity.verify import ConfigurationError, DecryptionKey, generate_audience_key
from identity.verify import keygen

from .verify_support import PSEUDONYM, TokenFactory, make_verifier


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_private_0600_public_0644_named_by_kid(tmp_path: Path):
    files = generate_audience_key(tmp_path / "keys", bits=2048)
    assert mode(tmp_path / "keys") == 0o700
    assert files.private_key.name == f"audience-{files.kid}.key.pem" and mode(files.private_key) == 0o600
    assert files.public_key.name == f"audience-{files.kid}.pub.pem" and mode(files.public_key) == 0o644
    assert b"PRIVATE KEY" in files.private_key.read_bytes()
    assert b"PRIVATE" not in files.public_key.read_bytes()


def test_kid_is_the_rfc7638_thumbprint_by_an_independent_implementation(tmp_path: Path):
    files = generate_audience_key(tmp_path, bits=2048)
    independent = jwcrypto_jwk.JWK.from_pem(files.public_key.read_bytes())
    assert independent.thumbprint() == files.kid
    assert DecryptionKey.from_file(files.private_key).kid == files.kid


def test_default_is_3072_bits_and_passphrase_encrypts(tmp_path: Path):
    files = generate_audience_key(tmp_path, passphrase="correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in files.private_key.read_bytes()
    key = serialization.load_pem_private_key(files.private_key.read_bytes(), password=b"correct horse")
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    with pytest.raises(ConfigurationError):
        DecryptionKey.from_file(files.private_key)
    assert DecryptionKey.from_file(files.private_key, passphrase="correct horse").kid == files.kid


def test_generated_key_decrypts_tokens_encrypted_to_its_public_half(tmp_path: Path):
    files = generate_audience_key(tmp_path, bits=2048)
    private = serialization.load_pem_private_key(files.private_key.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    factory = TokenFactory(audience_key=private)
    verifier, _, _ = make_verifier(factory, decryption_keys=[DecryptionKey.from_file(files.private_key)])
    assert verifier.verify(factory.token()).subject == PSEUDONYM


@pytest.mark.parametrize("bits", [1024, 2047, 8192])
def test_refuses_weak_or_odd_sizes(tmp_path: Path, bits: int):
    with pytest.raises(ConfigurationError):
        generate_audience_key(tmp_path, bits=bits)


def test_never_overwrites(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(keygen, "thumbprint", lambda key: "fixed-kid")
    generate_audience_key(tmp_path, bits=2048)
    before = (tmp_path / "audience-fixed-kid.key.pem").read_bytes()
    with pytest.raises(ConfigurationError, match="already exists"):
        generate_audience_key(tmp_path, bits=2048)
    assert (tmp_path / "audience-fixed-kid.key.pem").read_bytes() == before


def test_private_mode_holds_under_a_permissive_umask(tmp_path: Path):
    old = os.umask(0)
    try:
        files = generate_audience_key(tmp_path / "k", bits=2048)
    finally:
        os.umask(old)
    assert mode(files.private_key) == 0o600
