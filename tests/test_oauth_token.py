"""/token refusals: codes, PKCE, redirect binding, client authentication, grants, resources, scopes."""

from __future__ import annotations

import logging
import threading

import pytest

from identity.oauth.clients import ClientRegistrationError
from tests.conftest import API, OTHER_API, REDIRECT_URI
from tests.oauth_helpers import b64json, pkce_pair, query_of
from tests.test_oauth_flow import basic

# The whole module runs twice: /token through its fast path, then through Flask; answers compared.
pytestmark = pytest.mark.usefixtures("token_path")


def get_code(oauth_client, app_client, *, challenge=None, redirect_uri=REDIRECT_URI, **extra):
    verifier, default_challenge = pkce_pair()
    params = {"response_type": "code", "client_id": app_client.client_id, "redirect_uri": redirect_uri,
              "code_challenge": challenge or default_challenge, "code_challenge_method": "S256",
              "scope": "openid records:read", **extra}
    response = oauth_client.get("/authorize", query_string={k: v for k, v in params.items() if v is not None})
    return query_of(response.headers["Location"])["code"], verifier


def token(oauth_client, headers=None, **form):
    return oauth_client.post("/token", data={k: v for k, v in form.items() if v is not None}, headers=headers or {})


def code_grant(oauth_client, app_client, code, verifier, **extra):
    return token(oauth_client, grant_type="authorization_code", code=code, client_id=app_client.client_id,
                 redirect_uri=REDIRECT_URI, code_verifier=verifier, **extra)


def assert_oauth_error(response, error, status=400):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"] == error
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def introspect(oauth_client, service_client):
    rs, secret = service_client

    def check(value):
        return oauth_client.post("/introspect", data={"token": value}, headers=basic(rs.client_id, secret)).json

    return check


def test_a_replayed_code_is_refused_and_revokes_what_it_issued(oauth_client, public_app, introspect):
    code, verifier = get_code(oauth_client, public_app)
    first = code_grant(oauth_client, public_app, code, verifier)
    assert first.status_code == 200
    assert introspect(first.json["access_token"])["active"] is True
    assert_oauth_error(code_grant(oauth_client, public_app, code, verifier), "invalid_grant")
    assert introspect(first.json["access_token"]) == {"active": False}
    refresh = token(oauth_client, grant_type="refresh_token", client_id=public_app.client_id,
                    refresh_token=first.json["refresh_token"])
    assert_oauth_error(refresh, "invalid_grant")


def test_an_expired_code_is_refused(oauth_client, public_app, clock):
    code, verifier = get_code(oauth_client, public_app)
    clock.advance(61)
    assert_oauth_error(code_grant(oauth_client, public_app, code, verifier), "invalid_grant")


def test_code_of_client_a_at_client_b_is_refused(oauth_client, public_app, oauth):
    other, _ = oauth.clients.register(name="Other", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                      scopes=["openid", "records:read"], audiences=[API])
    code, verifier = get_code(oauth_client, public_app)
    assert_oauth_error(code_grant(oauth_client, other, code, verifier), "invalid_grant")
    assert code_grant(oauth_client, public_app, code, verifier).status_code == 200  # not burnt by the attempt


@pytest.mark.parametrize("verifier", [None, "wrong" * 10, "short"])
def test_wrong_or_missing_verifier_is_refused_without_burning_the_code(oauth_client, public_app, verifier):
    code, good = get_code(oauth_client, public_app)
    assert_oauth_error(code_grant(oauth_client, public_app, code, verifier), "invalid_grant")
    assert code_grant(oauth_client, public_app, code, good).status_code == 200


def test_verifier_without_an_earlier_challenge_is_a_refused_downgrade(oauth_client, oauth):
    confidential, secret = oauth.clients.register(
        name="Web", public=False, redirect_uris=[REDIRECT_URI], grant_types=["authorization_code"],
        scopes=None, audiences=[API], uses_nonce=True)
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": confidential.client_id, "redirect_uri": REDIRECT_URI,
        "scope": "openid", "nonce": "n-42"})
    code = query_of(response.headers["Location"])["code"]
    downgraded = token(oauth_client, basic(confidential.client_id, secret), grant_type="authorization_code",
                       code=code, redirect_uri=REDIRECT_URI, code_verifier=pkce_pair()[0])
    assert_oauth_error(downgraded, "invalid_grant")
    plain = token(oauth_client, basic(confidential.client_id, secret), grant_type="authorization_code",
                  code=code, redirect_uri=REDIRECT_URI)
    assert plain.status_code == 200  # the nonce exception: the ID token carries the nonce the client checks
    assert b64json(plain.json["id_token"].split(".")[1])["nonce"] == "n-42"


