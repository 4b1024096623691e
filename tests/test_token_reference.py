"""The access token's sealed reference (identity.token_reference): opaque, unforgeable, bound to its signing key."""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import pytest

from identity.keys import Keyring
from identity.keys.lifecycle import rotate_signing_keys
from identity.token_reference import HEADER_PARAMETER, References, reference_of
from tests.conftest import FakeClock

FIELDS = {"j": "jti-1", "i": 1_800_000_000, "e": 1_800_000_600, "g": "grant-1", "s": "openid records:read"}


@pytest.fixture
def keyring(keys_dir: Path, clock: FakeClock) -> Keyring:
    return Keyring(keys_dir, passphrase=None, monotonic=clock)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_reference_opens_to_what_was_sealed_and_shows_nothing_of_it(keyring):
    references = References(keyring)
    kid = keyring.active_signing_key().kid
    sealed = references.seal(kid, FIELDS)
    assert references.open(sealed) == FIELDS
    named, body = sealed.split(".")
    assert named == kid  # the signing key's id, public in the JWKS anyway
    for value in ("jti-1", "grant-1", "openid", "1800000000"):
        assert value.encode() not in unb64(body)
    assert references.seal(kid, FIELDS) != sealed  # a fresh nonce every time: two seals are unlinkable


@pytest.mark.parametrize("tamper", ["flip a ciphertext byte", "flip a nonce byte", "truncate", "extend",
                                    "another signing key", "no key id", "an unknown key id"])
def test_a_tampered_reference_opens_to_nothing(keyring, keys_dir, tamper):
    rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=time.time())  # adds a next key
    keyring.reload()
    references = References(keyring)
    kids = [key.kid for key in keyring.signing_keys()]
    sealed = references.seal(kids[0], FIELDS)
    kid, body = sealed.split(".")
    raw = bytearray(unb64(body))
    if tamper == "flip a ciphertext byte":
        raw[20] ^= 1
        forged = f"{kid}.{b64(bytes(raw))}"
    elif tamper == "flip a nonce byte":
        raw[0] ^= 1
        forged = f"{kid}.{b64(bytes(raw))}"
    elif tamper == "truncate":
        forged = f"{kid}.{b64(bytes(raw[:-1]))}"
    elif tamper == "extend":
        forged = f"{kid}.{b64(bytes(raw) + b'x')}"
    elif tamper == "another signing key":  # the key id is bound to the ciphertext as associated data
        assert len(kids) > 1
        forged = f"{kids[1]}.{body}"
    elif tamper == "no key id":
        forged = body
    else:
        forged = f"{'A' * 43}.{body}"
    assert references.open(forged) is None


@pytest.mark.parametrize("junk", [None, 17, "", ".", "x.", ".x", "kid.!!!", "kid." + "A" * 5000, ["a", "b"]])
def test_junk_opens_to_nothing(keyring, junk):
    assert References(keyring).open(junk) is None


def test_another_deployment_cannot_open_or_forge_a_reference(keyring, key_template, tmp_path):
    """Keys derived from another deployment's signing key: its references mean nothing here, even under a
    key id of ours."""
    other_dir = tmp_path / "other-keys"
    from identity.keys import init_keys
    init_keys(other_dir, passphrase=None, dpo_passphrase=None, development=True, now=time.time())
    other = Keyring(other_dir, passphrase=None)
    theirs = References(other).seal(other.active_signing_key().kid, FIELDS)
    ours = References(keyring)
    assert ours.open(theirs) is None
    our_kid = keyring.active_signing_key().kid
    assert ours.open(f"{our_kid}.{theirs.split('.')[1]}") is None


def test_a_reference_lives_exactly_as_long_as_its_signing_key(keyring, keys_dir, clock):
    """Rotation retires the key and keeps it while its tokens may be valid: the reference still opens; once
    the key is dropped, nothing opens it."""
    references = References(keyring)
    kid = keyring.active_signing_key().kid
    sealed = references.seal(kid, FIELDS)
    now = time.time()
    for _ in range(2):  # the first adds a next key, the second promotes it and retires ours
        rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=now)
    clock.advance(60)  # past the keyring's reload interval: it reloads by itself
    assert keyring.active_signing_key().kid != kid
    assert references.open(sealed) == FIELDS
    rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=now + 601)
    clock.advance(60)
    assert kid not in {key.kid for key in keyring.signing_keys()}
    assert references.open(sealed) is None


def test_reference_of_reads_the_header_member_and_never_raises():
    def header(value: object) -> str:
        return b64(json.dumps(value).encode())

    assert reference_of(header({"alg": "RSA-OAEP-256", HEADER_PARAMETER: "kid.body"}) + ".a.b.c.d") == "kid.body"
    assert reference_of(header({"alg": "RSA-OAEP-256"}) + ".a.b.c.d") is None
    for junk in ("", ".", "!!!!.a", header([1, 2]) + ".x", header("text"), "A" * 5000, b64(b"\xff\xfe") + ".x"):
        assert reference_of(junk) is None


def test_a_copied_key_directory_opens_the_same_references(keyring, keys_dir, tmp_path):
    """Every instance of a fleet loads the same keys directory: a token minted by one is recognised by all."""
    copy = tmp_path / "instance-2"
    shutil.copytree(keys_dir, copy)
    sealed = References(keyring).seal(keyring.active_signing_key().kid, FIELDS)
    assert References(Keyring(copy, passphrase=None)).open(sealed) == FIELDS
