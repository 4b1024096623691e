"""Key material: init, rotation lifecycle, keyring reload, JWKS content."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from identity.keys import KeyMaterialError, Keyring, init_keys, rotate_signing_keys, thumbprint
from identity.keys.dpo_shares import PASSPHRASE_KDF, fingerprint, read_share
from identity.keys.files import KeyPaths, load_dpo_public_key, pem_is_encrypted

PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def test_init_creates_every_piece_with_private_modes(tmp_path: Path):
    root = tmp_path / "keys"
    root.mkdir()  # an existing empty directory is fine
    created = init_keys(root, passphrase=None, dpo_passphrase=None, development=True, now=0)
    for name in ("signing_key", "manifest", "blind_index_pepper", "dpo_share_1", "dpo_share_2", "dpo_share_3",
                 "pairwise_subject_key"):
        assert stat.S_IMODE(os.stat(created.files[name]).st_mode) == 0o600, name
    names = [p.name for p in root.rglob("*") if p.is_file()]
    # the DPO key exists only as shares (2 of 3), never whole
    assert sorted(n for n in names if "dpo" in n) == ["dpo_public.pem", "dpo_share_1.json", "dpo_share_2.json",
                                                      "dpo_share_3.json"]
    shares = [read_share(created.files[f"dpo_share_{i}"]) for i in (1, 2, 3)]
    assert {(s.threshold, s.count, s.development) for s in shares} == {(2, 3, True)}
    assert [s.index for s in shares] == [1, 2, 3] and len({s.set_id for s in shares}) == 1


def test_init_with_the_public_key_of_an_offline_key_set_writes_no_dpo_secret(tmp_path: Path):
    public = X25519PrivateKey.generate().public_key()
    created = init_keys(tmp_path / "keys", passphrase=None, dpo_passphrase=None, development=False, now=0,
                        dpo_public=public)
    assert KeyPaths(tmp_path / "keys").dpo_secrets() == []
    assert not [n for n in created.files if n.startswith("dpo_share")]
    assert fingerprint(load_dpo_public_key(created.files["dpo_public_key"])) == fingerprint(public)


def test_init_refuses_a_directory_holding_a_dpo_secret(tmp_path: Path):
    root = tmp_path / "keys"
    root.mkdir()
    (root / "dpo_private.pem").write_text("an old whole key")
    with pytest.raises(KeyMaterialError, match="dpo_private.pem already exists"):
        init_keys(root, passphrase=None, dpo_passphrase=None, development=True, now=0)


def test_init_refuses_to_overwrite(keys_dir: Path):
    with pytest.raises(KeyMaterialError, match="already exists"):
        init_keys(keys_dir, passphrase=None, dpo_passphrase=None, development=True, now=0)


def test_passphrase_encrypts_private_keys_and_is_needed_to_load(tmp_path: Path):
    root = tmp_path / "keys"
    created = init_keys(root, passphrase="signing-secret", dpo_passphrase="dpo-secret", development=False, now=0)
    assert pem_is_encrypted(created.files["signing_key"])
    share = read_share(created.files["dpo_share_1"])  # the DPO passphrase locks every share, at full KDF cost
    assert not share.development and share.kdf == PASSPHRASE_KDF
    with pytest.raises(KeyMaterialError, match="encrypted"):
        Keyring(root, passphrase=None)
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        Keyring(root, passphrase="wrong")
    assert Keyring(root, passphrase="signing-secret").active_signing_key().kid == created.signing_kid


def test_kid_is_the_rfc7638_thumbprint(keys_dir: Path):
    key = Keyring(keys_dir, passphrase=None).active_signing_key()
    assert key.kid == thumbprint(key.public_key)
    # RFC 7638 §3.1 example
    from joserfc.jwk import RSAKey
    example = RSAKey.import_key({
        "kty": "RSA", "e": "AQAB",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",  # noqa: E501 - the RFC's key, verbatim
    })
    assert example.private_key is None  # the RFC's example is a public key
    assert thumbprint(example.public_key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rotation_lifecycle_next_active_retired_dropped(keys_dir: Path):
    first = Keyring(keys_dir, passphrase=None).active_signing_key().kid
    m1 = rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=1000)
    states = {k["kid"]: k["state"] for k in m1["keys"]}
    assert states[first] == "active" and list(states.values()).count("next") == 1
    upcoming = next(k for k, s in states.items() if s == "next")

    keyring = Keyring(keys_dir, passphrase=None)
    assert keyring.active_signing_key().kid == first
    assert {k["kid"] for k in keyring.jwks()["keys"]} == {first, upcoming}  # next is published early

    m2 = rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=2000)
    states = {k["kid"]: k["state"] for k in m2["keys"]}
    assert states[first] == "retired" and states[upcoming] == "active"

    m3 = rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=2500)
    assert first in {k["kid"] for k in m3["keys"]}, "dropped before its tokens expired"
    m4 = rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=3200)
    assert first not in {k["kid"] for k in m4["keys"]}
    assert not KeyPaths(keys_dir).signing_key(first).exists()


def test_every_keyring_follows_a_rotation_without_restart(keys_dir: Path):
    ticks = [0.0]
    worker_a = Keyring(keys_dir, passphrase=None, monotonic=lambda: ticks[0])
    worker_b = Keyring(keys_dir, passphrase=None, monotonic=lambda: ticks[0])
    rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=1)
    manifest = rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=2)
    active = next(k["kid"] for k in manifest["keys"] if k["state"] == "active")
    ticks[0] = 5.0
    assert worker_a.active_signing_key().kid == active == worker_b.active_signing_key().kid


def test_jwks_has_public_members_only(keys_dir: Path):
    rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=1)
    jwks = Keyring(keys_dir, passphrase=None).jwks()
    assert len(jwks["keys"]) == 2
    for jwk in jwks["keys"]:
        assert not PRIVATE_JWK_MEMBERS & set(jwk)
        assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["use"] == "sig"


def test_repr_never_shows_key_material(keys_dir: Path):
    keyring = Keyring(keys_dir, passphrase=None)
    text = repr(keyring) + repr(keyring.active_signing_key())
    assert "PRIVATE" not in text and "private_key" not in text


def test_production_problems_name_development_and_unencrypted_keys(keys_dir: Path):
    problems = Keyring(keys_dir, passphrase=None).production_problems()
    joined = "\n".join(problems)
    assert "development keys" in joined
    assert "not encrypted" in joined
    assert "move it offline" in joined


def test_the_pairwise_subject_key_is_required_private_and_apart_from_the_pepper(keys_dir: Path):
    keyring = Keyring(keys_dir, passphrase=None)
    assert len(keyring.pairwise_key) == 32 and keyring.pairwise_key != keyring.pepper
    os.chmod(keys_dir / "pairwise_subject.key", 0o640)
    assert any("pairwise_subject.key is readable by group" in p for p in keyring.production_problems())
    (keys_dir / "pairwise_subject.key").unlink()
    with pytest.raises(KeyMaterialError, match="init --if-absent"):
        Keyring(keys_dir, passphrase=None)


def test_a_manifest_naming_a_traversal_kid_is_refused(keys_dir: Path):
    manifest = json.loads((keys_dir / "signing.json").read_text())
    manifest["keys"][0]["kid"] = "../../etc/passwd"
    (keys_dir / "signing.json").write_text(json.dumps(manifest))
    with pytest.raises(KeyMaterialError):
        Keyring(keys_dir, passphrase=None)


def test_a_manifest_that_cannot_be_loaded_is_reported_logged_once_and_taken_up_once_fixed(
        keys_dir: Path, caplog: pytest.LogCaptureFixture):
    ticks = [0.0]
    keyring = Keyring(keys_dir, passphrase=None, monotonic=lambda: ticks[0])
    signing = keyring.active_signing_key().kid
    manifest = rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=1)
    upcoming = next(k["kid"] for k in manifest["keys"] if k["state"] == "next")
    key_file = KeyPaths(keys_dir).signing_key(upcoming)
    held_back = key_file.with_suffix(".held-back")
    key_file.rename(held_back)  # the manifest arrived before its key file
    with caplog.at_level("WARNING", logger="identity.keys.keyring"):
        for tick in (2.0, 4.0, 6.0):
            ticks[0] = tick
            assert keyring.active_signing_key().kid == signing  # still serving, with the keys it has
            assert not keyring.is_healthy()
    warnings = [r for r in caplog.records if r.name == "identity.keys.keyring"]
    assert len(warnings) == 1 and upcoming in warnings[0].getMessage()
    assert "PRIVATE" not in warnings[0].getMessage() and not warnings[0].exc_info

    held_back.rename(key_file)
    ticks[0] = 8.0
    assert keyring.is_healthy()
    assert {k["kid"] for k in keyring.jwks()["keys"]} == {signing, upcoming}


def test_readyz_answers_503_while_the_keys_on_disk_cannot_be_loaded(client, services, keys_dir: Path):
    manifest = rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=1)
    upcoming = next(k["kid"] for k in manifest["keys"] if k["state"] == "next")
    KeyPaths(keys_dir).signing_key(upcoming).write_text("not a key")
    services.keyring._checked_at -= 2  # the reload check is due
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["keys"] == "unavailable"
