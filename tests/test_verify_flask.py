"""identity.verify.flask: @require_token answers RFC 6750 §3 and puts the verified token on g."""

from __future__ import annotations

import pytest
from flask import Flask, g, jsonify

from identity.verify import ConfigurationError, HttpResponse
from identity.verify.flask import current_token, init_app, require_token

from .verify_support import JWKS_URI, PSEUDONYM, FakeFetcher, TokenFactory, make_verifier, rsa_key


@pytest.fixture
def factory() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher()


@pytest.fixture
def client(factory: TokenFactory, fetcher: FakeFetcher):
    verifier, _, _ = make_verifier(factory, fetcher=fetcher)
    app = Flask(__name__)
    init_app(app, verifier, realm="records")

    @app.get("/open")
    @require_token
    def open_route():
        return jsonify(sub=current_token().pseudonym, same=g.access_token is current_token())

    @app.post("/write")
    @require_token(scope="records:write")
    def write_route():
        return jsonify(sub=g.access_token.subject)

    @app.get("/admin")
    @require_token(scope=["records:admin", "records:read"])
    def admin_route():
        return jsonify(ok=True)

    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_token_reaches_the_view_with_claims_on_g(client, factory: TokenFactory):
    response = client.get("/open", headers=bearer(factory.token()))
    assert response.status_code == 200
    assert response.get_json() == {"sub": PSEUDONYM, "same": True}
    assert client.post("/write", headers={"Authorization": f"bearer  {factory.token()}"}).status_code == 200


def test_missing_token_is_401_with_a_bare_challenge(client):
    response = client.get("/open")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="records"'
    assert response.headers["Cache-Control"] == "no-store"


def test_other_schemes_and_query_tokens_count_as_missing(client, factory: TokenFactory):
    assert client.get("/open", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    response = client.get("/open", query_string={"access_token": factory.token()})
    assert response.status_code == 401 and "error=" not in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", "Bearer ä", 'Bearer a"b'])
def test_malformed_authorization_header_is_400(client, header: str):
    response = client.get("/open", headers={"Authorization": header})
    assert response.status_code == 400
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="records", error="invalid_request"'


@pytest.mark.parametrize("make", [
    lambda f: f.token(aud="https://other.example.test"),
    lambda f: f.token(exp=int(f.now) - 100),
    lambda f: f.inner(),
    lambda f: f.wrap(f.inner(key=rsa_key("attacker"))),
    lambda f: "opaque-refresh-token",
])
def test_invalid_tokens_get_one_identical_answer(client, factory: TokenFactory, make):
    response = client.get("/open", headers=bearer(make(factory)))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="records", error="invalid_token"'
    assert response.get_json() == {"error": "invalid_token"}  # no description, no reason
    assert response.headers["Cache-Control"] == "no-store"


def test_insufficient_scope_is_403_naming_the_required_scope(client, factory: TokenFactory):
    response = client.post("/write", headers=bearer(factory.token(scope="records:read")))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="records", error="insufficient_scope", scope="records:write"'
    )
    response = client.get("/admin", headers=bearer(factory.token()))
    assert response.status_code == 403
    assert response.get_json() == {"error": "insufficient_scope", "scope": "records:admin records:read"}


def test_unreachable_issuer_is_503_not_401(client, factory: TokenFactory, fetcher: FakeFetcher):
    fetcher.responses[JWKS_URI] = HttpResponse(status=502, body=b"")
    response = client.get("/open", headers=bearer(factory.token()))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30" and "WWW-Authenticate" not in response.headers


def test_decorator_without_init_app_is_a_configuration_error():
    app = Flask(__name__)

    @app.get("/x")
    @require_token
    def view():
        return "never"

    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ConfigurationError):
        app.test_client().get("/x", headers=bearer("a.b.c.d.e"))


def test_bad_realm_or_scope_names_are_refused(factory: TokenFactory):
    verifier, _, _ = make_verifier(factory)
    with pytest.raises(ConfigurationError):
        init_app(Flask(__name__), verifier, realm='a"b')
    with pytest.raises(ConfigurationError):
        require_token(scope='a"b')


def test_current_token_outside_a_protected_route():
    app = Flask(__name__)
    with app.test_request_context("/"):
        with pytest.raises(RuntimeError):
            current_token()
