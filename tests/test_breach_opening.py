"""Opening sealed e-mails in batches: the fast path answers exactly as the public-API path does."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from nacl.public import PublicKey, SealedBox

from identity.breach.dpo_key import raw_private
from identity.breach.opening import MAX_PLAINTEXT, key_pair, open_all, open_one
from identity.sealing import SCHEME_PREFIX, Sealer


def _sealed_raw(public: bytes, plaintext: bytes) -> str:
    sealed = SealedBox(PublicKey(public)).encrypt(plaintext)
    return SCHEME_PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def test_open_all_matches_open_one_on_good_and_bad_values():
    key = X25519PrivateKey.generate()
    public, private = key_pair(raw_private(key))
    sealer = Sealer(key.public_key())
    other = Sealer(X25519PrivateKey.generate().public_key())
    good = [sealer.seal(f"p{'x' * n}@example.org".encode()) for n in range(8)]  # every base64 padding length
    values = good + [
        other.seal(b"someone@example.org"),  # sealed to another key
        "sb0." + good[0][4:],  # another scheme
        good[0][:-5],  # truncated
        "sb1.",  # empty
        "sb1.AAAA",  # shorter than a sealed box
        "sb1.!!!!" + good[0][8:],  # not base64
        "sb1.é" + good[0][5:],  # not ASCII
        good[1] + "==",  # padded
        good[2].replace("-", "+").replace("_", "/"),  # standard alphabet
        _sealed_raw(public, b""),  # empty plaintext
        _sealed_raw(public, b"\xff\xfe@example.org"),  # not UTF-8
        _sealed_raw(public, b"a" * (MAX_PLAINTEXT + 10) + b"@example.org"),  # longer than the buffer
        _sealed_raw(public, b"b" * MAX_PLAINTEXT),  # exactly the buffer
    ]
    expected = [open_one(v, public, private) for v in values]
    assert open_all(values, public, private) == expected
    assert expected[:8] == [f"p{'x' * n}@example.org" for n in range(8)]
    assert expected[8:15] == [None] * 7
    assert expected[15:17] == ["px@example.org", "pxx@example.org"]
    assert expected[17] == "" and expected[18] is None
    assert expected[19] == "a" * (MAX_PLAINTEXT + 10) + "@example.org" and expected[20] == "b" * MAX_PLAINTEXT


def test_open_all_of_nothing():
    public, private = key_pair(raw_private(X25519PrivateKey.generate()))
    assert open_all([], public, private) == []
