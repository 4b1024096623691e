"""The e-mail change pages (GDPR Art. 16): ``/me/email/change`` and ``/me/email/changed``.

An app sends the person to ``/me/email/change`` (``POST /me/email`` answers with that URL; it holds
no secret). There the person signs in at the IdP with the address they use now (a POST form with a
CSRF token starts the change, keeps its id in the session cookie only, and sends them upstream), comes
back to the same page, and signs in with the new address; ``/me/email/changed`` confirms.

A sign-in completes a step only in the browser session whose cookie holds the change's id. That is
checked when the upstream callback completes, on top of the upstream state's own binding to the
browser that started the sign-in. Pages need no JavaScript.
"""

from __future__ import annotations

import hmac
import logging
import math
from typing import Any, Mapping

from flask import Blueprint, Flask, Response, current_app, make_response, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..email_change import CURRENT_PROVEN, DONE, RECTIFY_CURRENT, RECTIFY_NEW, ChangeRefused, change_reference
from ..oauth.authorize import ErrorPage
from ..services import Services
from .context import services
from .csrf import csrf_ok, csrf_token
from .headers import html_csp, no_store, with_form_action
from .login import login_broker
from .pages import error_page

log = logging.getLogger(__name__)
blueprint = Blueprint("email_change", __name__)

CHANGE_PATH = "/me/email/change"
CHANGED_PATH = "/me/email/changed"
SESSION_KEY = "email_change"
TEMPLATE = "email_change.html"

OTHER_BROWSER = "This e-mail change was started in another browser, or has ended. Nothing was changed."
FORM_EXPIRED = "This form has expired or was not sent from this page. Nothing was changed; start again."
CHANGE_GONE = "This e-mail change has expired or was already completed. Nothing was changed; start again."
NOT_COMPLETED = "The sign-in did not complete, so nothing was changed."
CANCELLED = "The change was cancelled. Nothing was changed."
UNKNOWN_ACTION = "Use one of the buttons on the page."
NO_LOGIN = "No login method is configured."
NOTHING_DONE = "No e-mail change was completed in this browser."


def install_email_change(app: Flask, svc: Services) -> None:
    """The pages, and the completions of the two upstream sign-ins (``SignIns.complete``)."""
    app.register_blueprint(blueprint)
    changes = svc.email_changes
    page_url = svc.settings.issuer + CHANGE_PATH
    done_url = svc.settings.issuer + CHANGED_PATH

    def current_address(parked: Mapping[str, Any], email: str) -> str:
        reference = _this_browsers_change(parked)
        try:
            changes.current_address_proven(reference, email)
        except ChangeRefused as refused:
            raise _refusal(refused) from None
        return page_url

    def new_address(parked: Mapping[str, Any], email: str) -> str:
        reference = _this_browsers_change(parked)
        try:
            changes.new_address_proven(reference, email)
        except ChangeRefused as refused:
            raise _refusal(refused) from None
        return done_url

    svc.signins.register_completion(RECTIFY_CURRENT, current_address)
    svc.signins.register_completion(RECTIFY_NEW, new_address)


def _this_browsers_change(parked: Mapping[str, Any]) -> str:
    """The parked sign-in's change, if this browser's session holds its id; ``ErrorPage`` otherwise."""
    change_id, reference = session.get(SESSION_KEY), parked.get("reference")
    if not (isinstance(change_id, str) and isinstance(reference, str)
            and hmac.compare_digest(change_reference(change_id), reference)):
        log.warning("e-mail change refused", extra={"reason": "other_browser_session"})
        raise ErrorPage(OTHER_BROWSER)
    return reference


def _refusal(refused: ChangeRefused) -> ErrorPage:
    log.warning("e-mail change refused", extra={"reason": refused.reason})
    session.pop(SESSION_KEY, None)
    return ErrorPage(refused.message)


def _page(step: str, *, error: str | None = None, notice: str | None = None, minutes: int | None = None) -> Response:
    """The change page; its CSP lets the form's redirect reach the IdP (browsers check every hop)."""
    body = render_template(TEMPLATE, step=step, error=error, notice=notice, minutes=minutes,
                           action=url_for("email_change.act"), csrf_token=csrf_token())
    response = make_response(body)
    origins = getattr(login_broker(), "form_action_origins", None)
    if callable(origins):
        page_csp = current_app.extensions.get("identity.page_csp") or html_csp(current_app)
        response.headers["Content-Security-Policy"] = with_form_action(page_csp, origins())
    return no_store(response)


@blueprint.get(CHANGE_PATH)
def change_page() -> Response:
    """Step 1 (sign in with the current address) or, once it is done, step 2 (the new address)."""
    svc = services()
    change = svc.email_changes.find(session.get(SESSION_KEY))
    error = NOT_COMPLETED if "error" in request.args else None
    if change is not None and change.stage == CURRENT_PROVEN:
        minutes = max(1, math.floor((change.expires_at - svc.clock()) / 60))
        return _page("new", error=error, minutes=minutes)
    return _page("start", error=error)


@blueprint.post(CHANGE_PATH)
def act() -> BaseResponse:
    """``action=start`` (a new change, step 1), ``continue`` (step 2) or ``cancel``."""
    if not csrf_ok():
        return error_page(FORM_EXPIRED)
    svc = services()
    changes = svc.email_changes
    action = request.form.get("action")
    if action == "cancel":
        changes.cancel(session.pop(SESSION_KEY, None))
        return _page("start", notice=CANCELLED)
    if action not in ("start", "continue"):
        return error_page(UNKNOWN_ACTION)
    broker = login_broker()
    if broker is None:
        return error_page(NO_LOGIN, 503)
    if action == "start":
        changes.cancel(session.get(SESSION_KEY))
        session[SESSION_KEY] = changes.start()
    change = changes.find(session.get(SESSION_KEY))
    if change is None or (action == "continue") != (change.stage == CURRENT_PROVEN):
        session.pop(SESSION_KEY, None)
        return error_page(CHANGE_GONE)
    pending = changes.next_step(session[SESSION_KEY], return_to=svc.settings.issuer + CHANGE_PATH)
    if pending is None:
        return error_page(CHANGE_GONE)
    return no_store(broker.begin(pending))


@blueprint.get(CHANGED_PATH)
def changed() -> Response:
    change = services().email_changes.find(session.get(SESSION_KEY))
    if change is None or change.stage != DONE:
        return error_page(NOTHING_DONE)
    return no_store(make_response(render_template("email_changed.html")))
