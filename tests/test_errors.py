"""The error model (``identity.errors``): Flask-free types in the RFC 6749 shape, and the packages that
raise them stay Flask-free (checked in a fresh interpreter, like the verify library's light import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from identity import errors
from identity.devidp.authorization import PageError as DevPageError
from identity.devidp.authorization import RedirectError as DevRedirectError
from identity.devidp.tokens import TokenError
from identity.errors import (
    RETRY_AFTER_SECONDS,
    InvalidClient,
    InvalidRequest,
    PageError,
    ServerError,
    ServiceError,
    TemporarilyUnavailable,
)
from identity.oauth.authorize import ErrorPage, RedirectError
from identity.upstream.errors import LoginRefused, UpstreamDenied, UpstreamFailure, UpstreamUnavailable

ROOT = Path(__file__).resolve().parents[1]
WEB_MODULES = ("flask", "werkzeug", "jinja2", "flask_limiter", "identity.web", "identity.app")


def loaded_after(statement: str) -> list[str]:
    probe = (
        f"import sys, json\n{statement}\n"
        f"print(json.dumps(sorted(m for m in {WEB_MODULES!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("module", ["identity.errors", "identity.oauth", "identity.rights"])
def test_the_flask_free_packages_load_no_web_framework(module):
    assert loaded_after(f"import {module}") == []


def test_the_probe_sees_flask_when_a_web_module_is_imported():
    """The light-import check can fail: the renderer does load Flask."""
    assert "flask" in loaded_after("import identity.web.errors")


def test_the_oauth_family_has_the_rfc_6749_shape():
    err = errors.InvalidGrant("the code was already used")
    assert isinstance(err, ServiceError)
    assert (err.error, err.status_code) == ("invalid_grant", 400)
    assert err.body() == {"error": "invalid_grant", "error_description": "the code was already used"}
    assert err.headers() == {}
    assert InvalidRequest().body() == {"error": "invalid_request"}  # no empty description
    assert str(InvalidRequest()) == "invalid_request"


def test_every_oauth_error_code_is_distinct_and_answered_with_a_4xx_or_5xx():
    family = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, ServiceError)]
    codes = [c.error for c in family if c is not ServiceError]
    assert len(codes) == len(set(codes))
    assert all(400 <= c.status_code < 600 for c in family)


def test_invalid_client_asks_for_basic_authentication():
    assert InvalidClient("no").headers() == {"WWW-Authenticate": 'Basic realm="token"'}
    assert InvalidClient("no").status_code == 401


def test_a_503_says_when_to_retry_and_a_given_retry_after_wins():
    assert TemporarilyUnavailable("later").headers() == {"Retry-After": str(RETRY_AFTER_SECONDS)}
    assert ServiceError("x", status_code=503).headers() == {"Retry-After": str(RETRY_AFTER_SECONDS)}
    waiting = TemporarilyUnavailable("later")
    waiting.retry_after = 30
    assert waiting.headers() == {"Retry-After": "30"}
    assert ServerError("boom").headers() == {}
    assert (ServerError().error, ServerError().status_code) == ("server_error", 500)


def test_page_errors_are_one_type_with_a_message_and_a_status():
    for err in (PageError("Start again."), ErrorPage("Start again."), DevPageError("Start again.")):
        assert isinstance(err, PageError) and not isinstance(err, ServiceError)
        assert (err.message, err.status, str(err)) == ("Start again.", 400, "Start again.")
    assert ErrorPage("Gone.", 410).status == 410


def test_redirect_errors_are_oauth_errors_for_the_redirect_uri():
    err = RedirectError("https://app.example.test/cb", "invalid_scope", "scope x is not allowed", "s-1")
    assert isinstance(err, ServiceError)
    assert err.body() == {"error": "invalid_scope", "error_description": "scope x is not allowed"}
    assert (err.redirect_uri, err.state) == ("https://app.example.test/cb", "s-1")
    dev = DevRedirectError("unsupported_response_type", "only code")
    assert isinstance(dev, ServiceError) and dev.body() == {"error": "unsupported_response_type",
                                                            "error_description": "only code"}


@pytest.mark.parametrize("failure, error, status", [
    (UpstreamFailure("unexpected_error"), "server_error", 500),
    (UpstreamUnavailable("discovery_timeout"), "temporarily_unavailable", 503),
    (LoginRefused("no_code"), "access_denied", 403),
    (UpstreamDenied("login_required"), "access_denied", 403),
    (UpstreamDenied("server_error"), "temporarily_unavailable", 503),
    (UpstreamDenied("invalid_scope"), "server_error", 500),
    (UpstreamDenied("made_up_by_the_idp"), "server_error", 500),
])
def test_upstream_failures_are_oauth_errors_with_a_fixed_description(failure, error, status):
    assert isinstance(failure, ServiceError)
    assert (failure.error, failure.status_code) == (error, status)
    assert failure.description and failure.body()["error_description"] == failure.description
    assert "made_up_by_the_idp" not in json.dumps(failure.body())  # nothing the IdP sent is repeated
    assert isinstance(failure, UpstreamFailure) and failure.reason  # the log's word


def test_the_dev_idps_token_errors_are_oauth_errors_with_its_own_realm():
    refused = TokenError("invalid_client", "client authentication failed", status=401)
    assert isinstance(refused, ServiceError)
    assert refused.body() == {"error": "invalid_client", "error_description": "client authentication failed"}
    assert refused.headers() == {"WWW-Authenticate": 'Basic realm="devidp"'}
    assert TokenError("invalid_grant", "no").headers() == {} and TokenError("invalid_grant", "no").status_code == 400
