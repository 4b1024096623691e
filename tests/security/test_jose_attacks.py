"""Forged access tokens (RFC 8725, RFC 9068 §4) against the downstream verifier and against ``/me``.

Part 1 adds, for ``identity.verify``, the forgeries ``tests/test_verify*.py`` do not already try.
Part 2 tries the whole list against the running service's own ``/me`` (audience ``{issuer}/me``,
scope ``identity:self``), through HTTP: every forgery must be refused by the *verifier* (the log
names the refusal), not merely by the later "was this token issued here" check, so that each test
fails if its check is removed from ``identity.verify`` even though ``/me`` has a second line of defence.
"""

from __future__ import annotations

import logging
from typing import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from identity.verify import (
    InvalidToken,
    MalformedToken,
    UnknownKey,
    UnsupportedToken,
)
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import pkce_pair, query_of
from tests.verify_support import DROP, JWKS_URI, TokenFactory, make_verifier, rsa_key

from .conftest import SELF_SCOPE
from .forgery import Forger, b64, es256, flip, hs256_with_public_pem, jws, ps256, rs, unsigned

ATTACKER_EC = ec.generate_private_key(ec.SECP256R1())
INJECTED_KIDS = ["' OR '1'='1", "1; DROP TABLE keys; --", {"$ne": None}, {"$gt": ""}, ["kid"],
                 "../../keys/signing/x.pem", "k" * 500]


# == Part 1: the downstream verifier (library) ====================================================

@pytest.fixture
def factory() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
def forger(factory: TokenFactory) -> Forger:
    return Forger(issuer=factory.issuer, audience=factory.audience, audience_key=factory.audience_key.public_key(),
                  signing_key=factory.signing_key, now=int(factory.now), scope="records:read")


def refused(verifier, token, kind=InvalidToken):
    with pytest.raises(kind):
        verifier.verify(token)


def test_the_forger_builds_a_token_the_verifier_accepts(factory, forger):
    """Control: the hand-built JWE and JWS are the contract's, so each forgery below changes one thing."""
    verifier, _, _ = make_verifier(factory)
    assert verifier.verify(forger.token()).subject == forger.subject


@pytest.mark.parametrize("alg", ["None", "NONE", "nOnE", ""])
def test_alg_none_in_any_spelling_and_an_empty_signature_are_refused(factory, forger, alg):
    verifier, _, _ = make_verifier(factory)
    refused(verifier, forger.wrap(forger.inner(header=forger.jws_header(alg=alg), sign=unsigned)), UnsupportedToken)


@pytest.mark.parametrize("alg, sign", [
    ("RS384", lambda f: rs(f.signing_key, hashes.SHA384())),
    ("PS256", lambda f: ps256(f.signing_key)),
    ("ES256", lambda f: es256(ATTACKER_EC)),
    ("HS256", lambda f: hs256_with_public_pem(f.signing_key.public_key())),
])
def test_signature_algorithms_outside_the_allow_list_are_refused(factory, forger, alg, sign):
    verifier, _, _ = make_verifier(factory)
    refused(verifier, forger.wrap(forger.inner(header=forger.jws_header(alg=alg), sign=sign(forger))),
            UnsupportedToken)


@pytest.mark.parametrize("kid", INJECTED_KIDS, ids=repr)
def test_injection_shaped_kids_are_unknown_at_both_layers(factory, forger, kid):
    verifier, fetcher, _ = make_verifier(factory)
    refused(verifier, forger.wrap(forger.inner(header=forger.jws_header(kid=kid))), UnknownKey)
    refused(verifier, forger.wrap(forger.inner(), header=forger.jwe_header(kid=kid)), UnknownKey)
    assert set(fetcher.urls()) <= {JWKS_URI}


def test_key_wrapping_with_a128kw_is_refused(factory, forger):
    verifier, _, _ = make_verifier(factory)
    refused(verifier, forger.wrap(forger.inner(), header=forger.jwe_header(alg="A128KW")), UnsupportedToken)