def test_redirect_uri_must_match_the_authorization_request(oauth_client, public_app):
    code, verifier = get_code(oauth_client, public_app)
    for uri in (None, REDIRECT_URI + "/", "https://evil.example/cb"):
        response = token(oauth_client, grant_type="authorization_code", code=code, client_id=public_app.client_id,
                         redirect_uri=uri, code_verifier=verifier)
        assert_oauth_error(response, "invalid_grant")


def test_resource_at_the_token_endpoint_must_equal_the_authorised_one(oauth_client, public_app):
    code, verifier = get_code(oauth_client, public_app)
    assert_oauth_error(code_grant(oauth_client, public_app, code, verifier, resource=OTHER_API), "invalid_target")
    code, verifier = get_code(oauth_client, public_app)
    assert code_grant(oauth_client, public_app, code, verifier, resource=API).status_code == 200


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"])
def test_unsupported_grant_types(oauth_client, service_client, grant_type):
    rs, secret = service_client
    response = token(oauth_client, basic(rs.client_id, secret), grant_type=grant_type, username="u", password="p")
    assert_oauth_error(response, "unsupported_grant_type")


def test_client_authentication_failures_are_401_invalid_client(oauth_client, service_client):
    rs, secret = service_client
    cases = [basic(rs.client_id, "wrong"), basic("unknown", secret), basic(rs.client_id, ""),
             {"Authorization": "Basic !!!notbase64"}, {"Authorization": "Bearer xyz"}, {}]
    for headers in cases:
        response = token(oauth_client, headers, grant_type="client_credentials", resource=API)
        assert_oauth_error(response, "invalid_client", 401)
        assert "WWW-Authenticate" in response.headers


def test_confidential_client_without_secret_is_refused(oauth_client, service_client):
    rs, _ = service_client
    assert_oauth_error(token(oauth_client, grant_type="client_credentials", client_id=rs.client_id, resource=API),
                       "invalid_client", 401)


def test_two_authentication_methods_at_once_are_refused(oauth_client, service_client):
    rs, secret = service_client
    response = token(oauth_client, basic(rs.client_id, secret), grant_type="client_credentials",
                     client_id=rs.client_id, client_secret=secret, resource=API)
    assert_oauth_error(response, "invalid_request")


def test_public_client_cannot_use_client_credentials(oauth_client, public_app):
    response = token(oauth_client, grant_type="client_credentials", client_id=public_app.client_id, resource=API)
    assert_oauth_error(response, "unauthorized_client")


def test_client_credentials_scope_and_audience_checks(oauth_client, service_client, oauth):
    rs, secret = service_client
    assert_oauth_error(token(oauth_client, basic(rs.client_id, secret), grant_type="client_credentials",
                             resource=API, scope="records:write"), "invalid_scope")
    assert_oauth_error(token(oauth_client, basic(rs.client_id, secret), grant_type="client_credentials",
                             resource="https://unknown.example.org"), "invalid_target")
    assert_oauth_error(token(oauth_client, basic(rs.client_id, secret), grant_type="client_credentials"),
                       "invalid_target")  # two audiences: resource is required


def test_request_body_rules(oauth_client, service_client):
    rs, secret = service_client
    json_body = oauth_client.post("/token", json={"grant_type": "client_credentials"},
                                  headers=basic(rs.client_id, secret))
    assert_oauth_error(json_body, "invalid_request")
    twice = oauth_client.post("/token", data="grant_type=client_credentials&grant_type=client_credentials",
                              content_type="application/x-www-form-urlencoded", headers=basic(rs.client_id, secret))
    assert_oauth_error(twice, "invalid_request")
    assert_oauth_error(oauth_client.post("/token", data={}), "invalid_request")
    assert oauth_client.get("/token").status_code == 405


# -- refresh tokens ------------------------------------------------------------------------------

