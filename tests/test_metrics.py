"""``identity.metrics``: what an operator's dashboard reads, and that no label ever holds personal data.

The scrape after a whole login (upstream IdP, code exchange, refresh, client credentials, a failed client
authentication, a rate limit) is parsed, and every label value must be one of the bounded kinds the module
documents; the e-mail, pseudonym, tokens, code, client secret and jti appear nowhere in it.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.wrappers import Response

from identity import create_app
from identity.keys.lifecycle import rotate_signing_keys
from identity.metrics import (
    AUDIT_APPENDS,
    KNOWN_METHODS,
    RATE_LIMITED,
    STORE_ERRORS,
    TOKENS_ISSUED,
    UPSTREAM_ERRORS,
    StateCollector,
    render,
    scrape_registry,
    upstream_call,
)
from identity.oauth.audiences import parse_encryption_key
from identity.store import DuplicateKeyError, SQLiteStore, StoreUnavailable
from identity.upstream.transport import UpstreamSession, WsgiTransport
from identity.vault import IDENTITIES
from tests.conftest import API, OTHER_API, REDIRECT_URI
from tests.oauth_helpers import open_access_token
from tests.test_oauth_flow import basic
from tests.upstream_fixtures import DEV_ISSUER_HOST, dev_app, dev_browser, dev_client  # noqa: F401
from tests.upstream_support import log_in

ISSUER = f"http://{DEV_ISSUER_HOST}"
EMAIL = "Metrics.Person@Example.ORG"
GRANTS = {"authorization_code", "refresh_token", "client_credentials"}
OUTCOMES = {"success", "refused", "denied", "unavailable", "error"}


def value(counter, *labels: str) -> float:
    return counter.labels(*labels)._value.get() if labels else counter._value.get()


def scrape(app) -> str:
    services = app.extensions["identity"]
    state = StateCollector(keys_dir=services.settings.keys_dir, store=services.store, clock=services.clock)
    return render(scrape_registry(state)).decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def labels_are_bounded(text: str, audiences: set[str], before: str = "") -> None:
    """Every label value of every series that changed since ``before`` (this test's; the registry is shared
    by the whole test session) is of a documented, bounded kind (never anything a person or client sent)."""
    earlier = samples(before)
    changed = {key for key, count in samples(text).items() if earlier.get(key) != count}
    allowed = {
        "route": lambda v: v == "unmatched" or v.startswith("/"),
        "method": lambda v: v in KNOWN_METHODS | {"OTHER"},
        "status": str.isdigit,
        "grant": lambda v: v in GRANTS,
        "audience": lambda v: v in audiences,
        "outcome": lambda v: v in OUTCOMES,
        "call": lambda v: v in {"discovery", "token", "jwks"},
        "error": lambda v: v in {"timeout", "connection", "http_4xx", "http_5xx", "other", "unavailable",
                                 "duplicate_key"},
        "endpoint": lambda v: v in {"client_authentication", "oauth.authorize", "upstream_login.callback",
                                    "email_change.act"},
        "backend": lambda v: v in {"sqlite", "mongodb"},
        "operation": lambda v: v in {"insert", "get", "find", "count", "update", "delete", "ping"},
        "action": lambda v: all(part.replace("_", "").replace("-", "").isalnum() for part in v.split(".")),
        "state": lambda v: v in {"next", "active", "retired"},
        "le": lambda v: True,
    }
    assert changed
    for metric, labels in changed:
        for name, label in labels:
            assert name in allowed, (metric, name)
            assert allowed[name](label), (metric, name, label)


def test_a_scrape_after_a_whole_login_holds_no_personal_data(dev_app, dev_client, dev_browser,
                                                             audience_keys):
    services = dev_app.extensions["identity"]
    rs, secret = services.oauth.clients.register(name="Backend", public=False, redirect_uris=[], grant_types=None,
                                                 scopes=["records:read"], audiences=[API])
    issued_before = value(TOKENS_ISSUED, "authorization_code", API)
    scraped_before = scrape(dev_app)
    http = dev_app.test_client()
    result = log_in(dev_browser, ISSUER, dev_client.client_id, REDIRECT_URI, EMAIL)
    body = http.post("/token", base_url=ISSUER, data={
        "grant_type": "authorization_code", "code": result.params["code"], "redirect_uri": REDIRECT_URI,
        "client_id": dev_client.client_id, "code_verifier": result.verifier}).json
    refreshed = http.post("/token", base_url=ISSUER, data={
        "grant_type": "refresh_token", "client_id": dev_client.client_id, "refresh_token": body["refresh_token"]}).json
    machine = http.post("/token", base_url=ISSUER, data={"grant_type": "client_credentials"},
                        headers=basic(rs.client_id, secret)).json
    assert http.post("/token", base_url=ISSUER, data={"grant_type": "client_credentials"},
                     headers=basic(rs.client_id, "not-the-secret")).status_code == 401
    jwks = http.get("/.well-known/jwks.json", base_url=ISSUER).json
    _, _, claims = open_access_token(body["access_token"], audience_keys[API], jwks)

    text = scrape(dev_app)
    labels_are_bounded(text, {API, OTHER_API, f"{ISSUER}/me"}, before=scraped_before)
    needles = {EMAIL, EMAIL.lower(), "metrics.person", claims["sub"], claims["jti"], body["access_token"],
               body["refresh_token"], body["id_token"], refreshed["refresh_token"], machine["access_token"],
               result.params["code"], secret, "not-the-secret"}
    for needle in needles:
        assert needle.lower() not in text.lower(), needle
    # and the dashboard's series are there
    assert value(TOKENS_ISSUED, "authorization_code", API) == issued_before + 1
    for expected in ('identity_tokens_issued_total{audience="https://api.example.org",grant="refresh_token"}',
                     'identity_logins_total{outcome="success"}',
                     'identity_http_requests_total{method="POST",route="/token",status="401"}',
                     'identity_upstream_request_duration_seconds_count{call="token"}',
                     'identity_store_operation_duration_seconds_count{backend="sqlite",operation="insert"}',
                     "identity_signing_key_age_seconds", "identity_store_up 1.0",
                     "identity_retention_purge_stale 1.0"):
        assert expected in text, expected


def test_rate_limit_refusals_are_counted(settings, audience_keys):
    app = create_app(dataclasses.replace(settings, rate_limits_enabled=True))
    try:
        oauth = app.extensions["identity"].oauth
        oauth.audiences.add(API, key=parse_encryption_key(audience_keys[API].public_pem), jwks_uri=None)
        rs, secret = oauth.clients.register(name="Backend", public=False, redirect_uris=[], grant_types=None,
                                            scopes=[], audiences=[API])
        before = value(RATE_LIMITED, "client_authentication")
        http = app.test_client()
        for attempt in range(10):
            http.post("/token", data={"grant_type": "client_credentials"}, headers=basic(rs.client_id, f"no{attempt}"))
        assert http.post("/token", data={"grant_type": "client_credentials"},
                         headers=basic(rs.client_id, secret)).status_code == 429
        assert value(RATE_LIMITED, "client_authentication") == before + 1
    finally:
        app.extensions["identity"].store.close()


def test_store_failures_are_counted_by_kind(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    duplicates = value(STORE_ERRORS, "sqlite", "insert", "duplicate_key")
    doc = {"pseudonym": "a" * 26, "blind_index": "b", "sealed_email": "c", "created_at": 1, "last_login_at": 1,
           "status": "active"}
    store.insert(IDENTITIES, {k: v for k, v in doc.items() if k in IDENTITIES.fields})
    with pytest.raises(DuplicateKeyError):
        store.insert(IDENTITIES, {k: v for k, v in doc.items() if k in IDENTITIES.fields})
    assert value(STORE_ERRORS, "sqlite", "insert", "duplicate_key") == duplicates + 1
    store.close()
    broken = SQLiteStore(tmp_path)  # a directory is no database
    unavailable = value(STORE_ERRORS, "sqlite", "get", "unavailable")
    with pytest.raises(StoreUnavailable):
        broken.get(IDENTITIES, "x")
    assert value(STORE_ERRORS, "sqlite", "get", "unavailable") == unavailable + 1


def test_state_gauges_follow_the_keys_the_purge_and_the_store(app, tmp_path):
    services = app.extensions["identity"]
    before = scrape(app)
    assert "identity_signing_key_next_published 0.0" in before  # keys.py init publishes no next key yet
    rotate_signing_keys(services.settings.keys_dir, passphrase=None, longest_token_ttl=600, now=services.clock())
    services.rights.purge(actor="test", dry_run=False)
    after = scrape(app)
    assert "identity_signing_key_next_published 1.0" in after
    assert 'identity_signing_keys{state="next"} 1.0' in after
    assert "identity_retention_purge_stale 0.0" in after and "identity_retention_last_purge_timestamp_seconds" in after
    down = render(scrape_registry(StateCollector(keys_dir=services.settings.keys_dir, store=SQLiteStore(tmp_path))))
    assert b"identity_store_up 0.0" in down


def test_audit_appends_are_counted_by_action(services):
    before = value(AUDIT_APPENDS, "test.metrics")
    services.audit.append(actor="operator", action="test.metrics")
    assert value(AUDIT_APPENDS, "test.metrics") == before + 1


def test_upstream_errors_are_counted_by_call_and_kind():
    def failing_idp(environ, start_response):
        return Response(json.dumps({"error": "down"}), status=503)(environ, start_response)

    session = UpstreamSession(client_id="c", default_timeout=1,
                              mounts={"https://idp.test/": WsgiTransport(failing_idp, "https://idp.test")})
    before = value(UPSTREAM_ERRORS, "discovery", "http_5xx")
    answer = session.request("GET", "https://idp.test/.well-known/openid-configuration", withhold_token=True)
    assert answer.status_code == 503 and value(UPSTREAM_ERRORS, "discovery", "http_5xx") == before + 1
    timeouts = value(UPSTREAM_ERRORS, "token", "timeout")
    with pytest.raises(requests.Timeout):
        with upstream_call("token"):
            raise requests.Timeout("slow")
    assert value(UPSTREAM_ERRORS, "token", "timeout") == timeouts + 1