def test_duplicate_header_members_cannot_smuggle_an_algorithm(factory, forger):
    """RFC 7515 §4: duplicate names are read last-wins everywhere here, so no parser disagrees."""
    verifier, _, _ = make_verifier(factory)
    kid = forger.audience_kid
    outer_dir_last = ('{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT","kid":"%s","alg":"dir"}' % kid).encode()
    refused(verifier, forger.wrap(forger.inner(), header=outer_dir_last), UnsupportedToken)
    outer_enc_last = ('{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT","kid":"%s","enc":"A128GCM"}' % kid).encode()
    refused(verifier, forger.wrap(forger.inner(), header=outer_enc_last), UnsupportedToken)
    signing_kid = forger.signing_kid
    inner_none_last = ('{"alg":"RS256","typ":"at+jwt","kid":"%s","alg":"none"}' % signing_kid).encode()
    refused(verifier, forger.wrap(jws(inner_none_last, forger.claims(), unsigned)), UnsupportedToken)
    inner_none_first = ('{"alg":"none","typ":"at+jwt","kid":"%s","alg":"RS256"}' % signing_kid).encode()
    refused(verifier, forger.wrap(jws(inner_none_first, forger.claims(), unsigned)))
    inner_typ_last = ('{"alg":"RS256","typ":"at+jwt","kid":"%s","typ":"JWT"}' % signing_kid).encode()
    refused(verifier, forger.wrap(jws(inner_typ_last, forger.claims(), rs(forger.signing_key))), UnsupportedToken)


def test_non_utf8_headers_are_malformed(factory, forger):
    verifier, _, _ = make_verifier(factory)
    bad_outer = b'{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT","kid":"\xff\xfe"}'
    refused(verifier, forger.wrap(forger.inner(), header=bad_outer), MalformedToken)
    bad_inner = b'{"alg":"RS256","typ":"at+jwt","kid":"\xc3\x28"}'
    refused(verifier, forger.wrap(jws(bad_inner, forger.claims(), rs(forger.signing_key))), MalformedToken)
    refused(verifier, forger.wrap(forger.inner(claims=b'{"sub":"\xff"}')))


# == Part 2: the service's own /me ================================================================

@pytest.fixture
def me_forger(services, settings, clock) -> Forger:
    issuer = settings.issuer
    return Forger(issuer=issuer, audience=f"{issuer}/me",
                  audience_key=services.keyring.self_encryption_key.public_key(),
                  signing_key=services.keyring.active_signing_key().private_key, now=int(clock.now))


@pytest.fixture
def services(oauth_app):
    return oauth_app.extensions["identity"]


@pytest.fixture
def fetched(monkeypatch):
    """Every URL the /me verifier asks for; and no outbound HTTP at all."""
    from identity.web import me

    urls: list[str] = []
    original = me.LocalJwks.get

    def get(self, url):
        urls.append(url)
        return original(self, url)

    def no_network(*args, **kwargs):
        raise AssertionError("the verifier tried to reach the network")

    monkeypatch.setattr(me.LocalJwks, "get", get)
    monkeypatch.setattr("requests.Session.request", no_network)
    return urls


def login(oauth_client, app_client, *, resource: str, scope: str) -> dict:
    verifier, challenge = pkce_pair()
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": scope, "resource": resource})
    code = query_of(response.headers["Location"])["code"]
    tokens = oauth_client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                               "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
                                               "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.json
    return tokens.json


def me_refuses(oauth_client, caplog, token: str, reasons: set[str] | str) -> None:
    """401 invalid_token at /me, and the verifier (not a later check) refused it for ``reasons``."""
    wanted = {reasons} if isinstance(reasons, str) else reasons
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="identity.verify.flask"):
        response = oauth_client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.json == {"error": "invalid_token"}
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.headers["Cache-Control"] == "no-store"
    refusals = [r.args[0] for r in caplog.records if r.getMessage().startswith("access token refused:")]
    assert refusals and set(refusals) <= wanted, (refusals, wanted)