def refresh(oauth_client, app_client, value, **extra):
    return token(oauth_client, grant_type="refresh_token", client_id=app_client.client_id, refresh_token=value,
                 **extra)


@pytest.fixture
def session(oauth_client, public_app):
    code, verifier = get_code(oauth_client, public_app)
    return code_grant(oauth_client, public_app, code, verifier).json


def test_refresh_reuse_revokes_that_family_only(oauth_client, public_app, session, introspect):
    other_code, other_verifier = get_code(oauth_client, public_app)
    other_session = code_grant(oauth_client, public_app, other_code, other_verifier).json
    rotated = refresh(oauth_client, public_app, session["refresh_token"]).json
    reuse = refresh(oauth_client, public_app, session["refresh_token"])
    assert_oauth_error(reuse, "invalid_grant")
    assert_oauth_error(refresh(oauth_client, public_app, rotated["refresh_token"]), "invalid_grant")
    assert introspect(rotated["access_token"]) == {"active": False}
    # the person's other session is untouched
    assert refresh(oauth_client, public_app, other_session["refresh_token"]).status_code == 200


def test_refresh_by_another_client_is_refused(oauth_client, oauth, session):
    other, _ = oauth.clients.register(name="Other", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                      scopes=None, audiences=[API])
    assert_oauth_error(refresh(oauth_client, other, session["refresh_token"]), "invalid_grant")


def test_refresh_cannot_widen_scope_but_may_narrow_it(oauth_client, public_app, session):
    assert_oauth_error(refresh(oauth_client, public_app, session["refresh_token"], scope="openid records:write"),
                       "invalid_scope")
    narrowed = refresh(oauth_client, public_app, session["refresh_token"], scope="records:read")
    assert narrowed.status_code == 200 and narrowed.json["scope"] == "records:read"
    # RFC 6749 §6: the new refresh token's scope is the one presented's: the narrowing was the access token's
    whole = refresh(oauth_client, public_app, narrowed.json["refresh_token"])
    assert whole.status_code == 200 and whole.json["scope"] == session["scope"]


def test_refresh_tokens_expire_idle_and_absolute(oauth_client, public_app, session, clock, settings):
    clock.advance(settings.refresh_token_idle_ttl + 1)
    assert_oauth_error(refresh(oauth_client, public_app, session["refresh_token"]), "invalid_grant")


def test_refresh_absolute_lifetime_holds_across_rotations(oauth_client, public_app, session, clock, settings):
    current = session["refresh_token"]
    step = settings.refresh_token_idle_ttl - 10
    while clock.now + step < 1_800_000_000 + settings.refresh_token_ttl:
        clock.advance(step)
        response = refresh(oauth_client, public_app, current)
        assert response.status_code == 200
        current = response.json["refresh_token"]
    clock.advance(step)
    assert_oauth_error(refresh(oauth_client, public_app, current), "invalid_grant")


@pytest.mark.token_answers_vary  # which loser sees "already used" and which "revoked" depends on timing
def test_concurrent_refresh_with_one_token_lets_exactly_one_succeed(oauth_app, public_app, session):
    results: list[int] = []
    barrier = threading.Barrier(8)

    def use():
        client = oauth_app.test_client()
        barrier.wait()
        results.append(refresh(client, public_app, session["refresh_token"]).status_code)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [400] * 7


def test_a_restricted_persons_refresh_fails_at_once(oauth_client, public_app, session, services, introspect):
    from identity.vault import IDENTITIES

    services.store.update(IDENTITIES, {}, {"status": "restricted"})
    assert_oauth_error(refresh(oauth_client, public_app, session["refresh_token"]), "invalid_grant")
    assert introspect(session["access_token"]) == {"active": False}


# -- revocation and introspection ----------------------------------------------------------------

def test_revocation_is_limited_to_the_clients_own_tokens(oauth_client, oauth, public_app, session, introspect):
    other, _ = oauth.clients.register(name="Other", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                      scopes=None, audiences=[API])
    answer = oauth_client.post("/revoke", data={"client_id": other.client_id, "token": session["refresh_token"]})
    assert answer.status_code == 200
    assert introspect(session["access_token"])["active"] is True
    assert refresh(oauth_client, public_app, session["refresh_token"]).status_code == 200


