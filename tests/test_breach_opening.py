"""Opening sealed e-mails in batches: the fast path answers exactly as the public-API path does."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from nacl.public import PublicKey, SealedBox

from identity.breach.dpo_key import raw_private
from identity.breach.opening import MAX_PLAINTEXT, key_pair, open_all, open_one, unseal_one
from identity.sealing import BOUND_PREFIX, UNBOUND_PREFIX, Sealer
from identity.vault import new_pseudonym

P = new_pseudonym()


def _sealed_raw(public: bytes, plaintext: bytes, prefix: str = UNBOUND_PREFIX) -> str:
    sealed = SealedBox(PublicKey(public)).encrypt(plaintext)
    return prefix + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def test_open_all_matches_unseal_one_on_good_and_bad_values():
    key = X25519PrivateKey.generate()
    public, private = key_pair(raw_private(key))
    sealer = Sealer(key.public_key())
    other = Sealer(X25519PrivateKey.generate().public_key())
    good = [sealer.seal(f"p{'x' * n}@example.org".encode()) for n in range(8)]  # every base64 padding length
    bound = [sealer.seal_email(P, f"p{'x' * n}@example.org") for n in range(8)]
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
    ] + bound + [
        other.seal_email(P, "someone@example.org"),  # bound, sealed to another key
        UNBOUND_PREFIX + bound[0][4:],  # an sb2 box relabelled sb1 (its plaintext holds NULs)
        BOUND_PREFIX + good[0][4:],  # an sb1 box relabelled sb2 (no tag, no pseudonym)
        _sealed_raw(public, b"sb2\0" + P.encode() + b"\0x@example.org\0", BOUND_PREFIX),  # a third separator
        _sealed_raw(public, b"sb2\0" + P.encode() + b"x@example.org", BOUND_PREFIX),  # no separator
        _sealed_raw(public, b"sb2\0\0x@example.org", BOUND_PREFIX),  # no pseudonym
        _sealed_raw(public, b"sb2\0" + P.encode() + b"\0", BOUND_PREFIX),  # no e-mail
        _sealed_raw(public, b"sb2\0" + P.encode() + b"\0\xff@example.org", BOUND_PREFIX),  # not UTF-8
        _sealed_raw(public, b"sb2\0" + "é".encode() * 13 + b"\0x@example.org", BOUND_PREFIX),  # not ASCII
        _sealed_raw(public, b"sb3\0" + P.encode() + b"\0x@example.org", BOUND_PREFIX),  # another tag
        _sealed_raw(public, b"sb2\0" + b"q" * (MAX_PLAINTEXT + 10) + b"\0x@example.org", BOUND_PREFIX),  # long
    ]
    expected = [unseal_one(v, public, private) for v in values]
    assert open_all(values, public, private) == expected
    assert expected[:8] == [(None, f"p{'x' * n}@example.org") for n in range(8)]
    assert expected[8:15] == [None] * 7
    assert expected[15:17] == [(None, "px@example.org"), (None, "pxx@example.org")]
    assert expected[17] is None and expected[18] is None  # empty; not UTF-8
    assert expected[19] == (None, "a" * (MAX_PLAINTEXT + 10) + "@example.org")
    assert expected[20] == (None, "b" * MAX_PLAINTEXT)
    assert expected[21:29] == [(P, f"p{'x' * n}@example.org") for n in range(8)]
    assert expected[29:39] == [None] * 10
    assert expected[39] == ("q" * (MAX_PLAINTEXT + 10), "x@example.org")  # the public API's path, same parser
    assert [open_one(v, public, private) for v in values] == [None if e is None else e[1] for e in expected]


def test_open_all_of_nothing():
    public, private = key_pair(raw_private(X25519PrivateKey.generate()))
    assert open_all([], public, private) == []
