"""identity.verify: optional RFC 7662 introspection for calls that must see a revocation at once."""

from __future__ import annotations

import base64
from urllib.parse import unquote

import pytest

from identity.verify import (
    ClientCredentials,
    ConfigurationError,
    HttpResponse,
    IssuerUnavailable,
    TokenInactive,
)

from .verify_support import (
    CLIENT_ID,
    DISCOVERY_URI,
    INTROSPECTION_URI,
    ISSUER,
    JWKS_URI,
    PSEUDONYM,
    FakeFetcher,
    TokenFactory,
    make_verifier,
)

CREDENTIALS = ClientCredentials(client_id="records-service", client_secret="s3cr:t/with+odd chars")


@pytest.fixture
def factory() -> TokenFactory:
    return TokenFactory()


def answer(fetcher: FakeFetcher, **body: object) -> None:
    fetcher.serve_json(INTROSPECTION_URI, body)


def test_active_token_is_confirmed_with_client_secret_basic(factory: TokenFactory):
    verifier, fetcher, _ = make_verifier(factory, introspection=CREDENTIALS, introspection_endpoint=INTROSPECTION_URI)
    token = factory.token()
    answer(fetcher, active=True, sub=PSEUDONYM, client_id=CLIENT_ID, iss=ISSUER, aud=[factory.audience, "x"])
    assert verifier.verify(token, introspect=True).subject == PSEUDONYM
    url, form, auth = fetcher.posts[0]
    assert url == INTROSPECTION_URI
    assert form == {"token": token, "token_type_hint": "access_token"}
    assert auth == ("records-service", "s3cr%3At%2Fwith%2Bodd%20chars")  # RFC 6749 §2.3.1 form-encoding


def test_revoked_token_is_refused_even_when_cached(factory: TokenFactory):
    verifier, fetcher, _ = make_verifier(factory, introspection=CREDENTIALS, introspection_endpoint=INTROSPECTION_URI)
    token = factory.token()
    answer(fetcher, active=True)
    verifier.verify(token, introspect=True)
    answer(fetcher, active=False)
    with pytest.raises(TokenInactive):
        verifier.verify(token, introspect=True)
    assert len(fetcher.posts) == 2  # never cached
    assert verifier.verify(token).subject == PSEUDONYM  # local-only verification is unaffected


@pytest.mark.parametrize("body", [{"active": "true"}, {"active": 1}, {}, {"active": True, "sub": "other"},
                                  {"active": True, "jti": "other"}, {"active": True, "client_id": "other"},
                                  {"active": True, "aud": "https://other.example.test"}, {"active": True, "aud": [5]}])
def test_anything_but_a_matching_active_true_is_inactive(factory: TokenFactory, body: dict):
    verifier, fetcher, _ = make_verifier(factory, introspection=CREDENTIALS, introspection_endpoint=INTROSPECTION_URI)
    answer(fetcher, **body)
    with pytest.raises(TokenInactive):
        verifier.verify(factory.token(), introspect=True)


def test_introspection_errors_are_issuer_unavailable(factory: TokenFactory):
    verifier, fetcher, _ = make_verifier(factory, introspection=CREDENTIALS, introspection_endpoint=INTROSPECTION_URI)
    fetcher.responses[INTROSPECTION_URI] = HttpResponse(status=401, body=b'{"error":"invalid_client"}')
    with pytest.raises(IssuerUnavailable):
        verifier.verify(factory.token(), introspect=True)
    fetcher.responses[INTROSPECTION_URI] = HttpResponse(status=200, body=b"not json")
    with pytest.raises(IssuerUnavailable):
        verifier.verify(factory.token(), introspect=True)


def test_endpoint_comes_from_discovery(factory: TokenFactory):
    fetcher = FakeFetcher()
    fetcher.serve_json(DISCOVERY_URI, {"issuer": ISSUER, "jwks_uri": JWKS_URI,
                                       "introspection_endpoint": INTROSPECTION_URI})
    answer(fetcher, active=True)
    verifier, _, _ = make_verifier(factory, fetcher=fetcher, jwks_uri=None, introspection=CREDENTIALS)
    verifier.verify(factory.token(), introspect=True)
    assert fetcher.urls() == [DISCOVERY_URI, JWKS_URI, INTROSPECTION_URI]


def test_discovery_without_an_introspection_endpoint_is_issuer_unavailable(factory: TokenFactory):
    """The issuer's document, not our settings: 503, not the 500 of a ConfigurationError."""
    fetcher = FakeFetcher()
    fetcher.serve_json(DISCOVERY_URI, {"issuer": ISSUER, "jwks_uri": JWKS_URI})
    verifier, _, _ = make_verifier(factory, fetcher=fetcher, introspection=CREDENTIALS)
    with pytest.raises(IssuerUnavailable) as caught:
        verifier.verify(factory.token(), introspect=True)
    assert not isinstance(caught.value, ConfigurationError)


def test_a_malformed_introspection_answer_or_a_broken_fetcher_is_issuer_unavailable(factory: TokenFactory):
    verifier, fetcher, _ = make_verifier(factory, introspection=CREDENTIALS, introspection_endpoint=INTROSPECTION_URI)
    fetcher.responses[INTROSPECTION_URI] = HttpResponse(status=200, body=b"[" * 100_000)
    with pytest.raises(IssuerUnavailable):
        verifier.verify(factory.token(), introspect=True)

    def broken() -> HttpResponse:
        raise OSError("a fetcher breaking its contract")

    fetcher.responses[INTROSPECTION_URI] = broken
    with pytest.raises(IssuerUnavailable):
        verifier.verify(factory.token(), introspect=True)


def test_introspection_without_credentials_is_a_configuration_error(factory: TokenFactory):
    verifier, _, _ = make_verifier(factory)
    with pytest.raises(ConfigurationError):
        verifier.verify(factory.token(), introspect=True)


def test_credentials_repr_hides_the_secret():
    assert "s3cr" not in repr(CREDENTIALS)


def test_basic_credentials_round_trip_through_form_decoding():
    user, password = CREDENTIALS.basic_auth()
    header = base64.b64encode(f"{user}:{password}".encode()).decode()
    decoded_user, decoded_secret = base64.b64decode(header).decode().split(":", 1)
    assert (unquote(decoded_user), unquote(decoded_secret)) == (CREDENTIALS.client_id, CREDENTIALS.client_secret)
