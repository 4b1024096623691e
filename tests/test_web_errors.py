"""The one web renderer (``identity.web.errors``): every error type of the model becomes the same answer
wherever it is raised, pinned byte for byte."""

from __future__ import annotations

import logging

import pytest

from identity.errors import InvalidGrant, PageError, ServiceError, TemporarilyUnavailable
from identity.oauth.authorize import ErrorPage
from identity.store import StoreUnavailable
from identity.upstream.errors import LoginRefused, UpstreamUnavailable


@pytest.fixture
def raising(app):
    """``GET /raise/<n>`` raises the n-th error of ``app.config["ERRORS"]``."""

    @app.get("/raise/<int:n>")
    def _raise(n: int):
        raise app.config["ERRORS"][n]

    def answer(err: BaseException, **kwargs):
        app.config["ERRORS"] = [err]
        return app.test_client().get("/raise/0", **kwargs)

    return answer


def test_an_oauth_error_is_rfc_6749_json_never_cached(raising):
    response = raising(InvalidGrant("the code was already used"))
    assert response.status_code == 400
    assert response.get_data() == b'{"error":"invalid_grant","error_description":"the code was already used"}\n'
    assert response.mimetype == "application/json"
    assert (response.headers["Cache-Control"], response.headers["Pragma"]) == ("no-store", "no-cache")
    assert "Retry-After" not in response.headers and "WWW-Authenticate" not in response.headers


def test_an_oauth_error_without_description_is_its_code_alone(raising):
    assert raising(ServiceError()).get_data() == b'{"error":"invalid_request"}\n'


def test_an_oauth_errors_own_headers_are_sent(raising):
    response = raising(TemporarilyUnavailable("the issuer is busy"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    slow = UpstreamUnavailable("discovery_timeout")
    slow.retry_after = 30
    assert raising(slow).headers["Retry-After"] == "30"


def test_an_upstream_failure_that_escapes_is_answered_with_its_fixed_description(raising):
    response = raising(LoginRefused("id_token_signature"))
    assert response.status_code == 403
    assert response.json == {"error": "access_denied",
                             "error_description": "the sign-in at the identity provider could not be verified"}
    assert "id_token_signature" not in response.get_data(as_text=True)


def test_a_refusal_is_a_security_event_without_the_description(raising, caplog):
    with caplog.at_level(logging.INFO):
        raising(InvalidGrant("ivy@example.org sent this"))
    events = [r for r in caplog.records if getattr(r, "event", None) == "refusal"]
    assert events and events[0].error == "invalid_grant" and events[0].status == 400
    assert "ivy@example.org" not in caplog.text


def test_a_page_error_is_the_persons_error_page_never_cached(raising):
    for err in (PageError("This sign-in has expired. Start again from the app.", 410),
                ErrorPage("This sign-in has expired. Start again from the app.", 410)):
        response = raising(err)
        assert response.status_code == 410 and response.mimetype == "text/html"
        assert "This sign-in has expired. Start again from the app." in response.get_data(as_text=True)
        assert response.headers["Cache-Control"] == "no-store" and response.headers["Content-Language"] == "en"
        assert "Location" not in response.headers


def test_a_page_errors_message_is_escaped(raising):
    body = raising(PageError("<script>alert(1)</script>")).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body


def test_a_store_failure_is_503_with_a_clear_message_and_no_detail(raising):
    response = raising(StoreUnavailable("/var/lib/identity/db.sqlite3: disk I/O error"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.get_data() == (b'{"error":"temporarily_unavailable",'
                                   b'"error_description":"the identity store is unavailable; try again shortly"}\n')


def test_an_unexpected_error_is_a_500_with_a_reference_that_is_in_the_log(raising, caplog):
    response = raising(KeyError("pseudonym-internals"))
    assert response.status_code == 500
    body = response.json
    assert body["error"] == "server_error" and "pseudonym-internals" not in response.get_data(as_text=True)
    reference = body["error_description"].removeprefix("internal error (reference ").removesuffix(")")
    assert len(reference) == 12 and reference in caplog.text


def test_http_errors_keep_their_json_shape(client):
    assert client.get("/nope").get_data() == b'{"error":"not_found","error_description":"Not Found"}\n'
    refused = client.delete("/token")
    assert refused.status_code == 405 and set(refused.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert refused.get_data() == b'{"error":"method_not_allowed","error_description":"Method Not Allowed"}\n'
