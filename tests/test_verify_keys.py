"""identity.verify: the issuer's JWKS (cache, TTL, rate-limited refetch, discovery), injected key
ids and URL headers, key rotation on both sides, and the cache of verified tokens."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from identity.verify import (
    BadSignature,
    ConfigurationError,
    HttpResponse,
    IssuerUnavailable,
    TokenExpired,
    TokenVerifier,
    UnknownKey,
)
from identity.verify.cache import token_digest
from identity.verify.jwks import SigningKeys

from .verify_support import (
    DISCOVERY_URI,
    ISSUER,
    JWKS_URI,
    PSEUDONYM,
    FakeFetcher,
    TokenFactory,
    make_verifier,
    public_jwk,
    rsa_key,
)

ATTACKER_URLS = ("https://evil.example.test/jwks.json", "https://evil.example.test/cert.pem")


@pytest.fixture
def factory() -> TokenFactory:
    return TokenFactory()


def jwks_fetches(fetcher: FakeFetcher) -> int:
    return fetcher.urls().count(JWKS_URI)


# -- JWKS cache -----------------------------------------------------------------------------------


def test_nothing_is_fetched_at_construction_and_jwks_once_per_ttl(factory: TokenFactory):
    verifier, fetcher, clock = make_verifier(factory, jwks_ttl=300)
    assert fetcher.calls == []
    for _ in range(3):
        verifier.verify(factory.token())
    assert fetcher.urls() == [JWKS_URI]
    clock.advance(301)
    verifier.verify(factory.token(jti="later"))
    assert jwks_fetches(fetcher) == 2


def test_unknown_kid_refetches_once_then_rate_limits(factory: TokenFactory):
    verifier, fetcher, clock = make_verifier(factory, min_jwks_refresh_interval=30)
    verifier.verify(factory.token())
    clock.advance(31)
    for i in range(50):  # a flood of made-up key ids
        with pytest.raises(UnknownKey):
            verifier.verify(factory.wrap(factory.inner(header={"kid": f"made-up-{i}"})))
    assert jwks_fetches(fetcher) == 2  # the first load and one refetch, not fifty
    clock.advance(31)
    with pytest.raises(UnknownKey):
        verifier.verify(factory.wrap(factory.inner(header={"kid": "made-up-again"})))
    assert jwks_fetches(fetcher) == 3


def test_unknown_kid_refetch_finds_a_newly_published_key(factory: TokenFactory):
    verifier, fetcher, clock = make_verifier(factory)
    verifier.verify(factory.token())
    new_key = rsa_key("issuer-signing-next")
    fetcher.serve_json(JWKS_URI, factory.jwks(new_key))
    clock.advance(60)
    rotated = TokenFactory(signing_key=new_key, now=factory.now)
    assert verifier.verify(rotated.token()).signing_kid == rotated.signing_kid
    assert jwks_fetches(fetcher) == 2


@pytest.mark.parametrize("kid", ["../../../etc/passwd", "https://evil.example.test/key", "", "k" * 500, 5, None])
def test_injected_kids_are_refused_and_never_used_as_locations(factory: TokenFactory, kid: object):
    verifier, fetcher, _ = make_verifier(factory)
    with pytest.raises(UnknownKey):
        verifier.verify(factory.wrap(factory.inner_raw({"alg": "RS256", "typ": "at+jwt", "kid": kid})))
    assert set(fetcher.urls()) <= {JWKS_URI}


@pytest.mark.parametrize("header", [
    {"jku": ATTACKER_URLS[0]},
    {"x5u": ATTACKER_URLS[1]},
    {"jwk": public_jwk(rsa_key("attacker"))},
    {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
])
def test_key_location_headers_are_ignored_and_never_fetched(factory: TokenFactory, header: dict):
    verifier, fetcher, clock = make_verifier(factory)
    # signed by the attacker, pointing at the attacker's key, under our kid: refused
    forged = factory.wrap(factory.inner(header=header, key=rsa_key("attacker")))
    with pytest.raises(BadSignature):
        verifier.verify(forged)
    # and under an unknown kid: refused after at most the (rate-limited) JWKS refetch
    clock.advance(60)
    with pytest.raises(UnknownKey):
        verifier.verify(factory.wrap(factory.inner(header={**header, "kid": "attacker"}, key=rsa_key("attacker"))))
    # signed by the issuer, the headers are simply ignored
    assert verifier.verify(factory.wrap(factory.inner(header=header))).subject == PSEUDONYM
    assert not any(url in fetcher.urls() for url in ATTACKER_URLS)
    assert set(fetcher.urls()) == {JWKS_URI}


def test_first_fetch_failure_is_issuer_unavailable_and_retried_after_interval(factory: TokenFactory):
    fetcher = FakeFetcher()
    fetcher.responses[JWKS_URI] = HttpResponse(status=500, body=b"oops")
    verifier, _, clock = make_verifier(factory, fetcher=fetcher, min_jwks_refresh_interval=30)
    token = factory.token()
    with pytest.raises(IssuerUnavailable) as caught:
        verifier.verify(token)
    assert caught.value.status_code == 503
    with pytest.raises(IssuerUnavailable):
        verifier.verify(token)
    assert jwks_fetches(fetcher) == 1  # failing fast, not hammering
    fetcher.serve_json(JWKS_URI, factory.jwks())
    clock.advance(31)
    assert verifier.verify(token).subject == PSEUDONYM


def test_stale_keys_keep_working_while_the_issuer_is_down(factory: TokenFactory):
    verifier, fetcher, clock = make_verifier(factory, jwks_ttl=300, min_jwks_refresh_interval=30)
    verifier.verify(factory.token())
    fetcher.responses[JWKS_URI] = HttpResponse(status=503, body=b"")
    clock.advance(301)
    assert verifier.verify(factory.token(jti="during-outage")).subject == PSEUDONYM
    assert verifier.verify(factory.token(jti="during-outage-2")).subject == PSEUDONYM
    assert jwks_fetches(fetcher) == 2


def test_requests_waiting_behind_a_stalled_jwks_fetch_give_up_after_refresh_wait(factory: TokenFactory):
    """A fetch that hangs holds the key lock; the others answer 503 in time (or use a key they hold)."""
    release = threading.Event()
    fetcher = FakeFetcher()
    fetcher.serve_json(JWKS_URI, factory.jwks())
    keys = SigningKeys(fetcher, jwks_uri=JWKS_URI, min_refresh_interval=0, refresh_wait=0.2)
    assert keys.key(factory.signing_kid)
    stalled = fetcher.responses[JWKS_URI]

    def stall() -> Any:
        release.wait(5)
        return stalled

    fetcher.responses[JWKS_URI] = stall
    outcome: list[str] = []

    def fetch_for_an_unknown_kid() -> None:
        try:
            keys.key("rotated-in")
        except UnknownKey:
            outcome.append("unknown")

    hung = threading.Thread(target=fetch_for_an_unknown_kid, daemon=True)
    hung.start()
    time.sleep(0.1)  # the thread above is now fetching, holding the lock
    started = time.monotonic()
    with pytest.raises(IssuerUnavailable):
        keys.key("another-new-kid")  # needs a blocking refresh: waits refresh_wait, no longer
    assert time.monotonic() - started < 2
    assert keys.key(factory.signing_kid)  # a key already held needs no fetch
    release.set()
    hung.join(5)
    assert outcome == ["unknown"]  # the stalled fetch itself still completes normally


@pytest.mark.parametrize("document", [
    {"keys": "nope"}, [], {"nokeys": []},
])
def test_unusable_jwks_document(factory: TokenFactory, document: object):
    fetcher = FakeFetcher()
    fetcher.serve_json(JWKS_URI, document)
    verifier, _, _ = make_verifier(factory, fetcher=fetcher)
    with pytest.raises(IssuerUnavailable):
        verifier.verify(factory.token())


def test_jwks_members_that_are_not_rs256_signing_keys_are_skipped(factory: TokenFactory):
    fetcher = FakeFetcher()
    kid = factory.signing_kid
    fetcher.serve_json(JWKS_URI, {"keys": [
        {**public_jwk(factory.signing_key), "use": "enc"},
        {**public_jwk(factory.signing_key), "alg": "RS512"},
        {"kty": "oct", "kid": kid, "k": "c2VjcmV0"},
        {**public_jwk(rsa_key("small", 1024)), "kid": kid},
        "junk",
    ]})
    verifier, _, _ = make_verifier(factory, fetcher=fetcher)
    with pytest.raises(UnknownKey):
        verifier.verify(factory.token())


# -- discovery ------------------------------------------------------------------------------------


def discovery(**overrides: object) -> dict:
    return {"issuer": ISSUER, "jwks_uri": JWKS_URI, "introspection_endpoint": f"{ISSUER}/introspect", **overrides}


def test_discovery_supplies_the_jwks_uri(factory: TokenFactory):
    fetcher = FakeFetcher()
    fetcher.serve_json(DISCOVERY_URI, discovery())
    verifier, _, _ = make_verifier(factory, fetcher=fetcher, jwks_uri=None)
    assert verifier.verify(factory.token()).subject == PSEUDONYM
    assert fetcher.urls() == [DISCOVERY_URI, JWKS_URI]


@pytest.mark.parametrize("document", [
    discovery(issuer="https://evil.example.test"),
    discovery(jwks_uri="http://evil.example.test/jwks.json"),
    discovery(jwks_uri=None),
    discovery(introspection_endpoint="ftp://x"),
])
def test_unacceptable_discovery_documents(factory: TokenFactory, document: dict):
    fetcher = FakeFetcher()
    fetcher.serve_json(DISCOVERY_URI, document)
    verifier, _, _ = make_verifier(factory, fetcher=fetcher, jwks_uri=None)
    with pytest.raises(IssuerUnavailable):
        verifier.verify(factory.token())
    assert "http://evil.example.test/jwks.json" not in fetcher.urls()


def test_a_discovery_document_that_breaks_the_parser_backs_off_like_an_unreachable_issuer(factory: TokenFactory):
    class Unparsable:
        status = 200

        def json_object(self) -> dict:
            raise ValueError("a fetcher's own response type, failing its own way")

    fetcher = FakeFetcher()
    fetcher.responses[DISCOVERY_URI] = Unparsable()
    verifier, _, _ = make_verifier(factory, fetcher=fetcher, jwks_uri=None)
    for _ in range(2):
        with pytest.raises(IssuerUnavailable):
            verifier.verify(factory.token())
    assert fetcher.urls().count(DISCOVERY_URI) == 1  # failing fast until retry_interval, not per request


def test_a_discovery_jwks_uri_that_is_no_url_is_issuer_unavailable(factory: TokenFactory):
    fetcher = FakeFetcher()
    fetcher.serve_json(DISCOVERY_URI, discovery(jwks_uri="https://[bad"))
    verifier, _, _ = make_verifier(factory, fetcher=fetcher, jwks_uri=None)
    for _ in range(2):
        with pytest.raises(IssuerUnavailable):
            verifier.verify(factory.token())
    assert fetcher.urls() == [DISCOVERY_URI]


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"issuer": "http://id.example.test"},           # plain http to a remote host
    {"jwks_uri": "http://id.example.test/jwks"},
    {"audience": ""},
    {"leeway": 3600},
    {"decryption_keys": []},
    {"decryption_keys": [rsa_key("small", 1024)]},
    {"decryption_keys": ["not a pem"]},
    {"decryption_keys": [rsa_key("audience"), rsa_key("audience")]},  # one kid twice
])
def test_bad_configuration_is_refused(factory: TokenFactory, options: dict):
    with pytest.raises(ConfigurationError):
        make_verifier(factory, **options)


def test_loopback_http_is_allowed_for_development(factory: TokenFactory):
    verifier, _, _ = make_verifier(factory, issuer="http://127.0.0.1:5000", jwks_uri="http://localhost:5000/jwks")
    assert verifier.issuer == "http://127.0.0.1:5000"


def test_repr_shows_no_key_material(factory: TokenFactory):
    verifier, _, _ = make_verifier(factory)
    text = repr(verifier) + repr(verifier._decrypter.kids) + repr(dict(verifier._keys.current()))
    assert factory.audience_kid in text and "PRIVATE" not in text and "'d'" not in text


# -- rotation -------------------------------------------------------------------------------------


def test_audience_key_rotation_accepts_old_and_new_during_overlap(factory: TokenFactory):
    old, new = factory.audience_key, rsa_key("audience-next", 3072)
    old_tokens = factory
    new_tokens = TokenFactory(audience_key=new, now=factory.now)
    # step 1: the downstream service deploys with both keys, new first; the issuer still encrypts to old
    overlap, fetcher, _ = make_verifier(factory, decryption_keys=[new, old])
    assert overlap.decryption_kids == {old_tokens.audience_kid, new_tokens.audience_kid}
    assert overlap.verify(old_tokens.token()).decryption_kid == old_tokens.audience_kid
    # step 2: the issuer switches the audience to the new public key; tokens in flight still verify
    assert overlap.verify(new_tokens.token()).decryption_kid == new_tokens.audience_kid
    assert overlap.verify(old_tokens.token(jti="in-flight")).subject == PSEUDONYM
    # step 3: after the longest token lifetime the old key is dropped
    after, _, _ = make_verifier(factory, fetcher=fetcher, decryption_keys=[new])
    assert after.verify(new_tokens.token(jti="after")).subject == PSEUDONYM
    with pytest.raises(UnknownKey):
        after.verify(old_tokens.token(jti="too-late"))


def test_issuer_signing_key_rotation_causes_no_failure(factory: TokenFactory):
    current, nxt = factory.signing_key, rsa_key("issuer-signing-next")
    fetcher = FakeFetcher()
    fetcher.serve_json(JWKS_URI, {"keys": [public_jwk(current), public_jwk(nxt)]})  # next published early
    verifier, _, clock = make_verifier(factory, fetcher=fetcher)
    assert verifier.verify(factory.token()).signing_kid == factory.signing_kid
    rotated = TokenFactory(signing_key=nxt, now=factory.now)
    assert verifier.verify(rotated.token()).signing_kid == rotated.signing_kid
    assert jwks_fetches(fetcher) == 1  # no refetch was needed
    # the retired key stays published until its tokens expire, then disappears
    clock.advance(700)
    fetcher.serve_json(JWKS_URI, {"keys": [public_jwk(nxt)]})
    later = TokenFactory(signing_key=nxt, now=clock.now)
    assert verifier.verify(later.token()).subject == PSEUDONYM
    stale = TokenFactory(signing_key=current, now=clock.now)
    with pytest.raises(UnknownKey):
        verifier.verify(stale.token())


# -- cache of verified tokens ---------------------------------------------------------------------


def test_repeated_token_is_served_from_cache_without_decrypting(factory: TokenFactory, monkeypatch):
    verifier, _, _ = make_verifier(factory)
    token = factory.token()
    first = verifier.verify(token)
    monkeypatch.setattr(verifier._decrypter, "decrypt", lambda _: pytest.fail("decrypted again"))
    assert verifier.verify(token) is first


def test_cache_holds_digests_not_tokens_and_is_bounded(factory: TokenFactory):
    verifier, _, _ = make_verifier(factory, cache_size=2)
    tokens = [factory.token(jti=f"t{i}") for i in range(3)]
    for token in tokens:
        verifier.verify(token)
    entries = verifier._cache._entries
    assert len(entries) == 2
    assert set(entries) == {token_digest(t) for t in tokens[1:]}
    assert all(len(key) == 32 for key in entries)


def test_cached_token_still_expires(factory: TokenFactory):
    verifier, _, clock = make_verifier(factory, leeway=0)
    token = factory.token()
    verifier.verify(token)
    clock.advance(600)
    with pytest.raises(TokenExpired):
        verifier.verify(token)


def test_cached_tokens_of_a_withdrawn_signing_key_are_forgotten(factory: TokenFactory):
    verifier, fetcher, clock = make_verifier(factory, jwks_ttl=300)
    token = factory.token(exp=int(factory.now) + 3000)
    verifier.verify(token)
    fetcher.serve_json(JWKS_URI, {"keys": [public_jwk(rsa_key("issuer-signing-next"))]})  # compromised key pulled
    clock.advance(301)
    verifier.verify(TokenFactory(signing_key=rsa_key("issuer-signing-next"), now=clock.now).token())  # triggers refresh
    with pytest.raises(UnknownKey):
        verifier.verify(token)


def test_a_cached_token_is_refused_once_the_issuer_withdrew_its_signing_key(factory: TokenFactory):
    """Only the cached token is replayed: its hits must notice the withdrawal at the next JWKS refresh."""
    verifier, fetcher, clock = make_verifier(factory, jwks_ttl=300)
    token = factory.token(exp=int(factory.now) + 7 * 86400)  # a stolen key can mint any exp
    verifier.verify(token)
    for _ in range(5):
        verifier.verify(token)
    assert jwks_fetches(fetcher) == 1  # a hit within the TTL fetches nothing
    fetcher.serve_json(JWKS_URI, {"keys": []})
    clock.advance(301)
    with pytest.raises(UnknownKey):
        verifier.verify(token)
    with pytest.raises(UnknownKey):
        verifier.verify(token)
    assert jwks_fetches(fetcher) == 2  # the TTL refresh, then the rate limit: never a fetch per hit
    assert len(verifier._cache) == 0


def test_a_tampered_copy_of_a_cached_token_is_not_a_cache_hit(factory: TokenFactory):
    verifier, _, _ = make_verifier(factory)
    token = factory.token()
    verifier.verify(token)
    parts = token.split(".")
    parts[3] = parts[3][:-2] + ("AA" if parts[3][-2:] != "AA" else "BB")
    with pytest.raises(Exception) as caught:
        verifier.verify(".".join(parts))
    assert type(caught.value).__name__ == "DecryptionFailed"


def test_zero_cache_size_disables_the_cache(factory: TokenFactory):
    verifier, _, _ = make_verifier(factory, cache_size=0)
    token = factory.token()
    assert verifier.verify(token) == verifier.verify(token)
    assert len(verifier._cache) == 0


def test_verifier_is_usable_with_pem_and_decryption_key_objects(factory: TokenFactory, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from identity.verify import DecryptionKey

    pem = factory.audience_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass-phrase"))
    (tmp_path / "k.pem").write_bytes(pem)
    key = DecryptionKey.from_file(tmp_path / "k.pem", passphrase="pass-phrase")
    assert key.kid == factory.audience_kid
    verifier, _, _ = make_verifier(factory, decryption_keys=[key])
    assert isinstance(verifier, TokenVerifier) and verifier.verify(factory.token()).subject == PSEUDONYM
    with pytest.raises(ConfigurationError):
        DecryptionKey.from_file(tmp_path / "k.pem", passphrase="wrong")
    with pytest.raises(ConfigurationError):
        DecryptionKey.from_file(tmp_path / "missing.pem")


def test_a_fetcher_that_raises_anything_means_issuer_unavailable(factory: TokenFactory):
    class Broken(FakeFetcher):
        def get(self, url: str):
            self.calls.append(("GET", url))
            raise OSError("network down")

    for jwks_uri in (JWKS_URI, None):
        verifier, _, _ = make_verifier(factory, fetcher=Broken(), jwks_uri=jwks_uri)
        with pytest.raises(IssuerUnavailable):
            verifier.verify(factory.token())
