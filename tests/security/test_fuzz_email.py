"""Property tests of the vault's e-mail normalisation (README "The identity vault": trim, NFC, lower-case).

One person must get one pseudonym however the IdP spells the address, and anything that is not an
address must be refused with ``InvalidEmail`` (never another exception, never silently accepted).
"""

from __future__ import annotations

import unicodedata
from typing import cast

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from identity.sealing import Sealer
from identity.store import Store
from identity.vault import MAX_EMAIL_LENGTH, InvalidEmail, Vault, normalise_email

LOCAL_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+-/=?^_`{|}~"
ASCII_LOCAL = st.text(alphabet=st.sampled_from(LOCAL_CHARACTERS), min_size=1, max_size=30)
LABEL = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"),
                min_size=1, max_size=20)
DOMAIN = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
ASCII_EMAIL = st.builds(lambda local, domain: f"{local}@{domain}", ASCII_LOCAL, DOMAIN)
UNICODE_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30)
UNICODE_EMAIL = st.builds(lambda local, domain: f"{local}@{domain}", UNICODE_TEXT, UNICODE_TEXT)
WHITESPACE = st.text(alphabet=st.sampled_from(" \t\r\n\u00a0\u2003"), max_size=4)


def accepted(raw: str) -> str | None:
    try:
        return normalise_email(raw)
    except InvalidEmail:
        return None


@given(st.one_of(st.text(), UNICODE_EMAIL, st.binary().map(lambda b: b.decode("latin-1"))))
@example("\x00@example.org")
@example("a@b@c")
@example("@example.org")
@example("person@")
@example("a" * 65 + "@example.org")
@example("person@example..org")
def test_anything_is_either_a_normalised_address_or_invalid_email(raw):
    result = accepted(raw)
    if result is None:
        return
    assert result == result.strip() and "@" in result
    assert len(result) <= MAX_EMAIL_LENGTH and len(result.rpartition("@")[0]) <= 64
    assert not any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in result)
    assert result == result.lower()


def test_non_text_is_invalid_email():
    for value in (None, b"person@example.org", 42, ["person@example.org"]):
        with pytest.raises(InvalidEmail):
            normalise_email(value)  # type: ignore[arg-type]


@given(ASCII_EMAIL, WHITESPACE, WHITESPACE)
def test_case_and_surrounding_whitespace_never_make_another_person(email, before, after):
    normal = accepted(email)
    assume(normal is not None)
    assert normal is not None  # assume() filtered None out; this tells the type checker
    assert accepted(before + email.upper() + after) == normal
    assert accepted(before + email.swapcase() + after) == normal
    assert accepted(normal) == normal


@given(UNICODE_EMAIL)
def test_canonically_equivalent_spellings_are_the_same_person(email):
    normal = accepted(unicodedata.normalize("NFC", email))
    assume(normal is not None)
    assert accepted(unicodedata.normalize("NFD", email)) == normal


@given(ASCII_EMAIL, ASCII_EMAIL)
def test_different_addresses_get_different_blind_indexes(first, second):
    vault = Vault(store=cast(Store, None), pepper=b"p" * 32, sealer=Sealer.__new__(Sealer))  # blind_index touches neither
    a, b = accepted(first), accepted(second)
    assume(a is not None and b is not None)
    assert (vault.blind_index(first) == vault.blind_index(second)) == (a == b)


@given(UNICODE_EMAIL)
@example("W\u030a@example.org")
def test_normalised_addresses_are_nfc_and_normalising_twice_changes_nothing(email):
    """Random addresses; the next test holds the hard cases (lower-casing that creates a composition)."""
    normal = accepted(email)
    assume(normal is not None)
    assert normal is not None  # as above
    assert unicodedata.is_normalized("NFC", normal)
    assert accepted(normal) == normal


@pytest.mark.parametrize("raw", ["W\u030a@example.org", "Y\u030a@example.org", "T\u0308@example.org",
                                 "J\u030c@example.org", "H\u0331@example.org"])
def test_normalisation_is_idempotent(raw):
    once = normalise_email(raw)
    assert normalise_email(once) == once
