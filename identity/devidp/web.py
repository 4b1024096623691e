"""The development IdP's HTTP side: discovery, JWKS, the sign-in form and the token endpoint.

A Flask app of its own (own session cookie, own error pages), mounted under ``/devidp`` of the
service or served on its own. The form is CSRF-protected by a random token kept in the IdP's
session cookie (HttpOnly, SameSite=Lax, Secure under https, path limited to the IdP).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from flask import (
    Blueprint, Flask, Response, current_app, jsonify, make_response, redirect, render_template, request, url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from ..oauth.authorize import with_query
from ..web.csrf import csrf_ok, csrf_token
from ..web.errors import error_response
from ..web.headers import no_store
from .authorization import LoginRequest, PageError, RedirectError, email_problem, parse_login_request
from .tokens import TokenError

if TYPE_CHECKING:
    from . import DevIdP

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
EXTENSION = "identity.devidp"
MAX_REQUEST_BYTES = 16 * 1024
# No form-action: the form's answer is a redirect chain that ends at the relying party's client's
# registered redirect URI, which this IdP cannot list, and Chromium checks form-action on every hop.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
FORM_TEMPLATE = "devidp_login.html"

blueprint = Blueprint("devidp", __name__)


def _idp() -> DevIdP:
    return current_app.extensions[EXTENSION]


def _page(message: str, status: int) -> Response:
    return no_store(make_response(render_template("error.html", message=message), status))


def _form(login: LoginRequest, *, error: str | None = None, email: str = "", status: int = 200) -> Response:
    body = render_template(FORM_TEMPLATE, action=url_for("devidp.authorize"), fields=login.form_fields(),
                           csrf_token=csrf_token(), error=error, email=email, issuer=_idp().issuer)
    return no_store(make_response(body, status))


def _error_redirect(redirect_uri: str, error: str, description: str, state: str | None) -> BaseResponse:
    """An OAuth error sent to the registered redirect URI (RFC 6749 §4.1.2.1, with RFC 9207's ``iss``)."""
    return no_store(redirect(with_query(redirect_uri, {
        "error": error, "error_description": description, "state": state, "iss": _idp().issuer}), code=303))


@blueprint.get("/.well-known/openid-configuration")
def discovery() -> Response:
    response = jsonify(_idp().metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blueprint.get("/jwks")
def jwks() -> Response:
    response = jsonify(_idp().keys.jwks())
    response.mimetype = "application/jwk-set+json"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blueprint.route("/authorize", methods=["GET", "POST"])
def authorize() -> BaseResponse:
    idp = _idp()
    params = request.args if request.method == "GET" else request.form
    try:
        login = parse_login_request(params, idp.config)
    except PageError as err:
        return _page(err.message, err.status)
    except RedirectError as err:
        return _error_redirect(params["redirect_uri"], err.error, err.description, params.get("state"))
    if request.method == "GET":
        return _form(login)
    if not csrf_ok():
        return _page("This sign-in form has expired or was not sent from this page. Start again from the app.", 400)
    if request.form.get("action") == "cancel":
        return _error_redirect(login.redirect_uri, "access_denied", "the person cancelled the sign-in", login.state)
    email = request.form.get("email", "").strip()
    problem = email_problem(email)
    if problem:
        return _form(login, error=problem, email=email, status=400)
    code = idp.codes.issue(email=email, client_id=login.client_id, redirect_uri=login.redirect_uri,
                           nonce=login.nonce, code_challenge=login.code_challenge)
    return no_store(redirect(with_query(login.redirect_uri, {"code": code, "state": login.state,
                                                             "iss": idp.issuer}), code=303))


@blueprint.post("/token")
def token() -> Response:
    form = request.form
    try:
        if any(len(form.getlist(k)) > 1 for k in form):
            raise TokenError("invalid_request", "a parameter was given more than once")
        body = _idp().tokens.exchange(form.to_dict(), request.headers.get("Authorization"))
    except TokenError as err:
        return error_response(err)
    return no_store(jsonify(body))


def create_devidp_app(idp: DevIdP) -> Flask:
    """The IdP as a WSGI app with its own cookie, headers and error pages."""
    config = idp.config
    app = Flask("identity.devidp", template_folder=str(TEMPLATES))
    app.config.update(
        SECRET_KEY=config.derive("session"),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SESSION_COOKIE_NAME="devidp_session",
        SESSION_COOKIE_PATH=config.cookie_path,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.https,
    )
    app.extensions[EXTENSION] = idp
    app.register_blueprint(blueprint)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        return _page(err.name, err.code or 400)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.exception("development IdP error on %s %s", request.method, request.path)
        return _page("The development identity provider failed. See the service log.", 500)

    return app
