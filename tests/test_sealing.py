"""Sealed values: one decoder of the ``sb1.`` format, used by the service's opener and the breach path."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from nacl.bindings import crypto_box_SEALBYTES

from identity.breach.dpo_key import raw_private
from identity.breach.opening import key_pair, open_one
from identity.sealing import Opener, SealError, Sealer, sealed_box


def test_a_sealed_value_opens_with_its_key_on_both_paths():
    key = X25519PrivateKey.generate()
    sealed = Sealer(key.public_key()).seal(b"person@example.org")
    assert len(sealed_box(sealed)) == len(b"person@example.org") + crypto_box_SEALBYTES
    assert Opener(key).open(sealed) == b"person@example.org"
    assert open_one(sealed, *key_pair(raw_private(key))) == "person@example.org"


@pytest.mark.parametrize("value", ["sb0.AAAA", "", "AAAA", "sb1.A", "sb1.é"])
def test_sealed_box_refuses_another_scheme_and_broken_base64(value):
    with pytest.raises(SealError):
        sealed_box(value)


@pytest.mark.parametrize("value", ["sb0.AAAA", "", "AAAA", "sb1.!!!!", "sb1.A", "sb1.é", "sb1.AAAA"])
def test_a_malformed_value_is_refused_alike_by_both_paths(value):
    key = X25519PrivateKey.generate()
    with pytest.raises(SealError):
        Opener(key).open(value)
    assert open_one(value, *key_pair(raw_private(key))) is None