def test_revoking_an_access_token(oauth_client, public_app, session, introspect):
    oauth_client.post("/revoke", data={"client_id": public_app.client_id, "token": session["access_token"],
                                       "token_type_hint": "access_token"})
    assert introspect(session["access_token"]) == {"active": False}
    assert refresh(oauth_client, public_app, session["refresh_token"]).status_code == 200


def test_revocation_and_introspection_need_client_authentication(oauth_client, session, public_app, service_client):
    assert_oauth_error(oauth_client.post("/revoke", data={"token": session["refresh_token"]}), "invalid_client", 401)
    assert_oauth_error(oauth_client.post("/introspect", data={"token": session["access_token"]}),
                       "invalid_client", 401)
    public = oauth_client.post("/introspect", data={"token": session["access_token"],
                                                    "client_id": public_app.client_id})
    assert_oauth_error(public, "invalid_client", 401)
    rs, _ = service_client
    wrong = oauth_client.post("/introspect", data={"token": session["access_token"]}, headers=basic(rs.client_id, "x"))
    assert_oauth_error(wrong, "invalid_client", 401)


def test_introspection_only_for_the_callers_own_audiences(oauth_client, oauth, session):
    stranger, secret = oauth.clients.register(name="Stranger", public=False, redirect_uris=[], grant_types=None,
                                              scopes=None, audiences=[OTHER_API])
    answer = oauth_client.post("/introspect", data={"token": session["access_token"]},
                               headers=basic(stranger.client_id, secret))
    assert answer.json == {"active": False}


def test_expired_access_tokens_introspect_inactive(oauth_client, session, clock, introspect):
    clock.advance(601)
    assert introspect(session["access_token"]) == {"active": False}


# -- introspection is scoped (RFC 7662 §4) -------------------------------------------------------

def introspect_as(oauth_client, caller, secret, value, **extra):
    return oauth_client.post("/introspect", data={"token": value, **extra},
                             headers=basic(caller.client_id, secret)).json


@pytest.fixture
def web_session(oauth_client, web_app):
    """Tokens of the confidential web app, from a code flow with PKCE."""
    client, secret = web_app
    code, verifier = get_code(oauth_client, client)
    response = token(oauth_client, basic(client.client_id, secret), grant_type="authorization_code", code=code,
                     redirect_uri=REDIRECT_URI, code_verifier=verifier)
    assert response.status_code == 200, response.json
    return response.json


def test_a_second_confidential_client_gets_inactive_for_another_clients_refresh_token(
        oauth_client, session, service_client, web_app, web_session):
    """The reported case: the audience's confidential client asked about the mobile app's refresh token."""
    rs, rs_secret = service_client
    assert introspect_as(oauth_client, rs, rs_secret, session["refresh_token"]) == {"active": False}
    assert introspect_as(oauth_client, rs, rs_secret, web_session["refresh_token"]) == {"active": False}
    assert introspect_as(oauth_client, rs, rs_secret, web_session["refresh_token"],
                         token_type_hint="refresh_token") == {"active": False}
    web, web_secret = web_app
    assert introspect_as(oauth_client, web, web_secret, session["refresh_token"]) == {"active": False}


def test_a_refresh_token_is_described_to_the_client_it_was_issued_to(oauth_client, web_app, web_session):
    web, secret = web_app
    answer = introspect_as(oauth_client, web, secret, web_session["refresh_token"])
    assert answer["active"] is True and answer["token_type"] == "refresh_token"
    assert answer["client_id"] == web.client_id and answer["aud"] == API and answer["sub"]
    assert answer["scope"] == "openid records:read"


