"""The person's account page, ``/account``, behind the same brokered login as the apps.

Without an account session the page offers *Sign in*: a POST form (CSRF token of the Flask session)
that parks a fresh sign-in upstream (``SignIns.park_for_service``) bound to this browser (a random
id in the session cookie, its hash on the parked login, as the e-mail change does). When the IdP
vouches for an address with an account, the account session starts (``AccountSessions``, server side)
and its id goes into its own cookie: HttpOnly, SameSite=Lax, ``Secure`` with the ``__Host-`` prefix
under https (everywhere but development), a new id at every sign-in, gone after 15 idle minutes.

The page lists the apps with consent or live grants (*Remove access* revokes both), offers the export
(*Download my data*), restriction and its undo, and *Delete my account* (a sign-in in the last 5
minutes and a ticked confirmation; then ``SubjectRights.erase``, as ``scripts/subjects.py erase``,
and the person is signed out). It shows no e-mail address: the store holds none in clear, and the
sign-in's address is never kept. Every form carries the account session's one-time token.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from flask import (
    Blueprint, Flask, Response, after_this_request, make_response, redirect, request, session, url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from ..account_sessions import AccountSession
from ..oauth.authorize import ErrorPage
from ..oauth.clients import REFRESH_TOKEN
from ..oauth.records import new_secret_value, token_hash
from ..oauth.self_audience import self_audience_uri
from ..rights import NotAllowed, UnknownSubject
from ..services import Services
from ..vault import IDENTITY_ERASED, InvalidEmail
from .context import services
from .csrf import csrf_ok, csrf_token
from .email_change import CHANGE_PATH
from .headers import ResponseT, no_store
from .i18n import N_, audience_words, scope_words, translate
from .login import login_broker
from .pages import person_page, problem_page

log = logging.getLogger(__name__)
blueprint = Blueprint("account", __name__)

ACCOUNT_PATH = "/account"
DELETED_PATH = "/account/deleted"
ACCOUNT_SIGNIN = "account-signin"  # the purpose of the account page's sign-in upstream
LOGIN_KEY = "account_login"  # the Flask session's key for the pending sign-in's id
DELETED_KEY = "account_deleted"
COOKIE = "identity_account"
SECURE_COOKIE = "__Host-identity_account"  # https: Secure, path /, no Domain (RFC 6265bis §4.1.3.2)

NOT_COMPLETED = N_("The sign-in did not complete, so you are not signed in.")
SIGNED_OUT = N_("You were signed out. Sign in to continue.")
FORM_EXPIRED = N_("This form has expired or was already sent. Nothing was changed; try again.")
CONFIRM = N_("Tick the box to confirm that you want to delete your account.")
NOT_RECENT = N_("For your safety, sign in again before deleting your account.")
NOTHING_TO_REMOVE = N_("That app has no access to remove.")
CANNOT = N_("That cannot be done for your account in its current state.")
NO_ACCOUNT = N_("No account belongs to the address you signed in with.")
OTHER_BROWSER = N_("This sign-in was started in another browser or has ended. Start again.")
NO_LOGIN = N_("No login method is configured.")
UNKNOWN_APP = N_("An app that is no longer registered")
DONE = {
    "removed": N_("The app's access was removed: its sessions ended and it asks again before it gets access."),
    "restricted": N_("Processing is now restricted."),
    "unrestricted": N_("The restriction was lifted."),
}


def install_account(app: Flask, svc: Services) -> None:
    """The pages, and the completion of their sign-in upstream."""
    app.register_blueprint(blueprint)
    page_url = svc.settings.issuer + ACCOUNT_PATH

    def signed_in(parked: Mapping[str, Any], email: str) -> str:
        login_id, reference = session.pop(LOGIN_KEY, None), parked.get("reference")
        if not (isinstance(login_id, str) and isinstance(reference, str)
                and hmac.compare_digest(token_hash(login_id), reference)):
            log.warning("account sign-in refused", extra={"reason": "other_browser_session"})
            raise ErrorPage(OTHER_BROWSER)
        try:
            identity = svc.vault.find_by_email(email)
        except InvalidEmail:
            identity = None
        if identity is None or identity.status == IDENTITY_ERASED:
            log.info("account sign-in refused", extra={"reason": "no_account"})
            raise ErrorPage(NO_ACCOUNT)
        svc.vault.record_login(identity.pseudonym)
        session_id = svc.account_sessions.start(identity.pseudonym, replacing=request.cookies.get(cookie_name(svc)))

        @after_this_request
        def _set_cookie(response: Response) -> Response:
            return set_session_cookie(response, svc, session_id)

        log.info("account sign-in")  # no pseudonym: personal data (identity.logs)
        return page_url

    svc.signins.register_completion(ACCOUNT_SIGNIN, signed_in)


# -- the cookie --------------------------------------------------------------------------------

def cookie_name(svc: Services) -> str:
    return SECURE_COOKIE if svc.settings.issuer_is_https else COOKIE


def set_session_cookie(response: Response, svc: Services, session_id: str) -> Response:
    response.set_cookie(cookie_name(svc), session_id, httponly=True, samesite="Lax",
                        secure=svc.settings.issuer_is_https, path="/")
    return response


def clear_session_cookie(response: ResponseT, svc: Services) -> ResponseT:
    response.delete_cookie(cookie_name(svc), path="/", secure=svc.settings.issuer_is_https, httponly=True,
                           samesite="Lax")
    return response


def current_session(svc: Services) -> AccountSession | None:
    """This browser's live account session, if any."""
    return svc.account_sessions.find(request.cookies.get(cookie_name(svc)))


