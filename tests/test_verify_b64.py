"""identity.verify.b64: unpadded base64url (RFC 7515 §2), the one pair of helpers every module uses."""

from __future__ import annotations

import base64
import binascii

import pytest

from identity.verify.b64 import b64url_decode, b64url_encode


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xfb\xff", b"abc", b"\xff" * 31, bytes(range(256))])
def test_encode_is_urlsafe_without_padding_and_decodes_back(data):
    text = b64url_encode(data)
    assert isinstance(text, str) and "=" not in text and not set(text) & {"+", "/"}
    assert text == base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
    assert b64url_decode(text) == data
    assert b64url_decode(text.encode("ascii")) == data


def test_rfc_7515_appendix_c_example():
    assert b64url_encode(bytes([3, 236, 255, 224, 193])) == "A-z_4ME"
    assert b64url_decode("A-z_4ME") == bytes([3, 236, 255, 224, 193])


def test_decode_accepts_padded_input_too():
    assert b64url_decode("QQ==") == b"A" == b64url_decode("QQ")
    assert b64url_decode(b"QUI=") == b"AB"


def test_decode_is_as_lenient_as_the_standard_library():
    """Callers rely on this exact behaviour (pinned by the hostile-input tests): characters outside the
    alphabet are dropped, and the standard alphabet's ``+`` and ``/`` are read too."""
    assert b64url_decode("QU\nJD") == b"ABC"
    assert b64url_decode("+/8") == b"\xfb\xff" == b64url_decode("-_8")


@pytest.mark.parametrize("text", ["A", "QUJDR", b"A", "QUJD\u00e9"])
def test_undecodable_input_raises_value_error(text):
    with pytest.raises(ValueError):
        b64url_decode(text)


def test_a_truncated_segment_is_a_binascii_error():
    with pytest.raises(binascii.Error):
        b64url_decode("QUJDR")
