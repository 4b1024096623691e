"""``identity.web.telemetry``: every request gets an id (kept when well formed), one JSON log line and its
metrics; the id goes to the upstream IdP with every back-channel call."""

from __future__ import annotations

import re

import pytest

from identity.metrics import HTTP_REQUESTS
from identity.upstream.transport import WsgiTransport
from tests.conftest import API
from tests.log_support import captured_lines, events, log_lines, requests_logged  # noqa: F401
from tests.oauth_helpers import pkce_pair
from tests.test_oauth_flow import basic
from tests.upstream_fixtures import dev_app, dev_browser, dev_client  # noqa: F401
from tests.upstream_support import log_in

GENERATED = re.compile(r"[0-9a-f]{32}")


def test_a_well_formed_request_id_is_kept_returned_and_logged(oauth_client, log_lines):
    for given in ("3f2b8c1e-9d4a-4e6f-8b7a-1c2d3e4f5a6b", "Root=1-67891233-abcdef012345678912345678", "req.0001:x"):
        answer = oauth_client.get("/healthz", headers={"X-Request-Id": given})
        assert answer.headers["X-Request-Id"] == given
    lines = requests_logged(log_lines())
    assert [line["request_id"] for line in lines][-1] == "req.0001:x"
    assert lines[-1]["route"] == "/healthz" and lines[-1]["status"] == 200 and lines[-1]["method"] == "GET"
    assert isinstance(lines[-1]["duration_ms"], float) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                                                        lines[-1]["time"])


@pytest.mark.parametrize("given", [None, "short", "has a space in it", "someone@example.org", "x" * 129,
                                   "id\u00e9ntit\u00e9-12345", "a;b=c;d=e-12345"])
def test_a_malformed_or_missing_request_id_is_replaced_by_a_new_one(oauth_client, given):
    headers = {} if given is None else {"X-Request-Id": given}
    first = oauth_client.get("/healthz", headers=headers).headers["X-Request-Id"]
    second = oauth_client.get("/healthz", headers=headers).headers["X-Request-Id"]
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second


def test_the_line_names_the_route_template_never_the_path_or_query(oauth_client, public_app, log_lines):
    _, challenge = pkce_pair()
    oauth_client.get("/authorize", query_string={"client_id": public_app.client_id, "state": "state-secret-123",
                                                 "response_type": "code", "code_challenge": challenge,
                                                 "code_challenge_method": "S256"})
    oauth_client.get("/wp-admin/setup.php?token=scanner-junk-456")
    oauth_client.post("/healthz")
    lines = requests_logged(log_lines())
    assert [(line["route"], line["status"]) for line in lines] == [
        ("/authorize", lines[0]["status"]), ("unmatched", 404), ("/healthz", 405)]
    assert lines[0]["client_id"] == public_app.client_id  # named by a registered client
    text = repr(lines)
    assert "state-secret" not in text and "scanner-junk" not in text and "wp-admin" not in text


def test_token_requests_log_the_authenticated_client_and_refusals_as_events(oauth_client, service_client,
                                                                         log_lines):
    rs, secret = service_client
    assert oauth_client.post("/token", data={"grant_type": "client_credentials", "resource": API},
                             headers=basic(rs.client_id, secret)).status_code == 200  # the fast path
    assert oauth_client.post("/token", data={"grant_type": "client_credentials", "resource": API},
                             headers=basic("made-up-client", "guess")).status_code == 401
    lines = log_lines()
    served, refused = requests_logged(lines)[-2:]
    assert served["client_id"] == rs.client_id and served["route"] == "/token" and served["status"] == 200
    assert "client_id" not in refused and refused["status"] == 401  # an unknown client is never named
    refusal = events(lines, "refusal")[-1]
    assert refusal["route"] == "/token" and refusal["status"] == 401 and refusal["error"] == "invalid_client"
    assert refusal["request_id"] == refused["request_id"]
    assert "guess" not in repr(lines) and secret not in repr(lines)


def test_refusals_by_the_size_limits_are_logged_and_counted(oauth_client, log_lines):
    before = HTTP_REQUESTS.labels("unmatched", "GET", "414")._value.get()
    oauth_client.get("/nowhere?" + "q" * 9000, headers={"X-Request-Id": "too-long-query-1"})
    line = requests_logged(log_lines())[-1]
    assert line["status"] == 414 and line["request_id"] == "too-long-query-1"
    assert HTTP_REQUESTS.labels("unmatched", "GET", "414")._value.get() == before + 1


@pytest.fixture
def upstream_calls(monkeypatch):
    """(path, X-Request-Id) of every back-channel call to the development IdP."""
    seen: list[tuple[str, str | None]] = []
    send = WsgiTransport.send

    def spy(self, request, *args, **kwargs):
        seen.append((request.path_url.split("?")[0], request.headers.get("X-Request-Id")))
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(WsgiTransport, "send", spy)
    return seen


def test_the_request_id_is_sent_to_the_upstream_idp(dev_app, dev_client, dev_browser, upstream_calls,
                                                     dev_log_lines):
    lines_fixture = dev_log_lines
    log_in(dev_browser, "http://127.0.0.1:5000", dev_client.client_id, "https://app.example.org/callback",
           "someone@example.org")
    lines = requests_logged(lines_fixture())
    callback = [line["request_id"] for line in lines if line["route"] == "/login/callback"]
    token_calls = [rid for path, rid in upstream_calls if path.endswith("/token")]
    assert len(callback) == 1 and token_calls == callback  # the code exchange carries the callback's id
    logged = {line["request_id"] for line in lines}
    assert upstream_calls and all(rid in logged for _, rid in upstream_calls), (upstream_calls, lines)


@pytest.fixture
def dev_log_lines(dev_app):
    with captured_lines() as lines:
        yield lines
