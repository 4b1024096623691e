"""``GET|POST /logout``: the ``end_session_endpoint`` (OpenID Connect RP-Initiated Logout 1.0).

Signing out ends the service's browser session: the account page's session (server side and its
cookie) and the Flask session cookie (CSRF token, a sign-in or an e-mail change under way).

The person is asked first (a POST form with a CSRF token) unless the request carries a valid
``id_token_hint`` for the person signed in to the account page in this browser (or nobody is): another
site cannot sign a person out by sending their browser here. Then the browser goes to the verified
``post_logout_redirect_uri`` with ``state``, or sees a "signed out" page. A request that fails the
checks (``identity.oauth.logout``) gets a page that says why and still offers to sign out, never a
redirect.

Only a GET is judged by its hint. A POST acts only as the confirmation form of this page (``confirm=yes``
and the session's CSRF token); any other POST (an app's, as §3 allows, or another site's, which browsers
send without the SameSite=Lax cookies that say who is signed in here) is answered 303 to the same request
as a GET, which the browser sends with its cookies. A cookie the request did not carry is never deleted or
replaced.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Blueprint, Response, redirect, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..oauth.authorize import with_query
from ..oauth.logout import PARAMS, LogoutRefused, LogoutRequest, validate_logout
from ..services import Services
from .account import current_session, end_browser_session
from .context import services
from .csrf import csrf_ok, csrf_token
from .headers import MAX_QUERY_STRING, form_action_source, no_store
from .i18n import N_, translate
from .oauth import session_cookie_presented
from .pages import person_page, problem_page

log = logging.getLogger(__name__)
blueprint = Blueprint("logout", __name__)

LOGOUT_PATH = "/logout"
FORWARDED = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")
FORM_EXPIRED = N_("This form has expired or was already sent. Nothing was changed; try again.")


def _confirmation(logout: LogoutRequest | None, *, error: str | None = None, status: int = 200) -> Response:
    """The "Sign out?" page; its form repeats the request's parameters (none after a refusal)."""
    source = request.args if request.method == "GET" else request.form
    fields = {name: source[name] for name in FORWARDED if logout is not None and source.get(name)}
    targets = [form_action_source(logout.redirect_uri)] if logout is not None and logout.redirect_uri else []
    return person_page("logout.html", status=status, form_action_to=targets, error=translate(error) if error else None,
                       app_name=logout.client.name if logout and logout.client else None, fields=fields,
                       csrf_token=csrf_token(), action=url_for("logout.end_session"))


def _hint_matches_this_browser(svc: Services, logout: LogoutRequest) -> bool:
    """A valid hint names whoever is signed in to the account page here (or nobody is)."""
    if logout.hint_subject is None:
        return False
    current = current_session(svc)
    if current is None:
        return True
    # compared, never recorded: a hint from an app the person never used writes no subject row for them
    return logout.client is not None and svc.oauth.subjects.is_subject_for(
        logout.hint_subject, current.subject, client=logout.client)


def _as_get() -> BaseResponse:
    """An unconfirmed POST: the same request as a GET (a plain "Sign out?" if that would be too long)."""
    query = urlencode([(name, value) for name in PARAMS for value in request.form.getlist(name)])
    target = url_for("logout.end_session")
    return no_store(redirect(f"{target}?{query}" if query and len(query) <= MAX_QUERY_STRING else target, code=303))


@blueprint.route(LOGOUT_PATH, methods=["GET", "POST"])
def end_session() -> BaseResponse:
    svc = services()
    if request.method == "POST":  # the session is not touched before the CSRF token is: see the docstring
        if request.form.get("confirm") != "yes":
            return _as_get()
        if not csrf_ok():
            log.warning("sign-out form refused", extra={"reason": "csrf"})
            return problem_page(FORM_EXPIRED)
    source = request.args if request.method == "GET" else request.form
    duplicated = {k for k in source if len(source.getlist(k)) > 1}
    try:
        logout = validate_logout(source.to_dict(), duplicated, clients=svc.oauth.clients, keyring=svc.keyring,
                                 issuer=svc.settings.issuer)
    except LogoutRefused as refused:
        log.warning("sign-out request refused", extra={"reason": refused.reason})
        return _confirmation(None, error=refused.message, status=400)
    if request.method == "GET" and not _hint_matches_this_browser(svc, logout):
        return _confirmation(logout)
    if logout.redirect_uri is not None:
        response = no_store(redirect(with_query(logout.redirect_uri, logout.redirect_parameters()), code=303))
    else:
        response = person_page("signed_out.html")
    if session_cookie_presented():
        session.clear()
    log.info("signed out", extra={"client_id": logout.client.client_id if logout.client else None})
    return end_browser_session(svc, response)
