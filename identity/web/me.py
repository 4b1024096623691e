"""Self-service for the person (GDPR Art. 15–20): ``/me``, ``/me/export``, ``DELETE /me``, ``POST /me/email``.

Access tokens for the service's own audience (``{issuer}/me``, scope ``identity:self``) are verified
with the same library downstream services use (``identity.verify``), then checked against the
service's own records, so that a revoked grant or an erased or restricted person is refused at once. An
erasure that lands while a request is being answered (``UnknownSubject``) is refused the same way, never
a 500: that exception carries the pseudonym, which must not reach a log line.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Flask, Response, jsonify, make_response, request

from ..oauth.self_audience import SELF_SCOPE, self_audience_uri
from ..rights import UnknownSubject
from ..services import Services
from ..verify import DecryptionKey, HttpResponse, TokenVerifier
from ..verify.flask import bearer_token, current_token, init_app, require_token
from .context import services
from .email_change import CHANGE_PATH, install_email_change
from .headers import no_store

log = logging.getLogger(__name__)
blueprint = Blueprint("me", __name__)


class LocalJwks:
    """The verifier's fetcher, answered from this process's keyring (no HTTP to ourselves)."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc

    def get(self, url: str) -> HttpResponse:
        return HttpResponse(200, json.dumps(self._svc.keyring.jwks()).encode())

    def post_form(self, url: str, form, *, basic_auth) -> HttpResponse:  # pragma: no cover - never used
        return HttpResponse(404, b"{}")


def install_self_service(app: Flask, svc: Services) -> None:
    issuer = svc.settings.issuer
    verifier = TokenVerifier(
        issuer=issuer, audience=self_audience_uri(issuer),
        decryption_keys=[DecryptionKey.from_private_key(svc.keyring.self_encryption_key)],
        jwks_uri=f"{issuer}/.well-known/jwks.json", fetcher=LocalJwks(svc), clock=svc.clock,
    )
    init_app(app, verifier, realm="identity")
    app.register_blueprint(blueprint)
    install_email_change(app, svc)


def invalid_token() -> Response:
    response = jsonify(error="invalid_token", error_description="the access token is not valid")
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="identity", error="invalid_token"'
    return no_store(response)


def erased_meanwhile() -> Response:
    """The answer when the person was erased after ``live_subject`` saw them (no pseudonym logged)."""
    log.info("self-service request refused", extra={"reason": "subject_erased_meanwhile"})
    return invalid_token()


def live_subject() -> str | None:
    """The pseudonym of the current token, if the token, its grant and its person are all live."""
    svc = services()
    token = current_token()
    record = svc.oauth.grants.find_access_token(bearer_token(request.headers.get("Authorization")))
    if record is None or record["revoked"] or token.is_client_token or record["jti"] != token.jti:
        return None  # the jti check: a header's reference is believed only for the token it came with
    grant = svc.oauth.grants.get(record.get("grant_id"))
    identity = svc.vault.find(token.pseudonym)
    if grant is None or grant.revoked or identity is None or not identity.is_active:
        return None
    return token.pseudonym


@blueprint.get("/me")
@require_token(scope=SELF_SCOPE)
def me() -> Response:
    subject = live_subject()
    if subject is None:
        return invalid_token()
    try:
        return no_store(jsonify(services().rights.describe(subject)))
    except UnknownSubject:
        return erased_meanwhile()


@blueprint.get("/me/export")
@require_token(scope=SELF_SCOPE)
def export() -> Response:
    subject = live_subject()
    if subject is None:
        return invalid_token()
    try:
        body = services().rights.export(subject)
    except UnknownSubject:
        return erased_meanwhile()
    response = make_response(json.dumps(body, indent=2, sort_keys=True))
    response.mimetype = "application/json"
    response.headers["Content-Disposition"] = 'attachment; filename="identity-export.json"'
    return no_store(response)


@blueprint.delete("/me")
@require_token(scope=SELF_SCOPE)
def erase() -> Response:
    subject = live_subject()
    if subject is None:
        return invalid_token()
    try:
        result = services().rights.erase(subject, actor="subject", reason="erasure requested by the person")
    except UnknownSubject:
        return erased_meanwhile()
    return no_store(jsonify(result))


@blueprint.post("/me/email")
@require_token(scope=SELF_SCOPE)
def start_email_change() -> Response:
    """Rectification: where the app sends the person's browser (it carries no secret).

    The change itself is bound to the person, not to this token: on that page they sign in upstream
    with their current address and then with the new one, in one browser session.
    """
    if live_subject() is None:
        return invalid_token()
    return no_store(jsonify(verification_url=services().settings.issuer + CHANGE_PATH))