def test_an_access_token_is_described_to_its_client_and_to_its_audiences_resource_server(
        oauth_client, oauth, web_app, web_session, service_client, audience_keys):
    from tests.oauth_helpers import open_access_token
    web, web_secret = web_app
    mine = introspect_as(oauth_client, web, web_secret, web_session["access_token"])
    assert mine["active"] is True and mine["client_id"] == web.client_id and mine["aud"] == API
    rs, rs_secret = service_client  # API's resource server (introspects=[API]), checking a token it was sent
    theirs = introspect_as(oauth_client, rs, rs_secret, web_session["access_token"])
    assert {k: v for k, v in theirs.items() if k != "sub"} == {k: v for k, v in mine.items() if k != "sub"}
    # each sees the subject it already knows: the app its ID tokens', the resource server its tokens'. The
    # app never learns the audience's subject (nor, for a public audience, the pseudonym): apps of other
    # sectors that introspect their tokens to the same service cannot join their people on it.
    _, _, claims = open_access_token(web_session["access_token"], audience_keys[API],
                                     oauth_client.get("/.well-known/jwks.json").json)
    assert theirs["sub"] == claims["sub"]
    assert mine["sub"] == b64json(web_session["id_token"].split(".")[1])["sub"] != claims["sub"]
    other, other_secret = oauth.clients.register(name="Other API's client", public=False, redirect_uris=[],
                                                 grant_types=None, scopes=None, audiences=[OTHER_API],
                                                 introspects=[OTHER_API])
    assert introspect_as(oauth_client, other, other_secret, web_session["access_token"]) == {"active": False}


def test_an_app_that_may_call_the_audience_cannot_introspect_another_apps_tokens(
        oauth_client, oauth, web_app, web_session, caplog):
    """Every app that calls an API may request tokens for it; being its resource server takes a registration of
    its own. Otherwise an app holding another app's token (a log, a shared proxy) would learn the subject the
    API knows that person by, and two apps of different sectors could join their people on it."""
    app_b, secret_b = oauth.clients.register(name="Another app", public=False, redirect_uris=[], grant_types=None,
                                             scopes=["records:read"], audiences=[API])
    with caplog.at_level(logging.WARNING, logger="identity.oauth.token_status"):
        assert introspect_as(oauth_client, app_b, secret_b, web_session["access_token"]) == {"active": False}
    assert f"clients.py update {app_b.client_id} --introspects" in caplog.text  # what the operator may have meant
    own = token(oauth_client, basic(app_b.client_id, secret_b), grant_type="client_credentials").json["access_token"]
    assert introspect_as(oauth_client, app_b, secret_b, own)["active"] is True  # its own tokens: always

    before, after = oauth.clients.set_introspects(app_b.client_id, [API])  # the operator makes it API's backend
    assert before.introspects == () and after.introspects == (API,)
    assert introspect_as(oauth_client, app_b, secret_b, web_session["access_token"])["active"] is True
    oauth.clients.set_introspects(app_b.client_id, [])
    assert introspect_as(oauth_client, app_b, secret_b, web_session["access_token"]) == {"active": False}


def test_only_a_confidential_client_may_be_a_resource_server(oauth):
    with pytest.raises(ClientRegistrationError, match="confidential"):
        oauth.clients.register(name="Native", public=True, redirect_uris=["com.example.app:/cb"], grant_types=None,
                               scopes=None, audiences=[API], introspects=[API])
    native, _ = oauth.clients.register(name="Native", public=True, redirect_uris=["com.example.app:/cb"],
                                       grant_types=None, scopes=None, audiences=[API])
    with pytest.raises(ClientRegistrationError, match="confidential"):
        oauth.clients.set_introspects(native.client_id, [API])


def test_removing_an_app_ends_the_tokens_of_its_people_at_once(oauth_client, oauth, web_app, web_session,
                                                                service_client):
    """A removed (say compromised) app: its people's access tokens are inactive for the resource server
    right away, not when they expire, and ``clients.py remove`` revokes its grants."""
    web, _ = web_app
    rs, rs_secret = service_client
    assert introspect_as(oauth_client, rs, rs_secret, web_session["access_token"])["active"] is True
    assert oauth.clients.remove(web.client_id)
    assert introspect_as(oauth_client, rs, rs_secret, web_session["access_token"]) == {"active": False}
    assert oauth.grants.revoke_all_for_client(web.client_id, reason="client removed") == 1
    assert oauth.grants.revoke_all_for_client(web.client_id, reason="client removed") == 0  # none live left


