"""Token parsing fuzzed (hypothesis): the downstream verifier, ``/introspect`` and ``/me``.

Random strings, JWE-shaped tokens with random headers and segments, and genuine tokens with random
damage: the verifier raises an ``InvalidToken`` (never another exception, never accepts), introspection
answers ``{"active": false}``, ``/me`` answers 400 or 401; nothing is ever a 5xx.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from identity.verify import InvalidToken
from tests.verify_support import TokenFactory, make_verifier

from .forgery import Forger, b64
from .fuzz_app import build

B64URL = st.text(alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                 max_size=400)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=3), max_leaves=8)
HEADER_NAMES = ["alg", "enc", "zip", "cty", "typ", "kid", "crit", "jku", "jwk", "x5u", "x5c", "b64", "epk", "p2s"]
HEADER_VALUES = st.one_of(st.sampled_from(["RSA-OAEP-256", "A256GCM", "JWT", "at+jwt", "RS256", "none", "dir",
                                           "DEF", "HS256", "RSA1_5"]), JSON_VALUES)
HEADERS = st.dictionaries(st.sampled_from(HEADER_NAMES), HEADER_VALUES, max_size=6)


@pytest.fixture(scope="module")
def factory() -> TokenFactory:
    return TokenFactory()


@pytest.fixture(scope="module")
def verifier(factory):
    return make_verifier(factory, min_jwks_refresh_interval=3600)[0]


@pytest.fixture(scope="module")
def forger(factory) -> Forger:
    return Forger(issuer=factory.issuer, audience=factory.audience, audience_key=factory.audience_key.public_key(),
                  signing_key=factory.signing_key, now=int(factory.now), scope="records:read")


@pytest.fixture(scope="module")
def genuine(forger) -> str:
    return forger.token()


def assert_refused(verifier, token: Any) -> None:
    try:
        verifier.verify(token)
    except InvalidToken:
        return
    raise AssertionError(f"accepted: {token!r}")


@given(st.one_of(st.text(max_size=2000), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                 st.lists(B64URL, min_size=1, max_size=7).map(".".join)))
@example("")
@example("....")
@example("." * 5000)
def test_random_strings_are_invalid_tokens(verifier, token):
    assert_refused(verifier, token)


@given(HEADERS, st.lists(B64URL, min_size=4, max_size=4))
def test_jwe_shaped_tokens_with_random_headers_are_invalid(verifier, header, segments):
    try:
        protected = b64(json.dumps(header).encode())
    except (TypeError, ValueError):
        return
    assert_refused(verifier, ".".join([protected, *segments]))


@given(HEADERS, HEADERS)
def test_properly_encrypted_tokens_with_random_header_members_are_checked(verifier, forger, outer, inner):
    """Random members on an otherwise genuine token: accepted only when every checked member is the contract's."""
    jwe_header = forger.jwe_header(**outer)
    jws_header = forger.jws_header(**inner)
    try:
        token = forger.wrap(forger.inner(header=jws_header), header=jwe_header)
    except (TypeError, ValueError):
        return  # not JSON-serialisable (e.g. NaN is, but other odd values are not)
    try:
        verifier.verify(token)
    except InvalidToken:
        return
    assert (jwe_header["alg"], jwe_header["enc"]) == ("RSA-OAEP-256", "A256GCM")
    assert isinstance(jwe_header["cty"], str) and jwe_header["cty"].upper() == "JWT"
    assert jwe_header["kid"] == forger.audience_kid and jws_header["kid"] == forger.signing_kid
    assert jws_header["alg"] == "RS256"
    assert isinstance(jws_header["typ"], str) and jws_header["typ"].lower() in ("at+jwt", "application/at+jwt")
    assert not {"zip", "crit"} & set(jwe_header) and not {"crit", "b64"} & set(jws_header)


@given(st.data())
def test_damaged_genuine_tokens_are_invalid(verifier, genuine, data):
    chars = list(genuine)
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(chars) - 1),
                                         st.sampled_from(list("AB_-.=+/ \x00é")) | st.none()), min_size=1, max_size=4))
    for position, replacement in edits:
        if position < len(chars):
            if replacement is None:
                del chars[position]
            else:
                chars[position] = replacement if chars[position] != replacement else "Q"
    damaged = "".join(chars)
    if damaged == genuine:
        return
    assert_refused(verifier, damaged)


@given(st.integers(1, 400))
def test_truncated_genuine_tokens_are_invalid(verifier, genuine, cut):
    assert_refused(verifier, genuine[:-cut])


# -- the service's endpoints -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def target(module_dir, key_template):
    built = build(module_dir / "tokens", key_template)
    yield built
    built.close()


TOKENS = st.one_of(st.text(min_size=1, max_size=3000), st.lists(B64URL, min_size=1, max_size=6).map(".".join),
                   st.binary(min_size=1, max_size=100).map(lambda b: base64.urlsafe_b64encode(b).decode()))


@given(TOKENS, st.sampled_from([None, "access_token", "refresh_token", "id_token", "x" * 300]))
def test_introspection_of_random_tokens_is_inactive(target, token, hint):
    credentials = base64.b64encode(f"{target.confidential_client_id}:{target.secret}".encode()).decode()
    form = {"token": token, **({"token_type_hint": hint} if hint else {})}
    response = target.client.post("/introspect", data=form, headers={"Authorization": f"Basic {credentials}"})
    if token == "":
        assert response.status_code == 400 and response.json["error"] == "invalid_request"
        return
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json == {"active": False}


@given(TOKENS)
def test_revocation_of_random_tokens_is_a_quiet_200(target, token):
    response = target.client.post("/revoke", data={"token": token, "client_id": target.public_client_id})
    assert response.status_code == (400 if token == "" else 200)  # RFC 7009 §2.2: unknown tokens are not errors


@given(TOKENS, st.sampled_from(["Bearer ", "bearer ", "BEARER  ", "Bearer\t", "DPoP ", ""]))
def test_random_bearer_tokens_at_me_are_refused_cleanly(target, token, scheme):
    try:
        header = (scheme + token).encode("latin-1").decode("latin-1")
    except UnicodeEncodeError:
        return
    if "\n" in header or "\r" in header:
        return
    response = target.client.get("/me", headers={"Authorization": header})
    assert response.status_code in (400, 401), response.status_code
    assert response.json["error"] in ("invalid_token", "invalid_request", "unauthorized")
