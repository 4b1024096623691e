"""The example downstream service: records stored under the pseudonym only, never an e-mail."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from examples.downstream import DownstreamConfig, create_app, load_config
from examples.downstream.config import DownstreamConfigError
from examples.downstream.demo import run as run_demo
from identity.verify import TokenVerifier, generate_audience_key
from tests.conftest import API
from tests.test_oauth_flow import exchange, login

from .verify_support import CLIENT_ID, PSEUDONYM, FlaskClientFetcher, TokenFactory, make_verifier

ROOT = Path(__file__).resolve().parents[1]
OTHER_PSEUDONYM = "nbswy3dpeb3w64tmmqqq2lknnw"


@pytest.fixture
def factory() -> TokenFactory:
    return TokenFactory()


@pytest.fixture
def config(tmp_path: Path, factory: TokenFactory) -> DownstreamConfig:
    return DownstreamConfig(issuer=factory.issuer, audience=factory.audience, keys_dir=tmp_path / "keys",
                            db_path=tmp_path / "records.sqlite3")


@pytest.fixture
def http(config: DownstreamConfig, factory: TokenFactory):
    verifier, _, _ = make_verifier(factory)
    return create_app(config, verifier=verifier).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def db_rows(config: DownstreamConfig) -> list[tuple]:
    db = sqlite3.connect(config.db_path)
    try:
        return db.execute("SELECT pseudonym, client_id, kind, data FROM records ORDER BY id").fetchall()
    finally:
        db.close()


def test_record_is_stored_under_the_pseudonym_and_listed_back(http, factory: TokenFactory, config):
    token = factory.token()
    posted = http.post("/records", json={"kind": "steps.daily", "data": {"steps": 8412}, "occurred_at": 1},
                       headers=bearer(token))
    assert posted.status_code == 201, posted.json
    assert posted.json["pseudonym"] == PSEUDONYM and posted.json["data"] == {"steps": 8412}
    listed = http.get("/records", headers=bearer(token)).json
    assert listed["pseudonym"] == PSEUDONYM and [r["kind"] for r in listed["records"]] == ["steps.daily"]
    assert db_rows(config) == [(PSEUDONYM, CLIENT_ID, "steps.daily", '{"steps": 8412}')]


def test_each_pseudonym_sees_only_its_own_records(http, factory: TokenFactory):
    mine, theirs = factory.token(), factory.token(sub=OTHER_PSEUDONYM)
    http.post("/records", json={"kind": "sleep", "data": {"h": 7}}, headers=bearer(mine))
    http.post("/records", json={"kind": "sleep", "data": {"h": 5}}, headers=bearer(theirs))
    assert [r["data"] for r in http.get("/records", headers=bearer(mine)).json["records"]] == [{"h": 7}]
    assert [r["data"] for r in http.get("/records", headers=bearer(theirs)).json["records"]] == [{"h": 5}]


def test_pseudonym_comes_from_the_token_not_the_body(http, factory: TokenFactory, config):
    response = http.post("/records", json={"kind": "x", "data": {}, "pseudonym": OTHER_PSEUDONYM},
                         headers=bearer(factory.token()))
    assert response.status_code == 422
    assert db_rows(config) == []


@pytest.mark.parametrize("body", [
    {"kind": "mood", "data": {"note": "mail me at alex@example.org"}},
    {"kind": "mood", "data": {"contacts": [{"alex@example.org": 1}]}},
    {"kind": "Not A Kind", "data": {}},
    {"kind": "x", "data": [1]},
    {"kind": "x", "data": {}, "occurred_at": "yesterday"},
    {"kind": "x", "data": {"blob": "a" * 9000}},
    "not an object",
])
def test_unacceptable_records_are_refused_and_not_echoed(http, factory: TokenFactory, config, body):
    response = http.post("/records", json=body, headers=bearer(factory.token()))
    assert response.status_code == 422
    assert "alex@example.org" not in response.get_data(as_text=True)
    assert db_rows(config) == []


def test_scopes_are_enforced(http, factory: TokenFactory):
    read_only = factory.token(scope="records:read")
    response = http.post("/records", json={"kind": "x", "data": {}}, headers=bearer(read_only))
    assert response.status_code == 403 and 'scope="records:write"' in response.headers["WWW-Authenticate"]
    assert http.get("/records", headers=bearer(factory.token(scope="records:write"))).status_code == 403
    assert http.get("/records", headers=bearer(read_only)).status_code == 200


def test_client_tokens_hold_no_person_and_are_refused(http, factory: TokenFactory):
    response = http.post("/records", json={"kind": "x", "data": {}}, headers=bearer(factory.token(sub=CLIENT_ID)))
    assert response.status_code == 403 and response.json["error"] == "person_token_required"


def test_no_or_bad_token(http, factory: TokenFactory):
    assert http.get("/records").status_code == 401
    assert http.get("/records", headers=bearer(factory.inner())).status_code == 401
    assert http.get("/records", headers=bearer(factory.token(aud="https://other.example.test"))).status_code == 401
    assert http.get("/healthz").status_code == 200


def test_paging(http, factory: TokenFactory):
    token = factory.token()
    for i in range(3):
        http.post("/records", json={"kind": "n", "data": {"i": i}}, headers=bearer(token))
    first = http.get("/records?limit=2", headers=bearer(token)).json["records"]
    rest = http.get(f"/records?after={first[-1]['id']}", headers=bearer(token)).json["records"]
    assert [r["data"]["i"] for r in first + rest] == [0, 1, 2]
    assert http.get("/records?after=-1", headers=bearer(token)).status_code == 400


# -- configuration and audience keys -----------------------------------------------------------------


def test_config_reports_every_problem():
    with pytest.raises(DownstreamConfigError) as caught:
        load_config({"DOWNSTREAM_LEEWAY": "soon"})
    assert "DOWNSTREAM_AUDIENCE" in str(caught.value) and "DOWNSTREAM_LEEWAY" in str(caught.value)


def test_every_key_in_the_keys_dir_is_loaded_for_rotation(tmp_path: Path):
    config = load_config({"DOWNSTREAM_AUDIENCE": "https://records.example.test",
                          "DOWNSTREAM_KEYS_DIR": str(tmp_path / "keys")})
    with pytest.raises(DownstreamConfigError, match="keygen"):
        config.decryption_keys()
    old = generate_audience_key(tmp_path / "keys", bits=2048)
    new = generate_audience_key(tmp_path / "keys", bits=2048)
    assert set(config.decryption_keys().current()) == {old.kid, new.kid}
    (tmp_path / "keys" / old.private_key.name).unlink()
    assert list(config.decryption_keys().current()) == [new.kid]


def test_package_imports_none_of_the_server():
    probe = ("import sys, json, examples.downstream\n"
             "print(json.dumps([m for m in ('pymongo', 'identity.app', 'identity.store', 'identity.vault',"
             " 'identity.oauth') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


# -- with the real identity service ----------------------------------------------------------------


def test_real_login_token_stores_the_vault_pseudonym_and_no_email(
        oauth_client, public_app, audience_keys, settings, clock, services, broker, tmp_path):
    params, code_verifier = login(oauth_client, public_app, scope="records:write records:read")
    token = exchange(oauth_client, public_app, params["code"], code_verifier).json["access_token"]
    config = DownstreamConfig(issuer=settings.issuer, audience=API, keys_dir=tmp_path / "k",
                              db_path=tmp_path / "records.sqlite3")
    verifier = TokenVerifier(issuer=settings.issuer, audience=API, decryption_keys=[audience_keys[API].private_key],
                             fetcher=FlaskClientFetcher(oauth_client, settings.issuer), clock=clock)
    http = create_app(config, verifier=verifier).test_client()
    assert http.post("/records", json={"kind": "steps.daily", "data": {"steps": 1}},
                     headers=bearer(token)).status_code == 201
    pseudonym = services.vault.pseudonymise(broker.email).identity.pseudonym
    sub = services.oauth.subjects.subject_for(pseudonym, audience=API)  # the audience's sector's subject
    assert db_rows(config) == [(sub, public_app.client_id, "steps.daily", '{"steps": 1}')]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("records.sqlite3*"))
    assert broker.email.encode() not in raw


def test_demo_walk_through_runs(tmp_path: Path):
    out = io.StringIO()
    result = run_demo(tmp_path, out)
    assert result["posted"] == 201 and not result["email_in_downstream"]
    assert [row[0] for row in result["rows"]] == [result["pseudonym"]]
    assert "e-mail anywhere in the downstream database: no" in out.getvalue()


# -- the example app's token helper (native app: code + PKCE, loopback redirect) ---------------------


def test_get_token_helper_runs_code_and_pkce_against_the_real_service(
        oauth_client, public_app, audience_keys, settings, clock, tmp_path):
    from examples.downstream.get_token import build_authorization, code_from_redirect, exchange_code
    from tests.conftest import REDIRECT_URI
    from tests.oauth_helpers import query_of

    auth = build_authorization(issuer=settings.issuer, client_id=public_app.client_id, redirect_uri=REDIRECT_URI,
                               scope="records:read records:write", resource=API)
    assert "code_challenge_method=S256" in auth.url and auth.code_verifier not in auth.url
    redirect = oauth_client.get(auth.url.removeprefix(settings.issuer))
    query = query_of(redirect.headers["Location"])
    with pytest.raises(ValueError, match="state"):
        code_from_redirect({**query, "state": "forged"}, auth, issuer=settings.issuer)
    with pytest.raises(ValueError, match="issuer"):
        code_from_redirect({**query, "iss": "https://evil.example.test"}, auth, issuer=settings.issuer)
    code = code_from_redirect(query, auth, issuer=settings.issuer)

    def post(url: str, form):
        response = oauth_client.post(url.removeprefix(settings.issuer), data=dict(form))
        return {"status": response.status_code, **response.json}

    answer = exchange_code(issuer=settings.issuer, client_id=public_app.client_id, code=code, auth=auth, post=post)
    assert answer["status"] == 200
    verifier = TokenVerifier(issuer=settings.issuer, audience=API, decryption_keys=[audience_keys[API].private_key],
                             fetcher=FlaskClientFetcher(oauth_client, settings.issuer), clock=clock)
    assert verifier.verify(answer["access_token"]).scopes == {"records:read", "records:write"}


def test_get_token_loopback_listener_returns_the_redirect_query():
    import socket
    import threading
    import urllib.request

    from examples.downstream.get_token import wait_for_redirect

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result: dict = {}
    listener = threading.Thread(target=lambda: result.update(wait_for_redirect(port, timeout=20)))
    listener.start()
    for _ in range(50):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/callback?code=c1&state=s1", timeout=2) as r:
                assert r.status == 200
            break
        except OSError:
            threading.Event().wait(0.05)
    listener.join(timeout=20)
    assert result == {"code": "c1", "state": "s1"}