def test_a_client_credentials_token_is_described_to_its_own_client(oauth_client, oauth):
    backend, secret = oauth.clients.register(name="Batch job", public=False, redirect_uris=[], grant_types=None,
                                             scopes=["records:read"], audiences=[OTHER_API])
    issued = token(oauth_client, basic(backend.client_id, secret), grant_type="client_credentials",
                   scope="records:read").json
    answer = introspect_as(oauth_client, backend, secret, issued["access_token"])
    assert answer["active"] is True and answer["sub"] == backend.client_id and answer["aud"] == OTHER_API


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "id_token", "x" * 300])
def test_token_type_hint_is_only_a_hint(oauth_client, web_app, web_session, hint):
    """RFC 7662 §2.1: a wrong or unknown hint does not hide a token the caller may see."""
    web, secret = web_app
    for kind in ("access_token", "refresh_token"):
        answer = introspect_as(oauth_client, web, secret, web_session[kind], token_type_hint=hint)
        assert answer["active"] is True and answer["token_type"] == kind


# -- recognised without a record: the sealed reference (identity.token_reference) ------------------


def test_access_tokens_are_recognised_without_any_record(oauth_client, oauth_app, session, service_client, introspect):
    """Issuing writes nothing per access token; introspection and revocation still know every one."""
    from identity.oauth.records import ISSUED_ACCESS_TOKENS, REVOKED_ACCESS_TOKENS
    rs, secret = service_client
    machine = token(oauth_client, basic(rs.client_id, secret), grant_type="client_credentials",
                    resource=OTHER_API).json["access_token"]
    store = oauth_app.extensions["identity"].store
    assert store.count(ISSUED_ACCESS_TOKENS, {}) == 0
    person = introspect(session["access_token"])
    assert person["active"] is True and person["aud"] == API and person["scope"] == "openid records:read"
    own = introspect(machine)
    assert own["active"] is True and own["sub"] == rs.client_id and own["aud"] == OTHER_API
    assert own["exp"] - own["iat"] == 600 and own["jti"]
    oauth_client.post("/revoke", data={"token": machine}, headers=basic(rs.client_id, secret))
    assert introspect(machine) == {"active": False}
    assert store.get(REVOKED_ACCESS_TOKENS, own["jti"]) == {"jti": own["jti"], "expires_at": own["exp"]}
    assert introspect(session["access_token"])["active"] is True  # one token revoked, by its jti alone


def with_reference(value: str, reference: str) -> str:
    """The token with its header's ``ref`` replaced (the header is base64url JSON anyone can rewrite)."""
    import base64
    import json
    header_segment, rest = value.split(".", 1)
    header = b64json(header_segment)
    header["ref"] = reference
    encoded = base64.urlsafe_b64encode(json.dumps(header, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{encoded}.{rest}"


def test_a_reference_that_was_tampered_with_or_made_up_is_inactive(oauth_client, session, introspect):
    genuine = b64json(session["access_token"].split(".")[0])["ref"]
    kid, body = genuine.split(".")
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    for reference in (f"{kid}.{flipped}", f"{kid}.{body[:-4]}", body, f"{kid}.", "x" * 2000):
        assert introspect(with_reference(session["access_token"], reference)) == {"active": False}, reference
    assert introspect(session["access_token"])["active"] is True


def test_a_token_too_long_for_a_reference_is_recorded_instead(oauth_client, oauth, oauth_app, audience_keys):
    """Scopes long enough to push the header past what the verification library accepts: the token goes out
    without ``ref`` and is recorded (hash only); introspection and revocation work the same."""
    from identity.oauth.records import ISSUED_ACCESS_TOKENS
    from tests.oauth_helpers import open_access_token
    scopes = [f"records:{'x' * 40}:{n:02d}" for n in range(12)]
    backend, secret = oauth.clients.register(name="Many scopes", public=False, redirect_uris=[], grant_types=None,
                                             scopes=scopes, audiences=[API])
    issued = token(oauth_client, basic(backend.client_id, secret), grant_type="client_credentials",
                   scope=" ".join(scopes))
    assert issued.status_code == 200, issued.json
    value = issued.json["access_token"]
    jwks = oauth_client.get("/.well-known/jwks.json").json
    header, _, claims = open_access_token(value, audience_keys[API], jwks)
    assert "ref" not in header and claims["scope"] == " ".join(scopes)
    assert oauth_app.extensions["identity"].store.count(ISSUED_ACCESS_TOKENS, {}) == 1
    answer = introspect_as(oauth_client, backend, secret, value)
    assert answer["active"] is True and answer["scope"] == " ".join(scopes)
    oauth_client.post("/revoke", data={"token": value}, headers=basic(backend.client_id, secret))
    assert introspect_as(oauth_client, backend, secret, value) == {"active": False}