def test_a_genuine_self_token_is_accepted(oauth_client, self_app, settings):
    tokens = login(oauth_client, self_app, resource=f"{settings.issuer}/me", scope=SELF_SCOPE)
    assert oauth_client.get("/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200


def test_a_well_formed_token_the_service_never_issued_is_refused_after_verification(oauth_client, me_forger, caplog):
    """Control and second line of defence: even a token made with the real signing key is refused."""
    caplog.set_level(logging.INFO, logger="identity.verify.flask")
    response = oauth_client.get("/me", headers={"Authorization": f"Bearer {me_forger.token()}"})
    assert response.status_code == 401
    assert not [r for r in caplog.records if r.getMessage().startswith("access token refused:")]


def _ec_signed(f: Forger) -> str:
    return f.wrap(f.inner(header=f.jws_header(alg="ES256"), sign=es256(ATTACKER_EC)))


JWS_FORGERIES: dict[str, tuple[Callable[[Forger], str], set[str] | str]] = {
    "alg none": (lambda f: f.wrap(f.inner(header=f.jws_header(alg="none"), sign=unsigned)), "UnsupportedToken"),
    "alg None": (lambda f: f.wrap(f.inner(header=f.jws_header(alg="None"), sign=unsigned)), "UnsupportedToken"),
    "alg empty": (lambda f: f.wrap(f.inner(header=f.jws_header(alg=""), sign=unsigned)), "UnsupportedToken"),
    "alg missing": (lambda f: f.wrap(f.inner(header=f.jws_header(alg=DROP))), "UnsupportedToken"),
    "HS256 keyed with the RSA public key": (
        lambda f: f.wrap(f.inner(header=f.jws_header(alg="HS256"),
                                 sign=hs256_with_public_pem(f.signing_key.public_key()))),
        "UnsupportedToken"),
    "RS384": (lambda f: f.wrap(f.inner(header=f.jws_header(alg="RS384"), sign=rs(f.signing_key, hashes.SHA384()))),
              "UnsupportedToken"),
    "PS256": (lambda f: f.wrap(f.inner(header=f.jws_header(alg="PS256"), sign=ps256(f.signing_key))),
              "UnsupportedToken"),
    "ES256": (_ec_signed, "UnsupportedToken"),
    "signed by another key under our kid": (lambda f: f.wrap(f.inner(sign=rs(rsa_key("attacker")))), "BadSignature"),
    "payload changed under the signature": (lambda f: f.wrap(_payload_swapped(f)), "BadSignature"),
    "empty signature": (lambda f: f.wrap(f.inner().rsplit(".", 1)[0] + "."), {"BadSignature", "MalformedToken"}),
    "unknown kid": (lambda f: f.wrap(f.inner(header=f.jws_header(kid="no-such-key"))), "UnknownKey"),
    "missing kid": (lambda f: f.wrap(f.inner(header=f.jws_header(kid=DROP))), "UnknownKey"),
    "typ JWT (an ID token's)": (lambda f: f.wrap(f.inner(header=f.jws_header(typ="JWT"))), "UnsupportedToken"),
    "typ missing": (lambda f: f.wrap(f.inner(header=f.jws_header(typ=DROP))), "UnsupportedToken"),
    "crit": (lambda f: f.wrap(f.inner(header=f.jws_header(crit=["exp"], exp=1))), "UnsupportedToken"),
    "exp passed": (lambda f: f.token(exp=f.now - 120, iat=f.now - 720), "TokenExpired"),
    "exp missing": (lambda f: f.token(exp=DROP), "MissingClaim"),
    "nbf in the future": (lambda f: f.token(nbf=f.now + 600), "TokenNotYetValid"),
    "iat far in the future": (lambda f: f.token(iat=f.now + 3600, exp=f.now + 7200), "TokenNotYetValid"),
    "iss of another issuer": (lambda f: f.token(iss="https://evil.example.test"), "WrongIssuer"),
    "iss missing": (lambda f: f.token(iss=DROP), "MissingClaim"),
    "aud of another audience": (lambda f: f.token(aud=API), "WrongAudience"),
    "aud missing": (lambda f: f.token(aud=DROP), "MissingClaim"),
    "non-UTF-8 JWS header": (lambda f: f.wrap(jws(b'{"alg":"RS256","kid":"\xff"}', f.claims(), rs(f.signing_key))),
                             "MalformedToken"),
    "duplicate alg, none last": (
        lambda f: f.wrap(jws(('{"alg":"RS256","typ":"at+jwt","kid":"%s","alg":"none"}' % f.signing_kid).encode(),
                             f.claims(), unsigned)), "UnsupportedToken"),
}

JWE_FORGERIES = {
    "bare JWS, not encrypted": (lambda f: f.inner(), "UnencryptedToken"),
    "alg RSA1_5": (lambda f: f.wrap(f.inner(), header=f.jwe_header(alg="RSA1_5")), "UnsupportedToken"),
    "alg RSA-OAEP (SHA-1)": (lambda f: f.wrap(f.inner(), header=f.jwe_header(alg="RSA-OAEP")), "UnsupportedToken"),
    "alg dir": (lambda f: f.wrap(f.inner(), header=f.jwe_header(alg="dir")), "UnsupportedToken"),
    "alg A128KW": (lambda f: f.wrap(f.inner(), header=f.jwe_header(alg="A128KW")), "UnsupportedToken"),
    "enc A128GCM": (lambda f: f.wrap(f.inner(), header=f.jwe_header(enc="A128GCM")), "UnsupportedToken"),
    "enc A256CBC-HS512": (lambda f: f.wrap(f.inner(), header=f.jwe_header(enc="A256CBC-HS512")), "UnsupportedToken"),
    "zip DEF": (lambda f: f.wrap(f.inner(), header=f.jwe_header(zip="DEF")), "UnsupportedToken"),
    "cty json": (lambda f: f.wrap(f.inner(), header=f.jwe_header(cty="json")), "UnsupportedToken"),
    "cty missing": (lambda f: f.wrap(f.inner(), header=f.jwe_header(cty=DROP)), "UnsupportedToken"),
    "kid missing": (lambda f: f.wrap(f.inner(), header=f.jwe_header(kid=DROP)), "UnknownKey"),
    "kid of a key we do not hold": (lambda f: f.wrap(f.inner(), header=f.jwe_header(kid="other")), "UnknownKey"),
    "encrypted to another key under our kid": (lambda f: f.wrap(f.inner(), to=rsa_key("attacker").public_key()),
                                                "DecryptionFailed"),
    "tampered protected header (AAD)": (lambda f: _swap_header(f), "DecryptionFailed"),
    "tampered encrypted key": (lambda f: flip(f.token(), 1), "DecryptionFailed"),
    "tampered IV": (lambda f: flip(f.token(), 2), "DecryptionFailed"),
    "tampered ciphertext": (lambda f: flip(f.token(), 3), "DecryptionFailed"),
    "tampered tag": (lambda f: flip(f.token(), 4), "DecryptionFailed"),
    "unsigned JWS inside": (lambda f: f.wrap(f.inner(header=f.jws_header(alg="none"), sign=unsigned)),
                            "UnsupportedToken"),
    "not a JWS inside": (lambda f: f.wrap(b'{"sub":"x","aud":"y"}'), "MalformedToken"),
    "JWE inside the JWE": (lambda f: f.wrap(f.token()), "MalformedToken"),
    "non-UTF-8 JWE header": (
        lambda f: f.wrap(f.inner(), header=b'{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT","kid":"\xff"}'),
        "MalformedToken"),
    "duplicate alg, dir last": (
        lambda f: f.wrap(f.inner(), header=('{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT","kid":"%s","alg":"dir"}'
                                            % f.audience_kid).encode()), "UnsupportedToken"),
}


def _payload_swapped(f: Forger) -> str:
    """A genuine signature over one payload, presented with another (sub changed)."""
    header, _, signature = f.inner().split(".")
    return ".".join([header, f.inner(claims=f.claims(sub="someone-else")).split(".")[1], signature])


def _swap_header(f: Forger) -> str:
    """A genuine token whose protected header is replaced by an equivalent one (other member order)."""
    token = f.token()
    other = ('{"enc":"A256GCM","alg":"RSA-OAEP-256","kid":"%s","cty":"JWT"}' % f.audience_kid).encode()
    return ".".join([b64(other), *token.split(".")[1:]])


@pytest.mark.parametrize("case", sorted(JWS_FORGERIES))
def test_jws_forgeries_are_refused_at_me(case, oauth_client, me_forger, caplog, fetched):
    make, reason = JWS_FORGERIES[case]
    me_refuses(oauth_client, caplog, make(me_forger), reason)
    assert set(fetched) <= {f"{me_forger.issuer}/.well-known/jwks.json"}


@pytest.mark.parametrize("case", sorted(JWE_FORGERIES))
def test_jwe_forgeries_are_refused_at_me(case, oauth_client, me_forger, caplog, fetched):
    make, reason = JWE_FORGERIES[case]
    me_refuses(oauth_client, caplog, make(me_forger), reason)


@pytest.mark.parametrize("kid", INJECTED_KIDS, ids=repr)
def test_injection_shaped_kids_are_refused_at_me(kid, oauth_client, me_forger, caplog, fetched):
    me_refuses(oauth_client, caplog, me_forger.wrap(me_forger.inner(header=me_forger.jws_header(kid=kid))),
               "UnknownKey")
    me_refuses(oauth_client, caplog, me_forger.wrap(me_forger.inner(), header=me_forger.jwe_header(kid=kid)),
               "UnknownKey")
    assert set(fetched) <= {f"{me_forger.issuer}/.well-known/jwks.json"}


@pytest.mark.parametrize("header", [
    {"jku": "https://evil.example.test/jwks.json"}, {"x5u": "https://evil.example.test/cert.pem"},
    {"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}, {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
], ids=lambda h: next(iter(h)))
def test_key_location_headers_are_never_used_or_fetched_at_me(header, oauth_client, me_forger, caplog, fetched):
    attacker = rsa_key("attacker")
    signed_by_attacker = me_forger.inner(header=me_forger.jws_header(**header), sign=rs(attacker))
    me_refuses(oauth_client, caplog, me_forger.wrap(signed_by_attacker), "BadSignature")
    me_refuses(oauth_client, caplog, me_forger.wrap(me_forger.inner(), header=me_forger.jwe_header(**header),
                                                    to=attacker.public_key()), "DecryptionFailed")
    assert all("evil" not in url for url in fetched)


def test_an_id_token_is_not_an_access_token_at_me(oauth_client, self_app, settings, me_forger, caplog):
    tokens = login(oauth_client, self_app, resource=f"{settings.issuer}/me", scope=f"openid {SELF_SCOPE}")
    me_refuses(oauth_client, caplog, tokens["id_token"], "UnencryptedToken")
    me_refuses(oauth_client, caplog, me_forger.wrap(tokens["id_token"]), "UnsupportedToken")  # typ JWT inside


def test_a_refresh_token_is_not_an_access_token_at_me(oauth_client, self_app, settings, caplog):
    tokens = login(oauth_client, self_app, resource=f"{settings.issuer}/me", scope=SELF_SCOPE)
    me_refuses(oauth_client, caplog, tokens["refresh_token"], "MalformedToken")


def test_a_token_for_another_audience_is_refused_at_me(oauth_client, self_app, caplog):
    tokens = login(oauth_client, self_app, resource=API, scope="records:read")
    me_refuses(oauth_client, caplog, tokens["access_token"], "UnknownKey")


def test_a_client_credentials_token_for_me_has_no_person(oauth_client, oauth, settings):
    client, secret = oauth.clients.register(name="Robot", public=False, redirect_uris=[], grant_types=None,
                                            scopes=[SELF_SCOPE], audiences=[f"{settings.issuer}/me"])
    token = oauth_client.post("/token", data={"grant_type": "client_credentials", "client_id": client.client_id,
                                              "client_secret": secret, "scope": SELF_SCOPE}).json["access_token"]
    assert oauth_client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_pyjwt_never_accepts_the_forgeries_either(forger):
    """Independent check of the forger's HS256 attack: PyJWT itself refuses HS256 with an RSA key."""
    token = forger.inner(header=forger.jws_header(alg="HS256"),
                         sign=hs256_with_public_pem(forger.signing_key.public_key()))
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(token, forger.signing_key.public_key(), algorithms=["RS256"], audience=forger.audience)
