"""Why an upstream login failed, as data: the OAuth error the app gets and a reason for the log.

Descriptions are fixed texts; nothing the upstream sent (its ``error_description``, a claim, an
exception message) is ever repeated, since any of it may contain the person's e-mail address.
"""

from __future__ import annotations

from ..errors import ServiceError

# Upstream authorization errors (RFC 6749 §4.1.2.1, OpenID Connect Core §3.1.2.6) → ours for the app.
# The person's own refusals pass through as access_denied; errors that mean *we* sent a bad request
# upstream (invalid_request, unauthorized_client, invalid_scope, …) are our server_error, not the app's.
UPSTREAM_ERRORS = {
    "access_denied": ("access_denied", "the person did not sign in at the identity provider"),
    "login_required": ("access_denied", "the person did not sign in at the identity provider"),
    "interaction_required": ("access_denied", "the person did not sign in at the identity provider"),
    "consent_required": ("access_denied", "the person did not consent at the identity provider"),
    "account_selection_required": ("access_denied", "the person did not sign in at the identity provider"),
    "temporarily_unavailable": ("temporarily_unavailable", "the identity provider is unavailable; try again shortly"),
    "server_error": ("temporarily_unavailable", "the identity provider is unavailable; try again shortly"),
}
MISCONFIGURED = ("server_error", "the sign-in could not be started; the operator has been told")
STATUS_CODES = {"access_denied": 403, "temporarily_unavailable": 503, "server_error": 500}


class UpstreamFailure(ServiceError):
    """Base: ``error``/``description`` go to the app (at its redirect URI); ``reason`` (a fixed word) goes to
    the log."""

    error = "server_error"
    status_code = 500
    description = "the sign-in failed"

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class UpstreamUnavailable(UpstreamFailure):
    """The IdP could not be reached, was too slow, or answered something that is not OIDC."""

    error = "temporarily_unavailable"
    status_code = 503
    description = "the identity provider cannot be reached; try again shortly"


class UpstreamMisconfigured(UpstreamUnavailable):
    """The IdP answered, but its discovery document cannot be used (logged for the operator, never kept)."""

    description = "the identity provider is misconfigured; the operator has been told, try again later"


class LoginRefused(UpstreamFailure):
    """The IdP answered, but the answer does not prove who the person is (bad token, no verified e-mail)."""

    error = "access_denied"
    status_code = 403
    description = "the sign-in at the identity provider could not be verified"


class UpstreamDenied(UpstreamFailure):
    """The IdP sent ``error=…`` to the callback instead of a code."""

    def __init__(self, upstream_error: str) -> None:
        known = upstream_error in UPSTREAM_ERRORS
        super().__init__(f"upstream_{upstream_error}" if known else "upstream_other_error")
        self.error, self.description = UPSTREAM_ERRORS.get(upstream_error, MISCONFIGURED)
        self.status_code = STATUS_CODES[self.error]
