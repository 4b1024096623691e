"""Bound sealed values (``sb2.``): the e-mail sealed together with the pseudonym of its row, parsed strictly."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from nacl.bindings import crypto_box_SEALBYTES
from nacl.public import PublicKey, SealedBox

from identity.sealing import (BOUND_PREFIX, UNBOUND_PREFIX, Opener, SealError, Sealer, bound_plaintext, sealed_box,
                              unseal)
from identity.vault import InvalidEmail, new_pseudonym, normalise_email

P = new_pseudonym()
EMAIL = "élise.o'neill+news@example.org"


@pytest.fixture(scope="module")
def key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def raw(key: X25519PrivateKey, prefix: str, plaintext: bytes) -> str:
    """A value sealed to ``key`` with any plaintext and label (what anyone holding the public key can write)."""
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sealed = SealedBox(PublicKey(public)).encrypt(plaintext)
    return prefix + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def test_a_bound_value_round_trips_with_its_pseudonym(key):
    sealed = Sealer(key.public_key()).seal_email(P, EMAIL)
    assert sealed.startswith(BOUND_PREFIX)
    plaintext = b"sb2\0" + P.encode() + b"\0" + EMAIL.encode()
    assert bound_plaintext(P, EMAIL) == plaintext
    assert len(sealed_box(sealed)) == len(plaintext) + crypto_box_SEALBYTES
    assert Opener(key).unseal(sealed) == (P, EMAIL)
    assert Opener(key).open(sealed) == EMAIL.encode()  # the e-mail alone; the binding is the caller's to check
    assert Sealer(key.public_key()).seal_email(P, EMAIL) != sealed  # a fresh ephemeral key every time


def test_an_unbound_legacy_value_still_opens_and_names_no_pseudonym(key):
    sealed = Sealer(key.public_key()).seal(EMAIL.encode())
    assert sealed.startswith(UNBOUND_PREFIX)
    assert Opener(key).unseal(sealed) == (None, EMAIL)
    assert Opener(key).open(sealed) == EMAIL.encode()


@pytest.mark.parametrize("pseudonym, email", [
    ("", EMAIL), (P + "\0", EMAIL), ("é" * 26, EMAIL), (P[:-1] + "\n", EMAIL), (P, ""), (P, "a\0@example.org"),
])
def test_sealing_refuses_what_the_encoding_cannot_hold(key, pseudonym, email):
    with pytest.raises(ValueError):
        Sealer(key.public_key()).seal_email(pseudonym, email)


@pytest.mark.parametrize("plaintext", [
    b"sb1\0" + P.encode() + b"\0x@example.org",  # wrong tag
    b"SB2\0" + P.encode() + b"\0x@example.org",
    b"sb2" + P.encode() + b"\0x@example.org",  # the tag's separator missing
    b"sb2\0" + P.encode() + b"x@example.org",  # no separator
    b"x@example.org",  # an unbound plaintext under the bound label
    b"sb2\0" + P.encode() + b"\0x@example.org\0",  # an extra separator
    b"sb2\0" + P.encode() + b"\0\0x@example.org",
    b"sb2\0\0" + P.encode() + b"\0x@example.org",
    b"sb2\0" + P.encode() + b"\0x@exa\0mple.org",
    b"sb2\0\0x@example.org",  # an empty part
    b"sb2\0" + P.encode() + b"\0",
    b"sb2\0",
    b"",
    b"sb2\0" + P.encode() + b"\0\xff@example.org",  # not UTF-8
    b"sb2\0\xff" + P.encode()[1:] + b"\0x@example.org",
    b"sb2\0" + "é".encode() * 13 + b"\0x@example.org",  # a pseudonym that is not ASCII
    b"sb2\0" + P.encode()[:-1] + b"\t\0x@example.org",  # or not printable
])
def test_a_bound_plaintext_is_parsed_strictly(key, plaintext):
    with pytest.raises(SealError):
        unseal(plaintext, bound=True)
    with pytest.raises(SealError):
        Opener(key).unseal(raw(key, BOUND_PREFIX, plaintext))


@pytest.mark.parametrize("plaintext", [
    b"", b"x@exa\0mple.org", b"\xff@example.org",
    b"sb2\0" + P.encode() + b"\0x@example.org",  # a bound plaintext under the unbound label
])
def test_an_unbound_plaintext_is_a_nul_free_utf8_address(key, plaintext):
    with pytest.raises(SealError):
        unseal(plaintext, bound=False)
    with pytest.raises(SealError):
        Opener(key).unseal(raw(key, UNBOUND_PREFIX, plaintext))


def test_relabelling_a_value_between_schemes_makes_it_unopenable(key):
    sealer = Sealer(key.public_key())
    bound, unbound = sealer.seal_email(P, EMAIL), sealer.seal(EMAIL.encode())
    for relabelled in (UNBOUND_PREFIX + bound[4:], BOUND_PREFIX + unbound[4:]):
        with pytest.raises(SealError):
            Opener(key).unseal(relabelled)


@pytest.mark.parametrize("value", ["sb3.AAAA", "sb2", "sb2.A", "sb2.é", "sb2.!!!!", "sb2.AAAA"])
def test_a_malformed_bound_value_is_refused(key, value):
    with pytest.raises(SealError):
        Opener(key).unseal(value)


@pytest.mark.parametrize("char", [chr(c) for c in (*range(0x20), 0x7F, 0x85, 0x9F, 0x200B, 0x2028)])
def test_a_normalised_address_never_holds_a_nul_or_control_character(char):
    """What makes the bound encoding unambiguous: the vault seals only normalised addresses."""
    with pytest.raises(InvalidEmail):
        normalise_email(f"al{char}ice@example.org")