def end_browser_session(svc: Services, response: ResponseT) -> ResponseT:
    """Sign this browser out of the account page (server side and cookie).

    A cookie the request did not carry is left alone: a cross-site request arrives without the SameSite=Lax
    cookie, and deleting it would sign the browser out on another site's say-so.
    """
    session_id = request.cookies.get(cookie_name(svc))
    if session_id is None:
        return response
    svc.account_sessions.end(session_id)
    return clear_session_cookie(response, svc)


# -- rendering ---------------------------------------------------------------------------------

def _date(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _upstream_origins() -> tuple[str, ...]:
    origins = getattr(login_broker(), "form_action_origins", None)
    return origins() if callable(origins) else ()


def _signin_page(*, status: int = 200, error: str | None = None, notice: str | None = None) -> Response:
    return person_page("account_signin.html", status=status, form_action_to=_upstream_origins(),
                       error=translate(error) if error else None, notice=translate(notice) if notice else None,
                       action=url_for("account.signin"), csrf_token=csrf_token())


def _account_page(svc: Services, current: AccountSession, *, status: int = 200, error: str | None = None,
                  notice: str | None = None) -> Response:
    identity = svc.vault.find(current.subject)
    if identity is None or identity.status == IDENTITY_ERASED:
        return end_browser_session(svc, _signin_page(notice=SIGNED_OUT))
    self_audience = self_audience_uri(svc.settings.issuer)
    apps = []
    for app in svc.rights.connected_apps(current.subject):
        client = svc.oauth.clients.get(app.client_id)
        apps.append({
            "client_id": app.client_id, "name": app.name or translate(UNKNOWN_APP),
            "scope_lines": scope_words(app.scopes, refresh=bool(client and client.allows_grant(REFRESH_TOKEN))),
            "audience_lines": audience_words(app.audiences, self_audience=self_audience),
            "since": _date(app.consented_at) if app.consented_at else None,
        })
    urls = {name: url_for(f"account.{name}") for name in ("remove", "export", "restrict", "unrestrict", "delete",
                                                           "signin")}
    urls.update(logout=url_for("logout.end_session"), email_change=CHANGE_PATH)
    return person_page(
        "account.html", status=status, form_action_to=_upstream_origins(),
        error=translate(error) if error else None, notice=translate(notice) if notice else None,
        pseudonym=identity.pseudonym, signed_in=_date(current.authenticated_at), created=_date(identity.created_at),
        status_text=translate(identity.status), status_code=identity.status,
        restricted_by_you=svc.rights.restricted_by_subject(identity.pseudonym), apps=apps,
        recent=svc.account_sessions.signed_in_recently(current), urls=urls,
        csrf_token=svc.account_sessions.csrf_token(current), signin_csrf_token=csrf_token(),
    )


def _after_action(notice: str) -> BaseResponse:
    return no_store(redirect(f"{url_for('account.show')}?done={notice}", code=303))


def _acting_session(svc: Services) -> tuple[AccountSession | None, Response | None]:
    """The session a state-changing form acts for, its one-time token spent; or the page refusing it."""
    current = current_session(svc)
    if current is None:
        return None, _signin_page(status=401, notice=SIGNED_OUT)
    if not svc.account_sessions.spend_csrf(current, request.form.get("csrf_token")):
        log.warning("account form refused", extra={"reason": "csrf"})
        return None, problem_page(FORM_EXPIRED, link={"url": url_for("account.show"),
                                                      "text": translate("Go to your account page")})
    return svc.account_sessions.find(current.session_id), None


def _acting_form(view: Callable[[Services, AccountSession], BaseResponse]) -> Callable[[], BaseResponse]:
    """A state-changing form of the account page: ``view`` runs for the signed-in session, its one-time
    token spent (``_acting_session``); otherwise the page refusing it."""
    @functools.wraps(view)
    def run() -> BaseResponse:
        svc = services()
        current, refused = _acting_session(svc)
        if current is None:
            return refused or _signin_page(status=401, notice=SIGNED_OUT)
        return view(svc, current)
    return run


# -- the pages ---------------------------------------------------------------------------------

@blueprint.get(ACCOUNT_PATH)
def show() -> Response:
    svc = services()
    current = current_session(svc)
    if current is None:
        return _signin_page(error=NOT_COMPLETED if "error" in request.args else None)
    return _account_page(svc, current, notice=DONE.get(request.args.get("done", "")))


@blueprint.post(f"{ACCOUNT_PATH}/signin")
def signin() -> BaseResponse:
    """Start a fresh sign-in upstream for this browser."""
    if not csrf_ok():
        return problem_page(FORM_EXPIRED)
    svc = services()
    broker = login_broker()
    if broker is None:
        return problem_page(NO_LOGIN, 503)
    login_id = new_secret_value()
    session[LOGIN_KEY] = login_id
    pending = svc.signins.park_for_service(purpose=ACCOUNT_SIGNIN, return_to=svc.settings.issuer + ACCOUNT_PATH,
                                           reference=token_hash(login_id))
    return no_store(broker.begin(pending))


@blueprint.post(f"{ACCOUNT_PATH}/export")
def export() -> Response:
    """*Download my data*: the rights export as a JSON file (changes nothing, so the token stays valid)."""
    svc = services()
    current = current_session(svc)
    if current is None:
        return _signin_page(status=401, notice=SIGNED_OUT)
    if not svc.account_sessions.csrf_matches(current, request.form.get("csrf_token")):
        return problem_page(FORM_EXPIRED)
    try:
        body = svc.rights.export(current.subject)
    except UnknownSubject:
        return end_browser_session(svc, _signin_page(status=401, notice=SIGNED_OUT))
    response = make_response(json.dumps(body, indent=2, sort_keys=True))
    response.mimetype = "application/json"
    response.headers["Content-Disposition"] = 'attachment; filename="identity-export.json"'
    return no_store(response)


@blueprint.post(f"{ACCOUNT_PATH}/apps/remove")
@_acting_form
def remove(svc: Services, current: AccountSession) -> BaseResponse:
    try:
        svc.rights.remove_access(current.subject, request.form.get("client_id", ""), actor="subject",
                                 reason="access removed by the person on the account page")
    except UnknownSubject:
        return _account_page(svc, current, status=400, error=NOTHING_TO_REMOVE)
    return _after_action("removed")


@blueprint.post(f"{ACCOUNT_PATH}/restrict")
@_acting_form
def restrict(svc: Services, current: AccountSession) -> BaseResponse:
    try:
        svc.rights.restrict(current.subject, actor="subject", by_subject=True,
                            reason="restriction requested by the person on the account page")
    except UnknownSubject:
        return _account_page(svc, current, status=409, error=CANNOT)
    return _after_action("restricted")


@blueprint.post(f"{ACCOUNT_PATH}/unrestrict")
@_acting_form
def unrestrict(svc: Services, current: AccountSession) -> BaseResponse:
    try:
        svc.rights.unrestrict(current.subject, actor="subject", by_subject=True,
                              reason="restriction lifted by the person on the account page")
    except (UnknownSubject, NotAllowed):
        return _account_page(svc, current, status=409, error=CANNOT)
    return _after_action("unrestricted")


@blueprint.post(f"{ACCOUNT_PATH}/delete")
@_acting_form
def delete(svc: Services, current: AccountSession) -> BaseResponse:
    """Erasure, as the operator command does it; then this browser is signed out."""
    if request.form.get("confirm") != "yes":
        return _account_page(svc, current, status=400, error=CONFIRM)
    if not svc.account_sessions.signed_in_recently(current):
        return _account_page(svc, current, status=403, error=NOT_RECENT)
    try:
        svc.rights.erase(current.subject, actor="subject", reason="erasure requested by the person on the account page")
    except UnknownSubject:
        pass  # erased meanwhile (another tab, an operator): the outcome the person asked for
    svc.account_sessions.end_all_for(current.subject)
    session.clear()
    session[DELETED_KEY] = True
    return clear_session_cookie(no_store(redirect(url_for("account.deleted"), code=303)), svc)


@blueprint.get(DELETED_PATH)
def deleted() -> BaseResponse:
    if not session.pop(DELETED_KEY, False):
        return redirect(url_for("account.show"), code=303)
    return person_page("account_deleted.html")
