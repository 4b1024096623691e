"""The consent page for third-party apps: ``GET|POST /consent``.

After the upstream sign-in, ``Authorizer.complete`` parks a third-party app's request
(``Consents.park``) and calls the gate installed here: the request's id goes into this browser's
session cookie (signed, HttpOnly, SameSite=Lax) and the browser comes to ``/consent``. The page shows
the app's name, its scopes in plain words and the services that will receive its tokens. Its form
carries the session's CSRF token and a reference to the very request shown (a newer request in another
tab replaces the session's, and the older page can then allow nothing); it is answered once. Allow
records the consent and sends the app its code, unless the person's account was restricted, closed or
erased meanwhile (then ``access_denied``, as ``/authorize`` answers, and nothing is recorded); Deny sends
``access_denied`` with ``state`` and ``iss`` to the registered redirect URI.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, Mapping

from flask import Blueprint, Flask, Response, redirect, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..oauth.clients import REFRESH_TOKEN, Client
from ..oauth.records import token_hash
from ..oauth.self_audience import self_audience_uri
from ..services import Services
from .context import services
from .csrf import csrf_ok, csrf_token
from .headers import form_action_source, no_store
from .i18n import N_, audience_words, scope_words
from .pages import person_page, problem_page

log = logging.getLogger(__name__)
blueprint = Blueprint("consent", __name__)

CONSENT_PATH = "/consent"
ACCOUNT_PATH = "/account"
SESSION_KEY = "consent"
GONE = N_("This request has expired, was already answered, or was started in another browser. "
          "Start again from the app.")
REPLACED = N_("This page was replaced by a newer request in this browser. Nothing was allowed; answer the newest one.")
FORM_EXPIRED = N_("This form has expired or was already sent. Nothing was changed; try again.")
UNKNOWN_ACTION = N_("Use one of the buttons on the page.")
NO_CLIENT = N_("The application is no longer registered.")


def install_consent(app: Flask, svc: Services) -> None:
    """The page, and the gate that sends a third-party app's signed-in person to it."""
    app.register_blueprint(blueprint)
    page_url = svc.settings.issuer + CONSENT_PATH

    def gate(consent_id: str) -> str:
        session[SESSION_KEY] = consent_id
        return page_url

    svc.oauth.authorizer.register_consent_gate(gate)


def form_reference(consent_id: str) -> str:
    """What the form says about the request it shows (not the store's key, and no secret)."""
    return token_hash("consent-form\x00" + consent_id)


def _page(consent_id: str, doc: Mapping[str, Any], client: Client) -> Response:
    svc = services()
    scopes = [s for s in (doc.get("scope") or "").split() if s]
    return person_page(
        "consent.html", form_action_to=[form_action_source(doc["redirect_uri"])],
        app_name=client.name, scope_lines=scope_words(scopes, refresh=client.allows_grant(REFRESH_TOKEN)),
        audience_lines=audience_words([doc["audience"]], self_audience=self_audience_uri(svc.settings.issuer)),
        account_url=svc.settings.issuer + ACCOUNT_PATH, action=url_for("consent.answer"),
        csrf_token=csrf_token(), reference=form_reference(consent_id),
    )


@blueprint.get(CONSENT_PATH)
def show() -> Response:
    svc = services()
    consent_id = session.get(SESSION_KEY)
    doc = svc.oauth.consents.pending(consent_id)
    if doc is None or not isinstance(consent_id, str):
        return problem_page(GONE)
    client = svc.oauth.clients.get(doc["client_id"])
    if client is None:
        return problem_page(NO_CLIENT)
    return _page(consent_id, doc, client)


@blueprint.post(CONSENT_PATH)
def answer() -> BaseResponse:
    """``action=allow`` or ``deny``; the request is spent either way."""
    if not csrf_ok():
        log.warning("consent refused", extra={"reason": "csrf"})
        return problem_page(FORM_EXPIRED)
    svc = services()
    consents = svc.oauth.consents
    consent_id = session.get(SESSION_KEY)
    if not isinstance(consent_id, str) or consents.pending(consent_id) is None:
        return problem_page(GONE)
    if not hmac.compare_digest(form_reference(consent_id).encode(), request.form.get("request", "").encode()):
        log.warning("consent refused", extra={"reason": "replaced_request"})
        return problem_page(REPLACED)
    action = request.form.get("action")
    if action not in ("allow", "deny"):
        return problem_page(UNKNOWN_ACTION)
    doc = consents.take(consent_id)
    session.pop(SESSION_KEY, None)
    if doc is None:
        return problem_page(GONE)
    authorizer = svc.oauth.authorizer
    if action == "deny":
        log.info("consent denied", extra={"client_id": doc["client_id"]})
        return no_store(redirect(authorizer.error_redirect(doc, "access_denied", "the person did not allow the app"),
                                 code=303))
    client = svc.oauth.clients.get(doc["client_id"])
    if client is None:
        return problem_page(NO_CLIENT)
    refusal = authorizer.refusal_if_inactive(doc, doc["subject"])  # restricted, closed or erased meanwhile
    if refusal is not None:
        log.info("consent refused", extra={"client_id": client.client_id, "reason": "account_not_active"})
        return no_store(redirect(refusal, code=303))
    consents.grant(doc["subject"], client.client_id, (doc.get("scope") or "").split(), doc["audience"])
    log.info("consent given", extra={"client_id": client.client_id})
    return no_store(redirect(authorizer.issue_code(doc, doc["subject"]), code=303))
